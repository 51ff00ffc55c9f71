//! Calls per route against the app's own access log (issue L): Django under gunicorn with two
//! workers, instrumented by `obs-stack inject` with the histograms `up` asks for (base-2
//! exponential, cumulative), sending to `obs-stack serve` in a lab container. Ground truth is
//! gunicorn's access log, not what the test meant to send: every route and status class,
//! unmatched requests (404, which the agent's metrics give no route) included. Gated by
//! OBS_STACK_DOCKER_TESTS=1.
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const AGENT_PYTHON: &str = "obs-lab/autoinstrumentation-python:0.65b0";
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

/// (method, route, status class) → requests, from gunicorn's access log lines
/// (`… "GET /orders/7 HTTP/1.1" 200 …`), paths mapped onto the app's routes.
fn access_log_counts(log: &str) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once('"') else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(method), Some(path), Some(_proto)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let Some(status) = it.next().and_then(|s| s.trim_matches('"').parse::<u16>().ok()) else {
            continue;
        };
        let path = path.split('?').next().unwrap_or(path);
        let route = match path {
            "/" => "/",
            "/error" => "error",
            "/work" => "work",
            p if p.starts_with("/orders/") => "orders/<int:order_id>",
            // no route matched: the agent reports none, its server span the path
            p if p.starts_with("/nope/") => "/nope/{id}",
            _ => continue,
        };
        let class = format!("{}xx", status / 100);
        *out.entry((method.to_string(), route.to_string(), class))
            .or_default() += 1;
    }
    out
}

fn api_counts(routes: &Value) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for r in routes["routes"].as_array().into_iter().flatten() {
        for (class, n) in r["status_classes"].as_object().into_iter().flatten() {
            out.insert(
                (
                    r["method"].as_str().unwrap_or("").to_string(),
                    r["route"].as_str().unwrap_or("").to_string(),
                    class.clone(),
                ),
                n.as_f64().unwrap_or(0.0).round() as u64,
            );
        }
    }
    out
}

#[test]
fn gunicorn_workers_are_counted_once_per_request() {
    if !docker_tests_enabled("gunicorn_workers_are_counted_once_per_request") {
        return;
    }
    let mut guard = Guard::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let key = cli(&["serve", "project", "add", "counts"]);
    let token = cli(&["serve", "token"]);
    let net = unique_name("counts-net");
    docker_ok(&[
        "network",
        "create",
        "--label",
        &format!("{TEST_LABEL}={}", run_id()),
        &net,
    ]);
    guard.network(&net);
    let (_backend, api) = serve_backend("counts-serve", BIN, &net, data.path());

    let app = TestContainer::run(
        "counts-django",
        "obs-lab/fixture-py-django:latest",
        &[
            "--network",
            &net,
            "-p",
            "127.0.0.1::8000",
            "-e",
            &format!("OTEL_EXPORTER_OTLP_HEADERS=x-obs-stack-key={key}"),
            "-e",
            "OTEL_METRIC_EXPORT_INTERVAL=2000",
            // what `up` asks of agents (src/up.rs AGENT_ENV)
            "-e",
            "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=base2_exponential_bucket_histogram",
        ],
        &[],
    );
    let ready = |port: u16| {
        let deadline = Instant::now() + Duration::from_secs(180);
        while http_get(port, "/", Duration::from_secs(5)).is_none() {
            assert!(
                Instant::now() < deadline,
                "{} did not answer: {}",
                app.name,
                app.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    ready(app.host_port(8000));
    let out = Command::new(BIN)
        .args(["inject", &app.name, "--grace", "3"])
        .env("OBS_STACK_STATE_DIR", data.path().join("inject-state"))
        .env("OBS_STACK_AGENT_IMAGE_PYTHON", AGENT_PYTHON)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inject: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = app.host_port(8000);
    ready(port);

    // traffic over several export rounds, spread over both workers, with latencies from
    // sub-millisecond to tens of milliseconds (the exponential buckets move as they widen)
    for round in 0..6u64 {
        for i in 0..15u64 {
            let _ = http_get(
                port,
                &format!("/orders/{}", round * 100 + i),
                Duration::from_secs(5),
            );
        }
        for _ in 0..5 {
            let _ = http_get(port, "/", Duration::from_secs(5));
        }
        let _ = http_get(port, "/error", Duration::from_secs(5));
        let _ = http_get(port, "/work", Duration::from_secs(10));
        let _ = http_get(port, &format!("/nope/{round}"), Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1500));
    }

    // the API's counts settle (two exports in a row with nothing new), then must equal the log
    let routes_path = format!("/api/v1/routes?project=counts&service={}", app.name);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = BTreeMap::new();
    let (want, got) = loop {
        std::thread::sleep(Duration::from_secs(5));
        let log = docker(&["logs", &app.name]);
        let want = access_log_counts(&String::from_utf8_lossy(&log.stdout));
        let got = api_counts(&api_get(api, &token, &routes_path));
        if got == want || (got == last && !got.is_empty()) || Instant::now() > deadline {
            break (want, got);
        }
        last = got;
    };
    eprintln!("access log: {want:?}\nobs-stack:  {got:?}");
    assert!(
        want.values().sum::<u64>() >= 130,
        "traffic did not reach the app: {want:?}"
    );
    assert_eq!(
        got, want,
        "calls per route and status class differ from gunicorn's access log"
    );
}
