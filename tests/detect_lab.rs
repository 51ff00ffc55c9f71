//! obs-detect against real containers: every fixture image of the lab, detected through the
//! host's /proc view and through the Docker API alone; and the bad inputs of issue B, each
//! built from throwaway containers, each finishing within its budget without a panic and
//! reporting what it could not read.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BUDGET_MS: u64 = 4000;

fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).status.success()
}

/// Runs `obs-stack detect --json <args>`; returns (exit code, JSON, elapsed).
fn detect(args: &[&str], api_only: bool) -> (i32, Value, Duration) {
    let start = Instant::now();
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("obs-stack"));
    cmd.arg("--json")
        .arg("detect")
        .arg("--budget-ms")
        .arg(BUDGET_MS.to_string())
        .args(args);
    if api_only {
        cmd.env("OBS_DETECT_API_ONLY", "1");
    }
    let out = cmd.output().expect("run obs-stack");
    let elapsed = start.elapsed();
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(
        code,
        101,
        "obs-stack panicked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (code, v, elapsed)
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

fn errors_text(v: &Value) -> String {
    v.get("probe_errors")
        .and_then(|e| e.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|e| s(e, "message"))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

#[derive(serde::Deserialize, Debug)]
struct Expected {
    kind: String,
    language: String,
    framework: String,
    framework_version: Option<String>,
    port: Option<u16>,
    http_path: Option<String>,
}

/// Checks one detection against expected.yaml; returns the mismatches.
fn check(name: &str, e: &Expected, v: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let kind = s(v, "kind").unwrap_or("");
    let conf = v.get("confidence").and_then(|c| c.as_f64()).unwrap_or(0.0);
    match e.kind.as_str() {
        "infra" => {
            if kind != "Infrastructure" || s(v, "infrastructure") != Some(e.framework.as_str()) {
                bad.push(format!(
                    "{name}: expected infrastructure {}, got {kind} {:?}",
                    e.framework,
                    s(v, "infrastructure")
                ));
            }
            if s(v, "framework").is_some() {
                bad.push(format!("{name}: infrastructure reported as a framework"));
            }
        }
        "negative" => {
            if s(v, "framework").is_some() || (kind != "Unknown" && e.language == "none") {
                bad.push(format!(
                    "{name}: negative fixture got {kind} {:?} at {conf}",
                    s(v, "framework")
                ));
            }
        }
        _ => {
            if s(v, "language") != Some(e.language.as_str()) {
                bad.push(format!(
                    "{name}: language {:?}, expected {}",
                    s(v, "language"),
                    e.language
                ));
            }
            let want_fw = (e.framework != "unknown").then_some(e.framework.as_str());
            if s(v, "framework") != want_fw {
                bad.push(format!(
                    "{name}: framework {:?} at {conf}, expected {:?}",
                    s(v, "framework"),
                    want_fw
                ));
            }
            if let (Some(want), Some(_)) = (&e.framework_version, want_fw) {
                let got = s(v, "framework_version").unwrap_or("");
                if !got.starts_with(want.as_str()) {
                    bad.push(format!("{name}: framework version {got:?}, expected {want}"));
                }
            }
        }
    }
    if e.kind == "infra"
        && let Some(want) = &e.framework_version
    {
        let got = s(v, "infrastructure_version").unwrap_or("");
        if !got.starts_with(want.as_str()) {
            bad.push(format!("{name}: version {got:?}, expected {want}"));
        }
    }
    bad
}

#[test]
fn every_fixture_is_detected_as_expected() {
    if !docker_tests_enabled("every_fixture_is_detected_as_expected") {
        return;
    }
    let mut fixtures = Vec::new();
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(text) = std::fs::read_to_string(entry.path().join("expected.yaml")) else {
            continue;
        };
        let e: Expected = serde_yaml_ng::from_str(&text).expect("expected.yaml");
        let image = format!("obs-lab/fixture-{name}:latest");
        if !image_exists(&image) {
            eprintln!("skipping {name}: image {image} not built (tests/lab/build-fixtures.sh)");
            continue;
        }
        fixtures.push((name, e, image));
    }
    assert!(
        !fixtures.is_empty(),
        "no fixture images: run tests/lab/build-fixtures.sh"
    );
    fixtures.sort_by(|a, b| a.0.cmp(&b.0));
    // start them all, then wait for each to answer
    let mut running = Vec::new();
    for (name, e, image) in fixtures {
        let publish = e.port.map(|p| format!("127.0.0.1::{p}"));
        let extra: Vec<&str> = publish.as_deref().map(|p| vec!["-p", p]).unwrap_or_default();
        let c = TestContainer::run(&name, &image, &extra, &[]);
        running.push((name, e, c));
    }
    for (name, e, c) in &running {
        if let (Some(p), Some(path)) = (e.port, &e.http_path) {
            let hp = c.host_port(p);
            assert!(
                http_get(hp, path, Duration::from_secs(60)).is_some(),
                "{name} never answered: {}",
                c.logs()
            );
        } else if let Some(p) = e.port {
            assert!(
                wait_tcp(c.host_port(p), Duration::from_secs(60)),
                "{name} never listened"
            );
        } else {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let mut failures = Vec::new();
    for api_only in [false, true] {
        for (name, e, c) in &running {
            let (code, v, elapsed) = detect(&[&c.name], api_only);
            let mode = if api_only { "api" } else { "host" };
            eprintln!(
                "[{mode}] {name}: exit {code} kind={:?} language={:?} framework={:?} version={:?} confidence={:?} confirmed={:?} in {} ms",
                s(&v, "kind"),
                s(&v, "language"),
                s(&v, "framework"),
                s(&v, "framework_version").or(s(&v, "infrastructure_version")),
                v.get("confidence"),
                v.get("confirmed"),
                elapsed.as_millis()
            );
            let want_code = if e.kind == "negative" { 1 } else { 0 };
            if code != want_code {
                failures.push(format!("[{mode}] {name}: exit {code}, expected {want_code}"));
            }
            failures.extend(check(name, e, &v).into_iter().map(|f| format!("[{mode}] {f}")));
            if elapsed > Duration::from_millis(BUDGET_MS + 3000) {
                failures.push(format!("[{mode}] {name}: took {} ms", elapsed.as_millis()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "detection mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn all_mode_lists_every_running_container_as_json_array() {
    if !docker_tests_enabled("all_mode_lists_every_running_container_as_json_array") {
        return;
    }
    let a = TestContainer::run("all-a", "obs-lab/base:bookworm", &[], &["sleep", "300"]);
    let (code, v, _) = detect(&["--all"], false);
    assert!(code == 0 || code == 1, "exit {code}");
    let arr = v.as_array().expect("--all prints an array");
    assert!(arr.iter().any(|d| s(d, "target") == Some(a.name.as_str())), "{v}");
}

#[test]
fn static_path_mode_reads_a_fixture_source_tree() {
    let (code, v, _) = detect(
        &["--path", &fixtures_dir().join("py-flask").to_string_lossy()],
        false,
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(s(&v, "framework"), Some("flask"));
    assert_eq!(s(&v, "framework_version"), Some("3.0.3"));
    let (code, v, _) = detect(
        &["--path", &fixtures_dir().join("node-express").to_string_lossy()],
        false,
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(s(&v, "framework"), Some("express"));
}

#[test]
fn missing_container_exits_5() {
    if !docker_tests_enabled("missing_container_exits_5") {
        return;
    }
    let (code, _, _) = detect(&["obs-test-no-such-container-xyz"], false);
    assert_eq!(code, 5);
}

// ---- bad input: each finishes within budget, never panics, reports what it could not read

fn within_budget(elapsed: Duration) {
    assert!(
        elapsed < Duration::from_millis(BUDGET_MS + 3000),
        "took {} ms",
        elapsed.as_millis()
    );
}

/// A base-image container running `script` (bash) then sleeping.
fn base_with(stem: &str, extra: &[&str], script: &str) -> TestContainer {
    let full = format!("{script}\nexec sleep 600");
    let c = TestContainer::run(stem, "obs-lab/base:bookworm", extra, &["bash", "-c", &full]);
    // wait until the script has run (it touches /ready last)
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if docker(&["exec", &c.name, "test", "-e", "/ready"])
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

const PY_IMAGE: &str = "obs-lab/python:3.11";

fn python_server(stem: &str, code: &str, port: u16) -> TestContainer {
    let p = format!("127.0.0.1::{port}");
    let c = TestContainer::run(stem, PY_IMAGE, &["-p", &p], &["python3", "-c", code]);
    assert!(
        wait_tcp(c.host_port(port), Duration::from_secs(20)),
        "server never listened: {}",
        c.logs()
    );
    c
}

#[test]
fn bad_input_many_megabyte_manifest() {
    if !docker_tests_enabled("bad_input_many_megabyte_manifest") {
        return;
    }
    let c = base_with(
        "huge-manifest",
        &[],
        "mkdir -p /app && { printf '{\"dependencies\":{\"express\":\"4.19.2\",\"pad\":\"'; head -c 40000000 /dev/zero | tr '\\0' a; printf '\"}}'; } > /app/package.json && head -c 20000000 /dev/zero | tr '\\0' '#' > /app/requirements.txt && touch /ready",
    );
    for api in [false, true] {
        let (code, v, elapsed) = detect(&[&c.name], api);
        within_budget(elapsed);
        assert!(code == 0 || code == 1, "exit {code}: {v}");
        assert!(
            errors_text(&v).contains("package.json"),
            "api={api}: {}",
            errors_text(&v)
        );
    }
}

#[test]
fn bad_input_binary_garbage_package_json_and_symlink_loops() {
    if !docker_tests_enabled("bad_input_binary_garbage_package_json_and_symlink_loops") {
        return;
    }
    let c = base_with(
        "garbage",
        &[],
        "mkdir -p /app/sub && head -c 200000 /dev/urandom > /app/package.json && ln -s /app/a /app/b && ln -s /app/b /app/a && ln -s / /app/root && ln -s .. /app/sub/up && ln -s /app/sub/up/sub/up /app/sub/deep && touch /ready",
    );
    for api in [false, true] {
        let (code, v, elapsed) = detect(&[&c.name], api);
        within_budget(elapsed);
        assert_eq!(code, 1, "garbage must not be detected as anything: {v}");
        assert!(s(&v, "framework").is_none());
        assert!(
            errors_text(&v).contains("package.json"),
            "api={api}: {}",
            errors_text(&v)
        );
    }
}

#[test]
fn bad_input_thousands_of_env_vars() {
    if !docker_tests_enabled("bad_input_thousands_of_env_vars") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let envfile = dir.path().join("env");
    let mut text = String::new();
    for i in 0..6000 {
        text.push_str(&format!("VAR_{i}={}\n", "x".repeat(200)));
    }
    text.push_str("FLASK_APP=app.py\n");
    std::fs::write(&envfile, text).unwrap();
    let ef = envfile.to_string_lossy().to_string();
    let c = base_with("many-env", &["--env-file", &ef], "touch /ready");
    let (code, v, elapsed) = detect(&[&c.name], false);
    within_budget(elapsed);
    assert!(code == 0 || code == 1);
    assert!(errors_text(&v).contains("variables"), "{}", errors_text(&v));
    assert!(
        s(&v, "framework").is_none(),
        "one env var alone must not decide: {v}"
    );
}

#[test]
fn bad_input_port_that_never_answers() {
    if !docker_tests_enabled("bad_input_port_that_never_answers") {
        return;
    }
    let code = "import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',8080));s.listen(50)\nconns=[]\nwhile True:\n c,_=s.accept();conns.append(c)";
    let c = python_server("silent", code, 8080);
    let (rc, v, elapsed) = detect(&[&c.name], false);
    within_budget(elapsed);
    assert!(rc == 0 || rc == 1);
    assert!(errors_text(&v).contains("no answer"), "{}", errors_text(&v));
    assert_eq!(s(&v, "language"), Some("python"), "{v}");
}

#[test]
fn bad_input_megabyte_of_headers_and_foreign_redirect() {
    if !docker_tests_enabled("bad_input_megabyte_of_headers_and_foreign_redirect") {
        return;
    }
    let code = r#"
import socket, threading
def serve(port, payload):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', port)); s.listen(50)
    while True:
        c, _ = s.accept()
        try:
            c.recv(65536); c.sendall(payload)
        except Exception:
            pass
        c.close()
big = b'HTTP/1.1 200 OK\r\n' + b''.join(b'X-Pad-%d: %s\r\n' % (i, b'y' * 1000) for i in range(1024)) + b'\r\nbody'
redir = b'HTTP/1.1 302 Found\r\nLocation: http://example.invalid/elsewhere\r\nContent-Length: 0\r\n\r\n'
threading.Thread(target=serve, args=(8081, redir), daemon=True).start()
serve(8080, big)
"#;
    let p1 = "127.0.0.1::8080".to_string();
    let p2 = "127.0.0.1::8081".to_string();
    let c = TestContainer::run(
        "headers",
        PY_IMAGE,
        &["-p", &p1, "-p", &p2],
        &["python3", "-c", code],
    );
    assert!(wait_tcp(c.host_port(8080), Duration::from_secs(20)));
    assert!(wait_tcp(c.host_port(8081), Duration::from_secs(20)));
    let (rc, v, elapsed) = detect(&[&c.name], false);
    within_budget(elapsed);
    assert!(rc == 0 || rc == 1);
    assert!(errors_text(&v).contains("truncated"), "{}", errors_text(&v));
    // the redirect was read as a response, never followed
    let ev = v.get("evidence").map(|e| e.to_string()).unwrap_or_default();
    assert!(!ev.contains("example.invalid/elsewhere GET"), "{ev}");
}

#[test]
fn bad_input_container_exiting_mid_probe() {
    if !docker_tests_enabled("bad_input_container_exiting_mid_probe") {
        return;
    }
    // answers slowly, then the whole container exits while obs-detect is still probing
    let code = "import socket,time,os,threading\nthreading.Timer(2.5, lambda: os._exit(0)).start()\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',8080));s.listen(50)\nwhile True:\n c,_=s.accept();time.sleep(5)";
    let c = python_server("exiting", code, 8080);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(
        1500u64.saturating_sub(start.elapsed().as_millis() as u64),
    ));
    let (rc, v, elapsed) = detect(&[&c.name], false);
    within_budget(elapsed);
    assert!([0, 1, 5].contains(&rc), "exit {rc}: {v}");
    // and once it is gone for good, detection still answers from its files and configuration
    std::thread::sleep(Duration::from_secs(2));
    let (rc, v, elapsed) = detect(&[&c.name], false);
    within_budget(elapsed);
    assert!(rc == 0 || rc == 1, "exit {rc}");
    assert!(errors_text(&v).contains("not running"), "{}", errors_text(&v));
}

#[test]
fn bad_input_stopped_container_is_detected_from_files() {
    if !docker_tests_enabled("bad_input_stopped_container_is_detected_from_files") {
        return;
    }
    let image = "obs-lab/fixture-py-flask:latest";
    if !image_exists(image) {
        eprintln!("skipping: {image} not built");
        return;
    }
    let c = TestContainer::run("stopped", image, &[], &[]);
    docker_ok(&["stop", "-t", "1", &c.name]);
    let (rc, v, elapsed) = detect(&[&c.name], false);
    within_budget(elapsed);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(s(&v, "framework"), Some("flask"), "{v}");
    assert!(errors_text(&v).contains("not running"), "{}", errors_text(&v));
    assert!(Path::new("/").exists());
}

fn run_plain(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("obs-stack"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run obs-stack");
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 101, "panicked: {}", String::from_utf8_lossy(&out.stderr));
    (
        code,
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn human_output_and_unknown_exit_code() {
    let flask = fixtures_dir().join("py-flask");
    let (code, out, _) = run_plain(&["detect", "--path", &flask.to_string_lossy()]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Framework=Flask Language=Python Version=3.0.3 Confidence="),
        "{out}"
    );
    let (_, verbose, _) = run_plain(&["detect", "-v", "--path", &flask.to_string_lossy()]);
    assert!(verbose.contains("pypi dependency flask 3.0.3"), "{verbose}");
    let empty = tempfile::tempdir().unwrap();
    let (code, out, _) = run_plain(&["detect", "--path", &empty.path().to_string_lossy()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("Framework=Unknown Language=Unknown"), "{out}");
    assert!(out.contains("fallback:"), "{out}");
}

#[test]
fn signature_overlay_adds_and_bad_signature_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bottle.yaml"),
        "id: bottle\nname: Bottle\nkind: framework\nlanguage: python\nslot: python-web\nprior: -1.5\nindicators:\n  - {dependency: bottle, ecosystem: pypi, weight: 3, version: true}\n",
    )
    .unwrap();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("requirements.txt"), "bottle==0.12.25\n").unwrap();
    let sig = dir.path().to_string_lossy().to_string();
    let (code, out, _) = run_plain(&[
        "detect",
        "--signatures",
        &sig,
        "--path",
        &app.path().to_string_lossy(),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Framework=Bottle Language=Python Version=0.12.25"),
        "{out}"
    );
    std::fs::write(
        dir.path().join("broken.yaml"),
        "id: broken\nname: B\nkind: framework\nlanguage: python\nprior: -1.5\nindicators:\n  - {cmdline: '(?<=x)y', weight: 1}\n",
    )
    .unwrap();
    let (code, _, err) = run_plain(&[
        "detect",
        "--signatures",
        &sig,
        "--path",
        &app.path().to_string_lossy(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("broken.yaml") && err.contains("indicator #1"),
        "{err}"
    );
}

/// Issue H: frameworks recognised from what is on disk (JVM layouts whatever the file names)
/// and frameworks that usually sit under another, running alone: each is detected right 1 s
/// after its container starts (before it listens) and again once it answers HTTP.
#[test]
fn layouts_and_lone_frameworks_are_detected_cold_and_warm() {
    if !docker_tests_enabled("layouts_and_lone_frameworks_are_detected_cold_and_warm") {
        return;
    }
    let names = [
        "java-webflux",
        "java-springboot-exploded",
        "java-quarkus-fastjar",
        "java-tomcat-war",
        "py-starlette",
    ];
    let mut failures = Vec::new();
    let mut ran = 0;
    for name in names {
        let image = format!("obs-lab/fixture-{name}:latest");
        if !image_exists(&image) {
            eprintln!("skipping {name}: image {image} not built (tests/lab/build-fixtures.sh {name})");
            continue;
        }
        ran += 1;
        let text = std::fs::read_to_string(fixtures_dir().join(name).join("expected.yaml")).unwrap();
        let e: Expected = serde_yaml_ng::from_str(&text).expect("expected.yaml");
        let port = e.port.expect("an HTTP fixture");
        let publish = format!("127.0.0.1::{port}");
        let c = TestContainer::run(name, &image, &["-p", &publish], &[]);
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
        for (phase, api_only) in [("cold", false), ("cold-api", true)] {
            let (code, v, _) = detect(&[&c.name], api_only);
            eprintln!(
                "[{phase}] {name}: exit {code} framework={:?} version={:?} confidence={:?}",
                s(&v, "framework"),
                s(&v, "framework_version"),
                v.get("confidence")
            );
            failures.extend(check(name, &e, &v).into_iter().map(|f| format!("[{phase}] {f}")));
        }
        let hp = c.host_port(port);
        if http_get(hp, e.http_path.as_deref().unwrap_or("/"), Duration::from_secs(90)).is_none() {
            failures.push(format!("{name} never answered: {}", c.logs()));
            continue;
        }
        for (phase, api_only) in [("warm", false), ("warm-api", true)] {
            let (code, v, _) = detect(&[&c.name], api_only);
            eprintln!(
                "[{phase}] {name}: exit {code} framework={:?} version={:?} confidence={:?}",
                s(&v, "framework"),
                s(&v, "framework_version"),
                v.get("confidence")
            );
            failures.extend(check(name, &e, &v).into_iter().map(|f| format!("[{phase}] {f}")));
        }
    }
    assert!(
        ran > 0,
        "no fixture image built: tests/lab/build-fixtures.sh {}",
        names.join(" ")
    );
    assert!(
        failures.is_empty(),
        "detection mismatches:\n{}",
        failures.join("\n")
    );
}
