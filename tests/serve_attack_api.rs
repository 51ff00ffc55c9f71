//! `obs-stack serve`'s API against a hostile client (issue K): no way in through an emptied
//! token file or a malformed key, no state change from another origin, and answers bounded
//! whatever the data (a 200,000-span trace, a long range of runtime series). The real binary
//! on 127.0.0.1; no Docker.
mod serve_support;

use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serve_support::*;

/// The API on `srv` with `req` built by `f` (no token unless `f` adds one).
fn api(srv: &Server, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", srv.api)
}

#[tokio::test]
async fn an_emptied_or_short_token_file_never_means_no_auth() {
    let mut srv = Server::start(&[]).await;
    let old = srv.token.clone();
    let c = reqwest::Client::new();
    for bad in ["", "\n", "abc", "0123456789abcdef"] {
        srv.kill9();
        std::fs::write(srv.dir.join("token"), bad).unwrap();
        srv.spawn().await;
        assert_eq!(srv.token.len(), 64, "a new token of the generated length");
        assert_ne!(srv.token, old);
        for probe in [
            api(&srv, "/api/v1/projects?token="),
            api(&srv, &format!("/api/v1/projects?token={}", bad.trim())),
        ] {
            let r = c.get(&probe).send().await.unwrap();
            assert_eq!(r.status(), 401, "{probe} with token file {bad:?}");
        }
        let r = c
            .get(api(&srv, "/api/v1/projects"))
            .header("authorization", "Bearer ")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = c
            .get(api(&srv, "/api/v1/projects"))
            .header("cookie", "obs_stack_token=")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(srv.get("/api/v1/projects").await.0, 200, "the new token works");
    }
    // `serve token` on an emptied file prints a valid new one too
    std::fs::write(srv.dir.join("token"), "").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "token", "--data-dir"])
        .arg(&srv.dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().len(), 64);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no valid access token"));
}

#[tokio::test]
async fn malformed_ingest_keys_are_refused_even_when_stored() {
    let mut srv = Server::start(&[]).await;
    // a tampered database: one project with an empty key, one with a short one
    srv.kill9();
    {
        let conn = rusqlite::Connection::open(srv.dir.join("serve.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO projects(name, ingest_key, created_ms) VALUES ('empty', '', 0), ('short', 'k', 0);",
        )
        .unwrap();
    }
    srv.spawn().await;
    let body = traces_req("web", vec![server_span(tid(1), 1, "/a", 200, now_ns(), 5, None)]).encode_to_vec();
    let c = reqwest::Client::new();
    for key in ["", " ", "k", "osk_", &srv.key[..srv.key.len() - 1]] {
        let r = c
            .post(srv.otlp("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .header("x-obs-stack-key", key)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "key {key:?}");
    }
    assert_eq!(srv.post_proto("/v1/traces", body).await.status(), 200);
}

#[tokio::test]
async fn state_changes_with_the_cookie_must_come_from_the_same_origin() {
    let srv = Server::start(&[]).await;
    let c = reqwest::Client::new();
    let cookie = format!("obs_stack_token={}", srv.token);
    let host = format!("127.0.0.1:{}", srv.api);
    let post = |origin: Option<&str>, referer: Option<&str>, name: &str| {
        let mut r = c
            .post(api(&srv, "/api/v1/projects"))
            .header("cookie", cookie.clone())
            .json(&serde_json::json!({"name": name}));
        if let Some(o) = origin {
            r = r.header("origin", o.to_string());
        }
        if let Some(o) = referer {
            r = r.header("referer", o.to_string());
        }
        r.send()
    };
    let evil = "http://evil.example";
    for (origin, referer) in [
        (Some(evil), None),
        (None, Some("http://evil.example/page")),
        (Some("null"), None),
        (None, None),
        (Some(&format!("http://{host}.evil.example")[..]), None),
    ] {
        let r = post(origin, referer, "evil").await.unwrap();
        assert_eq!(r.status(), 403, "origin {origin:?} referer {referer:?}");
    }
    let r = c
        .post(api(&srv, "/api/v1/checks"))
        .header("cookie", cookie.clone())
        .header("origin", evil)
        .json(&serde_json::json!({"project": "demo", "service": "x", "kind": "http_check", "up": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "checks too");
    // the token in the URL is no better than the cookie for a cross-site form
    let r = c
        .post(api(&srv, &format!("/api/v1/projects?token={}", srv.token)))
        .header("origin", evil)
        .json(&serde_json::json!({"name": "evil"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, v) = srv.get("/api/v1/projects").await;
    assert!(!v.to_string().contains("evil"), "{v}");
    // same origin with the cookie, and scripts with the bearer token, still work
    let r = post(Some(&format!("http://{host}")), None, "ok1").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post(None, Some(&format!("http://{host}/#/overview")), "ok2")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(api(&srv, "/api/v1/projects"))
        .bearer_auth(&srv.token)
        .json(&serde_json::json!({"name": "ok3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// `n` client spans of one trace, 1 µs apart from `t0`.
fn wide_trace(trace: [u8; 16], first: u64, n: u64, t0: u64) -> Vec<Span> {
    (first..first + n)
        .map(|i| Span {
            trace_id: trace.to_vec(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            parent_span_id: 1u64.to_be_bytes().to_vec(),
            name: "SELECT".into(),
            kind: 3,
            start_time_unix_nano: t0 + i * 1_000,
            end_time_unix_nano: t0 + i * 1_000 + 500,
            attributes: vec![s("db.statement", "SELECT * FROM items WHERE id = $1")],
            ..Default::default()
        })
        .collect()
}

#[tokio::test]
async fn a_huge_trace_is_answered_in_bounded_pages_under_the_memory_cap() {
    const CAP_MIB: u64 = 160;
    let srv = Server::start(&["--max-memory", &format!("{CAP_MIB}MiB")]).await;
    let big = tid(42);
    let t0 = now_ns() - 60_000_000_000;
    const N: u64 = 200_000;
    const PER: u64 = 20_000;
    for first in (0..N).step_by(PER as usize) {
        let body = traces_req("db-heavy", wide_trace(big, first, PER, t0)).encode_to_vec();
        let mut tries = 0;
        loop {
            let r = srv.post_proto("/v1/traces", body.clone()).await;
            if r.status() == 200 {
                break;
            }
            assert_eq!(r.status(), 503, "only the memory cap may refuse");
            tries += 1;
            assert!(tries < 200, "ingest never got a share");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let before = peak_rss(srv.pid()).unwrap();
    let id = hexid(big);
    let c = reqwest::Client::new();
    let page = |after: Option<String>| {
        let mut url = api(&srv, &format!("/api/v1/traces/{id}?project=demo"));
        if let Some(a) = after {
            url.push_str(&format!("&after={a}"));
        }
        c.get(url).bearer_auth(&srv.token).send()
    };
    // pages: bounded, in order, no span twice, the cursor carries on
    let r = page(None).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.len() < 3 << 20, "one answer is {} bytes", text.len());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["span_count"], N);
    assert_eq!(v["truncated"], true);
    let first: Vec<String> = v["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first.len(), 1000, "the default page");
    let next = v["next"].as_str().unwrap().to_string();
    let v2: serde_json::Value = page(Some(next)).await.unwrap().json().await.unwrap();
    let second: Vec<&str> = v2["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    assert_eq!(second.len(), 1000);
    assert_eq!(second[0], format!("{:016x}", 1001), "the page after the last one");
    assert!(!second.iter().any(|s| first.iter().any(|f| f == s)));
    let bad = c
        .get(api(
            &srv,
            &format!("/api/v1/traces/{id}?project=demo&after=nonsense"),
        ))
        .bearer_auth(&srv.token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // the largest page asked for is still bounded in bytes, and eight at once stay under the cap
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = api(&srv, &format!("/api/v1/traces/{id}?project=demo&limit=1000000"));
        let token = srv.token.clone();
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            (code, r.bytes().await.unwrap().len())
        }));
    }
    for t in tasks {
        let (code, len) = t.await.unwrap();
        assert!(code == 200 || code == 503, "{code}");
        assert!(len < 3 << 20, "an answer of {len} bytes");
    }
    let after = peak_rss(srv.pid()).unwrap();
    eprintln!(
        "peak RSS {} MiB after ingest, {} MiB after the fetches (cap {CAP_MIB} MiB)",
        before >> 20,
        after >> 20
    );
    assert!(
        after < (CAP_MIB + 32) << 20,
        "peak RSS {} MiB over the {CAP_MIB} MiB cap",
        after >> 20
    );
}

#[tokio::test]
async fn a_long_range_of_runtime_series_is_answered_in_bounded_points() {
    let srv = Server::start(&[]).await;
    let now_ms = (now_ns() / 1_000_000) as i64;
    // 6 h of 10 s container stats for one service: 2,160 points
    let items: Vec<serde_json::Value> = (0..2_160)
        .map(|i| {
            serde_json::json!({"project": "demo", "service": "db", "kind": "container_stats",
                "ts_ms": now_ms - 6 * 3_600_000 + i * 10_000, "cpu_percent": (i % 100) as f64})
        })
        .collect();
    let r = reqwest::Client::new()
        .post(api(&srv, "/api/v1/checks"))
        .bearer_auth(&srv.token)
        .json(&items)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (code, v) = srv
        .get(&format!(
            "/api/v1/runtime?project=demo&service=db&from={}&to={}",
            now_ms - 7 * 3_600_000,
            now_ms
        ))
        .await;
    assert_eq!(code, 200, "{v}");
    let pts = v["series"][0]["points"].as_array().unwrap();
    assert!(pts.len() <= 1000 && pts.len() >= 500, "{} points", pts.len());
    assert!(v["step"].as_i64().unwrap() > 10_000);
    // averaged, not sampled: the mean of the values is kept
    let mean: f64 = pts.iter().map(|p| p[1].as_f64().unwrap()).sum::<f64>() / pts.len() as f64;
    assert!((mean - 49.5).abs() < 3.0, "{mean}");
    // the 15-minute default keeps every 10 s point
    let (_, v) = srv.get("/api/v1/runtime?project=demo&service=db").await;
    assert_eq!(v["step"], 10_000);
}

#[tokio::test]
async fn slow_traces_come_slowest_first_and_routes_match_as_printed() {
    let srv = Server::start(&[]).await;
    let t0 = now_ns() - 30_000_000_000;
    let durs = [40u64, 900, 5, 300, 70, 1200, 15];
    let spans: Vec<Span> = durs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            server_span(
                tid(100 + i as u64),
                1,
                "/orders/{id}",
                200,
                t0 + i as u64 * 1_000_000_000,
                *d,
                None,
            )
        })
        .collect();
    assert_eq!(
        srv.post_proto("/v1/traces", traces_req("shop", spans).encode_to_vec())
            .await
            .status(),
        200
    );
    let (code, v) = srv
        .get("/api/v1/traces?project=demo&service=shop&order=slowest&limit=3")
        .await;
    assert_eq!(code, 200, "{v}");
    let got: Vec<f64> = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["duration_ms"].as_f64().unwrap())
        .collect();
    assert_eq!(got, vec![1200.0, 900.0, 300.0]);
    for route in ["/orders/{id}", "GET /orders/{id}", "GET%20/orders/%7Bid%7D"] {
        let (_, v) = srv
            .get(&format!("/api/v1/traces?project=demo&service=shop&route={route}"))
            .await;
        assert_eq!(
            v["traces"].as_array().unwrap().len(),
            durs.len(),
            "route {route}: {v}"
        );
    }
    let (_, v) = srv
        .get("/api/v1/traces?project=demo&service=shop&route=POST%20/orders/%7Bid%7D")
        .await;
    assert_eq!(v["traces"].as_array().unwrap().len(), 0, "another method: {v}");
    assert_eq!(srv.get("/api/v1/traces?project=demo&order=sideways").await.0, 400);
}

#[tokio::test]
async fn checks_carry_the_detected_language_and_the_checked_path() {
    let srv = Server::start(&[]).await;
    let now_ms = (now_ns() / 1_000_000) as i64;
    let items = serde_json::json!([
        {"project": "demo", "service": "gateway", "kind": "container_stats", "ts_ms": now_ms, "language": "go", "cpu_percent": 1.5},
        {"project": "demo", "service": "gateway", "kind": "http_check", "ts_ms": now_ms, "path": "/health", "up": true, "status": 200, "latency_ms": 2.0},
        // hostile strings are not taken
        {"project": "demo", "service": "db", "kind": "container_stats", "ts_ms": now_ms, "language": "x; DROP TABLE", "cpu_percent": 1.0},
        {"project": "demo", "service": "db", "kind": "http_check", "ts_ms": now_ms, "path": "/a}{b", "up": true, "status": 404}
    ]);
    let r = reqwest::Client::new()
        .post(api(&srv, "/api/v1/checks"))
        .bearer_auth(&srv.token)
        .json(&items)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = srv.get("/api/v1/services?project=demo").await;
    let lang = |name: &str| {
        v["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["language"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(lang("gateway").as_deref(), Some("go"), "{v}");
    assert_eq!(lang("db").as_deref(), Some(""), "{v}");
    let (_, v) = srv.get("/api/v1/runtime?project=demo").await;
    let names: Vec<&str> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"http_check.status{path=/health}"), "{names:?}");
    assert!(
        names.contains(&"http_check.status"),
        "an unusable path is left out: {names:?}"
    );
}
