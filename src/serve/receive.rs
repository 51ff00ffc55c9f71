//! Decoded OTLP requests → a [`Batch`] of plain rows for the store: redaction first (the whole
//! request, every string, before anything reads it: `redact`), then the derivations (RED per
//! service × route × method × status class, error events, runtime series, service identity).
//! Shared by the HTTP and gRPC receivers; no I/O.
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use serde_json::json;

use super::derive::{self, Cardinality, DeltaState, FRESH_STREAM_NS, Hist, OTHER_ROUTE, RawHist};
use super::errors;
use super::redact::Redactor;

const MAX_ATTRS: usize = 128;
const MAX_VALUE_LEN: usize = 4096;
const MAX_RUNTIME_SERIES: usize = 200;

#[derive(Debug, Clone, Default)]
pub struct SpanRow {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_id: Vec<u8>,
    pub service: String,
    pub name: String,
    pub kind: i32,
    pub start_ns: i64,
    pub dur_ns: i64,
    pub status: i32,
    pub status_message: String,
    pub http_status: i64,
    pub route: String,
    pub method: String,
    pub error: bool,
    pub attrs: String,
    pub events: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RedKey {
    pub service: String,
    pub route: String,
    pub method: String,
    pub class: String,
    pub bucket_ms: i64,
    /// 'm' from the agents' HTTP metrics, 's' from server spans, 'u' from server spans
    /// without `http.route`
    pub source: char,
}

#[derive(Debug, Clone, Default)]
pub struct RedVal {
    pub count: f64,
    pub hist: Hist,
}

#[derive(Debug, Clone)]
pub struct ErrorEvent {
    pub fingerprint: String,
    pub kind: String,
    pub message: String,
    pub stack: String,
    pub service: String,
    pub route: Option<String>,
    pub trace_id: Option<String>,
    pub ts_ms: i64,
}

#[derive(Debug, Clone)]
pub struct RuntimePoint {
    pub service: String,
    pub name: String,
    pub unit: String,
    pub ts_ms: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceInfo {
    pub name: String,
    pub language: String,
    pub sdk: String,
    pub sdk_version: String,
    pub agent: String,
    pub agent_version: String,
    pub last_seen_ms: i64,
}

#[derive(Debug, Default)]
pub struct Batch {
    pub project: String,
    pub spans: Vec<SpanRow>,
    pub red: HashMap<RedKey, RedVal>,
    pub errors: Vec<ErrorEvent>,
    pub runtime: Vec<RuntimePoint>,
    pub services: HashMap<String, ServiceInfo>,
    pub n_spans: u64,
    pub n_points: u64,
    pub n_logs: u64,
    /// items outside the retention window (too old, or too far in the future)
    pub n_dropped: u64,
}

/// The state derivations keep between requests (bounded). Each part is locked only for one
/// lookup, never while a request is redacted or walked, so one huge request does not hold up
/// the others (they derive concurrently, on the blocking pool).
pub struct Deriver {
    pub redactor: Redactor,
    pub retention_ms: i64,
    streams: Mutex<Streams>,
    card: Mutex<Cardinality>,
}

/// Cumulative streams' last points; one lock, so a point's histogram and sum move together.
struct Streams {
    hists: DeltaState<RawHist>,
    sums: DeltaState<f64>,
}

impl Deriver {
    pub fn new(redactor: Redactor, retention_ms: i64) -> Deriver {
        Deriver {
            redactor,
            retention_ms,
            streams: Mutex::new(Streams {
                hists: DeltaState::new(100_000),
                sums: DeltaState::new(100_000),
            }),
            card: Mutex::new(Cardinality::default()),
        }
    }

    /// Routes already stored, so the caps survive a restart.
    pub fn seed(&mut self, project: &str, service: &str, route: &str) {
        self.card().seed(project, service, route);
    }

    fn card(&self) -> MutexGuard<'_, Cardinality> {
        self.card.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn streams(&self) -> MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a time is one the store keeps: [now − retention, now + skew] (`store::window`).
    fn in_window(&self, ts_ms: i64, now_ms: i64) -> bool {
        let (lo, hi) = super::store::window(now_ms, self.retention_ms);
        ts_ms >= lo && ts_ms <= hi
    }

    /// `ns` moved into the window (an event time a span carries: kept, at a possible time).
    fn clamp_ns(&self, ns: u64, now_ms: i64) -> u64 {
        let (lo, hi) = super::store::window(now_ms, self.retention_ms);
        ns.clamp(lo as u64 * 1_000_000, hi as u64 * 1_000_000)
    }
}

fn str_of(v: &AnyValue) -> Option<&str> {
    match v.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| attr(attrs, k).and_then(str_of))
}

fn attr_i64(attrs: &[KeyValue], keys: &[&str]) -> Option<i64> {
    keys.iter().find_map(|k| match attr(attrs, k)?.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.parse().ok(),
        Value::DoubleValue(d) => Some(*d as i64),
        _ => None,
    })
}

fn attr_f64(attrs: &[KeyValue], key: &str) -> Option<f64> {
    match attr(attrs, key)?.value.as_ref()? {
        Value::DoubleValue(d) => Some(*d),
        Value::IntValue(i) => Some(*i as f64),
        Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An attribute value as JSON, bounded in size and depth.
pub fn any_to_json(v: &AnyValue, depth: usize) -> serde_json::Value {
    if depth > 8 {
        return json!("…");
    }
    match v.value.as_ref() {
        Some(Value::StringValue(s)) => json!(clip(s, MAX_VALUE_LEN)),
        Some(Value::BoolValue(b)) => json!(b),
        Some(Value::IntValue(i)) => json!(i),
        Some(Value::DoubleValue(d)) => {
            if d.is_finite() {
                json!(d)
            } else {
                json!(d.to_string())
            }
        }
        Some(Value::ArrayValue(a)) => serde_json::Value::Array(
            a.values
                .iter()
                .take(MAX_ATTRS)
                .map(|x| any_to_json(x, depth + 1))
                .collect(),
        ),
        Some(Value::KvlistValue(l)) => attrs_to_json(&l.values, depth + 1),
        Some(Value::BytesValue(b)) => json!(hex::encode(&b[..b.len().min(MAX_VALUE_LEN / 2)])),
        _ => serde_json::Value::Null,
    }
}

pub fn attrs_to_json(attrs: &[KeyValue], depth: usize) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for kv in attrs.iter().take(MAX_ATTRS) {
        let v = kv
            .value
            .as_ref()
            .map(|v| any_to_json(v, depth))
            .unwrap_or(serde_json::Value::Null);
        m.insert(clip(&kv.key, 256), v);
    }
    serde_json::Value::Object(m)
}

struct Resource {
    service: String,
    info: ServiceInfo,
    ratio: Option<f64>,
    identity: u64,
}

fn resource(d: &Deriver, project: &str, attrs: &[KeyValue], now_ms: i64) -> Resource {
    let raw = attr_str(attrs, &["service.name"])
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown_service");
    let service = d.card().service(project, &clip(raw, 128));
    let info = ServiceInfo {
        name: service.clone(),
        language: attr_str(attrs, &["telemetry.sdk.language"])
            .unwrap_or("")
            .to_string(),
        sdk: attr_str(attrs, &["telemetry.sdk.name"]).unwrap_or("").to_string(),
        sdk_version: attr_str(attrs, &["telemetry.sdk.version"])
            .unwrap_or("")
            .to_string(),
        agent: attr_str(attrs, &["telemetry.distro.name", "telemetry.auto.name"])
            .unwrap_or("")
            .to_string(),
        agent_version: attr_str(attrs, &["telemetry.distro.version", "telemetry.auto.version"])
            .unwrap_or("")
            .to_string(),
        last_seen_ms: now_ms,
    };
    let mut h = DefaultHasher::new();
    project.hash(&mut h);
    service.hash(&mut h);
    attr_str(attrs, &["service.instance.id"]).hash(&mut h);
    attr_i64(attrs, &["process.pid"]).hash(&mut h);
    attr_str(attrs, &["host.name", "container.id"]).hash(&mut h);
    Resource {
        service,
        info,
        ratio: attr_f64(attrs, "obs_stack.sampling_ratio"),
        identity: h.finish(),
    }
}

fn note_service(batch: &mut Batch, info: ServiceInfo) {
    batch.services.insert(info.name.clone(), info);
}

fn record_red(batch: &mut Batch, key: RedKey, count: f64, hist: Hist) {
    let e = batch.red.entry(key).or_default();
    e.count += count;
    e.hist.merge(&hist);
}

pub fn traces(d: &Deriver, project: &str, mut req: ExportTraceServiceRequest, now_ms: i64) -> Batch {
    d.redactor.traces(&mut req);
    let mut batch = Batch {
        project: project.to_string(),
        ..Default::default()
    };
    for rs in &mut req.resource_spans {
        let rattrs = rs.resource.take().map(|r| r.attributes).unwrap_or_default();
        let res = resource(d, project, &rattrs, now_ms);
        note_service(&mut batch, res.info.clone());
        for ss in &mut rs.scope_spans {
            for mut span in std::mem::take(&mut ss.spans) {
                batch.n_spans += 1;
                let start_ns = span.start_time_unix_nano.min(i64::MAX as u64) as i64;
                let end_ns = span.end_time_unix_nano.min(i64::MAX as u64) as i64;
                let start_ms = start_ns / 1_000_000;
                // both ends in the window: an end in year 2262 would make a duration of
                // centuries and a RED bucket in the future
                if !d.in_window(start_ms, now_ms)
                    || !d.in_window(end_ns / 1_000_000, now_ms)
                    || span.trace_id.len() != 16
                {
                    batch.n_dropped += 1;
                    continue;
                }
                let a = &span.attributes;
                let method = attr_str(a, &["http.request.method", "http.method"])
                    .unwrap_or("")
                    .to_string();
                let http_status =
                    attr_i64(a, &["http.response.status_code", "http.status_code"]).unwrap_or(0);
                let is_http = !method.is_empty() || http_status != 0;
                let route = if is_http {
                    let r = derive::normalize_route(
                        attr_str(a, &["http.route"]),
                        attr_str(a, &["url.path", "http.target"]),
                    );
                    d.card().route(project, &res.service, &r)
                } else {
                    String::new()
                };
                let status = span.status.as_ref().map(|s| s.code).unwrap_or(0);
                let server = span.kind == 2;
                let error = status == 2 || (server && http_status >= 500);
                let mut events = Vec::new();
                for ev in span.events.iter_mut().take(MAX_ATTRS) {
                    ev.time_unix_nano = d.clamp_ns(ev.time_unix_nano, now_ms);
                    if ev.name == "exception" {
                        let kind = attr_str(&ev.attributes, &["exception.type"]).unwrap_or("");
                        let message = attr_str(&ev.attributes, &["exception.message"]).unwrap_or("");
                        let stack = attr_str(&ev.attributes, &["exception.stacktrace"]).unwrap_or("");
                        let (kind, message) = if kind.is_empty() {
                            errors::type_from_stack(stack).unwrap_or(("Error".into(), message.to_string()))
                        } else {
                            (kind.to_string(), message.to_string())
                        };
                        batch.errors.push(ErrorEvent {
                            fingerprint: errors::fingerprint(&kind, &message, stack, http_status),
                            kind: clip(&kind, 256),
                            message: clip(&message, 1024),
                            stack: clip(stack, 16 * 1024),
                            service: res.service.clone(),
                            route: if route.is_empty() {
                                attr_str(&span.attributes, &["http.route"]).map(|r| clip(r, 200))
                            } else {
                                Some(route.clone())
                            },
                            trace_id: Some(hex::encode(&span.trace_id)),
                            ts_ms: (ev.time_unix_nano / 1_000_000) as i64,
                        });
                    }
                    events.push(json!({
                        "name": clip(&ev.name, 256),
                        "time_unix_nano": ev.time_unix_nano.to_string(),
                        "attributes": attrs_to_json(&ev.attributes, 0),
                    }));
                }
                let dur_ns = (end_ns - start_ns).max(0);
                if server && is_http {
                    let ratio = derive::sampling_ratio(&span.trace_state, res.ratio);
                    let weight = 1.0 / ratio;
                    let mut h = Hist::default();
                    h.record(dur_ns as f64 / 1e6, weight as f32);
                    let key = RedKey {
                        service: res.service.clone(),
                        route: route.clone(),
                        method: clip(&method, 16),
                        class: derive::status_class(http_status).to_string(),
                        bucket_ms: derive::bucket_of(end_ns / 1_000_000),
                        // 'u': a span the framework gave no route, standing in for the
                        // metrics' `(no route)` (see store::fold_red)
                        source: if attr_str(a, &["http.route"]).is_some_and(|r| !r.is_empty()) {
                            's'
                        } else {
                            'u'
                        },
                    };
                    record_red(&mut batch, key, weight, h);
                }
                batch.spans.push(SpanRow {
                    attrs: attrs_to_json(&span.attributes, 0).to_string(),
                    events: serde_json::Value::Array(events).to_string(),
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_id: span.parent_span_id,
                    service: res.service.clone(),
                    name: clip(&span.name, 512),
                    kind: span.kind,
                    start_ns,
                    dur_ns,
                    status,
                    status_message: span.status.map(|s| clip(&s.message, 1024)).unwrap_or_default(),
                    http_status,
                    route,
                    method: clip(&method, 16),
                    error,
                });
            }
        }
    }
    batch
}

/// Which runtime series are kept (everything else that is not HTTP RED is counted, not stored).
fn is_runtime(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "process.",
        "jvm.",
        "nodejs.",
        "v8js.",
        "cpython.",
        "python.",
        "runtime.",
        "container.",
        "system.cpu.",
        "system.memory.",
        "http.check.",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

fn series_name(name: &str, attrs: &[KeyValue]) -> String {
    if attrs.is_empty() {
        return name.to_string();
    }
    let mut parts: Vec<String> = attrs
        .iter()
        .take(4)
        .map(|kv| {
            let v = kv.value.as_ref().map(|v| any_to_json(v, 6)).unwrap_or_default();
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            format!("{}={}", kv.key, clip(&v, 40))
        })
        .collect();
    parts.sort();
    clip(&format!("{name}{{{}}}", parts.join(",")), 200)
}

fn stream_key(identity: u64, metric: &str, attrs: &[KeyValue]) -> u64 {
    let mut h = DefaultHasher::new();
    identity.hash(&mut h);
    metric.hash(&mut h);
    for kv in attrs.iter().take(MAX_ATTRS) {
        kv.key.hash(&mut h);
        format!("{:?}", kv.value).hash(&mut h);
    }
    h.finish()
}

fn to_ms_factor(unit: &str, default: f64) -> f64 {
    match unit {
        "s" => 1000.0,
        "ms" => 1.0,
        "us" | "µs" => 0.001,
        "ns" => 1e-6,
        _ => default,
    }
}

pub fn metrics(d: &Deriver, project: &str, mut req: ExportMetricsServiceRequest, now_ms: i64) -> Batch {
    d.redactor.metrics(&mut req);
    let mut batch = Batch {
        project: project.to_string(),
        ..Default::default()
    };
    for rm in &mut req.resource_metrics {
        let rattrs = rm.resource.take().map(|r| r.attributes).unwrap_or_default();
        let res = resource(d, project, &rattrs, now_ms);
        note_service(&mut batch, res.info.clone());
        for sm in &mut rm.scope_metrics {
            for metric in &mut sm.metrics {
                let red_unit = match metric.name.as_str() {
                    "http.server.request.duration" => Some(to_ms_factor(&metric.unit, 1000.0)),
                    "http.server.duration" => Some(to_ms_factor(&metric.unit, 1.0)),
                    _ => None,
                };
                let runtime = is_runtime(&metric.name);
                let Some(data) = metric.data.as_mut() else {
                    continue;
                };
                match data {
                    Data::Histogram(h) => {
                        let cumulative = h.aggregation_temporality == 2;
                        for p in &mut h.data_points {
                            batch.n_points += 1;
                            let raw = RawHist::Explicit {
                                bounds: p.explicit_bounds.clone(),
                                counts: p.bucket_counts.clone(),
                            };
                            if p.bucket_counts.len() != p.explicit_bounds.len() + 1
                                && !p.bucket_counts.is_empty()
                            {
                                continue; // malformed point
                            }
                            let key = stream_key(res.identity, &metric.name, &p.attributes);
                            let sum_key = key ^ 0x5eed;
                            let sum = p.sum.unwrap_or(0.0);
                            let (delta, dsum) = cumulative_delta(
                                d,
                                cumulative,
                                key,
                                sum_key,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                raw,
                                sum,
                            );
                            let ts_ms = (p.time_unix_nano / 1_000_000) as i64;
                            if !d.in_window(ts_ms, now_ms) {
                                batch.n_dropped += 1;
                                continue;
                            }
                            let Some(delta) = delta else { continue };
                            if let Some(f) = red_unit {
                                red_point(
                                    d,
                                    &mut batch,
                                    project,
                                    &res.service,
                                    &p.attributes,
                                    ts_ms,
                                    &delta,
                                    f,
                                );
                            } else if runtime {
                                runtime_point(
                                    d,
                                    &mut batch,
                                    project,
                                    &res.service,
                                    &format!("{}.sum", metric.name),
                                    &p.attributes,
                                    &metric.unit,
                                    ts_ms,
                                    dsum,
                                );
                                runtime_point(
                                    d,
                                    &mut batch,
                                    project,
                                    &res.service,
                                    &format!("{}.count", metric.name),
                                    &p.attributes,
                                    "{count}",
                                    ts_ms,
                                    delta.count() as f64,
                                );
                            }
                        }
                    }
                    Data::ExponentialHistogram(h) => {
                        let cumulative = h.aggregation_temporality == 2;
                        for p in &mut h.data_points {
                            batch.n_points += 1;
                            let pos = p.positive.clone().unwrap_or_default();
                            if pos.bucket_counts.len() > 4096 {
                                continue;
                            }
                            let raw = RawHist::Exponential {
                                scale: p.scale,
                                zero: p.zero_count,
                                offset: pos.offset,
                                counts: pos.bucket_counts,
                            };
                            let key = stream_key(res.identity, &metric.name, &p.attributes);
                            let sum = p.sum.unwrap_or(0.0);
                            let (delta, dsum) = cumulative_delta(
                                d,
                                cumulative,
                                key,
                                key ^ 0x5eed,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                raw,
                                sum,
                            );
                            let ts_ms = (p.time_unix_nano / 1_000_000) as i64;
                            if !d.in_window(ts_ms, now_ms) {
                                batch.n_dropped += 1;
                                continue;
                            }
                            let Some(delta) = delta else { continue };
                            if let Some(f) = red_unit {
                                red_point(
                                    d,
                                    &mut batch,
                                    project,
                                    &res.service,
                                    &p.attributes,
                                    ts_ms,
                                    &delta,
                                    f,
                                );
                            } else if runtime {
                                runtime_point(
                                    d,
                                    &mut batch,
                                    project,
                                    &res.service,
                                    &format!("{}.sum", metric.name),
                                    &p.attributes,
                                    &metric.unit,
                                    ts_ms,
                                    dsum,
                                );
                            }
                        }
                    }
                    Data::Gauge(g) => {
                        for p in &g.data_points {
                            batch.n_points += 1;
                            let ts_ms = (p.time_unix_nano / 1_000_000) as i64;
                            if !d.in_window(ts_ms, now_ms) {
                                batch.n_dropped += 1;
                                continue;
                            }
                            if runtime {
                                let v = number(&p.value);
                                runtime_point(
                                    d,
                                    &mut batch,
                                    project,
                                    &res.service,
                                    &metric.name,
                                    &p.attributes,
                                    &metric.unit,
                                    ts_ms,
                                    v,
                                );
                            }
                        }
                    }
                    Data::Sum(s) => {
                        let cumulative = s.aggregation_temporality == 2;
                        for p in &s.data_points {
                            batch.n_points += 1;
                            let ts_ms = (p.time_unix_nano / 1_000_000) as i64;
                            if !d.in_window(ts_ms, now_ms) {
                                batch.n_dropped += 1;
                                continue;
                            }
                            if !runtime {
                                continue;
                            }
                            let v = number(&p.value);
                            if !s.is_monotonic {
                                runtime_point(
                                    d,
                                    &mut batch,
                                    project,
                                    &res.service,
                                    &metric.name,
                                    &p.attributes,
                                    &metric.unit,
                                    ts_ms,
                                    v,
                                );
                                continue;
                            }
                            // monotonic counters become rates per second
                            let key = stream_key(res.identity, &metric.name, &p.attributes);
                            let (delta, secs) = if cumulative {
                                let mut st = d.streams();
                                let prev = st.sums.swap(key, p.start_time_unix_nano, v);
                                let prev_time =
                                    st.sums
                                        .swap(key ^ 1, p.start_time_unix_nano, p.time_unix_nano as f64);
                                drop(st);
                                match (prev, prev_time) {
                                    (Some(pv), Some(pt)) if v >= pv => {
                                        (v - pv, (p.time_unix_nano as f64 - pt) / 1e9)
                                    }
                                    _ => continue,
                                }
                            } else {
                                (
                                    v,
                                    (p.time_unix_nano.saturating_sub(p.start_time_unix_nano)) as f64 / 1e9,
                                )
                            };
                            if secs > 0.0 {
                                let unit = if metric.unit.is_empty() {
                                    "1/s".to_string()
                                } else {
                                    format!("{}/s", metric.unit)
                                };
                                runtime_point(
                                    d,
                                    &mut batch,
                                    project,
                                    &res.service,
                                    &metric.name,
                                    &p.attributes,
                                    &unit,
                                    ts_ms,
                                    delta / secs,
                                );
                            }
                        }
                    }
                    Data::Summary(s) => batch.n_points += s.data_points.len() as u64,
                }
            }
        }
    }
    batch
}

fn number(v: &Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

/// The part of a histogram point that is new since the last one of its stream.
#[allow(clippy::too_many_arguments)]
fn cumulative_delta(
    d: &Deriver,
    cumulative: bool,
    key: u64,
    sum_key: u64,
    start_ns: u64,
    time_ns: u64,
    raw: RawHist,
    sum: f64,
) -> (Option<RawHist>, f64) {
    if !cumulative {
        return (Some(raw), sum);
    }
    let mut st = d.streams();
    let prev = st.hists.swap(key, start_ns, raw.clone());
    let prev_sum = st.sums.swap(sum_key, start_ns, sum);
    drop(st);
    match prev {
        Some(p) => match raw.minus(&p) {
            Some(delta) => (Some(delta), sum - prev_sum.unwrap_or(0.0)),
            None => (Some(raw), sum),
        },
        None if start_ns > 0 && time_ns.saturating_sub(start_ns) <= FRESH_STREAM_NS => (Some(raw), sum),
        None => (None, 0.0),
    }
}

#[allow(clippy::too_many_arguments)]
fn red_point(
    d: &Deriver,
    batch: &mut Batch,
    project: &str,
    service: &str,
    a: &[KeyValue],
    ts_ms: i64,
    delta: &RawHist,
    to_ms: f64,
) {
    let count = delta.count();
    if count == 0 {
        return;
    }
    let method = attr_str(a, &["http.request.method", "http.method"])
        .unwrap_or("")
        .to_string();
    let status = attr_i64(a, &["http.response.status_code", "http.status_code"]).unwrap_or(0);
    let (template, path) = (
        attr_str(a, &["http.route"]).filter(|r| !r.is_empty()),
        attr_str(a, &["url.path", "http.target"]).filter(|p| !p.is_empty()),
    );
    let route = if template.is_none() && path.is_none() {
        derive::NO_ROUTE.to_string()
    } else {
        derive::normalize_route(template, path)
    };
    let route = d.card().route(project, service, &route);
    let key = RedKey {
        service: service.to_string(),
        route,
        method: clip(&method, 16),
        class: derive::status_class(status).to_string(),
        bucket_ms: derive::bucket_of(ts_ms),
        source: 'm',
    };
    record_red(batch, key, count as f64, delta.to_hist(to_ms));
}

#[allow(clippy::too_many_arguments)]
fn runtime_point(
    d: &Deriver,
    batch: &mut Batch,
    project: &str,
    service: &str,
    name: &str,
    a: &[KeyValue],
    unit: &str,
    ts_ms: i64,
    value: f64,
) {
    if !value.is_finite() {
        return;
    }
    let series = series_name(name, a);
    // bounded: at most MAX_RUNTIME_SERIES series per service (shares the route cap's table)
    let capped = d.card().route(project, &format!("runtime:{service}"), &series);
    const { assert!(MAX_RUNTIME_SERIES >= derive::MAX_ROUTES_PER_SERVICE) };
    if capped == OTHER_ROUTE {
        return;
    }
    batch.runtime.push(RuntimePoint {
        service: service.to_string(),
        name: series,
        unit: clip(unit, 32),
        ts_ms,
        value,
    });
}

pub fn logs(d: &Deriver, project: &str, mut req: ExportLogsServiceRequest, now_ms: i64) -> Batch {
    d.redactor.logs(&mut req);
    let mut batch = Batch {
        project: project.to_string(),
        ..Default::default()
    };
    for rl in &mut req.resource_logs {
        let rattrs = rl.resource.take().map(|r| r.attributes).unwrap_or_default();
        let res = resource(d, project, &rattrs, now_ms);
        note_service(&mut batch, res.info.clone());
        for sl in &mut rl.scope_logs {
            for rec in &mut sl.log_records {
                batch.n_logs += 1;
                // the event time when it is a possible one, else when the SDK observed it
                let ts_ms = [rec.time_unix_nano, rec.observed_time_unix_nano]
                    .into_iter()
                    .filter(|t| *t > 0)
                    .map(|t| (t / 1_000_000) as i64)
                    .find(|t| d.in_window(*t, now_ms))
                    .unwrap_or(-1);
                let has_exc = attr(&rec.attributes, "exception.type").is_some()
                    || attr(&rec.attributes, "exception.stacktrace").is_some();
                if !(rec.severity_number >= 17 || has_exc) {
                    continue;
                }
                if !d.in_window(ts_ms, now_ms) {
                    batch.n_dropped += 1;
                    continue;
                }
                let body = rec.body.as_ref().and_then(str_of).unwrap_or("").to_string();
                let stack = attr_str(&rec.attributes, &["exception.stacktrace"])
                    .unwrap_or("")
                    .to_string();
                let (kind, message) = match attr_str(&rec.attributes, &["exception.type"]) {
                    Some(k) => (
                        k.to_string(),
                        attr_str(&rec.attributes, &["exception.message"])
                            .unwrap_or(&body)
                            .to_string(),
                    ),
                    None => errors::type_from_stack(if stack.is_empty() { &body } else { &stack })
                        .filter(|_| {
                            !stack.is_empty() || body.contains("Traceback") || body.contains("\n    at ")
                        })
                        .unwrap_or_else(|| {
                            let sev = if rec.severity_text.is_empty() {
                                "ERROR"
                            } else {
                                rec.severity_text.as_str()
                            };
                            (format!("log.{}", sev.to_lowercase()), body.clone())
                        }),
                };
                let stack = if stack.is_empty() && (body.contains("Traceback") || body.contains("\n    at "))
                {
                    body.clone()
                } else {
                    stack
                };
                let message = message.lines().next().unwrap_or("").to_string();
                batch.errors.push(ErrorEvent {
                    fingerprint: errors::fingerprint(&kind, &message, &stack, 0),
                    kind: clip(&kind, 256),
                    message: clip(&message, 1024),
                    stack: clip(&stack, 16 * 1024),
                    service: res.service.clone(),
                    route: attr_str(&rec.attributes, &["http.route"]).map(|r| clip(r, 200)),
                    trace_id: (rec.trace_id.len() == 16).then(|| hex::encode(&rec.trace_id)),
                    ts_ms,
                });
            }
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource as PResource;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn hist_req(count: u64, start: u64, time: u64) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(PResource {
                    attributes: vec![kv("service.name", Value::StringValue("shop".into()))],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "http.server.request.duration".into(),
                        unit: "s".into(),
                        data: Some(Data::Histogram(Histogram {
                            aggregation_temporality: 2,
                            data_points: vec![HistogramDataPoint {
                                attributes: vec![
                                    kv("http.route", Value::StringValue("/orders/<id>".into())),
                                    kv("http.request.method", Value::StringValue("GET".into())),
                                    kv("http.response.status_code", Value::IntValue(200)),
                                ],
                                start_time_unix_nano: start,
                                time_unix_nano: time,
                                count,
                                bucket_counts: vec![0, count, 0],
                                explicit_bounds: vec![0.01, 0.1],
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

    #[test]
    fn cumulative_histograms_become_deltas() {
        let now_ms = 1_800_000_000_000i64;
        let now = now_ms as u64 * 1_000_000;
        let d = Deriver::new(Redactor::new(None).unwrap(), 86_400_000);
        let start = now - 20_000_000_000;
        let b1 = metrics(&d, "p", hist_req(10, start, now - 10_000_000_000), now_ms);
        let b2 = metrics(&d, "p", hist_req(25, start, now), now_ms);
        let total = |b: &Batch| b.red.values().map(|v| v.count).sum::<f64>();
        assert_eq!(total(&b1), 10.0);
        assert_eq!(total(&b2), 15.0);
        let k = b2.red.keys().next().unwrap();
        assert_eq!(
            (k.route.as_str(), k.method.as_str(), k.class.as_str(), k.source),
            ("/orders/<id>", "GET", "2xx", 'm')
        );
    }

    #[test]
    fn nothing_derived_from_a_canary_request_holds_pii() {
        use crate::serve::redact::tests::{canary_logs, canary_metrics, canary_traces, survivors};
        let now_ms = 1_800_000_000_000i64;
        let now = now_ms as u64 * 1_000_000;
        let d = Deriver::new(Redactor::new(None).unwrap(), 86_400_000);
        let shop = "shop";
        let t = traces(&d, "p", canary_traces(shop, now), now_ms);
        let m = metrics(&d, "p", canary_metrics(shop, now), now_ms);
        let l = logs(&d, "p", canary_logs(shop, now), now_ms);
        // derivations did run on the canaries: spans, errors, runtime series, RED
        assert_eq!((t.spans.len(), t.errors.len()), (1, 1));
        assert!(!m.runtime.is_empty() && !m.red.is_empty() && l.errors.len() == 3);
        for b in [&t, &m, &l] {
            let text = format!("{b:?}");
            assert_eq!(survivors(text.as_bytes()), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn redaction_keeps_routes_statuses_and_service_names() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let now_ms = 1_800_000_000_000i64;
        let now = now_ms as u64 * 1_000_000;
        let d = Deriver::new(Redactor::new(None).unwrap(), 86_400_000);
        let req = |service: &str, route: &str, path: &str, status: Value| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(PResource {
                    attributes: vec![kv("service.name", Value::StringValue(service.into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        name: format!("GET {route}"),
                        kind: 2,
                        start_time_unix_nano: now,
                        end_time_unix_nano: now + 1_000_000,
                        attributes: vec![
                            kv("http.request.method", Value::StringValue("GET".into())),
                            kv("http.route", Value::StringValue(route.into())),
                            kv("url.path", Value::StringValue(path.into())),
                            kv("http.response.status_code", status),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let b = traces(
            &d,
            "p",
            req(
                "shop",
                "/orders/{id}",
                "/orders/123456789",
                Value::StringValue("503".into()),
            ),
            now_ms,
        );
        let k = b.red.keys().next().unwrap();
        assert_eq!(
            (
                k.service.as_str(),
                k.route.as_str(),
                k.method.as_str(),
                k.class.as_str()
            ),
            ("shop", "/orders/{id}", "GET", "5xx")
        );
        assert_eq!(
            (b.spans[0].name.as_str(), b.spans[0].http_status),
            ("GET /orders/{id}", 503)
        );
        // no http.route: the route comes from the path, a 9-digit id is still an id
        let b = traces(
            &d,
            "p",
            req("jane@example.com", "", "/orders/123456789", Value::IntValue(200)),
            now_ms,
        );
        let k = b.red.keys().next().unwrap();
        assert_eq!(
            (k.service.as_str(), k.route.as_str(), k.class.as_str()),
            ("****", "/orders/{id}", "2xx")
        );
    }
}
