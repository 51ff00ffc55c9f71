//! OTLP/gRPC receiver (tonic): the three collector services, gzip accepted, messages bounded
//! to [`MAX_BODY`]. The ingest key comes from the `x-obs-stack-key` metadata; a missing or
//! unknown key is UNAUTHENTICATED, the memory cap answers UNAVAILABLE (retryable).
use std::future::Future;
use std::sync::Arc;

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

use super::http::{Decoded, KEY_HEADER, to_batch};
use super::{MAX_BODY, Refusal, Shared};

#[derive(Clone)]
pub struct Otlp(pub Arc<Shared>);

fn status(r: &Refusal) -> Status {
    match r {
        Refusal::Auth => Status::unauthenticated("missing or unknown x-obs-stack-key"),
        Refusal::Overload => Status::unavailable("over the memory cap; retry later"),
        Refusal::Malformed(e) => Status::invalid_argument(format!("malformed OTLP: {e}")),
        Refusal::TooLarge => Status::resource_exhausted("message too large"),
        Refusal::Unsupported(e) => Status::invalid_argument(e.clone()),
        Refusal::Internal(e) => Status::unavailable(format!("storage error: {e}")),
    }
}

impl Otlp {
    /// Auth, memory share, derivation, commit; returns the items dropped as out of window.
    async fn ingest<T: Message>(
        &self,
        req: Request<T>,
        wrap: impl FnOnce(T) -> Decoded,
    ) -> Result<u64, Status> {
        let s = &self.0;
        s.counters
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = async {
            let key = req.metadata().get(KEY_HEADER).and_then(|v| v.to_str().ok());
            let project = s.project_for_key(key).ok_or(Refusal::Auth)?;
            let msg = req.into_inner();
            // the decoded message is already in memory (bounded by MAX_BODY per stream);
            // it and what derivation makes of it count against the cap from here on
            let permit = s.admit(msg.encoded_len() * 5)?;
            let batch = to_batch(s, &project, wrap(msg));
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

pub async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let o = Otlp(shared);
    let traces = TraceServiceServer::new(o.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY);
    let metrics = MetricsServiceServer::new(o.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY);
    let logs = LogsServiceServer::new(o)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY);
    let incoming = tokio_stream_listener(listener);
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(16)
        .max_concurrent_streams(Some(16))
        .add_service(traces)
        .add_service(metrics)
        .add_service(logs)
        .serve_with_incoming_shutdown(incoming, stop)
        .await
}

fn tokio_stream_listener(
    l: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(l, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}
