//! Issue K, PII stored: a hostile (or careless) client puts PII in every string field of every
//! OTLP message type. Through the real binary, none of it may reach the disk: the raw bytes of
//! `serve.db`, `serve.db-wal` and `serve.db-shm` are searched after a `kill -9` (so the WAL is
//! not checkpointed away) for every canary value.
mod serve_support;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serve_support::*;

/// In every string field. Each kind of PII the rules know, in the shapes the issue found
/// stored: an e-mail, Amex 4-6-5, a Mastercard 2-series number, a password in a query string,
/// an SSN without dashes, a bearer token.
const CANARY: &str = "x jane.canary@example.com 3782 822463 10005 2221000000000009 \
                      /p?password=hunter2canary&x=1 078051120 Bearer canarytoken7 y";
/// The value of blocked keys (`db.password`, `api_key`): only the key rule masks it.
const PLAIN_SECRET: &str = "plainsecretcanary";
const NEEDLES: &[&str] = &[
    "canary@example",
    "822463",
    "2221000000000009",
    "hunter2canary",
    "078051120",
    "canarytoken7",
    PLAIN_SECRET,
];
/// Not PII: stored as it is, so the search is known to look where the data is.
const MARKER: &str = "stored-marker-5a1f";

fn sv(v: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(v.into())),
    }
}

fn c() -> String {
    CANARY.to_string()
}

/// The canary as key and value, under blocked keys, in every `AnyValue` shape, plus `extra`.
fn attrs(extra: &[(&str, &str)]) -> Vec<KeyValue> {
    let mut v: Vec<KeyValue> = extra.iter().map(|(k, x)| s(k, x)).collect();
    v.push(s(CANARY, CANARY));
    v.push(s("db.password", PLAIN_SECRET));
    v.push(s("probe", MARKER));
    let list = AnyValue {
        value: Some(Value::ArrayValue(ArrayValue {
            values: vec![
                sv(CANARY),
                AnyValue {
                    value: Some(Value::BytesValue(CANARY.as_bytes().to_vec())),
                },
            ],
        })),
    };
    v.push(KeyValue {
        key: "shapes".into(),
        value: Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    s(CANARY, CANARY),
                    s("api_key", PLAIN_SECRET),
                    KeyValue {
                        key: "list".into(),
                        value: Some(list),
                        ..Default::default()
                    },
                ],
            })),
        }),
        ..Default::default()
    });
    v
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: attrs(&[("service.name", CANARY), ("telemetry.sdk.language", CANARY)]),
        entity_refs: vec![EntityRef {
            schema_url: c(),
            r#type: c(),
            id_keys: vec![c()],
            description_keys: vec![c()],
        }],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: c(),
        version: c(),
        attributes: attrs(&[]),
        ..Default::default()
    })
}

fn traces(now: u64) -> ExportTraceServiceRequest {
    let http = [
        ("http.request.method", "GET"),
        ("http.route", CANARY),
        ("url.full", "http://shop/p?access_token=hunter2canary&q=1"),
        ("http.target", "/p?api_key=hunter2canary"),
        ("db.statement", "SELECT 1 -- /cb?secret=hunter2canary"),
        ("http.response.status_code", "500"),
    ];
    let exception = [
        ("exception.type", CANARY),
        ("exception.message", CANARY),
        ("exception.stacktrace", CANARY),
    ];
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![Span {
                    trace_id: tid(1).to_vec(),
                    span_id: vec![1; 8],
                    trace_state: c(),
                    name: c(),
                    kind: 2,
                    start_time_unix_nano: now,
                    end_time_unix_nano: now + 1_000_000,
                    attributes: attrs(&http),
                    events: vec![
                        Event {
                            time_unix_nano: now,
                            name: c(),
                            attributes: attrs(&[]),
                            ..Default::default()
                        },
                        Event {
                            time_unix_nano: now,
                            name: "exception".into(),
                            attributes: attrs(&exception),
                            ..Default::default()
                        },
                    ],
                    links: vec![Link {
                        trace_id: tid(2).to_vec(),
                        span_id: vec![2; 8],
                        trace_state: c(),
                        attributes: attrs(&[]),
                        ..Default::default()
                    }],
                    status: Some(Status {
                        message: c(),
                        code: 2,
                    }),
                    ..Default::default()
                }],
                schema_url: c(),
            }],
            schema_url: c(),
        }],
    }
}

fn exemplars(now: u64) -> Vec<Exemplar> {
    vec![Exemplar {
        filtered_attributes: attrs(&[]),
        time_unix_nano: now,
        value: Some(exemplar::Value::AsDouble(1.0)),
        ..Default::default()
    }]
}

/// Every metric type named with the canary, and the ones derivations keep (runtime series,
/// HTTP RED) with canary attributes: delta temporality, so the first request derives.
fn metrics(now: u64) -> ExportMetricsServiceRequest {
    let http = [
        ("http.request.method", "GET"),
        ("http.route", CANARY),
        ("http.response.status_code", "200"),
    ];
    let start = now - 10_000_000_000;
    let number = || {
        vec![NumberDataPoint {
            attributes: attrs(&[]),
            start_time_unix_nano: start,
            time_unix_nano: now,
            exemplars: exemplars(now),
            value: Some(number_data_point::Value::AsDouble(1.0)),
            ..Default::default()
        }]
    };
    let histogram = |extra: &[(&str, &str)]| {
        Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: attrs(extra),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: 3,
                sum: Some(0.3),
                bucket_counts: vec![1, 2, 0],
                explicit_bounds: vec![0.1, 1.0],
                exemplars: exemplars(now),
                ..Default::default()
            }],
            aggregation_temporality: 1,
        })
    };
    let exponential = |extra: &[(&str, &str)]| {
        Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                attributes: attrs(extra),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: 2,
                sum: Some(0.2),
                positive: Some(Buckets {
                    offset: -4,
                    bucket_counts: vec![1, 1],
                }),
                exemplars: exemplars(now),
                ..Default::default()
            }],
            aggregation_temporality: 1,
        })
    };
    let gauge = || {
        Data::Gauge(Gauge {
            data_points: number(),
        })
    };
    let sum = |monotonic| {
        Data::Sum(Sum {
            data_points: number(),
            aggregation_temporality: 1,
            is_monotonic: monotonic,
        })
    };
    let summary = || {
        Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                attributes: attrs(&[]),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: 1,
                sum: 1.0,
                ..Default::default()
            }],
        })
    };
    let metric = |name: &str, unit: &str, data: Data| Metric {
        name: name.into(),
        description: c(),
        unit: unit.into(),
        metadata: attrs(&[]),
        data: Some(data),
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![
                    metric(CANARY, CANARY, gauge()),
                    metric(CANARY, CANARY, sum(true)),
                    metric(CANARY, CANARY, histogram(&[])),
                    metric(CANARY, CANARY, exponential(&[])),
                    metric(CANARY, CANARY, summary()),
                    metric(&format!("process.{CANARY}"), CANARY, gauge()),
                    metric("process.canary.gauge", CANARY, gauge()),
                    metric("process.canary.updown", CANARY, sum(false)),
                    metric("process.canary.counter", CANARY, sum(true)),
                    metric("process.canary.histogram", CANARY, histogram(&[])),
                    metric("process.canary.exponential", CANARY, exponential(&[])),
                    metric("process.canary.summary", CANARY, summary()),
                    metric("http.server.request.duration", "s", histogram(&http)),
                    metric("http.server.duration", "ms", exponential(&http)),
                ],
                schema_url: c(),
            }],
            schema_url: c(),
        }],
    }
}

/// Error log records (the ones stored) with the canary everywhere, the body in every shape.
fn logs(now: u64) -> ExportLogsServiceRequest {
    let record = |body: AnyValue, extra: &[(&str, &str)]| LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        severity_number: 17,
        severity_text: c(),
        body: Some(body),
        attributes: attrs(extra),
        trace_id: tid(1).to_vec(),
        span_id: vec![1; 8],
        event_name: c(),
        ..Default::default()
    };
    let shapes = attrs(&[]).pop().and_then(|kv| kv.value).unwrap();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![
                    record(sv(CANARY), &[]),
                    record(shapes, &[("exception.type", CANARY), ("http.route", CANARY)]),
                    record(
                        sv(&format!(
                            "Traceback (most recent call last):\n{CANARY}\nValueError: {CANARY}"
                        )),
                        &[("exception.stacktrace", CANARY)],
                    ),
                    record(sv("GET /cb?token=hunter2canary failed"), &[]),
                ],
                schema_url: c(),
            }],
            schema_url: c(),
        }],
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_canary_of_any_field_reaches_the_disk() {
    let mut srv = Server::start(&[]).await;
    let now = now_ns();
    for (path, body) in [
        ("/v1/traces", traces(now).encode_to_vec()),
        ("/v1/metrics", metrics(now).encode_to_vec()),
        ("/v1/logs", logs(now).encode_to_vec()),
    ] {
        for n in NEEDLES {
            assert!(contains(&body, n), "the request to {path} carries {n}");
        }
        let r = srv.post_proto(path, body).await;
        assert_eq!(r.status(), 200, "{path}");
    }
    // acknowledged means committed; it was stored, redacted, and derivations ran on it
    let (_, v) = srv.get("/api/v1/services?project=demo").await;
    assert!(v.to_string().contains("****"), "{v}");
    let (_, v) = srv.get("/api/v1/errors?project=demo").await;
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{v}");
    let (code, v) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(1))))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spans"][0]["attributes"]["db.password"], "****", "{v}");

    srv.kill9();
    let mut disk = Vec::new();
    let mut files = Vec::new();
    for f in ["serve.db", "serve.db-wal", "serve.db-shm"] {
        if let Ok(b) = std::fs::read(srv.dir.join(f)) {
            files.push(format!("{f} ({} bytes)", b.len()));
            disk.extend(b);
        }
    }
    assert!(
        contains(&disk, MARKER),
        "the stored data is not where it was searched: {files:?}"
    );
    let found: Vec<&str> = NEEDLES.iter().copied().filter(|n| contains(&disk, n)).collect();
    assert!(found.is_empty(), "PII on disk in {files:?}: {found:?}");
}
