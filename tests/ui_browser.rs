//! The web UI in a real browser: the built `obs-stack serve` on free 127.0.0.1 ports with a temp
//! data dir, fed deterministic OTLP (server spans with DB children, an exception with a stack
//! trace, `http.server.request.duration` histograms, Node.js runtime metrics, container stats),
//! then `tests/ui/run.mjs` drives Debian's chromium headless through playwright-core and
//! asserts on every page (console errors, route counts, sorting, the waterfall, the stack trace,
//! the token). Screenshots go to `target/ui-screenshots/` (or `OBS_UI_SHOTS`).
//!
//! Gated by `OBS_STACK_DOCKER_TESTS=1` like the other lab tests (it needs chromium and npm, which
//! `tests/lab/ensure-tools.sh` installs). playwright-core is installed once into
//! `~/.cache/obs-stack/ui-test` (never into the repo); nothing is built with npm here — the UI is
//! the committed bundle embedded in the binary.
mod common;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::json;
use serve_support::*;

const PLAYWRIGHT: &str = "1.65.1";
const CHROMIUM: &str = "/usr/bin/chromium";

const PY_STACK: &str = "Traceback (most recent call last):\n  File \"/usr/local/lib/python3.11/site-packages/flask/app.py\", line 1473, in wsgi_app\n    response = self.full_dispatch_request()\n  File \"/app/app.py\", line 31, in error_handler\n    raise RuntimeError(\"boom\")\nRuntimeError: boom";

/// playwright-core in the cache folder (installed once), or why the test cannot run.
fn playwright_dir() -> Result<PathBuf, String> {
    if !Path::new(CHROMIUM).exists() {
        return Err(format!(
            "{CHROMIUM} is missing: `apt-get install -y chromium` (tests/lab/ensure-tools.sh does)"
        ));
    }
    let home = std::env::var("HOME").map_err(|_| "HOME is not set".to_string())?;
    let dir = PathBuf::from(home).join(".cache/obs-stack/ui-test");
    let marker = dir.join(format!("node_modules/playwright-core/.obs-{PLAYWRIGHT}"));
    if marker.exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("playwright-core@{PLAYWRIGHT}"))
        .output()
        .map_err(|e| format!("npm: {e} (install Node.js 20+ and npm)"))?;
    if !out.status.success() {
        return Err(format!(
            "npm install playwright-core failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(&marker, "").map_err(|e| e.to_string())?;
    Ok(dir)
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: [u8; 16],
    id: u64,
    parent: u64,
    name: &str,
    kind: i32,
    start_ns: u64,
    dur_ms: f64,
    attrs: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            vec![]
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: name.into(),
        kind,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: start_ns + (dur_ms * 1e6) as u64,
        attributes: attrs,
        status: Some(Status::default()),
        ..Default::default()
    }
}

fn db(trace: [u8; 16], id: u64, parent: u64, stmt: &str, start_ns: u64, dur_ms: f64) -> Span {
    span(
        trace,
        id,
        parent,
        "SELECT shop.orders",
        3,
        start_ns,
        dur_ms,
        vec![
            s("db.system", "postgresql"),
            s("db.statement", stmt),
            s("db.name", "shop"),
        ],
    )
}

fn traces_for(service: &str, lang: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service, lang),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gauge(
    service: &str,
    lang: &str,
    name: &str,
    unit: &str,
    v: f64,
    ts_ns: u64,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service, lang),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    unit: unit.into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: ts_ns,
                            value: Some(number_data_point::Value::AsDouble(v)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// What the browser checks, fed to the server: returns the expectations for run.mjs.
async fn feed(srv: &Server) -> serde_json::Value {
    let now = now_ns();
    let min = 60_000_000_000u64;
    // RED from the agents' metrics, two points a minute apart per service (cumulative):
    // shop: /orders/{id} 120 in (50,75] ms, /health 50 in (0,5] ms, /slow 10 in (0.75,1] s,
    //       /error 7 × 500 in (5,10] ms
    let shop_routes = [
        ("/orders/{id}", 200, 120u64, 4usize),
        ("/health", 200, 50, 0),
        ("/slow", 200, 10, 9),
        ("/error", 500, 7, 1),
    ];
    let half: Vec<(&str, i64, u64, usize)> = shop_routes
        .iter()
        .map(|(r, s, c, b)| (*r, *s, c / 2, *b))
        .collect();
    for (pts, t) in [
        (half.as_slice(), now - 2 * min),
        (&shop_routes[..], now - min / 2),
    ] {
        let m = duration_metric("shop", pts, now - 3 * min, t);
        assert_eq!(
            srv.post_proto("/v1/metrics", m.encode_to_vec()).await.status(),
            200
        );
    }
    let front = [("/api/cart", 200, 300u64, 3usize), ("/api/login", 401, 20, 2)];
    let m = duration_metric("front", &front, now - 3 * min, now - min);
    assert_eq!(
        srv.post_proto("/v1/metrics", m.encode_to_vec()).await.status(),
        200
    );
    // front is a Node.js app with a blocked event loop (120 ms p99) and a heap series
    for (i, v) in [0.02, 0.06, 0.12].iter().enumerate() {
        let ts = now - (2 - i as u64) * 20_000_000_000;
        for (name, unit, val) in [
            ("nodejs.eventloop.delay.p99", "s", *v),
            ("v8js.memory.heap.used", "By", 40e6 + i as f64 * 8e6),
        ] {
            let g = gauge("front", "nodejs", name, unit, val, ts);
            assert_eq!(
                srv.post_proto("/v1/metrics", g.encode_to_vec()).await.status(),
                200
            );
        }
    }
    // container stats as `up` pushes them: front near its memory limit
    let now_ms = (now / 1_000_000) as i64;
    let checks: Vec<_> = (0..3)
        .map(|i| {
            json!({"project": "demo", "service": "front", "kind": "container_stats", "ts_ms": now_ms - (2 - i) * 20_000,
                   "memory_usage_bytes": 490_000_000 + i * 10_000_000, "memory_limit_bytes": 512 * 1024 * 1024, "cpu_percent": 12.5 + i as f64})
        })
        .collect();
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/checks", srv.api))
        .bearer_auth(&srv.token)
        .json(&checks)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // traces: an order with an N+1 (the same statement three times), an error with a stack,
    // a slow request
    let t0 = now - min;
    let order = tid(1);
    let mut root = span(
        order,
        1,
        0,
        "GET /orders/{id}",
        2,
        t0,
        64.0,
        vec![
            s("http.request.method", "GET"),
            s("http.route", "/orders/{id}"),
            i("http.response.status_code", 200),
            s("url.path", "/orders/42"),
        ],
    );
    root.status = Some(Status::default());
    let mut spans = vec![
        root,
        db(
            order,
            2,
            1,
            "SELECT * FROM orders WHERE id = $1",
            t0 + 2_000_000,
            6.0,
        ),
    ];
    for k in 0..3u64 {
        spans.push(db(
            order,
            3 + k,
            1,
            "SELECT * FROM order_items WHERE order_id = $1",
            t0 + (10 + k * 12) * 1_000_000,
            11.0,
        ));
    }
    spans.push(server_span(
        tid(2),
        10,
        "/error",
        500,
        t0 + 5_000_000_000,
        8,
        Some(("RuntimeError", PY_STACK)),
    ));
    spans.push(server_span(
        tid(3),
        20,
        "/slow",
        200,
        t0 + 9_000_000_000,
        900,
        None,
    ));
    spans.push(db(
        tid(3),
        21,
        20,
        "SELECT pg_sleep(0.85)",
        t0 + 9_010_000_000,
        870.0,
    ));
    let t = traces_for("shop", "python", spans);
    assert_eq!(
        srv.post_proto("/v1/traces", t.encode_to_vec()).await.status(),
        200
    );
    let t = traces_for(
        "front",
        "nodejs",
        vec![server_span(
            tid(4),
            30,
            "/api/cart",
            200,
            t0 + 2_000_000_000,
            35,
            None,
        )],
    );
    assert_eq!(
        srv.post_proto("/v1/traces", t.encode_to_vec()).await.status(),
        200
    );

    // a trace larger than one answer (1,000 spans a page): the page says so and loads more
    let big = tid(77);
    let mut spans = vec![server_span(big, 1, "/export", 200, t0 + 3_000_000_000, 900, None)];
    for i in 0..1_499u64 {
        spans.push(db(
            big,
            100 + i,
            1,
            "SELECT * FROM rows WHERE id = $1",
            t0 + 3_000_000_000 + i * 500_000,
            0.4,
        ));
    }
    let t = traces_for("shop", "python", spans);
    assert_eq!(
        srv.post_proto("/v1/traces", t.encode_to_vec()).await.status(),
        200
    );

    // the API agrees before the browser looks
    let (code, v) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(big)))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (&v["span_count"], &v["returned"], &v["truncated"]),
        (&json!(1500), &json!(1000), &json!(true)),
        "{}",
        &v.to_string()[..300]
    );
    let (code, v) = srv.get("/api/v1/routes?project=demo&service=shop").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["routes"].as_array().unwrap().len(), 4, "{v}");
    json!({
        "project": "demo",
        "service": "shop",
        "routes": {"/orders/{id}": 120, "/health": 50, "/slow": 10, "/error": 7},
        "slowest": "/slow",
        "trace": {"id": hexid(order), "spans": 5, "statement": "SELECT * FROM order_items WHERE order_id = $1"},
        "big_trace": {"id": hexid(big), "spans": 1500, "first_page": 1000},
        "error": {"type": "RuntimeError", "stack": "raise RuntimeError(\"boom\")"},
        "alerts": ["event loop", "memory"],
    })
}

#[tokio::test]
async fn ui_pages_in_chromium() {
    if !common::docker_tests_enabled("ui_pages_in_chromium") {
        return;
    }
    let pw = match playwright_dir() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipping ui_pages_in_chromium: {why}");
            return;
        }
    };
    let srv = Server::start(&[]).await;
    let expect = feed(&srv).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = std::env::var("OBS_UI_SHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/ui-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("node")
        .arg(root.join("tests/ui/run.mjs"))
        .env("NODE_PATH", pw.join("node_modules"))
        .env("OBS_UI_PLAYWRIGHT", pw.join("node_modules/playwright-core"))
        .env("OBS_UI_URL", format!("http://127.0.0.1:{}", srv.api))
        .env("OBS_UI_TOKEN", &srv.token)
        .env("OBS_UI_EXPECT", expect.to_string())
        .env("OBS_UI_SHOTS", &shots)
        .env("OBS_UI_PROFILE", profile.path())
        .output()
        .expect("run node tests/ui/run.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "the browser checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all UI checks passed"), "{stdout}");
}

/// Service-page figures with a large store: loads `OBS_UI_BENCH_SPANS` spans (default 1,000,000;
/// traces of one server span and four DB spans over 50 routes, the last 15 minutes) through
/// OTLP/HTTP, then measures the API calls the service page makes (p95 of 20 rounds) and first
/// paint / data-ready time in chromium. Run by hand:
/// `OBS_STACK_DOCKER_TESTS=1 cargo test --release --test ui_browser -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ui_service_page_bench() {
    if !common::docker_tests_enabled("ui_service_page_bench") {
        return;
    }
    let pw = match playwright_dir() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipping ui_service_page_bench: {why}");
            return;
        }
    };
    let total: u64 = std::env::var("OBS_UI_BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let srv = Server::start(&["--max-memory", "512MiB", "--max-size", "4GiB"]).await;
    let now = now_ns();
    let window = 14 * 60_000_000_000u64;
    let per_req = 4000u64; // spans per request: 800 traces of 5 spans
    let started = std::time::Instant::now();
    let client = reqwest::Client::new();
    let mut sent = 0u64;
    let mut batch_no = 0u64;
    while sent < total {
        let mut reqs = Vec::new();
        for _ in 0..4 {
            let mut spans = Vec::with_capacity(per_req as usize);
            for k in 0..per_req / 5 {
                let n = batch_no * per_req + k;
                let t = tid(1_000_000 + n);
                let start = now - window + (n * 7919 % window);
                let route = format!("/api/r{}", n % 50);
                let dur = 5 + (n % 50) * 4 + (n % 97);
                let mut root = server_span(
                    t,
                    1,
                    &route,
                    if n.is_multiple_of(53) { 500 } else { 200 },
                    start,
                    dur,
                    None,
                );
                root.span_id = (n * 8 + 1).to_be_bytes().to_vec();
                spans.push(root);
                for c in 0..4u64 {
                    spans.push(db(
                        t,
                        n * 8 + 2 + c,
                        n * 8 + 1,
                        "SELECT * FROM items WHERE id = $1",
                        start + c * 1_000_000,
                        1.0,
                    ));
                }
            }
            batch_no += 1;
            sent += per_req;
            reqs.push(traces_for("bench", "python", spans).encode_to_vec());
        }
        let futs = reqs.into_iter().map(|body| {
            let client = client.clone();
            let url = srv.otlp("/v1/traces");
            let key = srv.key.clone();
            async move {
                loop {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .header("x-obs-stack-key", &key)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    if r.status() == 200 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        });
        futures_join(futs).await;
    }
    let load_s = started.elapsed().as_secs_f64();
    eprintln!(
        "loaded {sent} spans in {load_s:.1}s ({:.0} spans/s)",
        sent as f64 / load_s
    );
    let stats = srv.stats().await;
    eprintln!("db {} bytes", stats["db_size_bytes"]);
    // the service page's API calls, 20 rounds
    let mut lat: Vec<f64> = Vec::new();
    for _ in 0..20 {
        let to = (now_ns() / 1_000_000) as i64;
        let from = to - 15 * 60_000;
        for path in [
            format!("/api/v1/services?project=demo&from={from}&to={to}"),
            format!("/api/v1/routes?project=demo&service=bench&from={from}&to={to}"),
            format!("/api/v1/series?project=demo&service=bench&from={from}&to={to}&step=10000"),
            format!("/api/v1/runtime?project=demo&service=bench&from={from}&to={to}"),
            format!("/api/v1/traces?project=demo&service=bench&from={from}&to={to}&limit=100"),
        ] {
            let t = std::time::Instant::now();
            let (code, _) = srv.get(&path).await;
            assert_eq!(code, 200);
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let p95 = lat[(lat.len() as f64 * 0.95) as usize - 1];
    eprintln!(
        "service page API calls: p50 {:.1} ms, p95 {p95:.1} ms, max {:.1} ms",
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    let profile = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/ui/run.mjs"))
        .env("OBS_UI_PLAYWRIGHT", pw.join("node_modules/playwright-core"))
        .env("OBS_UI_URL", format!("http://127.0.0.1:{}", srv.api))
        .env("OBS_UI_TOKEN", &srv.token)
        .env("OBS_UI_EXPECT", json!({"service": "bench"}).to_string())
        .env("OBS_UI_SHOTS", root.join("target/ui-screenshots"))
        .env("OBS_UI_PROFILE", profile.path())
        .env("OBS_UI_BENCH", "1")
        .output()
        .unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

async fn futures_join<F: std::future::Future<Output = ()> + Send + 'static>(futs: impl Iterator<Item = F>) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}
