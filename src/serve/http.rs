//! OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf or JSON,
//! optionally gzip. Bodies are bounded before and after decompression (413), answers follow
//! the OTLP spec: 200 with an (empty or partial-success) response in the request's encoding,
//! 400 malformed, 401 missing/unknown key, 415 unsupported type or encoding, 503 with
//! Retry-After when over the memory cap.
use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::{MAX_BODY, Refusal, Shared, receive, store};

pub const KEY_HEADER: &str = "x-obs-stack-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/v1/traces",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| handle(s, h, b, Signal::Traces)),
        )
        .route(
            "/v1/metrics",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| handle(s, h, b, Signal::Metrics)),
        )
        .route(
            "/v1/logs",
            post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| handle(s, h, b, Signal::Logs)),
        )
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// The encoding a Content-Type names.
pub fn encoding_of(content_type: Option<&str>) -> Option<Encoding> {
    let ct = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    match ct.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// Inflates gzip, refusing more than `max` bytes of output (a zip bomb is a 413, not an OOM).
pub fn gunzip_bounded(data: &[u8], max: usize) -> Result<Vec<u8>, Refusal> {
    gunzip_metered(data, max, |_| Ok(()))
}

/// [`gunzip_bounded`], telling `grow` the output's size (what its buffer may take) before
/// each step, so the output counts against the memory cap as it is made.
pub fn gunzip_metered(
    data: &[u8],
    max: usize,
    mut grow: impl FnMut(usize) -> Result<(), Refusal>,
) -> Result<Vec<u8>, Refusal> {
    const STEP: usize = 256 << 10;
    let mut out = Vec::with_capacity((data.len() * 4).min(max));
    let mut dec = flate2::read::GzDecoder::new(data).take(max as u64 + 1);
    loop {
        grow((out.len() + STEP).max(out.capacity()) * 2)?;
        let before = out.len();
        (&mut dec)
            .take(STEP as u64)
            .read_to_end(&mut out)
            .map_err(|e| Refusal::Malformed(format!("gzip: {e}")))?;
        if out.len() > max {
            return Err(Refusal::TooLarge);
        }
        if out.len() == before {
            return Ok(out);
        }
    }
}

/// A decoded request of any signal.
pub enum Decoded {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

/// Decodes a body (pure: used by the receiver and the fuzz target).
pub fn decode(signal: Signal, enc: Encoding, body: &[u8]) -> Result<Decoded, Refusal> {
    let bad = |e: String| Refusal::Malformed(e);
    Ok(match (signal, enc) {
        (Signal::Traces, Encoding::Protobuf) => {
            Decoded::Traces(ExportTraceServiceRequest::decode(body).map_err(|e| bad(e.to_string()))?)
        }
        (Signal::Metrics, Encoding::Protobuf) => {
            Decoded::Metrics(ExportMetricsServiceRequest::decode(body).map_err(|e| bad(e.to_string()))?)
        }
        (Signal::Logs, Encoding::Protobuf) => {
            Decoded::Logs(ExportLogsServiceRequest::decode(body).map_err(|e| bad(e.to_string()))?)
        }
        (Signal::Traces, Encoding::Json) => {
            Decoded::Traces(serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?)
        }
        (Signal::Metrics, Encoding::Json) => {
            Decoded::Metrics(serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?)
        }
        (Signal::Logs, Encoding::Json) => {
            Decoded::Logs(serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?)
        }
    })
}

/// Decoded request → batch (redaction and derivations). CPU-heavy for a big request: call it
/// on the blocking pool ([`off_runtime`]), never on the runtime's threads.
pub fn to_batch(shared: &Shared, project: &str, decoded: Decoded) -> receive::Batch {
    let now = store::now_ms();
    let d = &shared.deriver;
    match decoded {
        Decoded::Traces(r) => receive::traces(d, project, r, now),
        Decoded::Metrics(r) => receive::metrics(d, project, r, now),
        Decoded::Logs(r) => receive::logs(d, project, r, now),
    }
}

/// Runs decoding and derivation on the blocking pool: a request that takes seconds of CPU
/// (megabytes of text through the redaction patterns) must not hold a runtime thread, or
/// every other connection on it waits.
pub async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Refusal::Internal(format!("ingest task failed: {e}")))?
}

fn refusal_response(r: &Refusal) -> Response {
    match r {
        Refusal::Auth => (StatusCode::UNAUTHORIZED, "missing or unknown x-obs-stack-key\n").into_response(),
        Refusal::Overload => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "over the memory cap; retry later\n",
        )
            .into_response(),
        Refusal::Malformed(e) => (StatusCode::BAD_REQUEST, format!("malformed OTLP: {e}\n")).into_response(),
        Refusal::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            format!("{}\n", super::net::BodyTimeout),
        )
            .into_response(),
        Refusal::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {MAX_BODY} bytes\n"),
        )
            .into_response(),
        Refusal::Unsupported(e) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{e}\n")).into_response(),
        Refusal::Internal(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            format!("storage error: {e}\n"),
        )
            .into_response(),
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    shared
        .counters
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match ingest(&shared, &headers, body, signal).await {
        Ok((enc, dropped)) => success(signal, enc, dropped),
        Err(r) => {
            shared.count_refusal(&r);
            refusal_response(&r)
        }
    }
}

async fn ingest(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
    signal: Signal,
) -> Result<(Encoding, u64), Refusal> {
    let (enc, gzip, project, declared, mut permit) = match admit(shared, headers) {
        Ok(v) => v,
        Err(r) => {
            // read (and drop) what the client is sending, so it sees our answer instead of a
            // broken pipe; never for a body already known to be too large
            if r != Refusal::TooLarge {
                drain(body.into_data_stream()).await;
            }
            return Err(r);
        }
    };
    let raw = read_body(shared, body, &mut permit, declared).await?;
    // the body plus its decoded structures and the rows made of them must fit in the share
    shared.grow(&mut permit, raw.len() * 6)?;
    let s = shared.clone();
    let (batch, permit) = off_runtime(move || {
        let data: Bytes = if gzip {
            let d = gunzip_metered(&raw, MAX_BODY, |n| s.grow(&mut permit, raw.len() + n))?;
            s.grow(&mut permit, raw.len() + d.len() * 6)?;
            Bytes::from(d)
        } else {
            raw
        };
        let decoded = decode(signal, enc, &data)?;
        drop(data);
        Ok((to_batch(&s, &project, decoded), permit))
    })
    .await?;
    let dropped = batch.n_dropped;
    shared.commit(batch, permit).await?;
    Ok((enc, dropped))
}

/// Reads a body whose bytes count against the memory cap as they arrive: a body without
/// Content-Length was admitted with a small share, and grows it chunk by chunk (the buffer
/// may double as it grows, so twice what arrived). Over the cap: what was read is dropped,
/// the rest read and discarded, and the answer is 503.
async fn read_body(
    shared: &Shared,
    body: Body,
    permit: &mut tokio::sync::OwnedSemaphorePermit,
    declared: Option<usize>,
) -> Result<Bytes, Refusal> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(MAX_BODY));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body_error(&e))?;
        let total = buf.len() + chunk.len();
        if total > MAX_BODY {
            return Err(Refusal::TooLarge);
        }
        if let Err(r) = shared.grow(permit, total.max(buf.capacity()) * 2) {
            drop(buf);
            drain(stream).await;
            return Err(r);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

fn body_error(e: &axum::Error) -> Refusal {
    if super::net::is_body_timeout(e) {
        Refusal::Timeout
    } else {
        Refusal::Malformed(format!("reading the body: {e}"))
    }
}

/// Checks made before reading the body: key, content type and encoding, declared length,
/// and the body's share of the memory cap.
#[allow(clippy::type_complexity)]
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<
    (
        Encoding,
        bool,
        String,
        Option<usize>,
        tokio::sync::OwnedSemaphorePermit,
    ),
    Refusal,
> {
    let key = headers.get(KEY_HEADER).and_then(|v| v.to_str().ok());
    let project = shared.project_for_key(key).ok_or(Refusal::Auth)?;
    let enc =
        encoding_of(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())).ok_or_else(|| {
            Refusal::Unsupported("Content-Type must be application/x-protobuf or application/json".into())
        })?;
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        None | Some("") | Some("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(e) => {
            return Err(Refusal::Unsupported(format!(
                "Content-Encoding {e} is not supported (gzip is)"
            )));
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(Refusal::TooLarge);
    }
    // the body and what decoding makes of it count against the memory cap before it is read
    let permit = shared.admit(
        declared
            .map(|n| n * if gzip { 10 } else { 6 })
            .unwrap_or(64 << 10),
    )?;
    Ok((enc, gzip, project, declared, permit))
}

/// Consumes up to MAX_BODY bytes of a body chunk by chunk, keeping none of it.
async fn drain(mut stream: axum::body::BodyDataStream) {
    use futures_util::StreamExt;
    let mut seen = 0usize;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > MAX_BODY {
                break;
            }
        }
    })
    .await;
}

fn json_or_empty<T: serde::Serialize>(r: &T, dropped: u64) -> String {
    if dropped == 0 {
        return "{}".to_string();
    }
    serde_json::to_string(r).unwrap_or_else(|_| "{}".into())
}

fn success(signal: Signal, enc: Encoding, dropped: u64) -> Response {
    let msg = "data outside the retention window was dropped".to_string();
    let (proto, json): (Vec<u8>, String) = match signal {
        Signal::Traces => {
            let r = ExportTraceServiceResponse {
                partial_success: (dropped > 0).then_some(ExportTracePartialSuccess {
                    rejected_spans: dropped as i64,
                    error_message: msg,
                }),
            };
            (r.encode_to_vec(), json_or_empty(&r, dropped))
        }
        Signal::Metrics => {
            let r = ExportMetricsServiceResponse {
                partial_success: (dropped > 0).then_some(ExportMetricsPartialSuccess {
                    rejected_data_points: dropped as i64,
                    error_message: msg,
                }),
            };
            (r.encode_to_vec(), json_or_empty(&r, dropped))
        }
        Signal::Logs => {
            let r = ExportLogsServiceResponse {
                partial_success: None,
            };
            (r.encode_to_vec(), "{}".to_string())
        }
    };
    match enc {
        Encoding::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            proto,
        )
            .into_response(),
        Encoding::Json => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_gzip_bounds() {
        assert_eq!(
            encoding_of(Some("application/x-protobuf")),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            encoding_of(Some("application/json; charset=utf-8")),
            Some(Encoding::Json)
        );
        assert_eq!(encoding_of(Some("text/plain")), None);
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&vec![0u8; 100_000]).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(gunzip_bounded(&z, 1000), Err(Refusal::TooLarge));
        assert_eq!(gunzip_bounded(&z, 200_000).unwrap().len(), 100_000);
        assert!(matches!(gunzip_bounded(b"nope", 10), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn otlp_json_as_the_sdks_write_it() {
        // ids in hex, int64 as strings, enums as ints, intValue as a string
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
          "scopeSpans":[{"scope":{"name":"x"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
          "spanId":"eee19b7ec3c1b174","parentSpanId":"","name":"GET /","kind":2,
          "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
          "attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}],
          "status":{"code":1}}]}]}]}"#;
        let Ok(Decoded::Traces(r)) = decode(Signal::Traces, Encoding::Json, body) else {
            panic!("decode")
        };
        let s = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.kind, 2);
        assert_eq!(s.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert!(decode(Signal::Traces, Encoding::Json, b"{\"resourceSpans\":[{").is_err());
        assert!(decode(Signal::Traces, Encoding::Protobuf, &[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn exponential_and_old_semconv_histograms_in_json() {
        let now_ms = crate::serve::store::now_ms();
        let t = (now_ms as u64) * 1_000_000;
        let body = format!(
            r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"api"}}}}]}},
            "scopeMetrics":[{{"metrics":[
              {{"name":"http.server.request.duration","unit":"s","exponentialHistogram":{{"aggregationTemporality":1,
                "dataPoints":[{{"attributes":[{{"key":"http.route","value":{{"stringValue":"/a"}}}},
                  {{"key":"http.request.method","value":{{"stringValue":"GET"}}}},
                  {{"key":"http.response.status_code","value":{{"intValue":"200"}}}}],
                  "startTimeUnixNano":"{s}","timeUnixNano":"{t}","count":"6","sum":0.3,"scale":3,"zeroCount":"0",
                  "positive":{{"offset":-35,"bucketCounts":["2","4"]}}}}]}}}},
              {{"name":"http.server.duration","unit":"ms","histogram":{{"aggregationTemporality":1,
                "dataPoints":[{{"attributes":[{{"key":"http.route","value":{{"stringValue":"/b"}}}},
                  {{"key":"http.method","value":{{"stringValue":"POST"}}}},
                  {{"key":"http.status_code","value":{{"intValue":503}}}}],
                  "startTimeUnixNano":"{s}","timeUnixNano":"{t}","count":"3","sum":30,
                  "bucketCounts":["0","3","0"],"explicitBounds":[5,10]}}]}}}}
            ]}}]}}]}}"#,
            s = t - 10_000_000_000
        );
        let Ok(Decoded::Metrics(r)) = decode(Signal::Metrics, Encoding::Json, body.as_bytes()) else {
            panic!("decode")
        };
        let d = receive::Deriver::new(crate::serve::redact::Redactor::new(None).unwrap(), 86_400_000);
        let b = receive::metrics(&d, "p", r, now_ms);
        assert_eq!(b.n_points, 2);
        let a = b.red.iter().find(|(k, _)| k.route == "/a").unwrap();
        assert_eq!(a.1.count, 6.0);
        // 2^(-35/8) s = 48 ms … 2^(-33/8) s = 57 ms
        let p50 = a.1.hist.quantile(0.5).unwrap();
        assert!((45.0..60.0).contains(&p50), "{p50}");
        let (k, v) = b.red.iter().find(|(k, _)| k.route == "/b").unwrap();
        assert_eq!(
            (k.method.as_str(), k.class.as_str(), v.count),
            ("POST", "5xx", 3.0)
        );
        let p50 = v.hist.quantile(0.5).unwrap();
        assert!((5.0..=10.0).contains(&p50), "{p50}");
    }
}
