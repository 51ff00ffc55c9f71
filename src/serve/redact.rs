//! PII redaction on ingest: every string of a decoded OTLP request — attribute keys and values
//! at any depth, names, descriptions, units, status messages, severity texts, bodies, scope and
//! resource fields, links, exemplars — goes through the rules before anything is derived or
//! stored. The rules are the generated collector's (`templates/defaults/redaction.yaml`, RE2
//! syntax): a match of a blocked value pattern is replaced by `****`; an attribute whose key
//! matches a blocked key pattern has its whole value masked. `<data-dir>/redaction.yaml` (same
//! format) adds patterns.
//!
//! One walker per OTLP message type ([`Redactor::traces`], [`Redactor::metrics`],
//! [`Redactor::logs`]), called once at the top of `receive`. Each message is destructured
//! without `..`, so a field added to the protocol fails to compile here until it is handled.
use std::borrow::Cow;

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use regex::{Regex, RegexSet};
use serde::Deserialize;

pub const MASK: &str = "****";
const DEFAULT_RULES: &str = "defaults/redaction.yaml";
/// Deeper `AnyValue` nesting is replaced whole (the decoders bound it too; this bounds the walk).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Default, Deserialize)]
pub struct Rules {
    #[serde(default)]
    pub blocked_values: Vec<String>,
    #[serde(default)]
    pub blocked_key_patterns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Redactor {
    values: Vec<Regex>,
    /// All value patterns as one alternation: the prefilter every string goes through. Almost
    /// no string matches, and one `is_match` over it costs less than a `RegexSet` pass (it
    /// stops at the first match and needs no per-pattern bookkeeping).
    any: Regex,
    keys: RegexSet,
}

/// The pattern as the regex crate should compile it to mean what Go's RE2 means: `\b` and
/// `\B` are ASCII word boundaries in Go but Unicode ones here, and a Unicode boundary also
/// stops the regex crate's fast DFA on any non-ASCII text (the slow fallback would then run on
/// every ingested string that has an accent in it).
fn go_syntax(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 16);
    let mut chars = p.chars().peekable();
    // inside a character class `\b` is no boundary; a `]` right after `[` or `[^` is a literal
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_start = std::mem::take(&mut class_start);
        match c {
            '\\' => match chars.next() {
                Some(b @ ('b' | 'B')) if !in_class => {
                    out.push_str("(?-u:\\");
                    out.push(b);
                    out.push(')');
                }
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                out.push('[');
                in_class = true;
                class_start = true;
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // `[:alpha:]` inside a class
                out.push('[');
                for x in chars.by_ref() {
                    out.push(x);
                    if x == ']' {
                        break;
                    }
                }
            }
            ']' if in_class && !at_start => {
                in_class = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

fn masked() -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(MASK.to_string())),
    })
}

impl Redactor {
    /// The built-in rules plus, when given, the extra rules of `extra` (YAML text).
    pub fn new(extra: Option<&str>) -> Result<Redactor> {
        let builtin = crate::assets::TEMPLATES
            .get_file(DEFAULT_RULES)
            .and_then(|f| f.contents_utf8())
            .context("the built-in redaction rules are missing")?;
        let mut rules: Rules =
            serde_yaml_ng::from_str(builtin).context("parsing the built-in redaction rules")?;
        if let Some(text) = extra {
            let more: Rules = serde_yaml_ng::from_str(text).context("parsing redaction.yaml")?;
            rules.blocked_values.extend(more.blocked_values);
            rules.blocked_key_patterns.extend(more.blocked_key_patterns);
        }
        Redactor::from_rules(&rules)
    }

    pub fn from_rules(rules: &Rules) -> Result<Redactor> {
        let values: Vec<String> = rules.blocked_values.iter().map(|p| go_syntax(p)).collect();
        // Key patterns are anchored like the collector's (a full match of the key).
        let keys: Vec<String> = rules
            .blocked_key_patterns
            .iter()
            .map(|p| format!("^(?:{})$", go_syntax(p)))
            .collect();
        let any = values
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        Ok(Redactor {
            values: rules
                .blocked_values
                .iter()
                .zip(&values)
                .map(|(p, q)| Regex::new(q).with_context(|| format!("invalid redaction pattern {p:?}")))
                .collect::<Result<Vec<_>>>()?,
            // no patterns: an empty alternation would match everything
            any: Regex::new(if values.is_empty() { "[^\\s\\S]" } else { &any })?,
            keys: RegexSet::new(&keys).context("invalid redaction key pattern")?,
        })
    }

    /// `s` with every blocked value replaced by the mask; `None` when nothing matched.
    pub fn text(&self, s: &str) -> Option<String> {
        if !self.any.is_match(s) {
            return None;
        }
        // rare: each pattern in order, as the collector applies them
        let mut out = s.to_string();
        for r in &self.values {
            if let Cow::Owned(x) = r.replace_all(&out, MASK) {
                out = x;
            }
        }
        Some(out)
    }

    pub fn in_place(&self, s: &mut String) {
        if let Some(r) = self.text(s) {
            *s = r;
        }
    }

    pub fn key_blocked(&self, key: &str) -> bool {
        self.keys.is_match(key)
    }

    pub fn traces(&self, req: &mut ExportTraceServiceRequest) {
        let ExportTraceServiceRequest { resource_spans } = req;
        for rs in resource_spans {
            let ResourceSpans {
                resource,
                scope_spans,
                schema_url,
            } = rs;
            self.resource(resource.as_mut());
            self.in_place(schema_url);
            for ss in scope_spans {
                let ScopeSpans {
                    scope,
                    spans,
                    schema_url,
                } = ss;
                self.scope(scope.as_mut());
                self.in_place(schema_url);
                for span in spans {
                    self.span(span);
                }
            }
        }
    }

    pub fn metrics(&self, req: &mut ExportMetricsServiceRequest) {
        let ExportMetricsServiceRequest { resource_metrics } = req;
        for rm in resource_metrics {
            let ResourceMetrics {
                resource,
                scope_metrics,
                schema_url,
            } = rm;
            self.resource(resource.as_mut());
            self.in_place(schema_url);
            for sm in scope_metrics {
                let ScopeMetrics {
                    scope,
                    metrics,
                    schema_url,
                } = sm;
                self.scope(scope.as_mut());
                self.in_place(schema_url);
                for m in metrics {
                    self.metric(m);
                }
            }
        }
    }

    pub fn logs(&self, req: &mut ExportLogsServiceRequest) {
        let ExportLogsServiceRequest { resource_logs } = req;
        for rl in resource_logs {
            let ResourceLogs {
                resource,
                scope_logs,
                schema_url,
            } = rl;
            self.resource(resource.as_mut());
            self.in_place(schema_url);
            for sl in scope_logs {
                let ScopeLogs {
                    scope,
                    log_records,
                    schema_url,
                } = sl;
                self.scope(scope.as_mut());
                self.in_place(schema_url);
                for rec in log_records {
                    self.log_record(rec);
                }
            }
        }
    }

    fn resource(&self, r: Option<&mut Resource>) {
        let Some(Resource {
            attributes,
            dropped_attributes_count: _,
            entity_refs,
        }) = r
        else {
            return;
        };
        self.attributes(attributes);
        for e in entity_refs {
            let EntityRef {
                schema_url,
                r#type,
                id_keys,
                description_keys,
            } = e;
            self.in_place(schema_url);
            self.in_place(r#type);
            id_keys.iter_mut().for_each(|k| self.in_place(k));
            description_keys.iter_mut().for_each(|k| self.in_place(k));
        }
    }

    fn scope(&self, s: Option<&mut InstrumentationScope>) {
        let Some(InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count: _,
        }) = s
        else {
            return;
        };
        self.in_place(name);
        self.in_place(version);
        self.attributes(attributes);
    }

    fn span(&self, span: &mut Span) {
        let Span {
            trace_id: _,
            span_id: _,
            trace_state,
            parent_span_id: _,
            flags: _,
            name,
            kind: _,
            start_time_unix_nano: _,
            end_time_unix_nano: _,
            attributes,
            dropped_attributes_count: _,
            events,
            dropped_events_count: _,
            links,
            dropped_links_count: _,
            status,
        } = span;
        self.in_place(trace_state);
        self.in_place(name);
        self.attributes(attributes);
        for ev in events {
            let Event {
                time_unix_nano: _,
                name,
                attributes,
                dropped_attributes_count: _,
            } = ev;
            self.in_place(name);
            self.attributes(attributes);
        }
        for link in links {
            let Link {
                trace_id: _,
                span_id: _,
                trace_state,
                attributes,
                dropped_attributes_count: _,
                flags: _,
            } = link;
            self.in_place(trace_state);
            self.attributes(attributes);
        }
        if let Some(Status { message, code: _ }) = status {
            self.in_place(message);
        }
    }

    fn metric(&self, m: &mut Metric) {
        let Metric {
            name,
            description,
            unit,
            metadata,
            data,
        } = m;
        self.in_place(name);
        self.in_place(description);
        self.in_place(unit);
        self.attributes(metadata);
        match data {
            None => {}
            Some(Data::Gauge(Gauge { data_points })) => {
                data_points.iter_mut().for_each(|p| self.number_point(p))
            }
            Some(Data::Sum(Sum {
                data_points,
                aggregation_temporality: _,
                is_monotonic: _,
            })) => data_points.iter_mut().for_each(|p| self.number_point(p)),
            Some(Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: _,
            })) => {
                for p in data_points {
                    let HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: _,
                        time_unix_nano: _,
                        count: _,
                        sum: _,
                        bucket_counts: _,
                        explicit_bounds: _,
                        exemplars,
                        flags: _,
                        min: _,
                        max: _,
                    } = p;
                    self.attributes(attributes);
                    self.exemplars(exemplars);
                }
            }
            Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points,
                aggregation_temporality: _,
            })) => {
                for p in data_points {
                    let ExponentialHistogramDataPoint {
                        attributes,
                        start_time_unix_nano: _,
                        time_unix_nano: _,
                        count: _,
                        sum: _,
                        scale: _,
                        zero_count: _,
                        positive: _,
                        negative: _,
                        flags: _,
                        exemplars,
                        min: _,
                        max: _,
                        zero_threshold: _,
                    } = p;
                    self.attributes(attributes);
                    self.exemplars(exemplars);
                }
            }
            Some(Data::Summary(Summary { data_points })) => {
                for p in data_points {
                    let SummaryDataPoint {
                        attributes,
                        start_time_unix_nano: _,
                        time_unix_nano: _,
                        count: _,
                        sum: _,
                        quantile_values: _,
                        flags: _,
                    } = p;
                    self.attributes(attributes);
                }
            }
        }
    }

    fn number_point(&self, p: &mut NumberDataPoint) {
        let NumberDataPoint {
            attributes,
            start_time_unix_nano: _,
            time_unix_nano: _,
            exemplars,
            flags: _,
            value: _,
        } = p;
        self.attributes(attributes);
        self.exemplars(exemplars);
    }

    fn exemplars(&self, exemplars: &mut [Exemplar]) {
        for e in exemplars {
            let Exemplar {
                filtered_attributes,
                time_unix_nano: _,
                span_id: _,
                trace_id: _,
                value: _,
            } = e;
            self.attributes(filtered_attributes);
        }
    }

    fn log_record(&self, rec: &mut LogRecord) {
        let LogRecord {
            time_unix_nano: _,
            observed_time_unix_nano: _,
            severity_number: _,
            severity_text,
            body,
            attributes,
            dropped_attributes_count: _,
            flags: _,
            trace_id: _,
            span_id: _,
            event_name,
        } = rec;
        self.in_place(severity_text);
        if let Some(b) = body {
            self.any_value(b, 0);
        }
        self.attributes(attributes);
        self.in_place(event_name);
    }

    /// Attribute lists at any level: a blocked key masks the value whole (whatever its type);
    /// the key itself goes through the value rules too (`user.jane@example.com` is PII).
    pub fn attributes(&self, attrs: &mut [KeyValue]) {
        self.key_values(attrs, 0);
    }

    fn key_values(&self, attrs: &mut [KeyValue], depth: usize) {
        for kv in attrs {
            let KeyValue {
                key,
                value,
                key_strindex: _,
            } = kv;
            if self.key_blocked(key) {
                *value = masked();
            } else if let Some(v) = value {
                self.any_value(v, depth);
            }
            self.in_place(key);
        }
    }

    pub fn any_value(&self, v: &mut AnyValue, depth: usize) {
        if depth > MAX_DEPTH {
            v.value = Some(Value::StringValue("…".to_string()));
            return;
        }
        match &mut v.value {
            Some(Value::StringValue(s)) => self.in_place(s),
            Some(Value::ArrayValue(ArrayValue { values })) => {
                for x in values {
                    self.any_value(x, depth + 1);
                }
            }
            Some(Value::KvlistValue(KeyValueList { values })) => self.key_values(values, depth + 1),
            Some(Value::BytesValue(b)) => {
                // stored hex-encoded: text in bytes is still text
                if let Some(r) = self.text(&String::from_utf8_lossy(b)) {
                    *b = r.into_bytes();
                }
            }
            // an index into a profiles string table: there is no string here
            Some(Value::StringValueStrindex(_)) => {}
            Some(Value::BoolValue(_) | Value::IntValue(_) | Value::DoubleValue(_)) | None => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{
        exemplar, exponential_histogram_data_point::Buckets, number_data_point,
        summary_data_point::ValueAtQuantile,
    };
    use prost::Message;

    /// Put in every string field of the canary requests; none of [`NEEDLES`] may survive.
    pub const CANARY: &str = "x jane.canary@example.com 3782 822463 10005 2221000000000009 \
                              /p?password=hunter2canary&x=1 078051120 Bearer canarytoken7 y";
    /// The value of a blocked key: no value pattern matches it, only the key rule masks it.
    pub const PLAIN_SECRET: &str = "plainsecretcanary";
    pub const NEEDLES: &[&str] = &[
        "canary@example",
        "822463",
        "2221000000000009",
        "hunter2canary",
        "078051120",
        "canarytoken7",
        PLAIN_SECRET,
    ];

    fn c() -> String {
        CANARY.to_string()
    }

    fn sv(v: &str) -> AnyValue {
        AnyValue {
            value: Some(Value::StringValue(v.into())),
        }
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(sv(v)),
            key_strindex: 0,
        }
    }

    fn s(kv: &KeyValue) -> &str {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => s,
            _ => "",
        }
    }

    /// An attribute list with the canary as key and value, under a blocked key, and in every
    /// `AnyValue` shape (array, kvlist, bytes, nested), plus `extra` (what derivations read).
    pub fn attrs(extra: &[(&str, &str)]) -> Vec<KeyValue> {
        let mut v: Vec<KeyValue> = extra.iter().map(|(k, x)| kv(k, x)).collect();
        v.push(kv(CANARY, CANARY));
        v.push(kv("db.password", PLAIN_SECRET));
        v.push(KeyValue {
            key: "shapes".into(),
            value: Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![
                        kv(CANARY, CANARY),
                        kv("api_key", PLAIN_SECRET),
                        KeyValue {
                            key: "list".into(),
                            value: Some(AnyValue {
                                value: Some(Value::ArrayValue(ArrayValue {
                                    values: vec![
                                        sv(CANARY),
                                        AnyValue {
                                            value: Some(Value::BytesValue(CANARY.as_bytes().to_vec())),
                                        },
                                    ],
                                })),
                            }),
                            key_strindex: 0,
                        },
                    ],
                })),
            }),
            key_strindex: 0,
        });
        v
    }

    fn resource(service: &str) -> Option<Resource> {
        Some(Resource {
            attributes: attrs(&[("service.name", service), ("telemetry.sdk.language", CANARY)]),
            dropped_attributes_count: 0,
            entity_refs: vec![EntityRef {
                schema_url: c(),
                r#type: c(),
                id_keys: vec![c()],
                description_keys: vec![c()],
            }],
        })
    }

    fn scope() -> Option<InstrumentationScope> {
        Some(InstrumentationScope {
            name: c(),
            version: c(),
            attributes: attrs(&[]),
            dropped_attributes_count: 0,
        })
    }

    /// Every message type of a trace export, every string field set to the canary. Struct
    /// literals without `..Default::default()`: a new field fails to compile here too.
    pub fn canary_traces(service: &str, now_ns: u64) -> ExportTraceServiceRequest {
        let http = [
            ("http.request.method", "GET"),
            ("http.route", CANARY),
            ("url.path", CANARY),
            ("http.response.status_code", "500"),
        ];
        let exception = [
            ("exception.type", CANARY),
            ("exception.message", CANARY),
            ("exception.stacktrace", CANARY),
        ];
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(service),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: vec![Span {
                        trace_id: vec![7; 16],
                        span_id: vec![1; 8],
                        trace_state: c(),
                        parent_span_id: vec![],
                        flags: 0,
                        name: c(),
                        kind: 2,
                        start_time_unix_nano: now_ns,
                        end_time_unix_nano: now_ns + 1_000_000,
                        attributes: attrs(&http),
                        dropped_attributes_count: 0,
                        events: vec![
                            Event {
                                time_unix_nano: now_ns,
                                name: c(),
                                attributes: attrs(&[]),
                                dropped_attributes_count: 0,
                            },
                            Event {
                                time_unix_nano: now_ns,
                                name: "exception".into(),
                                attributes: attrs(&exception),
                                dropped_attributes_count: 0,
                            },
                        ],
                        dropped_events_count: 0,
                        links: vec![Link {
                            trace_id: vec![8; 16],
                            span_id: vec![2; 8],
                            trace_state: c(),
                            attributes: attrs(&[]),
                            dropped_attributes_count: 0,
                            flags: 0,
                        }],
                        dropped_links_count: 0,
                        status: Some(Status {
                            message: c(),
                            code: 2,
                        }),
                    }],
                    schema_url: c(),
                }],
                schema_url: c(),
            }],
        }
    }

    fn exemplars(now_ns: u64) -> Vec<Exemplar> {
        vec![Exemplar {
            filtered_attributes: attrs(&[]),
            time_unix_nano: now_ns,
            span_id: vec![1; 8],
            trace_id: vec![7; 16],
            value: Some(exemplar::Value::AsDouble(1.0)),
        }]
    }

    fn number_points(now_ns: u64, extra: &[(&str, &str)]) -> Vec<NumberDataPoint> {
        vec![NumberDataPoint {
            attributes: attrs(extra),
            start_time_unix_nano: now_ns - 10_000_000_000,
            time_unix_nano: now_ns,
            exemplars: exemplars(now_ns),
            flags: 0,
            value: Some(number_data_point::Value::AsDouble(1.0)),
        }]
    }

    fn histogram_points(now_ns: u64, extra: &[(&str, &str)]) -> Vec<HistogramDataPoint> {
        vec![HistogramDataPoint {
            attributes: attrs(extra),
            start_time_unix_nano: now_ns - 1_000_000_000,
            time_unix_nano: now_ns,
            count: 3,
            sum: Some(0.3),
            bucket_counts: vec![1, 2, 0],
            explicit_bounds: vec![0.1, 1.0],
            exemplars: exemplars(now_ns),
            flags: 0,
            min: Some(0.05),
            max: Some(0.2),
        }]
    }

    /// Every metric type with the canary as name (and description, unit, metadata), and the
    /// ones derivations keep (runtime series, HTTP RED) with canary attributes.
    pub fn canary_metrics(service: &str, now_ns: u64) -> ExportMetricsServiceRequest {
        let http = [
            ("http.request.method", "GET"),
            ("http.route", CANARY),
            ("http.response.status_code", "200"),
        ];
        let metric = |name: &str, unit: &str, data: Data| Metric {
            name: name.into(),
            description: c(),
            unit: unit.into(),
            metadata: attrs(&[]),
            data: Some(data),
        };
        let gauge = || {
            Data::Gauge(Gauge {
                data_points: number_points(now_ns, &[]),
            })
        };
        let sum = |monotonic| {
            Data::Sum(Sum {
                data_points: number_points(now_ns, &[]),
                aggregation_temporality: 1,
                is_monotonic: monotonic,
            })
        };
        let histogram = |extra: &[(&str, &str)]| {
            Data::Histogram(Histogram {
                data_points: histogram_points(now_ns, extra),
                aggregation_temporality: 1,
            })
        };
        let exponential = |extra: &[(&str, &str)]| {
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: attrs(extra),
                    start_time_unix_nano: now_ns - 1_000_000_000,
                    time_unix_nano: now_ns,
                    count: 2,
                    sum: Some(0.2),
                    scale: 0,
                    zero_count: 0,
                    positive: Some(Buckets {
                        offset: -4,
                        bucket_counts: vec![1, 1],
                    }),
                    negative: None,
                    flags: 0,
                    exemplars: exemplars(now_ns),
                    min: Some(0.1),
                    max: Some(0.1),
                    zero_threshold: 0.0,
                }],
                aggregation_temporality: 1,
            })
        };
        let summary = Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                attributes: attrs(&[]),
                start_time_unix_nano: now_ns - 1_000_000_000,
                time_unix_nano: now_ns,
                count: 1,
                sum: 1.0,
                quantile_values: vec![ValueAtQuantile {
                    quantile: 0.5,
                    value: 1.0,
                }],
                flags: 0,
            }],
        });
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(service),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope(),
                    metrics: vec![
                        metric(CANARY, CANARY, gauge()),
                        metric(CANARY, CANARY, sum(true)),
                        metric(CANARY, CANARY, histogram(&[])),
                        metric(CANARY, CANARY, exponential(&[])),
                        metric(CANARY, CANARY, summary),
                        metric("process.canary.gauge", CANARY, gauge()),
                        metric("process.canary.updown", CANARY, sum(false)),
                        metric("process.canary.counter", CANARY, sum(true)),
                        metric("process.canary.histogram", CANARY, histogram(&[])),
                        metric("process.canary.exponential", CANARY, exponential(&[])),
                        metric("http.server.request.duration", "s", histogram(&http)),
                        metric("http.server.duration", "ms", exponential(&http)),
                    ],
                    schema_url: c(),
                }],
                schema_url: c(),
            }],
        }
    }

    /// Log records with the canary everywhere, the body in every `AnyValue` shape.
    pub fn canary_logs(service: &str, now_ns: u64) -> ExportLogsServiceRequest {
        let record = |body: AnyValue, extra: &[(&str, &str)]| LogRecord {
            time_unix_nano: now_ns,
            observed_time_unix_nano: now_ns,
            severity_number: 17,
            severity_text: c(),
            body: Some(body),
            attributes: attrs(extra),
            dropped_attributes_count: 0,
            flags: 0,
            trace_id: vec![7; 16],
            span_id: vec![1; 8],
            event_name: c(),
        };
        let shapes = attrs(&[]).pop().and_then(|kv| kv.value).unwrap();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(service),
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
                    ],
                    schema_url: c(),
                }],
                schema_url: c(),
            }],
        }
    }

    pub fn survivors(haystack: &[u8]) -> Vec<&'static str> {
        NEEDLES
            .iter()
            .copied()
            .filter(|n| haystack.windows(n.len()).any(|w| w == n.as_bytes()))
            .collect()
    }

    #[test]
    fn every_string_of_every_message_is_redacted() {
        let r = Redactor::new(None).unwrap();
        let now = 1_800_000_000_000_000_000;
        let mut t = canary_traces(CANARY, now);
        let mut m = canary_metrics(CANARY, now);
        let mut l = canary_logs(CANARY, now);
        // the canaries are there to be found
        for bytes in [t.encode_to_vec(), m.encode_to_vec(), l.encode_to_vec()] {
            assert_eq!(survivors(&bytes), NEEDLES);
        }
        r.traces(&mut t);
        r.metrics(&mut m);
        r.logs(&mut l);
        assert_eq!(survivors(&t.encode_to_vec()), Vec::<&str>::new(), "{t:?}");
        assert_eq!(survivors(&m.encode_to_vec()), Vec::<&str>::new(), "{m:?}");
        assert_eq!(survivors(&l.encode_to_vec()), Vec::<&str>::new(), "{l:?}");
    }

    #[test]
    fn the_collector_rules_apply() {
        let r = Redactor::new(None).unwrap();
        let mut attrs = vec![
            kv("user.email", "write to jane.doe@example.com now"),
            kv("card", "4111 1111 1111 1111"),
            kv("ssn", "123-45-6789"),
            kv("http.request.header.authorization", "Basic abc"),
            kv("db.password", "hunter2"),
            kv("http.route", "/orders/{id}"),
            kv("user:jane@example.com", "x"),
        ];
        r.attributes(&mut attrs);
        assert_eq!(s(&attrs[0]), "write to **** now");
        assert_eq!(s(&attrs[1]), "****");
        assert_eq!(s(&attrs[2]), "****");
        assert_eq!(s(&attrs[3]), "****");
        assert_eq!(s(&attrs[4]), "****");
        assert_eq!(s(&attrs[5]), "/orders/{id}");
        assert_eq!((attrs[6].key.as_str(), s(&attrs[6])), ("user:****", "x"));
        assert_eq!(r.text("Bearer abc.def"), Some("****".to_string()));
    }

    /// Input → output of the built-in value patterns, applied in order. The same table was
    /// run through Go's regexp (the collector's engine) with the same results.
    const CASES: &[(&str, &str)] = &[
        ("jane.doe@example.com", "****"),
        ("4111 1111 1111 1111", "****"),
        ("3782 822463 10005", "****"),
        ("378282246310005", "****"),
        ("2221000000000009", "****"),
        ("5555 5555 5555 4444", "****"),
        ("2720 9999 9999 9999", "****"),
        ("2721 9999 9999 9999", "2721 9999 9999 9999"),
        ("ssn 078-05-1120", "ssn ****"),
        ("ssn 078051120", "ssn****"),
        ("ssn=078051120.", "ssn****."),
        (
            "000123456 666123456 900123456 123006789 123450000",
            "000123456 666123456 900123456 123006789 123450000",
        ),
        ("123456789 987654321 223456789", "**** 987654321****"),
        ("12:00:00.123456789+00:00", "12:00:00.123456789+00:00"),
        ("/orders/123456789", "/orders/123456789"),
        ("id 1234567890 x12345678", "id 1234567890 x12345678"),
        ("/login?password=hunter2&next=/home", "/login?****&next=/home"),
        ("https://x/cb?access_token=abc.def&x=1", "https://x/cb?****&x=1"),
        ("api_key=AKIA123", "****"),
        ("GET /search?q=shoes&secret=s3cr3t", "GET /search?q=shoes&****"),
        ("auth=xyz", "****"),
        (
            "author=jane&tokens=5&max_tokens=9",
            "author=jane&tokens=5&max_tokens=9",
        ),
        ("{\"password\": \"hunter2\"}", "{\"****\"}"),
        (
            "UPDATE users SET password = 'hunter2' WHERE id = 1",
            "UPDATE users SET ****' WHERE id = 1",
        ),
        ("X-Amz-Signature=abcdef", "****"),
        ("/orders/{id}", "/orders/{id}"),
        ("GET /orders/{id}", "GET /orders/{id}"),
        ("Bearer abc.def", "****"),
        ("Ünïcödé jane@example.com ok", "Ünïcödé **** ok"),
        ("café 078051120", "café****"),
        ("PHPSESSID=abc; path=/", "****; path=/"),
        ("POST /v1/auth:refresh", "POST /v1/auth:refresh"),
        ("http.response.status_code", "http.response.status_code"),
        ("503", "503"),
    ];

    #[test]
    fn value_patterns_mask_what_they_should_and_no_more() {
        let r = Redactor::new(None).unwrap();
        for (input, want) in CASES {
            let got = r.text(input).unwrap_or_else(|| input.to_string());
            assert_eq!(&got, want, "{input:?}");
        }
    }

    #[test]
    fn blocked_keys_mask_points_and_logs_too() {
        let r = Redactor::new(None).unwrap();
        let now = 1_800_000_000_000_000_000;
        let mut m = canary_metrics("shop", now);
        r.metrics(&mut m);
        let Some(Data::Gauge(g)) = &m.resource_metrics[0].scope_metrics[0].metrics[0].data else {
            panic!()
        };
        let a = &g.data_points[0].attributes;
        assert_eq!(s(a.iter().find(|kv| kv.key == "db.password").unwrap()), MASK);
        let mut l = canary_logs("shop", now);
        r.logs(&mut l);
        let a = &l.resource_logs[0].scope_logs[0].log_records[0].attributes;
        assert_eq!(s(a.iter().find(|kv| kv.key == "db.password").unwrap()), MASK);
        // the service name is not PII: it stays; an e-mail as service name does not
        assert_eq!(
            s(&m.resource_metrics[0].resource.as_ref().unwrap().attributes[0]),
            "shop"
        );
    }

    #[test]
    fn go_boundaries_become_ascii_ones() {
        assert_eq!(go_syntax(r"\bx\B"), r"(?-u:\b)x(?-u:\B)");
        assert_eq!(go_syntax(r"[\b]\\b"), r"[\b]\\b");
        assert_eq!(
            go_syntax(r"[]\b]\b[^]x][[:alpha:]\b]\b"),
            r"[]\b](?-u:\b)[^]x][[:alpha:]\b](?-u:\b)"
        );
        // Unicode text does not stop the ASCII boundary (nor make it match inside a word)
        let r = Redactor::from_rules(&Rules {
            blocked_values: vec![r"\bsecret\b".into()],
            blocked_key_patterns: vec![],
        })
        .unwrap();
        assert_eq!(r.text("é secret é"), Some("é **** é".into()));
        assert_eq!(r.text("xsecret"), None);
    }

    #[test]
    fn no_rules_mask_nothing() {
        let r = Redactor::from_rules(&Rules::default()).unwrap();
        assert_eq!(r.text("jane@example.com"), None);
        assert!(!r.key_blocked("password"));
    }

    #[test]
    fn extra_rules_extend() {
        let r = Redactor::new(Some("blocked_values: [\"ACME-[0-9]+\"]\n")).unwrap();
        assert_eq!(r.text("id ACME-123"), Some("id ****".into()));
    }
}
