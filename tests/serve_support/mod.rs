//! Runs the built `obs-stack serve` on free 127.0.0.1 ports with a temporary data directory,
//! and builds OTLP payloads the way the agents send them. No Docker needed.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};
use serde_json::Value as J;

pub const BIN: &str = env!("CARGO_BIN_EXE_obs-stack");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub struct Server {
    pub child: Option<Child>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub grpc: u16,
    pub http: u16,
    pub api: u16,
    pub token: String,
    pub key: String,
    pub extra: Vec<String>,
}

impl Server {
    /// A fresh data directory with project `demo`, and the server started on it.
    pub async fn start(extra: &[&str]) -> Server {
        let mut s = Server::prepared(extra);
        s.spawn().await;
        s
    }

    /// A fresh data directory with project `demo` and free ports; not started.
    fn prepared(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let key = project_add(&dir, "demo");
        Server {
            child: None,
            dir,
            _tmp: Some(tmp),
            grpc: free_port(),
            http: free_port(),
            api: free_port(),
            token: String::new(),
            key,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The `obs-stack serve` command line of this server.
    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--otlp-grpc", &format!("127.0.0.1:{}", self.grpc)])
            .args(["--otlp-http", &format!("127.0.0.1:{}", self.http)])
            .args(["--api", &format!("127.0.0.1:{}", self.api)])
            .args(&self.extra)
            .env_remove("OBS_STACK_DATA_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd
    }

    pub async fn spawn(&mut self) {
        let child = self.command().spawn().expect("start obs-stack serve");
        self.ready(child).await;
    }

    /// Waits for /healthz of the started `child`, then reads the token.
    async fn ready(&mut self, child: Child) {
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{}/healthz", self.api)).await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "serve did not answer /healthz");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.token = std::fs::read_to_string(self.dir.join("token"))
            .unwrap()
            .trim()
            .to_string();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn otlp(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    pub async fn post_proto(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.otlp(path))
            .header("content-type", "application/x-protobuf")
            .header("x-obs-stack-key", &self.key)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, J) {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path_and_query}", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        (code, serde_json::from_str(&text).unwrap_or(J::String(text)))
    }

    pub async fn stats(&self) -> J {
        self.get("/api/v1/stats").await.1
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn project_add(dir: &Path, name: &str) -> String {
    let out = Command::new(BIN)
        .args(["serve", "project", "add", name, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub fn i(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

pub fn resource(service: &str, lang: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            s("service.name", service),
            s("telemetry.sdk.language", lang),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.version", "1.38.0"),
        ],
        ..Default::default()
    })
}

/// One server span (and optionally an exception event).
pub fn server_span(
    trace: [u8; 16],
    span: u64,
    route: &str,
    status: i64,
    start_ns: u64,
    dur_ms: u64,
    exception: Option<(&str, &str)>,
) -> Span {
    let mut events = vec![];
    if let Some((kind, stack)) = exception {
        events.push(Event {
            name: "exception".into(),
            time_unix_nano: start_ns,
            attributes: vec![
                s("exception.type", kind),
                s("exception.message", "boom"),
                s("exception.stacktrace", stack),
            ],
            ..Default::default()
        });
    }
    Span {
        trace_id: trace.to_vec(),
        span_id: span.to_be_bytes().to_vec(),
        name: format!("GET {route}"),
        kind: 2,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: start_ns + dur_ms * 1_000_000,
        attributes: vec![
            s("http.request.method", "GET"),
            s("http.route", route),
            i("http.response.status_code", status),
        ],
        events,
        status: Some(Status {
            code: if status >= 500 { 2 } else { 0 },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn traces_req(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service, "python"),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `http.server.request.duration` (seconds, cumulative) with one point per (route, status):
/// `count` requests all in the bucket (lo, hi] seconds.
pub fn duration_metric(
    service: &str,
    points: &[(&str, i64, u64, usize)],
    start_ns: u64,
    time_ns: u64,
) -> ExportMetricsServiceRequest {
    let bounds = vec![
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    let data_points = points
        .iter()
        .map(|(route, status, count, bucket)| {
            let mut counts = vec![0u64; bounds.len() + 1];
            counts[*bucket] = *count;
            HistogramDataPoint {
                attributes: vec![
                    s("http.request.method", "GET"),
                    s("http.route", route),
                    i("http.response.status_code", *status),
                ],
                start_time_unix_nano: start_ns,
                time_unix_nano: time_ns,
                count: *count,
                sum: Some(0.06 * *count as f64),
                bucket_counts: counts,
                explicit_bounds: bounds.clone(),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service, "python"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points,
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn error_log(service: &str, ts: u64, body: &str) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service, "nodejs"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: ts,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: Some(AnyValue {
                        value: Some(Value::StringValue(body.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn tid(n: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&0x5eed_0000_0000_0000u64.to_be_bytes());
    t[8..].copy_from_slice(&n.to_be_bytes());
    t
}

pub fn hexid(t: [u8; 16]) -> String {
    t.iter().map(|b| format!("{b:02x}")).collect()
}

/// VmHWM (peak resident set) of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Server {
    /// Like [`Server::start`], the server started with a soft open-files limit of `soft` (the
    /// hard limit unchanged), as under a default `ulimit -n 1024`.
    pub async fn start_with_open_files(extra: &[&str], soft: u64) -> Server {
        let mut s = Server::prepared(extra);
        use std::os::unix::process::CommandExt;
        let mut cmd = s.command();
        unsafe {
            cmd.pre_exec(move || {
                let mut r = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
                r.rlim_cur = (soft as libc::rlim_t).min(r.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start obs-stack serve");
        s.ready(child).await;
        s
    }
}

/// Raises this process's soft open-files limit to the hard one (for tests that open
/// thousands of connections); returns it.
#[allow(clippy::useless_conversion)]
pub fn raise_own_open_files() -> u64 {
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        u64::from(r.rlim_cur)
    }
}
