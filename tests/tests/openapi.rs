//! The OpenAPI document the running server publishes (`GET /api/openapi.json`) is a valid
//! OpenAPI 3.1 document, checked by an independent validator (`openapi-spec-validator` from
//! PyPI, installed by scripts/test), and every operation it declares is a route the server
//! really serves: a client generated from it never calls a path that answers 404 or 405.

use std::process::Command;

use e2e::Server;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn published_document(server: &Server) -> Result<Value, Box<dyn std::error::Error>> {
    let res = reqwest::blocking::get(format!("{}/api/openapi.json", server.url))?;
    assert_eq!(res.status(), 200);
    Ok(res.json()?)
}

#[test]
fn the_published_openapi_document_is_valid() -> TestResult {
    let cwd = tempfile::tempdir()?;
    let server = Server::start(cwd.path(), &[], &[]);
    let doc = published_document(&server)?;
    let file = cwd.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc)?)?;
    let out = Command::new("python3").args(["-m", "openapi_spec_validator"]).arg(&file).output()?;
    assert!(
        out.status.success(),
        "openapi-spec-validator rejects the document (install it with `pip install \
         openapi-spec-validator`, as scripts/test does):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Filters of the list and search endpoints are query parameters, not path parameters.
    for (path, name) in [("/api/v1/requests", "status"), ("/api/v1/search", "q")] {
        let params =
            doc["paths"][path]["get"]["parameters"].as_array().cloned().unwrap_or_default();
        let p = params.iter().find(|p| p["name"] == name);
        assert_eq!(p.map(|p| p["in"].clone()), Some(Value::from("query")), "{path} {name}");
    }
    assert_eq!(server.stop(), Some(0));
    Ok(())
}

#[test]
fn every_documented_operation_is_served() -> TestResult {
    let cwd = tempfile::tempdir()?;
    let server = Server::start(cwd.path(), &[], &[]);
    let doc = published_document(&server)?;
    let paths = doc["paths"].as_object().ok_or("the document has paths")?;
    assert!(paths.len() >= 12, "{} paths", paths.len());
    let client = reqwest::blocking::Client::new();
    let mut checked = 0;
    for (path, ops) in paths {
        let concrete = path.replace("{id}", "bg-000000");
        for method in ops.as_object().ok_or("operations")?.keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())?;
            let res = client
                .request(m, format!("{}{concrete}", server.url))
                .header("content-type", "application/json")
                .body("{}")
                .send()?;
            let status = res.status().as_u16();
            // Without a token every API route answers 401 before it looks anything up.
            assert_ne!(status, 404, "{method} {path} is documented but not routed");
            assert_ne!(
                status, 405,
                "{method} {path} is documented with a method the route refuses"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked} operations checked");
    assert_eq!(server.stop(), Some(0));
    Ok(())
}
