//! The reviewer pages through the bot's real router: single-use sign-in links, the session
//! cookie, who may see what, escaping, signature status, search, downloads and the audit trail.
//! Sessions are simulated on the store with a real signed `.cast` file; the browser, the player
//! and live watching are covered end to end in the `breakglass-e2e` crate.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use common::{App, TestResult};
use serde_json::{Value, json};
use shared::core::request::{self as core_request};
use shared::core::{Action, RequestRef};
use shared::ports::{RecordingRecord, SessionEvent};
use shared::testing::db::TestDb;
use tower::ServiceExt as _;

const HOSTILE_REASON: &str = r#"<script>alert("reason")</script> & disk full"#;
const HOSTILE_COMMAND: &str = "rm -rf /tmp/<b>x</b>";

struct Review {
    app: App,
    dir: tempfile::TempDir,
    key: format::integrity::RecordingSigner,
}

/// What a page answered.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Page {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: header::HeaderName) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    /// The stable code of an error page.
    fn code(&self) -> String {
        let t = self.text();
        t.split("data-code=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Review {
    fn new(db: &TestDb) -> Self {
        let mut app = App::new(db);
        let dir = tempfile::tempdir().expect("tempdir");
        let key = format::integrity::RecordingSigner::new(shared::testing::key(7));
        let recordings = Arc::new(bot::recordings::Recordings::new(
            vec![key.verifying_key()],
            dir.path().to_owned(),
        ));
        app.bot.chat = Arc::new(bot::chat::sync::ChatHub::new(recordings, "http://bg.test".into()));
        Self { app, dir, key }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut b = Request::builder().method(Method::GET).uri(path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        let resp = bot::router(self.app.bot())
            .oneshot(b.body(Body::empty()).expect("request builds"))
            .await
            .expect("the router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 16 << 20).await.expect("body").to_vec();
        Page { status, headers, body }
    }

    /// A sign-in link for `who` through the API; returns its path (`/review/login?t=…`).
    async fn link(&self, who: &str, request: Option<&str>) -> String {
        let body = request.map_or_else(|| json!({}), |r| json!({ "request": r }));
        let (s, v) = self.app.post("/api/v1/review-links", who, body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let url = v["url"].as_str().expect("url");
        url.split_once("/review/").map(|(_, p)| format!("/review/{p}")).expect("a review URL")
    }

    /// Opens a link; returns the cookie (`bg_review=…`) it set.
    async fn sign_in(&self, link: &str) -> String {
        let p = self.get(link, None).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.text());
        let set = p.header(header::SET_COOKIE);
        set.split(';').next().expect("a cookie").to_owned()
    }

    /// A request by alice with `reason`, approved by bob and carol, whose session ran
    /// `HOSTILE_COMMAND` and ended with a recording signed by the pinned key.
    async fn session(&self, reason: &str) -> (String, Vec<u8>) {
        let code = self.started(reason).await;
        let d = &self.app.deps;
        let req = d.get(&code.parse().expect("code")).await.expect("request");
        let now = d.now();
        let e = SessionEvent {
            request_id: req.id,
            at: now.plus_secs(1),
            offset_ms: 1100,
            kind: shared::core::SessionEventKind::Command,
            detail: json!({ "command": HOSTILE_COMMAND }),
        };
        d.store.add_session_event(&e).await.expect("event");
        let cast = format!(
            "{{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":{t},\"breakglass\":{{\"grant_id\":\"{id}\",\"code\":\"{code}\"}}}}\n[0.5,\"o\",\"$ \"]\n[1.1,\"m\",{cmd}]\n[1.2,\"o\",\"removed\\r\\n$ \"]\n",
            t = now.unix(),
            id = req.id,
            cmd = serde_json::to_string(HOSTILE_COMMAND).expect("json")
        );
        let file = format!("{code}-1.cast");
        std::fs::write(self.dir.path().join(&file), &cast).expect("cast written");
        let sha: [u8; 32] = {
            use sha2::{Digest as _, Sha256};
            Sha256::digest(cast.as_bytes()).into()
        };
        let side = self.key.sign(
            &format::integrity::SessionBinding {
                request_id: req.id,
                code: req.code.clone(),
                nonce: req.nonce,
                started_at: now,
                ended_at: now.plus_secs(2),
                file: file.clone(),
            },
            &sha,
        );
        let live = d.get(&RequestRef::Id(req.id)).await.expect("live");
        let end = core_request::apply(
            &live,
            Action::SessionEnded(shared::testing::session_ended()),
            &d.config.policy,
            &d.pins,
            now.plus_secs(2),
        )
        .expect("end");
        let rec = RecordingRecord {
            request_id: req.id,
            file,
            sha256: sha,
            signature: side.signature,
            key_id: side.key_id,
            started_at: now,
            ended_at: now.plus_secs(2),
            end_reason: shared::core::EndReason::Closed,
            exit_status: Some(0),
            bytes_in: 20,
            bytes_out: 30,
            commands: 1,
        };
        d.store.end_session(&rec, Some(&end), &[], now.plus_secs(2)).await.expect("ended");
        (code, cast.into_bytes())
    }

    /// A request by alice, approved, whose session has started (the request is `active`).
    async fn started(&self, reason: &str) -> String {
        let code = self
            .app
            .open("alice", json!({ "host": "db-1", "login": "postgres", "reason": reason }))
            .await;
        for who in ["bob", "carol"] {
            assert_eq!(self.app.act(&code, "approve", who).await.0, StatusCode::OK);
        }
        self.app.start_session(&code).await;
        code
    }

    async fn audit_views(&self, who: &str) -> Vec<Value> {
        let page = self.app.deps.store.audit_page(0, 1000).await.expect("audit");
        page.iter()
            .filter(|e| e.kind == "recording_viewed" && e.actor == who)
            .map(|e| serde_json::from_str(&e.data).expect("data is JSON"))
            .collect()
    }
}

test_util::both_backends!(a_link_opens_once_and_starts_a_strict_session);
async fn a_link_opens_once_and_starts_a_strict_session(db: TestDb) -> TestResult {
    let r = Review::new(&db);
    // Without a session: a page that says how to get one, never the content.
    let p = r.get("/review", None).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert_eq!(p.code(), "not_signed_in");
    assert!(p.text().contains("/breakglass review"), "{}", p.text());

    let link = r.link("erin", None).await;
    assert!(link.starts_with("/review/login?t=bgr_"), "{link}");
    let p = r.get(&link, None).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.header(header::LOCATION), "/review");
    let set = p.header(header::SET_COOKIE);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/review", "Max-Age=28800"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert!(!set.contains("Secure"), "plain http: no Secure attribute: {set}");
    let cookie = set.split(';').next().unwrap_or_default().to_owned();

    // The link is spent.
    let again = r.get(&link, None).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert_eq!(again.code(), "link_used");
    assert!(again.header(header::SET_COOKIE).is_empty());
    let unknown = r.get("/review/login?t=bgr_00", None).await;
    assert_eq!(unknown.code(), "link_unknown");

    let p = r.get("/review", Some(&cookie)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    assert!(p.text().contains("signed in as <strong>erin</strong>"), "{}", p.text());
    // Every page: the strict policy and no caching.
    for page in [&p, &again] {
        let csp = page.header(header::CONTENT_SECURITY_POLICY);
        assert_eq!(csp, bot::review::CSP);
        assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval';"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"), "{csp}");
        assert_eq!(page.header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(page.header(header::CACHE_CONTROL), "no-store");
    }
    // Only the hash of the link and of the cookie are stored, nowhere the values.
    let token = link.trim_start_matches("/review/login?t=");
    let id = cookie.trim_start_matches("bg_review=");
    let hex = |s: &str| hex::encode(bot::service::sha256(s));
    let count = |sql: String| {
        let admin = db.admin.clone();
        async move { admin.exec(&sql).await }
    };
    let touch_link = |w: &str| format!("UPDATE review_links SET principal = principal WHERE {w}");
    let touch_session =
        |w: &str| format!("UPDATE review_sessions SET principal = principal WHERE {w}");
    assert_eq!(count(touch_link(&format!("token_sha256 = '{}'", hex(token)))).await?, 1);
    assert_eq!(count(touch_session(&format!("id_sha256 = '{}'", hex(id)))).await?, 1);
    for (table, cols) in [
        ("review_links", ["token_sha256", "principal", "request_code"]),
        ("review_sessions", ["id_sha256", "principal", "principal"]),
    ] {
        for secret in [token, id] {
            let w = cols.map(|c| format!("{c} LIKE '%{secret}%'")).join(" OR ");
            let sql = format!("UPDATE {table} SET principal = principal WHERE {w}");
            assert_eq!(count(sql).await?, 0, "{table} holds a secret in clear");
        }
    }
    let dump = format!("{:?}", r.app.deps.store.audit_page(0, 1000).await?);
    assert!(!dump.contains(token) && !dump.contains(id));
    Ok(())
}

test_util::both_backends!(only_reviewers_get_links_or_see_pages);
async fn only_reviewers_get_links_or_see_pages(db: TestDb) -> TestResult {
    let r = Review::new(&db);
    let (s, v) = r.app.post("/api/v1/review-links", "alice", json!({})).await;
    common::assert_error(&(s, v), StatusCode::FORBIDDEN, "not_a_reviewer");
    let got = r.app.get("/api/v1/search?q=rm", "alice").await;
    common::assert_error(&got, StatusCode::FORBIDDEN, "not_a_reviewer");
    let got = r.app.get("/api/v1/requests/bg-000000/recording", "bob").await;
    common::assert_error(&got, StatusCode::FORBIDDEN, "not_a_reviewer");

    // A link stored for someone who is not a reviewer (issued before they left the group).
    let token = "bgr_for_alice";
    let link = shared::ports::ReviewLink {
        token_sha256: bot::service::sha256(token),
        principal: shared::testing::name("alice"),
        request_code: None,
        created_at: r.app.deps.now(),
        expires_at: r.app.deps.now().plus_secs(600),
    };
    r.app.deps.store.create_review_link(&link).await?;
    let p = r.get(&format!("/review/login?t={token}"), None).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(p.code(), "not_a_reviewer");
    assert!(p.header(header::SET_COOKIE).is_empty(), "no session for a non-reviewer");

    // A reviewer removed from the group loses their open session at once.
    let cookie = r.sign_in(&r.link("erin", None).await).await;
    assert_eq!(r.get("/review", Some(&cookie)).await.status, StatusCode::OK);
    let mut config = (*r.app.deps.config).clone();
    config.review.reviewer_groups.clear();
    let mut removed = Review::new(&db);
    removed.app.deps.config = Arc::new(config);
    let p = removed.get("/review", Some(&cookie)).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(p.code(), "not_a_reviewer");
    Ok(())
}

test_util::both_backends!(links_and_sessions_expire);
async fn links_and_sessions_expire(db: TestDb) -> TestResult {
    let r = Review::new(&db);
    let link = r.link("erin", None).await;
    r.app.clock.advance(601);
    let p = r.get(&link, None).await;
    assert_eq!(p.code(), "link_expired");

    let cookie = r.sign_in(&r.link("erin", None).await).await;
    r.app.clock.advance(8 * 3600 - 1);
    assert_eq!(r.get("/review", Some(&cookie)).await.status, StatusCode::OK);
    r.app.clock.advance(2);
    let p = r.get("/review", Some(&cookie)).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert_eq!(p.code(), "not_signed_in");
    Ok(())
}

test_util::both_backends!(an_https_public_url_makes_the_cookie_secure);
async fn an_https_public_url_makes_the_cookie_secure(db: TestDb) -> TestResult {
    let mut r = Review::new(&db);
    let mut config = (*r.app.deps.config).clone();
    config.server.public_url = "https://bg.example".into();
    r.app.deps.config = Arc::new(config);
    let link = r.link("erin", None).await;
    let p = r.get(&link, None).await;
    let set = p.header(header::SET_COOKIE);
    assert!(set.contains("; Secure"), "{set}");
    Ok(())
}

test_util::both_backends!(pages_show_untrusted_text_as_text_and_check_every_signature);
async fn pages_show_untrusted_text_as_text_and_check_every_signature(db: TestDb) -> TestResult {
    let r = Review::new(&db);
    let (code, cast) = r.session(HOSTILE_REASON).await;
    let cookie = r.sign_in(&r.link("erin", Some(&code)).await).await;

    let list = r.get("/review", Some(&cookie)).await.text();
    assert!(list.contains(&format!("<tr class=\"session\" data-code=\"{code}\">")), "{list}");
    assert!(list.contains("<td class=\"approvers\">bob, carol</td>"), "{list}");
    assert!(list.contains("data-ok=\"true\""), "the signature verifies: {list}");

    let page = r.get(&format!("/review/s/{code}"), Some(&cookie)).await.text();
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<b>x</b>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(&quot;reason&quot;)&lt;/script&gt; &amp; disk full")
            || page.contains("&lt;script&gt;alert(\"reason\")&lt;/script&gt; &amp; disk full"),
        "{page}"
    );
    assert!(page.contains("rm -rf /tmp/&lt;b&gt;x&lt;/b&gt;"), "{page}");
    assert!(
        page.contains("href=\"#t=1.100\" data-t=\"1.100\""),
        "the command jumps to 1.1 s: {page}"
    );
    assert_eq!(page.matches("class=\"approval\" data-ok=\"true\"").count(), 2, "{page}");
    assert!(page.contains(&format!("data-cast-url=\"/review/s/{code}/cast\"")), "{page}");
    assert!(!page.contains("data-live-url"), "a finished session is not live");
    // Scripts only from this origin, and no inline script at all.
    assert_eq!(page.matches("<script").count(), 2, "{page}");
    assert!(page.contains("<script src=\"/review/assets/review.js\"></script>"));

    let dl = r.get(&format!("/review/s/{code}/cast"), Some(&cookie)).await;
    assert_eq!(dl.status, StatusCode::OK);
    assert_eq!(dl.body, cast);
    assert!(dl.header(header::CONTENT_DISPOSITION).contains(&format!("{code}-1.cast")));

    // A recording changed on disk no longer verifies, and the page says so.
    let file = r.dir.path().join(format!("{code}-1.cast"));
    let mut bytes = std::fs::read(&file)?;
    let at = bytes.len() - 3;
    bytes[at] = b'#';
    std::fs::write(&file, bytes)?;
    let page = r.get(&format!("/review/s/{code}"), Some(&cookie)).await.text();
    assert!(page.contains("data-ok=\"false\"") && page.contains("NOT verified"), "{page}");

    // Every view is in the audit log, as erin.
    let views: Vec<String> = r
        .audit_views("erin")
        .await
        .iter()
        .map(|v| v["view"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(views, ["list", "page", "cast", "page"]);
    // Nothing for someone who is not signed in, and unknown sessions are not found.
    assert_eq!(
        r.get(&format!("/review/s/{code}/cast"), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(r.get("/review/s/bg-000000", Some(&cookie)).await.code(), "not_found");
    Ok(())
}

test_util::both_backends!(search_finds_commands_and_links_to_their_moment);
async fn search_finds_commands_and_links_to_their_moment(db: TestDb) -> TestResult {
    let r = Review::new(&db);
    let (code, _) = r.session("disk full").await;
    let (s, v) = r.app.get("/api/v1/search?q=RM%20-RF", "erin").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let hits = v["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(hits[0]["code"], code.as_str());
    assert_eq!(hits[0]["command"], HOSTILE_COMMAND);
    assert!(
        hits[0]["url"].as_str().is_some_and(|u| u.ends_with(&format!("/review/s/{code}#t=1.100"))),
        "{v}"
    );
    // Filters.
    let (_, v) = r.app.get("/api/v1/search?q=rm&who=bob", "erin").await;
    assert_eq!(v["hits"].as_array().map(Vec::len), Some(0), "{v}");
    let (_, v) = r.app.get("/api/v1/search?q=rm&host=db-1&from=2000-01-01", "erin").await;
    assert_eq!(v["hits"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, v) = r.app.get("/api/v1/search?q=rm&to=2000-01-01", "erin").await;
    assert_eq!(v["hits"].as_array().map(Vec::len), Some(0), "{v}");
    let got = r.app.get("/api/v1/search?q=rm&from=yesterday", "erin").await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "invalid_value");
    let got = r.app.get("/api/v1/search?q=%20", "erin").await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "invalid_value");

    // The same on the page.
    let cookie = r.sign_in(&r.link("erin", None).await).await;
    let page = r.get("/review?q=rm+-rf", Some(&cookie)).await.text();
    assert!(page.contains("<ol id=\"hits\">"), "{page}");
    assert!(page.contains(&format!("href=\"/review/s/{code}#t=1.100\"")), "{page}");
    let none = r.get("/review?q=kubectl", Some(&cookie)).await.text();
    assert!(none.contains("No command matches."), "{none}");
    assert!(r.audit_views("erin").await.iter().any(|v| v["view"] == "search"));
    Ok(())
}

test_util::both_backends!(another_sessions_recording_is_not_verified_on_the_page_or_in_chat);
async fn another_sessions_recording_is_not_verified_on_the_page_or_in_chat(
    db: TestDb,
) -> TestResult {
    let r = Review::new(&db);
    let (x, _) = r.session("disk full").await;
    let (y, y_cast) = r.session("disk full").await;
    let cookie = r.sign_in(&r.link("erin", None).await).await;
    let page = |code: String| {
        let (r, cookie) = (&r, cookie.clone());
        async move { r.get(&format!("/review/s/{code}"), Some(&cookie)).await.text() }
    };
    assert!(page(y.clone()).await.contains("td class=\"verified\" data-ok=\"true\""));
    // Session X's recording and signature copied over Y's.
    let (xf, yf) = (format!("{x}-1.cast"), format!("{y}-1.cast"));
    std::fs::copy(r.dir.path().join(&xf), r.dir.path().join(&yf))?;
    let shown = page(y.clone()).await;
    assert!(shown.contains("td class=\"verified\" data-ok=\"false\""), "{shown}");
    assert!(shown.contains(&format!("header says {x}")), "names the mismatch: {shown}");
    // The chat summary's check says the same.
    let d = &r.app.deps;
    let req = d.get(&y.parse()?).await?;
    let rec = d.store.recording(req.id).await?.expect("Y's row");
    let chat = r.app.bot.chat.recordings.integrity(&req, &rec, true);
    assert!(
        matches!(&chat, bot::recordings::Integrity::Failed(why) if why.contains(&format!("header says {x}"))),
        "{chat:?}"
    );
    // Y's own recording back, with X's signature file beside it: refused too.
    std::fs::write(r.dir.path().join(&yf), y_cast)?;
    let req_x = d.get(&x.parse()?).await?;
    let rec_x = d.store.recording(req_x.id).await?.expect("X's row");
    let x_sig = format::integrity::Sidecar::of(&bot::recording_check::stored(&rec_x), &req_x);
    std::fs::write(r.dir.path().join(format!("{yf}.sig")), serde_json::to_vec(&x_sig)?)?;
    let shown = page(y.clone()).await;
    assert!(
        shown.contains(&format!("{yf}.sig: not this session")) && shown.contains(&x),
        "names the mismatch: {shown}"
    );
    Ok(())
}

test_util::both_backends!(a_long_search_is_refused_and_not_recorded);
async fn a_long_search_is_refused_and_not_recorded(db: TestDb) -> TestResult {
    let r = Review::new(&db);
    let cookie = r.sign_in(&r.link("erin", None).await).await;
    let before = r.app.audit_len().await;
    let long = "x".repeat(201);
    let page = r.get(&format!("/review?q={long}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.text());
    let got = r.app.get(&format!("/api/v1/search?q={long}"), "erin").await;
    common::assert_error(&got, StatusCode::BAD_REQUEST, "invalid_value");
    assert_eq!(r.app.audit_len().await, before, "nothing recorded");
    // 200 characters (not bytes) are fine.
    let at_most = "é".repeat(200);
    let page = r.get(&format!("/review?q={at_most}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert_eq!(r.app.audit_len().await, before + 1, "the search is recorded");
    Ok(())
}

test_util::both_backends!(the_bundle_holds_what_an_auditor_needs_to_verify_offline);
async fn the_bundle_holds_what_an_auditor_needs_to_verify_offline(db: TestDb) -> TestResult {
    let r = Review::new(&db);
    let (code, cast) = r.session("disk full").await;
    let cookie = r.sign_in(&r.link("erin", None).await).await;
    let p = r.get(&format!("/review/s/{code}/bundle"), Some(&cookie)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    assert_eq!(p.header(header::CONTENT_TYPE), "application/gzip");
    let mut files = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(p.body.as_slice()));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)?;
        files.insert(name, bytes);
    }
    let file = |n: &str| files.get(&format!("{code}/{n}")).cloned().unwrap_or_default();
    let names: Vec<&str> =
        files.keys().map(|k| k.trim_start_matches(&format!("{code}/"))).collect();
    let cast_name = format!("{code}-1.cast");
    let sig_name = format!("{cast_name}.sig");
    for n in [
        "README.md",
        &cast_name,
        &sig_name,
        "recording-key.pub",
        "recording-key.pem",
        "signature.bin",
        "statement.bin",
        "request.json",
        "audit.jsonl",
        "session-events.jsonl",
        "SHA256SUMS",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert_eq!(file(&cast_name), cast);
    // The signature verifies with the key in the bundle, which is the pinned key.
    let key_text = String::from_utf8(file("recording-key.pub"))?;
    let key = shared::core::approval::parse_public_key(key_text.trim())?;
    assert_eq!(key, r.key.verifying_key());
    let side: format::integrity::Sidecar = serde_json::from_slice(&file(&sig_name))?;
    let v = format::integrity::verify_bytes(
        &cast,
        &side,
        &[key],
        &format::integrity::Expected::default(),
    )?;
    assert_eq!(v.session.code.as_str(), code);
    // Checksums, approvals, audit events and commands.
    let sums = String::from_utf8(file("SHA256SUMS"))?;
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").expect("sha256sum format");
        let digest = {
            use sha2::{Digest as _, Sha256};
            hex::encode(Sha256::digest(file(name)))
        };
        assert_eq!(sum, digest, "{name}");
    }
    let req: Value = serde_json::from_slice(&file("request.json"))?;
    assert_eq!(req["approvals"].as_array().map(Vec::len), Some(2));
    assert!(
        req["approvals"].as_array().into_iter().flatten().all(|a| a["verified"] == true),
        "{req}"
    );
    let audit = String::from_utf8(file("audit.jsonl"))?;
    for kind in
        ["\"requested\"", "\"approved\"", "\"granted\"", "\"session_started\"", "\"session_ended\""]
    {
        assert!(audit.contains(kind), "{kind} missing: {audit}");
    }
    assert!(String::from_utf8(file("session-events.jsonl"))?.contains("rm -rf"));
    let readme = String::from_utf8(file("README.md"))?;
    assert!(
        readme
            .contains(&format!("breakglass recording verify {cast_name} --key recording-key.pub"))
    );
    assert!(r.audit_views("erin").await.iter().any(|v| v["view"] == "bundle"));
    Ok(())
}

test_util::both_backends!(a_live_cast_download_has_no_keystrokes);
async fn a_live_cast_download_has_no_keystrokes(db: TestDb) -> TestResult {
    let r = Review::new(&db);
    let code = r.started("watch").await;
    std::fs::write(
        r.dir.path().join(format!("{code}-1.cast")),
        concat!(
            "{\"version\":2,\"width\":80,\"height\":24}\n",
            "[0.5,\"o\",\"Password: \"]\n",
            "[0.6,\"b\",\"i:aHVudGVyMg0=\"]\n",
            "[0.6,\"i\",\"hunter2\\r\"]\n",
            "[0.7,\"o\",\"\\r\\nok\"]\n",
        ),
    )?;
    let cookie = r.sign_in(&r.link("erin", None).await).await;
    let dl = r.get(&format!("/review/s/{code}/cast"), Some(&cookie)).await;
    assert_eq!(dl.status, StatusCode::OK);
    let body = dl.text();
    assert!(body.contains("Password: ") && body.contains("ok"), "the output is there: {body}");
    assert!(!body.contains("hunter2") && !body.contains("aHVudGVyMg0"), "no keystrokes: {body}");
    assert!(!body.contains(",\"i\","), "{body}");
    let views = r.audit_views("erin").await;
    assert_eq!(views.last().map(|v| v["view"].clone()), Some(json!("cast_live")));
    Ok(())
}

test_util::both_backends!(a_live_view_ends_when_the_viewers_browser_session_does);
async fn a_live_view_ends_when_the_viewers_browser_session_does(db: TestDb) -> TestResult {
    let r = Review::new(&db);
    let code = r.started("watch").await;
    std::fs::write(
        r.dir.path().join(format!("{code}-1.cast")),
        "{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"hello-live\"]\n",
    )?;
    let cookie = r.sign_in(&r.link("erin", None).await).await;
    let url = format!("{}/review/s/{code}/live", r.app.serve().await);
    let mut resp = reqwest::Client::new().get(&url).header("cookie", &cookie).send().await?;
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("hello-live") {
        let chunk =
            tokio::time::timeout_at(deadline, resp.chunk()).await??.ok_or("stream ended")?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"cols\":80"), "{seen}");
    // Still live and still allowed: no end for a while.
    if let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(std::time::Duration::from_millis(1500), resp.chunk()).await
    {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains("event: done"), "{seen}");
    // The reviewer's browser session expires: the stream ends within about a second.
    r.app.clock.advance(8 * 3600 + 1);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("event: done") {
        match tokio::time::timeout_at(deadline, resp.chunk()).await?? {
            Some(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            None => break,
        }
    }
    assert!(seen.contains("event: done"), "{seen}");
    Ok(())
}
