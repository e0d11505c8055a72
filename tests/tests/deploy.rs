//! What a platform team applies from `deploy/`, checked with the tools they would use:
//!
//! - the container image: the runtime stage of `deploy/container/Containerfile` built for real
//!   with podman (`--target runtime`, the builder stage replaced by a root folder that
//!   `make-root.sh` lays out from this build's binary, as the builder stage would; the Rust
//!   image the builder needs comes from a registry this machine cannot reach), exported, and
//!   started from that root as uid 65532 with the root read-only and only the volume
//!   writable (`unshare` + `chroot --userspec`: podman cannot run containers here, crun's
//!   setrlimit is refused), until `/healthz` and `/readyz` answer;
//! - the systemd units: `systemd-analyze verify` without a warning, the exposure score of
//!   `systemd-analyze security --offline=yes`, the hardening lines, and the commands they run;
//! - the Kubernetes manifests: rendered by kustomize (`kubectl kustomize`), every source
//!   manifest and both renderings validated by `kubernetes-validate --strict`, and what the
//!   rendering must hold (non-root, read-only root, no capabilities, probes, limits, spread
//!   across zones, disruption budgets, default-deny network policy, no Secret objects);
//! - the Grafana dashboard: valid JSON, every `breakglass_*` metric it queries listed in
//!   `deploy/grafana/metrics.txt` with the labels it groups by, and every listed metric shown;
//! - docs/operations.md: every `breakglass` command it names exists, every relative link
//!   resolves.
//!
//! `scripts/test` installs podman, systemd, kubernetes-validate and kubectl when missing; the
//! container test needs root (chown, mount namespaces, chroot), as the suite runs in CI.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::{bin, cli, root};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs a program, failing with its output (and what to install) when it cannot start.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} does not run ({e}): scripts/test installs it (podman, systemd, kubectl, kubernetes-validate)")
    })
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[track_caller]
fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed ({:?}):\n{}", o.status, text(o));
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------------------------------
// The container image

/// `podman` with the test's own storage, so parallel runs and the machine's images never meet.
struct Podman {
    root: PathBuf,
    runroot: PathBuf,
}

impl Podman {
    fn run(&self, args: &[&str]) -> Output {
        let base = [
            "--root",
            path_str(&self.root),
            "--runroot",
            path_str(&self.runroot),
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ];
        run("podman", &[&base[..], args].concat())
    }
}

/// The running image, stopped (SIGTERM, as a runtime stops a container) when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = test_util::poll(Duration::from_secs(20), Duration::from_millis(50), || {
            self.0.try_wait().ok().flatten()
        });
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` (absolute, inside `rootfs`) as the image's user, as a container runtime
/// would: its own mount namespace, /proc and /dev mounted, the root bind-mounted read-only
/// with the volume `/var/lib/breakglass` the only writable place, then `chroot` to it as
/// uid:gid 65532 (chroot sets the ids and groups; a non-zero uid keeps no capabilities).
fn in_image(rootfs: &Path, user: &str, command: &[String], env: &[(String, String)]) -> Command {
    let script = r#"set -e
R=$1; U=$2; shift 2
mount --make-rprivate /
mount --bind "$R" "$R"
mount --bind "$R/var/lib/breakglass" "$R/var/lib/breakglass"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -o remount,bind,ro "$R"
exec chroot --userspec="$U" "$R" "$@""#;
    let mut c = Command::new("unshare");
    c.args(["--mount", "--", "sh", "-c", script, "sh", path_str(rootfs), user]).args(command);
    c.env_clear();
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The image the Containerfile's runtime stage builds holds the binary, its libraries, CA
/// certificates and a passwd entry, and no shell; it declares a non-root user, the volume,
/// the health check and the entrypoint; and from its exported root, read-only, as uid 65532,
/// `breakglass up` starts with its state on the volume alone and answers /healthz and /readyz.
#[test]
fn the_image_runs_as_an_unprivileged_user_on_a_read_only_root_and_answers_its_health_checks()
-> TestResult {
    let t = tempfile::tempdir()?;
    let d = t.path();
    let podman = Podman { root: d.join("storage"), runroot: d.join("run") };

    // The builder stage's /out, made by the same script from this build's binary (stripped:
    // the image holds a release build without debug info).
    let binary = d.join("breakglass");
    ok(&run("strip", &["--strip-debug", "-o", path_str(&binary), path_str(&bin())]), "strip");
    let ctx = d.join("builder");
    let out = ctx.join("out");
    ok(
        &run(
            path_str(&root().join("deploy/container/make-root.sh")),
            &[path_str(&out), path_str(&binary)],
        ),
        "make-root.sh",
    );

    let tag = format!("localhost/breakglass-deploy-test:{}", std::process::id());
    let containerfile = root().join("deploy/container/Containerfile");
    let build = podman.run(&[
        "build",
        "--format",
        "docker",
        "--target",
        "runtime",
        "--build-context",
        &format!("builder={}", ctx.display()),
        "-f",
        path_str(&containerfile),
        "-t",
        &tag,
        path_str(&ctx),
    ]);
    ok(&build, "podman build --target runtime");

    // What the image declares.
    let inspect = podman.run(&["image", "inspect", &tag]);
    ok(&inspect, "podman image inspect");
    let images: Value = serde_json::from_slice(&inspect.stdout)?;
    let config = &images[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "{config:#}");
    let entrypoint = strings(&config["Entrypoint"]);
    assert_eq!(entrypoint, ["/usr/local/bin/breakglass"], "{config:#}");
    assert_eq!(strings(&config["Cmd"]), ["up"], "{config:#}");
    assert!(config["Volumes"].get("/var/lib/breakglass").is_some(), "{config:#}");
    // podman reports HEALTHCHECK beside the config (kept with `--format docker`).
    let health = strings(&images[0]["Healthcheck"]["Test"]);
    assert_eq!(health.first().map(String::as_str), Some("CMD"), "exec form, no shell: {config:#}");
    assert_eq!(health[1..].first(), entrypoint.first(), "{config:#}");
    let env: Vec<(String, String)> = strings(&config["Env"])
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    assert!(
        env.iter().any(|(k, v)| k == "BREAKGLASS_CONFIG" && v == "/etc/breakglass/breakglass.toml"),
        "{env:?}"
    );

    // Its root folder, as the image's layers hold it.
    let created = podman.run(&["create", &tag]);
    ok(&created, "podman create");
    let id = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let tar = d.join("rootfs.tar");
    ok(&podman.run(&["export", "-o", path_str(&tar), &id]), "podman export");
    let rootfs = d.join("rootfs");
    fs::create_dir(&rootfs)?;
    ok(&run("tar", &["-xpf", path_str(&tar), "-C", path_str(&rootfs)]), "tar -x");
    for p in ["usr/local/bin/breakglass", "etc/breakglass/breakglass.toml", "etc/passwd"] {
        assert!(rootfs.join(p).is_file(), "the image has /{p}");
    }
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file(), "CA certificates");
    for shell in ["bin/sh", "usr/bin/sh", "bin/bash", "bin/busybox"] {
        assert!(!rootfs.join(shell).exists(), "the image has no shell, but /{shell} is there");
    }
    assert!(fs::read_to_string(rootfs.join("etc/passwd"))?.contains(":65532:65532:"));
    let volume = fs::metadata(rootfs.join("var/lib/breakglass"))?;
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        assert_eq!((volume.uid(), volume.gid()), (65532, 65532), "the volume is the user's");
        assert_eq!(volume.permissions().mode() & 0o777, 0o700);
    }

    // Start it: ENTRYPOINT + CMD, the image's environment, ports the kernel picks (the
    // address is read back from its log, so no other process can take a port in between).
    let mut env = env;
    env.push(("BREAKGLASS__SERVER__LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("BREAKGLASS__GATEWAY__LISTEN".into(), "127.0.0.1:0".into()));
    let command: Vec<String> = entrypoint.iter().chain(&strings(&config["Cmd"])).cloned().collect();
    let log_path = d.join("breakglass.log");
    let log = fs::File::create(&log_path)?;
    let child = in_image(&rootfs, "65532:65532", &command, &env)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let pid = child.id();
    let mut running = Running(child);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let logged = || fs::read_to_string(&log_path).unwrap_or_default();
    let url = || {
        let log = logged();
        let rest = log.split("HTTP API on ").nth(1)?;
        rest.split_whitespace().next().map(str::to_owned)
    };
    let status = |path: &str| -> Result<u16, Box<dyn std::error::Error>> {
        let base = url().ok_or("no address in the log yet")?;
        Ok(client.get(format!("{base}{path}")).send()?.status().as_u16())
    };
    let ready = test_util::poll(Duration::from_secs(60), Duration::from_millis(100), || {
        // A process that exited (0 = gone, not ready) ends the wait at once.
        let exited = running.0.try_wait().ok().flatten().map(|_| 0);
        exited.or_else(|| status("/readyz").ok().filter(|s| *s == 200))
    });
    assert_eq!(ready, Some(200), "/readyz did not answer 200:\n{}", logged());
    assert_eq!(status("/healthz")?, 200, "{}", logged());

    // It runs as 65532 with no capabilities, and wrote only to the volume.
    let proc_status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        proc_status.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned()
    };
    assert_eq!(field("Uid:").split_whitespace().nth(1), Some("65532"), "{proc_status}");
    assert_eq!(field("Gid:").split_whitespace().nth(1), Some("65532"), "{proc_status}");
    assert_eq!(field("CapEff:").split_whitespace().nth(1), Some("0000000000000000"));
    for made in ["breakglass.db", "keys/approval.key", "keys/ca.key", "recordings"] {
        let p = rootfs.join("var/lib/breakglass").join(made);
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(fs::metadata(&p).map(|m| m.uid()).ok(), Some(65532), "{}", p.display());
    }

    // The HEALTHCHECK command, in the image, as its user: the same environment, the port it
    // listens on.
    let bound = url().unwrap_or_default().trim_start_matches("http://").to_owned();
    let probe_env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "BREAKGLASS__SERVER__LISTEN" => (k.clone(), bound.clone()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let probe = in_image(&rootfs, "65532:65532", &health[1..], &probe_env).output()?;
    ok(&probe, "the image's HEALTHCHECK command");

    drop(running);
    let log = logged();
    assert!(!log.contains("ERROR") && !log.contains("Read-only file system"), "{log}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// systemd

const SERVICES: [&str; 3] =
    ["breakglass-bot.service", "breakglass-gateway.service", "breakglass-up.service"];

/// Copies of the units with this build's binary in place of /usr/local/bin/breakglass (verify
/// checks that ExecStart's program exists).
fn units_for_this_build(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut paths = Vec::new();
    for name in SERVICES.iter().chain(&["breakglass.target"]) {
        let unit = fs::read_to_string(root().join("deploy/systemd").join(name))?;
        let p = dir.join(name);
        fs::write(&p, unit.replace("/usr/local/bin/breakglass", path_str(&bin())))?;
        paths.push(p);
    }
    Ok(paths)
}

/// The directive lines `key=value` of a unit, in order.
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Every unit passes `systemd-analyze verify` with nothing said (a misspelt directive is only
/// a warning there, so any output fails), and each service keeps its exposure score at 2.0
/// or below (`systemd-analyze security --offline=yes`, docs/operations.md has the numbers).
#[test]
fn the_systemd_units_verify_cleanly_and_score_as_hardened() -> TestResult {
    let t = tempfile::tempdir()?;
    let units = units_for_this_build(t.path())?;
    let args: Vec<&str> =
        std::iter::once("verify").chain(units.iter().map(|p| path_str(p))).collect();
    let verify = run("systemd-analyze", &args);
    ok(&verify, "systemd-analyze verify");
    assert_eq!(text(&verify).trim(), "", "systemd-analyze verify said something");

    for unit in units.iter().filter(|p| p.extension().is_some_and(|x| x == "service")) {
        let sec = run("systemd-analyze", &["security", "--offline=yes", path_str(unit)]);
        let out = text(&sec);
        let score: f64 = out
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no exposure level for {}:\n{out}", unit.display()))?;
        assert!(score <= 2.0, "{}: exposure {score} > 2.0:\n{out}", unit.display());
    }
    Ok(())
}

/// Each service has the hardening the platform team expects, restarts on failure, checks its
/// config before it starts (with a command the binary has, which passes on the example
/// config), and runs a mode with flags the binary takes.
#[test]
fn the_systemd_services_are_hardened_and_run_commands_the_binary_has() -> TestResult {
    for name in SERVICES {
        let unit = fs::read_to_string(root().join("deploy/systemd").join(name))?;
        let d = directives(&unit);
        let get = |k: &str| {
            d.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>()
        };
        for (k, v) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("CapabilityBoundingSet", ""),
            ("AmbientCapabilities", ""),
            ("StateDirectory", "breakglass"),
            ("StateDirectoryMode", "0700"),
            ("SystemCallFilter", "@system-service"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("UMask", "0077"),
            ("Restart", "on-failure"),
            ("User", "breakglass"),
        ] {
            assert!(get(k).contains(&v), "{name}: {k}={v} missing: {:?}", get(k));
        }

        let pre = get("ExecStartPre");
        let pre: Vec<&str> =
            pre.first().ok_or(format!("{name}: no ExecStartPre"))?.split(' ').collect();
        assert_eq!(&pre[..3], ["/usr/local/bin/breakglass", "config", "check"], "{name}");
        let example = root().join("deploy/breakglass.example.toml");
        let mut check: Vec<&str> = pre[1..].to_vec();
        let at = check.iter().position(|a| *a == "--config").ok_or("--config")? + 1;
        check[at] = path_str(&example);
        let out = cli(&check, &[]);
        assert_eq!(out.code, 0, "{name}: {check:?}: {}", out.all());

        let start = get("ExecStart");
        let start: Vec<&str> =
            start.first().ok_or(format!("{name}: no ExecStart"))?.split(' ').collect();
        let mode = start[1];
        assert_eq!(format!("breakglass-{mode}.service"), name, "{name} runs {mode}");
        let help = cli(&[mode, "--help"], &[]);
        assert_eq!(help.code, 0, "{}", help.all());
        for flag in start.iter().filter(|a| a.starts_with("--")) {
            assert!(help.stdout.contains(flag), "{name}: `breakglass {mode}` has no {flag}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Kubernetes

fn kubernetes() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// `kubectl kustomize DIR` (kustomize v5, offline), to a file.
fn render(dir: &Path, to: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let out = run("kubectl", &["kustomize", path_str(dir)]);
    ok(&out, &format!("kubectl kustomize {}", dir.display()));
    fs::write(to, &out.stdout)?;
    Ok(())
}

/// The documents of a YAML file as JSON (through PyYAML, which kubernetes-validate brings).
fn yaml_docs(file: &Path) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let out = run(
        "python3",
        &[
            "-c",
            "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
            path_str(file),
        ],
    );
    ok(&out, "yaml to json");
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Every manifest in deploy/kubernetes that is a whole object (not a kustomization or a
/// patch), and both renderings, pass `kubernetes-validate --strict` (unknown fields fail).
#[test]
fn every_kubernetes_manifest_and_both_renderings_validate_strictly() -> TestResult {
    let t = tempfile::tempdir()?;
    let base = t.path().join("base.yaml");
    let ha = t.path().join("ha.yaml");
    render(&kubernetes().join("base"), &base)?;
    render(&kubernetes().join("overlays/ha"), &ha)?;

    let mut files = vec![base, ha];
    let mut stack = vec![kubernetes()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml")
                && p.file_name().is_none_or(|n| n != "kustomization.yaml")
            {
                let docs = yaml_docs(&p)?;
                // A patch names no selector, template or spec of its own kind: skip it.
                let whole = docs.iter().all(|d| {
                    d["kind"] != "Deployment"
                        || d["spec"]
                            .get("template")
                            .is_some_and(|t| t["spec"].get("containers").is_some())
                });
                if whole {
                    files.push(p);
                }
            }
        }
    }
    assert!(files.len() >= 6, "{files:?}");
    let args: Vec<&str> =
        ["--strict", "--quiet"].into_iter().chain(files.iter().map(|p| path_str(p))).collect();
    let out = run("kubernetes-validate", &args);
    ok(&out, "kubernetes-validate --strict");
    Ok(())
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// What the rendered HA overlay must hold, read off kustomize's output: every pod non-root
/// with the runtime's seccomp profile, every container on a read-only root with no
/// capabilities and bounded resources, probes on /healthz and /readyz, two bot replicas
/// spread across zones, a gateway Deployment per zone with two replicas each, a disruption
/// budget for each, a default-deny network policy, secrets only referenced.
#[test]
fn the_ha_overlay_renders_hardened_replicated_zone_spread_deployments() -> TestResult {
    let t = tempfile::tempdir()?;
    let ha = t.path().join("ha.yaml");
    render(&kubernetes().join("overlays/ha"), &ha)?;
    let docs = yaml_docs(&ha)?;
    assert!(of_kind(&docs, "Secret").is_empty(), "secrets are referenced, never shipped");

    let deployments = of_kind(&docs, "Deployment");
    let mut gateway_zones = BTreeSet::new();
    for dep in &deployments {
        let name = dep["metadata"]["name"].as_str().unwrap_or_default();
        assert!(dep["spec"]["replicas"].as_u64() >= Some(2), "{name}: replicas");
        let pod = &dep["spec"]["template"]["spec"];
        let sc = &pod["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(sc["runAsUser"], 65532, "{name}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        let containers = pod["containers"].as_array().ok_or("containers")?;
        let init = pod["initContainers"].as_array().cloned().unwrap_or_default();
        for c in containers.iter().chain(&init) {
            let cname = c["name"].as_str().unwrap_or_default();
            let csc = &c["securityContext"];
            assert_eq!(csc["readOnlyRootFilesystem"], true, "{name}/{cname}");
            assert_eq!(csc["allowPrivilegeEscalation"], false, "{name}/{cname}");
            assert_eq!(csc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{name}/{cname}");
            for k in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    assert!(c["resources"][k][r].is_string(), "{name}/{cname}: resources.{k}.{r}");
                }
            }
            for e in c["env"].as_array().into_iter().flatten() {
                let secretish = ["TOKEN", "SECRET", "DATABASE_URL", "KEY_ID"];
                let ename = e["name"].as_str().unwrap_or_default();
                if secretish.iter().any(|s| ename.contains(s)) {
                    assert!(e["value"].is_null(), "{name}: {ename} comes from a Secret");
                    assert!(e["valueFrom"]["secretKeyRef"].is_object(), "{name}: {ename}");
                }
            }
        }
        let main = &containers[0];
        assert_eq!(main["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        assert_eq!(main["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        let args = strings(&main["args"]);
        match args.first().map(String::as_str) {
            Some("bot") => {
                // The bot signs approvals; the CA and recording keys stay on the gateways.
                let keys: Vec<String> = pod["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|v| v["secret"]["items"].as_array().cloned().unwrap_or_default())
                    .filter_map(|i| i["key"].as_str().map(str::to_owned))
                    .collect();
                assert_eq!(keys, ["approval.key"], "{name}: the bot's keys");
                let spread = pod["topologySpreadConstraints"].as_array().ok_or("spread")?;
                assert!(
                    spread.iter().any(|s| s["topologyKey"] == "topology.kubernetes.io/zone"),
                    "{name}: bots spread across zones"
                );
            }
            Some("gateway") => {
                let zone = pod["nodeSelector"]["topology.kubernetes.io/zone"]
                    .as_str()
                    .ok_or(format!("{name}: a gateway pinned to a zone"))?;
                assert!(gateway_zones.insert(zone.to_owned()), "{name}: zone {zone} twice");
            }
            other => panic!("{name} runs {other:?}"),
        }
        // Every mode it runs is one the binary has.
        let mode = args.first().map(String::as_str).unwrap_or_default();
        assert_eq!(cli(&[mode, "--help"], &[]).code, 0, "{name}: breakglass {mode}");
    }
    assert!(gateway_zones.len() >= 2, "one gateway Deployment per zone: {gateway_zones:?}");

    // A disruption budget covers each Deployment's pods.
    let pdbs = of_kind(&docs, "PodDisruptionBudget");
    for dep in &deployments {
        let labels = dep["spec"]["template"]["metadata"]["labels"].as_object().ok_or("labels")?;
        let covered = pdbs.iter().any(|p| {
            p["spec"]["selector"]["matchLabels"]
                .as_object()
                .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        });
        assert!(covered, "{}: no PodDisruptionBudget", dep["metadata"]["name"]);
    }

    // Default deny both ways for every breakglass pod, then one policy per component.
    let policies = of_kind(&docs, "NetworkPolicy");
    let deny = policies
        .iter()
        .find(|p| p["spec"].get("ingress").is_none() && p["spec"].get("egress").is_none())
        .ok_or("no default-deny NetworkPolicy")?;
    assert_eq!(deny["spec"]["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    let gateway_policy = policies
        .iter()
        .find(|p| {
            p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
        })
        .ok_or("no gateway NetworkPolicy")?;
    let egress_ports: BTreeSet<u64> = gateway_policy["spec"]["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_u64())
        .collect();
    for port in [22, 5432, 443, 53] {
        assert!(egress_ports.contains(&port), "gateway egress to {port}: {egress_ports:?}");
    }

    // The SSH Services reach the gateways from outside the cluster.
    let ssh: Vec<&Value> = of_kind(&docs, "Service")
        .into_iter()
        .filter(|s| s["spec"]["ports"][0]["name"] == "ssh")
        .collect();
    assert!(ssh.len() >= 2 && ssh.iter().all(|s| s["spec"]["type"] == "LoadBalancer"), "{ssh:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Grafana

/// NAME -> (TYPE, LABELS), from deploy/grafana/metrics.txt.
fn listed_metrics() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let list = fs::read_to_string(root().join("deploy/grafana/metrics.txt")).expect("metrics.txt");
    list.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace().map(str::to_owned);
            let name = w.next().unwrap_or_default();
            let kind = w.next().unwrap_or_default();
            (name, (kind, w.collect()))
        })
        .collect()
}

/// Each `breakglass_*` name in `expr`, as (series name, metric it belongs to).
fn metric_names(expr: &str) -> Vec<String> {
    expr.match_indices("breakglass_")
        .filter(|(at, _)| !expr[..*at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(at, _)| {
            expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .collect()
}

/// The dashboard is valid JSON; every `breakglass_*` series its queries read is a listed
/// metric (or a listed histogram's `_bucket`/`_sum`/`_count`), every label it groups by is
/// one that metric has (or `le` for a histogram), and every listed metric is shown.
#[test]
fn the_dashboard_queries_exactly_the_listed_metrics() -> TestResult {
    let listed = listed_metrics();
    assert!(listed.len() >= 13, "{listed:?}");
    for (name, (kind, _)) in &listed {
        assert!(["counter", "gauge", "histogram"].contains(&kind.as_str()), "{name}: {kind}");
    }
    let dashboard: Value =
        serde_json::from_str(&fs::read_to_string(root().join("deploy/grafana/breakglass.json"))?)?;
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let panels = dashboard["panels"].as_array().ok_or("panels")?;
    let mut shown = BTreeSet::new();
    let mut exprs = 0;
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().ok_or("expr")?;
            exprs += 1;
            let mut metrics_here = Vec::new();
            for series in metric_names(expr) {
                let metric = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        series
                            .strip_suffix(s)
                            .filter(|m| listed.get(*m).is_some_and(|(k, _)| k == "histogram"))
                    })
                    .unwrap_or(&series)
                    .to_owned();
                assert!(
                    listed.contains_key(&metric),
                    "`{series}` in panel {:?} is not in deploy/grafana/metrics.txt",
                    panel["title"]
                );
                metrics_here.push(metric);
            }
            for grouped in expr.split("by (").skip(1) {
                for label in grouped.split(')').next().unwrap_or_default().split(',') {
                    let label = label.trim();
                    let known = metrics_here.iter().any(|m| {
                        let (kind, labels) = &listed[m];
                        labels.contains(label) || (label == "le" && kind == "histogram")
                    });
                    assert!(known, "`by ({label})` in {expr}: no such label on {metrics_here:?}");
                }
            }
            shown.extend(metrics_here);
        }
    }
    assert!(exprs > 10, "{exprs} queries");
    let missing: Vec<&String> = listed.keys().filter(|m| !shown.contains(*m)).collect();
    assert!(missing.is_empty(), "listed but not on the dashboard: {missing:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// docs/operations.md

/// Every `breakglass COMMAND [SUBCOMMAND]` in the operations guide's code is one the binary
/// has, and every relative link in it leads to a file or folder of the repository.
#[test]
fn the_operations_guide_names_real_commands_and_files() -> TestResult {
    let guide_path = root().join("docs/operations.md");
    let guide = fs::read_to_string(&guide_path)?;
    let top = cli(&["--help"], &[]).stdout;
    let has = |args: &[&str], word: &str| {
        cli(&[args, &["--help"]].concat(), &[])
            .stdout
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .any(|l| l.split_whitespace().next() == Some(word))
    };
    let mut code = Vec::new();
    let mut fenced = false;
    for line in guide.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            code.push(line.to_owned());
        } else {
            code.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    let mut named = 0;
    for c in &code {
        for (at, _) in c.match_indices("breakglass ") {
            if c[..at].ends_with(|ch: char| ch.is_alphanumeric() || "/@-_.".contains(ch)) {
                continue;
            }
            let words: Vec<&str> = c[at + 11..].split_whitespace().take(2).collect();
            let Some(first) =
                words.first().filter(|w| w.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'))
            else {
                continue;
            };
            assert!(
                has(&[], first),
                "docs/operations.md names `breakglass {first}`: not in --help"
            );
            if let Some(second) =
                words.get(1).filter(|w| w.chars().all(|ch| ch.is_ascii_lowercase()))
            {
                let subs = cli(&[first, "--help"], &[]).stdout;
                if subs.contains("Commands:") {
                    assert!(
                        has(&[first], second),
                        "`breakglass {first} {second}`: not in `{first} --help`"
                    );
                }
            }
            named += 1;
        }
    }
    assert!(named >= 5 && top.contains("Commands:"), "{named} commands named");

    for link in guide.split("](").skip(1) {
        let target = link.split(')').next().unwrap_or_default();
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        let target = target.split('#').next().unwrap_or_default();
        let p = guide_path.parent().ok_or("docs/")?.join(target);
        assert!(p.exists(), "docs/operations.md links to {target}, which is not there");
    }
    Ok(())
}
