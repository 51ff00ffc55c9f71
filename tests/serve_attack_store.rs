//! `obs-stack serve` attacked through its store (issue K 4, 6, 8), with the built binary:
//! one project flooding the size cap, timestamps from the future, file modes, an empty or
//! damaged database at start.
mod serve_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::span::Event;
use prost::Message;
use serde_json::Value as J;
use serve_support::*;

const MIB: u64 = 1 << 20;
const HOUR_NS: u64 = 3_600_000_000_000;
/// What the server allows ahead of its clock (store::FUTURE_SKEW_MS), plus slack for the test.
const SKEW_MS: i64 = 5 * 60_000 + 10_000;
const ALL_TIME: &str = "from=0&to=9223372036854775807";

fn now_ms() -> i64 {
    (now_ns() / 1_000_000) as i64
}

async fn post_as(srv: &Server, key: &str, path: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(srv.otlp(path))
        .header("content-type", "application/x-protobuf")
        .header("x-obs-stack-key", key)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `n` error logs, each its own exception type with a `stack_len`-byte stack.
fn error_types(first: usize, n: usize, ts: u64, stack_len: usize) -> ExportLogsServiceRequest {
    let log_records = (first..first + n)
        .map(|i| {
            let frame = format!("    at handler{i} (/app/src/h{i}.js:1:1)\n");
            let stack = format!("E{i}: boom\n{}", frame.repeat(stack_len / frame.len() + 1));
            LogRecord {
                // one ms apart: the newest type is the latest seen
                time_unix_nano: ts + i as u64 * 1_000_000,
                severity_number: 17,
                severity_text: "ERROR".into(),
                attributes: vec![
                    s("exception.type", &format!("FloodError{i}")),
                    s("exception.message", "boom"),
                    s("exception.stacktrace", &stack[..stack_len]),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("flood", "nodejs"),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Project `b`'s 500 traces, started five hours ago: the oldest data in the database.
async fn other_project_traces(srv: &Server) -> String {
    let key = project_add(&srv.dir, "b");
    let start = now_ns() - 5 * HOUR_NS;
    for batch in 0..5u64 {
        let spans = (0..100u64)
            .map(|n| server_span(tid(900_000 + batch * 100 + n), n + 1, "/b", 200, start, 3, None))
            .collect();
        let body = traces_req("b-svc", spans).encode_to_vec();
        // the server re-reads the keys at most once a second
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match post_as(srv, &key, "/v1/traces", body.clone()).await {
                200 => break,
                401 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                code => panic!("{code}"),
            }
        }
    }
    key
}

async fn trace_count(srv: &Server, project: &str) -> usize {
    let from = now_ms() - 6 * 3_600_000;
    let (code, v) = srv
        .get(&format!(
            "/api/v1/traces?project={project}&from={from}&to={}&limit=1000",
            now_ms() + 1
        ))
        .await;
    assert_eq!(code, 200, "{v}");
    v["traces"].as_array().unwrap().len()
}

/// Polls the stats until the writer is done trimming (the database is under the cap).
async fn settled_size(srv: &Server, cap: u64) -> J {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = srv.stats().await;
        if st["db_size_bytes"].as_u64().unwrap() <= cap || Instant::now() > deadline {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn file_len(srv: &Server) -> u64 {
    std::fs::metadata(srv.dir.join("serve.db")).unwrap().len()
}

#[tokio::test]
async fn a_flood_of_error_types_stays_under_the_cap_and_spares_other_projects() {
    // the repro: 10,000 error types with 16 KB stacks under a 20 MiB cap grew the database
    // to 165 MiB, and retention then deleted another project's 500 traces
    let cap = 20 * MIB;
    let srv = Server::start(&["--max-size", "20MiB"]).await;
    other_project_traces(&srv).await;
    let now = now_ns();
    for first in (0..10_000).step_by(250) {
        let body = error_types(first, 250, now, 16 * 1024).encode_to_vec();
        assert_eq!(srv.post_proto("/v1/logs", body).await.status(), 200);
    }
    let st = settled_size(&srv, cap).await;
    assert!(st["db_size_bytes"].as_u64().unwrap() <= cap, "{st}");
    // margin: the file also holds free pages until the next incremental vacuum
    assert!(
        file_len(&srv) <= cap + 2 * MIB,
        "file {} bytes; {st}",
        file_len(&srv)
    );
    assert_eq!(trace_count(&srv, "b").await, 500, "{st}");
    // the newest error types of the flood are kept
    let (_, v) = srv.get("/api/v1/errors?project=demo").await;
    let types: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"FloodError9999"), "{types:?}");
}

#[tokio::test]
async fn over_the_cap_the_flooding_project_loses_its_oldest_data_and_keeps_its_newest() {
    let cap = 8 * MIB;
    let srv = Server::start(&["--max-size", "8MiB"]).await;
    other_project_traces(&srv).await;
    // project demo: six hours of big spans (more than the cap) and error types
    let pad = "x".repeat(1500);
    let now = now_ns();
    for h in (0..6u64).rev() {
        let start = now - h * HOUR_NS;
        let spans = (0..1000u64)
            .map(|n| {
                let mut sp = server_span(
                    tid(h * 100_000 + n),
                    n + 1,
                    "/big",
                    200,
                    start + n * 1000,
                    1,
                    None,
                );
                sp.attributes.push(s("pad", &pad));
                sp
            })
            .collect();
        let body = traces_req("big", spans).encode_to_vec();
        assert_eq!(srv.post_proto("/v1/traces", body).await.status(), 200);
        let body = error_types(h as usize * 1000, 300, start, 1000).encode_to_vec();
        assert_eq!(srv.post_proto("/v1/logs", body).await.status(), 200);
    }
    let st = settled_size(&srv, cap).await;
    assert!(st["db_size_bytes"].as_u64().unwrap() <= cap, "{st}");
    assert!(
        file_len(&srv) <= cap + 2 * MIB,
        "file {} bytes; {st}",
        file_len(&srv)
    );
    assert!(
        st["dropped"]["retention"].as_u64().unwrap() > 0,
        "the cap was reached: {st}"
    );
    assert_eq!(
        trace_count(&srv, "b").await,
        500,
        "the other project keeps all: {st}"
    );
    // demo's newest trace and newest error type are there, its oldest trace is not
    let (code, _) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(999))))
        .await;
    assert_eq!(code, 200, "newest trace kept; {st}");
    let (code, _) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(500_000))))
        .await;
    assert_eq!(code, 404, "oldest trace trimmed; {st}");
    let (_, v) = srv.get("/api/v1/errors?project=demo").await;
    assert!(v.to_string().contains("\"FloodError299\""), "{v}");
}

fn gauge(name: &str, time_ns: u64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("clock", "python"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    unit: "1".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: time_ns,
                            value: Some(number_data_point::Value::AsDouble(0.5)),
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

fn exception(time_ns: u64, kind: &str) -> Event {
    Event {
        name: "exception".into(),
        time_unix_nano: time_ns,
        attributes: vec![s("exception.type", kind), s("exception.message", "late")],
        ..Default::default()
    }
}

/// Every time the database holds, the latest of them (ms).
fn latest_stored_ms(dir: &Path) -> i64 {
    let c = rusqlite::Connection::open(dir.join("serve.db")).unwrap();
    let mut latest = i64::MIN;
    let mut q = |sql: &str| {
        let v: Option<i64> = c.query_row(sql, [], |r| r.get(0)).unwrap();
        latest = latest.max(v.unwrap_or(i64::MIN));
    };
    let hours: Vec<i64> = {
        let mut st = c.prepare("SELECT hour FROM partitions").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    for h in hours {
        q(&format!(
            "SELECT max((start_ns + dur_ns) / 1000000) FROM spans_{h}"
        ));
        q(&format!(
            "SELECT max(CAST(json_extract(e.value, '$.time_unix_nano') AS INTEGER) / 1000000)
             FROM spans_{h}, json_each(spans_{h}.events) e"
        ));
    }
    q("SELECT max(bucket_ms) FROM red");
    q("SELECT max(bucket_ms) FROM runtime");
    q("SELECT max(max(first_ms, last_ms)) FROM error_groups");
    q("SELECT max(last_seen_ms) FROM services");
    latest
}

#[tokio::test]
async fn times_from_the_future_are_refused_or_clamped_everywhere() {
    let srv = Server::start(&[]).await;
    let now = now_ns();
    let y2262 = i64::MAX as u64;
    let day = 24 * HOUR_NS;
    let mut good = server_span(tid(1), 1, "/ok", 500, now - 1_000_000_000, 5, None);
    good.events.push(exception(u64::MAX, "FutureEventError"));
    let mut ends_never = server_span(tid(2), 1, "/never", 200, now, 1, None);
    ends_never.end_time_unix_nano = u64::MAX;
    let mut ends_2262 = server_span(tid(3), 1, "/2262", 200, now, 1, None);
    ends_2262.end_time_unix_nano = y2262;
    let mut starts_2262 = server_span(tid(4), 1, "/2262", 200, y2262 - 10, 1, None);
    starts_2262.end_time_unix_nano = y2262;
    let mut next_week = server_span(tid(5), 1, "/later", 200, now + 7 * day, 1, None);
    next_week.events.push(exception(now + 7 * day, "NextWeekError"));
    let body = traces_req("clock", vec![good, ends_never, ends_2262, starts_2262, next_week]).encode_to_vec();
    assert_eq!(srv.post_proto("/v1/traces", body).await.status(), 200);
    // logs: a future time is refused, unless the observed time is a possible one
    let mut future_log = error_log("clock", now + 10 * day, "Error: from the future");
    assert_eq!(
        srv.post_proto("/v1/logs", future_log.encode_to_vec())
            .await
            .status(),
        200
    );
    let rec = &mut future_log.resource_logs[0].scope_logs[0].log_records[0];
    rec.time_unix_nano = u64::MAX;
    rec.observed_time_unix_nano = now;
    rec.body = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
        value: Some(
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                "Error: observed now".into(),
            ),
        ),
    });
    assert_eq!(
        srv.post_proto("/v1/logs", future_log.encode_to_vec())
            .await
            .status(),
        200
    );
    for t in [u64::MAX, y2262, now + day] {
        let body = gauge("process.cpu.utilization", t).encode_to_vec();
        assert_eq!(srv.post_proto("/v1/metrics", body).await.status(), 200);
    }
    let body = gauge("process.cpu.utilization", now).encode_to_vec();
    assert_eq!(srv.post_proto("/v1/metrics", body).await.status(), 200);
    // the checks endpoint takes its time from the client too
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/checks", srv.api))
        .bearer_auth(&srv.token)
        .json(
            &serde_json::json!({"project": "demo", "service": "checked", "kind": "http_check",
                                   "ts_ms": i64::MAX, "latency_ms": 3}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().as_u16() == 400,
        "{}",
        r.status()
    );

    let limit = now_ms() + SKEW_MS;
    assert!(
        latest_stored_ms(&srv.dir) <= limit,
        "stored {} > {limit}",
        latest_stored_ms(&srv.dir)
    );
    let st = srv.stats().await;
    // 4 spans, 1 log, 3 gauge points (the check point is counted when it reaches the writer)
    assert!(st["dropped"]["out_of_window"].as_u64().unwrap() >= 8, "{st}");
    // the widest range answers the data (it used to wrap and answer [])
    let (code, v) = srv.get(&format!("/api/v1/traces?project=demo&{ALL_TIME}")).await;
    assert_eq!(code, 200, "{v}");
    let traces = v["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{v}");
    assert_eq!(traces[0]["trace_id"], hexid(tid(1)));
    assert!(traces[0]["duration_ms"].as_f64().unwrap() < 1000.0, "{v}");
    let (_, v) = srv.get(&format!("/api/v1/errors?project=demo&{ALL_TIME}")).await;
    let groups = v["errors"].as_array().unwrap();
    assert!(v.to_string().contains("FutureEventError"), "{v}");
    assert!(v.to_string().contains("observed now"), "{v}");
    assert!(!v.to_string().contains("NextWeekError"), "{v}");
    for g in groups {
        assert!(g["last_seen"].as_i64().unwrap() <= limit, "{g}");
    }
    for path in ["services", "runtime"] {
        let (code, v) = srv.get(&format!("/api/v1/{path}?project=demo&{ALL_TIME}")).await;
        assert_eq!(code, 200, "{v}");
    }
    let (_, v) = srv.get(&format!("/api/v1/runtime?project=demo&{ALL_TIME}")).await;
    let points: Vec<i64> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[0].as_i64().unwrap())
        })
        .collect();
    assert_eq!(points.len(), 1, "{v}");
    assert!(points[0] <= limit);
    let (code, _) = srv
        .get("/api/v1/series?project=demo&service=clock&from=-9223372036854775808&to=9223372036854775807&step=1")
        .await;
    assert_eq!(code, 200);
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn stop(srv: &mut Server) {
    if let Some(mut c) = srv.child.take() {
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let _ = c.wait();
    }
}

#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    let mut srv = Server::start(&[]).await;
    let check = |srv: &Server| {
        assert_eq!(mode(&srv.dir), 0o700);
        for f in ["serve.db", "serve.db-wal", "serve.db-shm", "token"] {
            let p = srv.dir.join(f);
            assert!(p.exists(), "{f}");
            assert_eq!(mode(&p), 0o600, "{f}: {:o}", mode(&p));
        }
    };
    check(&srv);
    // made readable by someone else: fixed at the next start
    stop(&mut srv);
    std::fs::set_permissions(&srv.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["serve.db", "token"] {
        std::fs::set_permissions(srv.dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    srv.spawn().await;
    check(&srv);
}

/// Runs `serve` on `dir` and waits for it to exit (None: still running after 30 s, killed).
fn serve_exit(dir: &Path, extra: &[&str]) -> Option<(i32, String)> {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--otlp-grpc", &format!("127.0.0.1:{}", free_port())])
        .args(["--otlp-http", &format!("127.0.0.1:{}", free_port())])
        .args(["--api", &format!("127.0.0.1:{}", free_port())])
        .args(extra)
        .env_remove("OBS_STACK_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return Some((status.code().unwrap_or(-1), err));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn an_empty_database_is_refused_unless_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("serve.db"), b"").unwrap();
    let (code, err) = serve_exit(&dir, &[]).expect("serve started on an empty database");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("empty") && err.contains("--reset"), "{err}");
    assert_eq!(
        std::fs::metadata(dir.join("serve.db")).unwrap().len(),
        0,
        "left as it was"
    );
    // --reset starts over
    let mut srv = Server::start(&[]).await;
    stop(&mut srv);
    std::fs::write(srv.dir.join("serve.db"), b"").unwrap();
    let _ = std::fs::remove_file(srv.dir.join("serve.db-wal"));
    let _ = std::fs::remove_file(srv.dir.join("serve.db-shm"));
    srv.extra = vec!["--reset".into()];
    srv.spawn().await;
    let (code, v) = srv.get("/api/v1/projects").await;
    assert_eq!((code, v), (200, serde_json::json!([])));
}

#[tokio::test]
async fn a_damaged_database_is_refused_and_reset_keeps_the_ingest_keys() {
    let mut srv = Server::start(&[]).await;
    let now = now_ns();
    let pad = "y".repeat(1000);
    for b in 0..4u64 {
        let spans = (0..500u64)
            .map(|n| {
                let mut sp = server_span(tid(b * 1000 + n), n + 1, "/d", 200, now, 1, None);
                sp.attributes.push(s("pad", &pad));
                sp
            })
            .collect();
        let body = traces_req("dmg", spans).encode_to_vec();
        assert_eq!(srv.post_proto("/v1/traces", body).await.status(), 200);
    }
    stop(&mut srv);
    let db = srv.dir.join("serve.db");
    {
        // whatever the WAL still holds goes into the file first
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    }
    let len = std::fs::metadata(&db).unwrap().len();
    assert!(len > 1 << 20, "{len}");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
        let garbage: Vec<u8> = (0..64 * 4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        f.write_all(&garbage).unwrap();
    }
    let (code, err) = serve_exit(&srv.dir, &[]).expect("serve started on a damaged database");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("corrupt") && err.contains("--reset"), "{err}");
    // --reset moves it aside, starts over and keeps the project's ingest key
    srv.extra = vec!["--reset".into()];
    srv.spawn().await;
    let aside = std::fs::read_dir(&srv.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("serve.db.broken-"));
    assert!(aside, "the damaged file is kept aside");
    let body = traces_req("dmg", vec![server_span(tid(7), 1, "/d", 200, now_ns(), 1, None)]).encode_to_vec();
    assert_eq!(srv.post_proto("/v1/traces", body).await.status(), 200);
    let st = srv.stats().await;
    assert_eq!(st["store"]["ok"], true, "{st}");
    let (code, _) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(7))))
        .await;
    assert_eq!(code, 200);
    let (code, body) = {
        let r = reqwest::get(format!("http://127.0.0.1:{}/healthz", srv.api))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}
