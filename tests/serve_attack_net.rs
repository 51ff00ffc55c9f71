//! `obs-stack serve` attacked at the network edge (issue K items 2 and 7, and fairness): the
//! built binary on free 127.0.0.1 ports, hostile clients on raw TCP and raw HTTP/2, a good
//! client alongside. Limits checked are the ones docs/serve.md states ("Limits").
mod serve_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serve_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// What peak RSS may exceed the memory cap by: the cap bounds what requests hold, the
/// allocator keeps some of what was freed, and the debug build's own code is larger.
const RSS_MARGIN: u64 = 24 << 20;

fn small_batch(n: u64) -> Vec<u8> {
    traces_req(
        "good",
        vec![server_span(tid(n), n + 1, "/ok", 200, now_ns(), 3, None)],
    )
    .encode_to_vec()
}

async fn good_grpc(srv: &Server, n: u64) -> Result<(), String> {
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", srv.grpc))
        .await
        .map_err(|e| e.to_string())?;
    let mut req = tonic::Request::new(traces_req(
        "good-grpc",
        vec![server_span(tid(n), n + 1, "/g", 200, now_ns(), 3, None)],
    ));
    req.metadata_mut()
        .insert("x-obs-stack-key", srv.key.parse().unwrap());
    client.export(req).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The good client's three calls, each within `limit`.
async fn good_client_gets_through(srv: &Server, n: u64, limit: Duration) {
    let r = tokio::time::timeout(limit, srv.post_proto("/v1/traces", small_batch(n)))
        .await
        .expect("OTLP/HTTP ingest timed out");
    assert_eq!(r.status(), 200);
    tokio::time::timeout(limit, good_grpc(srv, n + 1))
        .await
        .expect("gRPC ingest timed out")
        .expect("gRPC ingest");
    let (code, _) = tokio::time::timeout(limit, srv.get("/api/v1/stats"))
        .await
        .expect("API timed out");
    assert_eq!(code, 200);
}

/// Opens `streams` gRPC calls on one HTTP/2 connection, each announcing a message of
/// `msg_len` bytes and sending all but the last MiB of it (never finishing); returns the
/// grpc-status of each call answered within `wait` (None: not answered).
async fn unfinished_grpc_messages(
    port: u16,
    key: Option<&str>,
    streams: usize,
    msg_len: usize,
    wait: Duration,
) -> Vec<Option<String>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut calls = vec![];
    for _ in 0..streams {
        let mut client = client.clone().ready().await.unwrap();
        let mut req = http::Request::post(format!("http://127.0.0.1:{port}{EXPORT}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(k) = key {
            req = req.header("x-obs-stack-key", k);
        }
        let (resp, mut body) = client.send_request(req.body(()).unwrap(), false).unwrap();
        calls.push(tokio::spawn(async move {
            let mut prefix = vec![0u8];
            prefix.extend_from_slice(&(msg_len as u32).to_be_bytes());
            let _ = body.send_data(Bytes::from(prefix), false);
            // only as much as the server's flow-control window lets through
            let mut left = msg_len - (1 << 20);
            let sending = async {
                while left > 0 {
                    body.reserve_capacity(left.min(256 << 10));
                    match futures_util::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                        Some(Ok(cap)) if cap > 0 => {
                            let c = cap.min(left);
                            if body.send_data(Bytes::from(vec![b'x'; c]), false).is_err() {
                                break;
                            }
                            left -= c;
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            };
            let answer = async {
                let r = resp.await.ok()?;
                let status = r.headers().get("grpc-status").cloned();
                match status {
                    Some(s) => Some(s.to_str().unwrap_or("").to_string()),
                    None => {
                        let mut b = r.into_body();
                        while b.data().await.is_some_and(|d| d.is_ok()) {}
                        let t = b.trailers().await.ok()??;
                        Some(t.get("grpc-status")?.to_str().unwrap_or("").to_string())
                    }
                }
            };
            tokio::pin!(sending);
            tokio::pin!(answer);
            tokio::time::timeout(wait, async {
                tokio::select! {
                    a = &mut answer => a,
                    () = &mut sending => answer.await,
                }
            })
            .await
            .ok()
            .flatten()
        }));
    }
    let mut out = vec![];
    for c in calls {
        out.push(c.await.unwrap());
    }
    driver.abort();
    out
}

/// One OTLP/HTTP request with a chunked body (no Content-Length) of `total` bytes; the
/// answer's status code (0: none).
async fn chunked_post(port: u16, key: &str, total: usize) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return 0;
    };
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nx-obs-stack-key: {key}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    if s.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let chunk = vec![b'z'; 256 << 10];
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        let mut frame = format!("{n:x}\r\n").into_bytes();
        frame.extend_from_slice(&chunk[..n]);
        frame.extend_from_slice(b"\r\n");
        if s.write_all(&frame).await.is_err() {
            break;
        }
        sent += n;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    std::str::from_utf8(&buf[..got])
        .ok()
        .and_then(|l| l.get(9..12))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn bodies_count_against_the_cap_as_they_arrive_and_keys_are_checked_first() {
    const CAP: u64 = 96 << 20;
    let srv = Server::start(&["--max-memory", "96MiB"]).await;
    let pid = srv.pid();

    // gRPC without a key: 16 unfinished 16 MiB messages on one connection, answered
    // UNAUTHENTICATED before their bytes are read
    let answers = unfinished_grpc_messages(srv.grpc, None, 16, 16 << 20, Duration::from_secs(20)).await;
    let unauth = answers.iter().filter(|a| a.as_deref() == Some("16")).count();
    let peak = peak_rss(pid).unwrap();
    eprintln!(
        "gRPC, no key: {unauth}/16 UNAUTHENTICATED, peak RSS {} MiB",
        peak >> 20
    );
    assert_eq!(unauth, 16, "{answers:?}");
    assert!(peak < CAP + RSS_MARGIN, "peak RSS {} MiB", peak >> 20);
    assert!(srv.stats().await["refused"]["auth"].as_u64().unwrap() >= 16);

    // gRPC with the key: the same, now read and metered; over the cap UNAVAILABLE (counted)
    let answers =
        unfinished_grpc_messages(srv.grpc, Some(&srv.key), 16, 16 << 20, Duration::from_secs(20)).await;
    let unavailable = answers.iter().filter(|a| a.as_deref() == Some("14")).count();
    let peak = peak_rss(pid).unwrap();
    let overload = srv.stats().await["refused"]["overload"].as_u64().unwrap();
    eprintln!(
        "gRPC, key: {unavailable}/16 UNAVAILABLE, overload counted {overload}, peak RSS {} MiB",
        peak >> 20
    );
    assert!(unavailable > 0, "{answers:?}");
    assert!(overload >= unavailable as u64);
    assert!(peak < CAP + RSS_MARGIN, "peak RSS {} MiB", peak >> 20);

    // OTLP/HTTP with the key: 30 chunked 15 MiB bodies at once
    let mut tasks = vec![];
    for _ in 0..30 {
        let (port, key) = (srv.http, srv.key.clone());
        tasks.push(tokio::spawn(
            async move { chunked_post(port, &key, 15 << 20).await },
        ));
    }
    let mut codes = vec![];
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let peak = peak_rss(pid).unwrap();
    let overload2 = srv.stats().await["refused"]["overload"].as_u64().unwrap();
    let refused = codes.iter().filter(|c| **c == 503).count() as u64;
    eprintln!(
        "HTTP chunked: codes {codes:?}, overload counted {}, peak RSS {} MiB",
        overload2 - overload,
        peak >> 20
    );
    assert!(refused > 0, "{codes:?}");
    assert!(overload2 - overload >= refused);
    assert!(peak < CAP + RSS_MARGIN, "peak RSS {} MiB", peak >> 20);

    // and a good client still gets its small batches in
    good_client_gets_through(&srv, 100, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn idle_and_slow_connections_do_not_starve_good_clients() {
    raise_own_open_files();
    // the server under the common default soft limit of 1024 open files
    let srv = Server::start_with_open_files(&[], 1024).await;

    // more idle connections to the OTLP/HTTP port than its limit, and than 1024
    let mut idle = vec![];
    for _ in 0..1100 {
        match TcpStream::connect(("127.0.0.1", srv.http)).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    // slowloris: request heads that never end, a header line a second
    let mut slow = vec![];
    for _ in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", srv.http)).await.unwrap();
        s.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let opened = Instant::now();
    let trickle = tokio::spawn(async move {
        let mut closed_after = vec![None; slow.len()];
        let mut buf = [0u8; 256];
        for round in 0..30u32 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for (i, s) in slow.iter_mut().enumerate() {
                if closed_after[i].is_some() {
                    continue;
                }
                let line = format!("x-slow-{round}: 1\r\n");
                let gone = s.write_all(line.as_bytes()).await.is_err()
                    || matches!(
                        tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await,
                        Ok(Ok(_)) | Ok(Err(_))
                    );
                if gone {
                    closed_after[i] = Some(opened.elapsed());
                }
            }
            if closed_after.iter().all(Option::is_some) {
                break;
            }
        }
        closed_after
    });

    // a good client's ingest (HTTP and gRPC) and API calls go through within a few seconds
    for n in 0..3 {
        good_client_gets_through(&srv, 1000 + n * 10, Duration::from_secs(5)).await;
    }

    // slow heads are closed by the server within the header timeout (10 s), with margin
    let closed_after = trickle.await.unwrap();
    eprintln!("slowloris connections closed after {closed_after:?}");
    for c in &closed_after {
        let c = c.expect("a slowloris connection was still open after 30 s");
        assert!(c < Duration::from_secs(16), "closed only after {c:?}");
    }
    drop(idle);
}

#[tokio::test]
async fn one_huge_request_does_not_stall_other_senders() {
    let srv = Server::start(&[]).await;
    // a non-ASCII attribute value, sent again and again by one client: 1 MiB, which takes
    // the debug build seconds to redact (10 MB, as in the issue, takes it 30-50 s)
    let mut span = server_span(tid(1), 1, "/heavy", 200, now_ns(), 1, None);
    span.attributes.push(s("blob", &"é".repeat(512 << 10)));
    let heavy = traces_req("heavy", vec![span]).encode_to_vec();
    let url = srv.otlp("/v1/traces");
    let key = srv.key.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let (stop, done) = (stop.clone(), done.clone());
        tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut took = vec![];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = c
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .header("x-obs-stack-key", &key)
                    .body(heavy.clone())
                    .send()
                    .await;
                took.push((r.map(|r| r.status().as_u16()).unwrap_or(0), t.elapsed()));
                done.fetch_add(1, Ordering::Relaxed);
            }
            took
        })
    };
    // small batches at a steady pace (each on its own, so a slow one does not delay the
    // next), for as long as it takes the heavy client to get two requests through
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut small = vec![];
    let started = Instant::now();
    let mut n = 0u64;
    while small.len() < 30 || done.load(Ordering::Relaxed) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the heavy client got nowhere"
        );
        tick.tick().await;
        n += 1;
        let (url, key, body) = (srv.otlp("/v1/traces"), srv.key.clone(), small_batch(5000 + n));
        small.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-protobuf")
                .header("x-obs-stack-key", key)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), t.elapsed())
        }));
    }
    let window = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = vec![];
    for t in small {
        let (code, took) = t.await.unwrap();
        assert_eq!(code, 200);
        lat.push(took);
    }
    let heavy_took = hammer.await.unwrap();
    lat.sort();
    let p95 = lat[lat.len() * 95 / 100];
    eprintln!(
        "{} small batches beside heavy requests {heavy_took:?}: p50 {:?} p95 {p95:?} max {:?} over {window:?}",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    // 1 s: a small batch takes milliseconds; the heavy request's redaction takes seconds
    assert!(p95 < Duration::from_secs(1), "p95 {p95:?}");
}
