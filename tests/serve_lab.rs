//! `obs-stack serve` with the real agents: the backend runs in a lab container (the built
//! binary mounted into obs-lab/base) as `otel-collector` on a test network; Flask, Express and
//! Spring Boot fixtures are instrumented by `obs-stack inject` with the project's ingest key
//! in OTEL_EXPORTER_OTLP_HEADERS, get real traffic, and the API must show their RED, routes
//! and errors. Gated by OBS_STACK_DOCKER_TESTS=1 (tests/run.sh).
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const AGENT_PYTHON: &str = "obs-lab/autoinstrumentation-python:0.65b0";
const AGENT_NODE: &str = "obs-lab/autoinstrumentation-nodejs:0.78.0";
const AGENT_JAVA: &str = "obs-lab/autoinstrumentation-java:2.31.0";
const BIN: &str = env!("CARGO_BIN_EXE_obs-stack");

fn api_get(port: u16, token: &str, path: &str) -> Value {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-H",
            &format!("Authorization: Bearer {token}"),
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn hit(port: u16, path: &str) -> u16 {
    http_get(port, path, Duration::from_secs(5))
        .map(|(c, _)| c)
        .unwrap_or(0)
}

#[test]
fn real_agents_are_accepted_and_answered() {
    if !docker_tests_enabled("serve_lab") {
        return;
    }
    let mut guard = Guard::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let key = {
        let out = Command::new(BIN)
            .args(["serve", "project", "add", "lab", "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let token = {
        let out = Command::new(BIN)
            .args(["serve", "token", "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let net = unique_name("serve-net");
    docker_ok(&[
        "network",
        "create",
        "--label",
        &format!("{TEST_LABEL}={}", run_id()),
        &net,
    ]);
    guard.network(&net);
    let (backend, api) = serve_backend("serve", BIN, &net, data.path());

    let headers = format!("OTEL_EXPORTER_OTLP_HEADERS=x-obs-stack-key={key}");
    let apps: Vec<(&str, u16, &str)> = vec![
        ("py-flask", 5000, "python"),
        ("node-express", 3000, "nodejs"),
        ("java-springboot", 8080, "java"),
    ];
    let mut running = Vec::new();
    for (fixture, port, lang) in &apps {
        let publish = format!("127.0.0.1::{port}");
        let app = TestContainer::run(
            fixture,
            &format!("obs-lab/fixture-{fixture}:latest"),
            &[
                "--network",
                &net,
                "-p",
                &publish,
                "-e",
                &headers,
                "-e",
                "OTEL_METRIC_EXPORT_INTERVAL=2000",
            ],
            &[],
        );
        running.push((app, *port, *lang));
    }
    for (app, port, _) in &running {
        let p = app.host_port(*port);
        let deadline = Instant::now() + Duration::from_secs(120);
        while hit(p, "/") == 0 {
            assert!(
                Instant::now() < deadline,
                "{} did not answer: {}",
                app.name,
                app.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let out = Command::new(BIN)
            .args(["inject", &app.name, "--grace", "3"])
            .env("OBS_STACK_STATE_DIR", data.path().join("inject-state"))
            .env("OBS_STACK_AGENT_IMAGE_PYTHON", AGENT_PYTHON)
            .env("OBS_STACK_AGENT_IMAGE_NODE", AGENT_NODE)
            .env("OBS_STACK_AGENT_IMAGE_JAVA", AGENT_JAVA)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "inject {}: {}{}",
            app.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // traffic until every service shows its routes (agents export metrics every 2 s)
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut sent = vec![(0u32, 0u32); running.len()];
    loop {
        for (i, (app, port, _)) in running.iter().enumerate() {
            let p = app.host_port(*port);
            for _ in 0..5 {
                if hit(p, "/orders/42") == 200 {
                    sent[i].0 += 1;
                }
            }
            if hit(p, "/error") >= 500 {
                sent[i].1 += 1;
            }
        }
        std::thread::sleep(Duration::from_secs(2));
        let v = api_get(api, &token, "/api/v1/services?project=lab");
        let ready = running.iter().all(|(app, _, _)| {
            let red = v["services"].as_array().into_iter().flatten().any(|s| {
                s["name"] == app.name.as_str()
                    && s["source"] == "metrics"
                    && s["errors"].as_f64().unwrap_or(0.0) > 0.0
            });
            // spans come in batches (the Java agent's every 5 s): wait for an error trace too
            let t = api_get(
                api,
                &token,
                &format!("/api/v1/traces?project=lab&service={}&error=true", app.name),
            );
            red && t["traces"].as_array().is_some_and(|a| !a.is_empty())
        });
        if ready || Instant::now() > deadline {
            break;
        }
    }

    let services = api_get(api, &token, "/api/v1/services?project=lab");
    let errors = api_get(api, &token, "/api/v1/errors?project=lab");
    let stats = api_get(api, &token, "/api/v1/stats");
    eprintln!("services: {services}\nerrors: {errors}\nstats: {stats}");
    for (i, (app, _, lang)) in running.iter().enumerate() {
        let s = services["services"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == app.name.as_str())
            .unwrap_or_else(|| {
                panic!(
                    "{} missing from {services}\nbackend: {}",
                    app.name,
                    backend.logs()
                )
            });
        assert_eq!(s["language"], *lang, "{s}");
        assert_eq!(s["source"], "metrics", "{s}");
        let routes = api_get(
            api,
            &token,
            &format!("/api/v1/routes?project=lab&service={}", app.name),
        );
        let rs = routes["routes"].as_array().cloned().unwrap_or_default();
        let orders = rs
            .iter()
            .find(|r| {
                let r = r["route"].as_str().unwrap_or("");
                r.trim_start_matches('/').starts_with("orders/") && !r.ends_with("/42")
            })
            .unwrap_or_else(|| panic!("no templated /orders route for {}: {routes}", app.name));
        // metrics count every request: at least what was sent before the last export
        assert!(orders["calls"].as_f64().unwrap() >= 1.0, "{orders}");
        assert!(
            orders["calls"].as_f64().unwrap() <= f64::from(sent[i].0),
            "{orders} sent {}",
            sent[i].0
        );
        assert!(orders["p50_ms"].as_f64().is_some());
        let err = rs
            .iter()
            .find(|r| r["route"].as_str().unwrap_or("").ends_with("error"));
        assert!(
            err.is_some_and(|r| r["errors"].as_f64().unwrap_or(0.0) >= 1.0),
            "no 5xx for {}: {routes}",
            app.name
        );
        let traces = api_get(
            api,
            &token,
            &format!("/api/v1/traces?project=lab&service={}&error=true", app.name),
        );
        assert!(
            !traces["traces"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .is_empty(),
            "no error trace for {}: {traces}",
            app.name
        );
    }
    // exceptions grouped with the handler in the stack (Python and Java record them on spans)
    for (app, fixture_handler) in [(&running[0].0, "error"), (&running[2].0, "error")] {
        let g = errors["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| {
                g["services"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == app.name.as_str()))
            })
            .unwrap_or_else(|| panic!("no error group for {}: {errors}", app.name));
        let d = api_get(
            api,
            &token,
            &format!("/api/v1/errors/{}?project=lab", g["id"].as_str().unwrap()),
        );
        assert!(
            d["stack_trace"].as_str().unwrap_or("").contains(fixture_handler),
            "{d}"
        );
    }
    // runtime series: whatever each agent sends (the Java agent always sends jvm.*)
    for (app, _, lang) in &running {
        let rt = api_get(
            api,
            &token,
            &format!("/api/v1/runtime?project=lab&service={}", app.name),
        );
        let names: Vec<&str> = rt["series"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str())
            .collect();
        eprintln!(
            "runtime series of {lang}: {} e.g. {:?}",
            names.len(),
            names.iter().take(8).collect::<Vec<_>>()
        );
        if *lang == "java" {
            assert!(names.iter().any(|n| n.starts_with("jvm.")), "{rt}");
        }
    }
    assert_eq!(stats["refused"]["auth"], 0, "{stats}");
    assert_eq!(stats["refused"]["malformed"], 0, "{stats}");
    drop(running);
    drop(backend);
}
