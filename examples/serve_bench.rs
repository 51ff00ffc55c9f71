//! Load generator and query timer for `bench/backend.sh` (not a test; prints figures).
//!
//!   serve_bench load URL KEY SPANS [CONCURRENCY] [BATCH]
//!       OTLP/HTTP protobuf spans (5 services × 20 routes, 1 trace = 1 server span + 2 children)
//!       to URL (…/v1/traces); prints spans and traces accepted (every trace id is unique in a
//!       run, so a backend's stored counts can be checked against them), spans/s and refused
//!       (503/429) requests.
//!   serve_bench query API_URL TOKEN PROJECT N
//!       times N of each query (services, routes, series, traces list, trace by id, errors)
//!       and prints p50/p95 in ms.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// One request of at least `n` spans (whole traces of 3): (body, spans, traces).
fn batch(seed: u64, n: usize) -> (Vec<u8>, u64, u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let svc = seed % 5;
    let mut spans = Vec::with_capacity(n);
    let mut i = 0u64;
    while spans.len() < n {
        let t = seed * 1_000_000 + i;
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&t.to_be_bytes());
        trace[8..].copy_from_slice(&(t ^ 0xabcdef).to_be_bytes());
        let route = format!("/api/r{}/{{id}}", t % 20);
        let status = if t.is_multiple_of(50) { 500 } else { 200 };
        let dur = 2_000_000 + (t % 97) * 1_000_000;
        let root = t.to_be_bytes().to_vec();
        spans.push(Span {
            trace_id: trace.to_vec(),
            span_id: root.clone(),
            name: format!("GET {route}"),
            kind: 2,
            start_time_unix_nano: now,
            end_time_unix_nano: now + dur,
            attributes: vec![
                kv("http.request.method", Value::StringValue("GET".into())),
                kv("http.route", Value::StringValue(route.clone())),
                kv("http.response.status_code", Value::IntValue(status)),
                kv("url.path", Value::StringValue(format!("/api/r{}/{t}", t % 20))),
            ],
            status: Some(Status {
                code: if status == 500 { 2 } else { 0 },
                ..Default::default()
            }),
            ..Default::default()
        });
        for c in 0..2u64 {
            let mut id = (t ^ (c + 1) << 56).to_be_bytes().to_vec();
            id[7] ^= 0x55;
            spans.push(Span {
                trace_id: trace.to_vec(),
                span_id: id,
                parent_span_id: root.clone(),
                name: if c == 0 {
                    "SELECT orders".into()
                } else {
                    "GET downstream".into()
                },
                kind: 3,
                start_time_unix_nano: now + 100_000,
                end_time_unix_nano: now + dur / 2,
                attributes: vec![kv("db.system", Value::StringValue("postgresql".into()))],
                ..Default::default()
            });
        }
        i += 1;
    }
    let n_spans = spans.len() as u64;
    let body = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue(format!("svc-{svc}"))),
                    kv("telemetry.sdk.language", Value::StringValue("python".into())),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    (body, n_spans, i)
}

async fn load(url: String, key: String, total: u64, conc: usize, size: usize) {
    let client = reqwest::Client::new();
    let sent = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let ok_traces = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = vec![];
    for w in 0..conc {
        let (client, url, key, sent, ok, ok_traces, refused) = (
            client.clone(),
            url.clone(),
            key.clone(),
            sent.clone(),
            ok.clone(),
            ok_traces.clone(),
            refused.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seed = w as u64 * 1_000_000;
            loop {
                let n = sent.fetch_add(size as u64, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                seed += 1;
                let (body, n_spans, n_traces) = batch(seed, size);
                loop {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .header("x-obs-stack-key", &key)
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            ok.fetch_add(n_spans, Ordering::Relaxed);
                            ok_traces.fetch_add(n_traces, Ordering::Relaxed);
                            break;
                        }
                        Ok(r) if r.status().as_u16() == 503 || r.status().as_u16() == 429 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Ok(r) => {
                            eprintln!("unexpected {}", r.status());
                            break;
                        }
                        Err(e) => {
                            eprintln!("error {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "spans_accepted={n} traces_accepted={} seconds={secs:.2} spans_per_s={:.0} refused_requests={}",
        ok_traces.load(Ordering::Relaxed),
        n as f64 / secs,
        refused.load(Ordering::Relaxed)
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn query(api: String, token: String, project: String, n: usize) {
    let client = reqwest::Client::new();
    let get = |path: String| {
        let c = client.clone();
        let url = format!("{api}{path}");
        let token = token.clone();
        async move {
            let t = Instant::now();
            let r = c.get(url).bearer_auth(token).send().await.unwrap();
            let code = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (t.elapsed().as_secs_f64() * 1000.0, code, body)
        }
    };
    let (_, _, tr) = get(format!("/api/v1/traces?project={project}&limit=50")).await;
    let ids: Vec<String> = tr["traces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["trace_id"].as_str().map(str::to_string))
        .collect();
    type Query<'a> = (&'a str, Box<dyn Fn(usize) -> String + 'a>);
    let queries: Vec<Query> = vec![
        (
            "services",
            Box::new(|_| format!("/api/v1/services?project={project}")),
        ),
        (
            "routes",
            Box::new(|i| format!("/api/v1/routes?project={project}&service=svc-{}", i % 5)),
        ),
        (
            "series",
            Box::new(|i| {
                format!(
                    "/api/v1/series?project={project}&service=svc-{}&route=/api/r3/{{id}}",
                    i % 5
                )
            }),
        ),
        (
            "traces",
            Box::new(|i| format!("/api/v1/traces?project={project}&service=svc-{}&limit=20", i % 5)),
        ),
        (
            "traces_error",
            Box::new(|_| format!("/api/v1/traces?project={project}&error=true&limit=20")),
        ),
        (
            "trace_by_id",
            Box::new(|i| format!("/api/v1/traces/{}?project={project}", ids[i % ids.len().max(1)])),
        ),
        (
            "errors",
            Box::new(|_| format!("/api/v1/errors?project={project}")),
        ),
    ];
    for (name, q) in &queries {
        if *name == "trace_by_id" && ids.is_empty() {
            continue;
        }
        let mut times = vec![];
        for i in 0..n {
            let (ms, code, _) = get(q(i)).await;
            assert!(code.is_success(), "{name}: {code}");
            times.push(ms);
        }
        println!(
            "query={name} n={n} p50_ms={:.1} p95_ms={:.1}",
            pct(&mut times, 0.5),
            pct(&mut times, 0.95)
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("load") if a.len() >= 5 => {
            load(
                a[2].clone(),
                a[3].clone(),
                a[4].parse().unwrap(),
                a.get(5).and_then(|s| s.parse().ok()).unwrap_or(4),
                a.get(6).and_then(|s| s.parse().ok()).unwrap_or(600),
            )
            .await
        }
        Some("query") if a.len() >= 6 => {
            query(a[2].clone(), a[3].clone(), a[4].clone(), a[5].parse().unwrap()).await
        }
        _ => {
            eprintln!("usage: serve_bench load URL KEY SPANS [CONC] [BATCH] | query API TOKEN PROJECT N");
            std::process::exit(2);
        }
    }
}
