//! Serving one listener: our own accept loop in front of hyper, the same for the OTLP/HTTP,
//! OTLP/gRPC and API listeners. It owns what a connection may cost before any handler runs:
//! a bound on connections per listener (so a flood on one port never starves another, nor
//! runs the process out of file descriptors), timeouts for slow headers and idle
//! connections, and a deadline for request bodies that trickle. The figures and what a
//! client sees at each are in docs/serve.md ("Limits").
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tower::ServiceExt;

/// An HTTP/1 request head must be complete this long after the server starts waiting for it
/// (which includes an idle keep-alive connection waiting for its next request).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress for this long is closed (HTTP/2 with GOAWAY);
/// also bounds a connection that never sends a byte.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request body must not pause longer than this between chunks …
pub const BODY_GAP: Duration = Duration::from_secs(10);
/// … and must be complete this long after its headers.
pub const BODY_TIME: Duration = Duration::from_secs(60);
/// A connection asked to close gracefully is dropped after this if it has not finished.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Largest HTTP/1 read buffer, so also the largest request head.
const H1_MAX_BUF: usize = 64 << 10;
/// HTTP/2 flow-control windows: what a peer may send before we read it, per stream and per
/// connection; unread data (before the key is checked, or beyond the memory cap) is bounded
/// by these, per connection.
const H2_STREAM_WINDOW: u32 = 256 << 10;
const H2_CONN_WINDOW: u32 = 512 << 10;
const H2_MAX_HEADER_LIST: u32 = 64 << 10;

/// Per-listener settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at once; see [`Registry::admit`] for what happens at the limit.
    pub max_conns: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams: u32,
    /// gRPC: refuse HTTP/1.
    pub http2_only: bool,
}

/// Connections per listener for an open-files limit of `nofile`: fixed ceilings, shrunk to
/// fit a low limit (with room for the data files and the process's own descriptors), so the
/// three listeners together never run the process out of descriptors.
pub fn conn_limits(nofile: u64) -> (usize, usize, usize) {
    let avail = nofile.saturating_sub(64) as usize;
    let part = |ceil: usize, tenths: usize| (avail * tenths / 10).clamp(8, ceil);
    (part(512, 5), part(256, 3), part(128, 2))
}

/// Raises the soft open-files limit to the hard one (the default soft limit, often 1024, is a
/// few hundred idle clients away); returns the limit now in force.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise_open_files_limit() -> u64 {
    #[cfg(unix)]
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        r.rlim_cur as u64
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

/// One open connection, as the accept loop sees it.
struct Conn {
    in_flight: AtomicUsize,
    last_active: Mutex<Instant>,
    evict: Notify,
}

impl Conn {
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    fn idle_for(&self) -> Duration {
        if self.busy() {
            return Duration::ZERO;
        }
        self.last_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }
}

/// A request in progress on a connection; ends when its response body is dropped (sent).
struct Active(Arc<Conn>);

impl Active {
    fn new(c: Arc<Conn>) -> Active {
        c.in_flight.fetch_add(1, Ordering::AcqRel);
        c.touch();
        Active(c)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Registry {
    max: usize,
    next: AtomicUsize,
    conns: Mutex<HashMap<usize, Arc<Conn>>>,
}

impl Registry {
    /// A slot for a new connection. At the limit, the connection that has been idle longest
    /// (no request in progress: keep-alive, never sent a request, or still sending its
    /// headers) is closed to make room, as nginx reuses keep-alive connections; when every
    /// connection is busy with a request, `None`: the new one is closed at once.
    fn admit(&self) -> Option<(usize, Arc<Conn>)> {
        let mut m = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if m.len() >= self.max {
            let victim = m
                .iter()
                .filter(|(_, c)| !c.busy())
                .max_by_key(|(_, c)| c.idle_for())
                .map(|(id, _)| *id)?;
            if let Some(c) = m.remove(&victim) {
                c.evict.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            evict: Notify::new(),
        });
        m.insert(id, c.clone());
        Some((id, c))
    }

    fn remove(&self, id: usize) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// Serves `app` on `listener` until `stop`, then closes every connection gracefully and
/// returns when they are gone.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(H1_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(limits.max_streams)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_send_buf_size(256 << 10);
    if limits.http2_only {
        builder = builder.http2_only();
    }
    let builder = Arc::new(builder);
    let reg = Arc::new(Registry {
        max: limits.max_conns.max(1),
        next: AtomicUsize::new(0),
        conns: Mutex::new(HashMap::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut full_since: Option<Instant> = None;
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut stop => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // out of descriptors or memory, or a connection reset before we took it:
                // keep serving the connections we have
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((id, conn)) = reg.admit() else {
            if full_since.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                eprintln!(
                    "obs-stack serve: {} connections on {}, all busy; closing new ones",
                    reg.max,
                    listener.local_addr().map(|a| a.to_string()).unwrap_or_default()
                );
                full_since = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            builder.clone(),
            stream,
            app.clone(),
            reg.clone(),
            id,
            conn,
            stop_rx.clone(),
            alive_tx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: tokio::net::TcpStream,
    app: Router,
    reg: Arc<Registry>,
    id: usize,
    conn: Arc<Conn>,
    mut stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let c = conn.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let active = Active::new(c.clone());
        let req = req.map(|b| Body::new(TimedBody::new(b)));
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await?;
            Ok::<_, Infallible>(resp.map(|b| {
                Body::new(Tracked {
                    inner: b,
                    _active: active,
                })
            }))
        }
    });
    let served = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(served);
    let mut closing: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = served.as_mut() => break,
            () = conn.evict.notified() => {
                if !conn.busy() {
                    break;
                }
                served.as_mut().graceful_shutdown();
                closing.get_or_insert_with(Instant::now);
            }
            _ = stop.changed(), if closing.is_none() => {
                served.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = tick.tick() => match closing {
                Some(t) if t.elapsed() >= CLOSE_GRACE && !conn.busy() => break,
                None if conn.idle_for() >= IDLE_TIMEOUT => {
                    served.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                _ => {}
            },
        }
    }
    reg.remove(id);
}

/// A response body that keeps its request counted as in progress until it is sent.
struct Tracked {
    inner: Body,
    _active: Active,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body stalled: no data for [`BODY_GAP`], or not complete [`BODY_TIME`] after
/// the headers.
#[derive(Debug)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stalled (no data for {} s, or not complete {} s after the headers)",
            BODY_GAP.as_secs(),
            BODY_TIME.as_secs()
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// Whether an error (or one it wraps) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut src = Some(e);
    while let Some(s) = src {
        if s.is::<BodyTimeout>() {
            return true;
        }
        src = s.source();
    }
    false
}

/// A request body with the gap and total deadlines; the clock runs only while the handler
/// waits for data, so a body nobody reads costs nothing.
struct TimedBody {
    inner: Incoming,
    end: Instant,
    gap: Pin<Box<tokio::time::Sleep>>,
    failed: bool,
}

impl TimedBody {
    fn new(inner: Incoming) -> TimedBody {
        let now = Instant::now();
        TimedBody {
            inner,
            end: now + BODY_TIME,
            gap: Box::pin(tokio::time::sleep(BODY_GAP)),
            failed: false,
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                let next = (Instant::now() + BODY_GAP).min(self.end);
                self.gap.as_mut().reset(next.into());
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if self.gap.as_mut().poll(cx).is_ready() {
                    self.failed = true;
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_fit_the_descriptor_limit() {
        assert_eq!(conn_limits(1_048_576), (512, 256, 128));
        let (h, g, a) = conn_limits(1024);
        assert!(h + g + a + 64 <= 1024, "{h} {g} {a}");
        assert_eq!(conn_limits(0), (8, 8, 8));
    }

    #[tokio::test]
    async fn at_the_limit_the_longest_idle_connection_makes_room() {
        let reg = Registry {
            max: 2,
            next: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
        };
        let (_, a) = reg.admit().unwrap();
        let (_, b) = reg.admit().unwrap();
        let busy_a = Active::new(a.clone());
        // b is idle: it goes, and is told so
        let (_, _c) = reg.admit().unwrap();
        tokio::time::timeout(Duration::from_secs(1), b.evict.notified())
            .await
            .expect("b evicted");
        let busy_c = Active::new(_c.clone());
        // a and c busy: a new connection is refused
        assert!(reg.admit().is_none());
        drop(busy_a);
        drop(busy_c);
        assert!(reg.admit().is_some());
    }
}
