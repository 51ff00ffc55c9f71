//! OTLP/gRPC receiver (tonic): the three collector services, gzip accepted, messages bounded
//! to [`MAX_BODY`]. A gate in front of tonic checks the `x-obs-stack-key` metadata before a
//! byte of the message is read (missing or unknown: UNAUTHENTICATED) and counts the message's
//! bytes against the memory cap as they arrive, so tonic never buffers a message nobody may
//! send or that does not fit; the cap answers UNAVAILABLE (retryable). The share taken while
//! the message arrived is handed to the handler and held until the batch is committed.
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request as HttpRequest, State};
use axum::middleware::{self, Next};
use axum::response::Response as HttpResponse;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::http::{Decoded, KEY_HEADER, off_runtime, to_batch};
use super::{MAX_BODY, Refusal, Shared};

#[derive(Clone)]
pub struct Otlp(pub Arc<Shared>);

fn status(r: &Refusal) -> Status {
    match r {
        Refusal::Auth => Status::unauthenticated("missing or unknown x-obs-stack-key"),
        Refusal::Overload => Status::unavailable("over the memory cap; retry later"),
        Refusal::Malformed(e) => Status::invalid_argument(format!("malformed OTLP: {e}")),
        Refusal::TooLarge => Status::resource_exhausted("message too large"),
        Refusal::Timeout => Status::deadline_exceeded(super::net::BodyTimeout.to_string()),
        Refusal::Unsupported(e) => Status::invalid_argument(e.clone()),
        Refusal::Internal(e) => Status::unavailable(format!("storage error: {e}")),
    }
}

impl Otlp {
    /// Memory share, derivation, commit (the gate checked the key and metered the message);
    /// returns the items dropped as out of window.
    async fn ingest<T: Message + 'static>(
        &self,
        req: Request<T>,
        wrap: impl FnOnce(T) -> Decoded + Send + 'static,
    ) -> Result<u64, Status> {
        let s = &self.0;
        let result = async {
            let admitted = req.extensions().get::<Admitted>().cloned().ok_or(Refusal::Auth)?;
            let msg = req.into_inner();
            // the share taken while the message arrived now covers the decoded message and
            // what derivation makes of it
            let mut permit = match admitted.share.take() {
                Some(p) => p,
                None => s.admit(0)?,
            };
            s.grow(&mut permit, msg.encoded_len() * 5)?;
            let shared = s.clone();
            let batch = off_runtime(move || Ok(to_batch(&shared, &admitted.project, wrap(msg)))).await?;
            let dropped = batch.n_dropped;
            s.commit(batch, permit).await?;
            Ok::<u64, Refusal>(dropped)
        }
        .await;
        result.map_err(|r| {
            s.count_refusal(&r);
            status(&r)
        })
    }
}

/// What the gate learnt: the project of the key, and the memory share of the message so far.
#[derive(Clone)]
struct Admitted {
    project: String,
    share: Arc<Share>,
}

/// A request's memory share, grown by [`Metered`] as bytes arrive, taken by the handler.
struct Share {
    shared: Arc<Shared>,
    /// bytes of memory per byte received: the buffer may double, and a gzip'd message is
    /// inflated into another before it is decoded
    factor: usize,
    received: AtomicUsize,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Share {
    fn add(&self, n: usize) -> Result<(), Refusal> {
        let total = self.received.fetch_add(n, Ordering::Relaxed) + n;
        let mut p = self.permit.lock().unwrap_or_else(PoisonError::into_inner);
        match p.as_mut() {
            Some(p) => self.shared.grow(p, total * self.factor),
            None => {
                *p = Some(self.shared.admit(total * self.factor)?);
                Ok(())
            }
        }
    }

    fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.permit.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Checks the key before tonic reads the message, and meters the message as it arrives.
async fn gate(State(shared): State<Arc<Shared>>, req: HttpRequest, next: Next) -> HttpResponse {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let key = req.headers().get(KEY_HEADER).and_then(|v| v.to_str().ok());
    let Some(project) = shared.project_for_key(key) else {
        shared.count_refusal(&Refusal::Auth);
        // answered at once, the body unread: h2 resets the stream and frees what it buffered
        return status(&Refusal::Auth).into_http();
    };
    let gzip = req
        .headers()
        .get("grpc-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let share = Arc::new(Share {
        shared,
        factor: if gzip { 10 } else { 2 },
        received: AtomicUsize::new(0),
        permit: Mutex::new(None),
    });
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(Admitted {
        project,
        share: share.clone(),
    });
    let body = Body::new(Metered { inner: body, share });
    next.run(HttpRequest::from_parts(parts, body)).await
}

/// A gRPC request body whose bytes count against the memory cap as they arrive; over the
/// cap it ends with UNAVAILABLE, which tonic answers with.
struct Metered {
    inner: Body,
    share: Arc<Share>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                let n = f.data_ref().map_or(0, |d| d.len());
                match self.share.add(n) {
                    Ok(()) => Poll::Ready(Some(Ok(f))),
                    Err(r) => Poll::Ready(Some(Err(Box::new(status(&r))))),
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let status = if super::net::is_body_timeout(&e) {
                    self.share.shared.count_refusal(&Refusal::Timeout);
                    status(&Refusal::Timeout)
                } else {
                    Status::cancelled(format!("reading the message: {e}"))
                };
                Poll::Ready(Some(Err(Box::new(status))))
            }
            other => other.map(|o| o.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[tonic::async_trait]
impl TraceService for Otlp {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let dropped = self.ingest(req, Decoded::Traces).await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (dropped > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: dropped as i64,
                error_message: "data outside the retention window was dropped".into(),
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Otlp {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let dropped = self.ingest(req, Decoded::Metrics).await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: (dropped > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: dropped as i64,
                error_message: "data outside the retention window was dropped".into(),
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Otlp {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.ingest(req, Decoded::Logs).await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

/// The three services behind the gate, as one router for [`super::net::serve`].
pub fn router(shared: Arc<Shared>) -> axum::Router {
    let o = Otlp(shared.clone());
    let traces = TraceServiceServer::new(o.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY);
    let metrics = MetricsServiceServer::new(o.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY);
    let logs = LogsServiceServer::new(o)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY);
    tonic::service::Routes::new(traces)
        .add_service(metrics)
        .add_service(logs)
        .prepare()
        .into_axum_router()
        .layer(middleware::from_fn_with_state(shared, gate))
}
