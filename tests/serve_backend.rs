//! `obs-stack serve` end to end: the built binary on free 127.0.0.1 ports, a temp data dir,
//! OTLP over HTTP (protobuf, JSON, gzip) and gRPC, answers read back from the JSON API.
mod serve_support;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serve_support::*;

const PY_STACK: &str = "Traceback (most recent call last):\n  File \"/usr/local/lib/python3.11/site-packages/flask/app.py\", line 1473, in wsgi_app\n    response = self.full_dispatch_request()\n  File \"/app/app.py\", line 31, in error_handler\n    raise RuntimeError(\"boom\")\nRuntimeError: boom";

#[tokio::test]
async fn ingest_over_http_and_answer_red_traces_errors() {
    let srv = Server::start(&[]).await;
    let now = now_ns();
    // metrics, protobuf: 100 GET /orders/<id> 200 in (50, 75] ms, 7 GET /error 500 in (5, 10] ms
    // (points in the past: one 1 s ahead lands in the next 10 s bucket, after `to`, one run
    // in ten)
    let m = duration_metric(
        "shop",
        &[("/orders/<id>", 200, 100, 4), ("/error", 500, 7, 1)],
        now - 30_000_000_000,
        now - 2_000_000_000,
    );
    let r = srv.post_proto("/v1/metrics", m.encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    // the next cumulative point adds 20 requests: only the delta counts
    let m = duration_metric(
        "shop",
        &[("/orders/<id>", 200, 120, 4), ("/error", 500, 7, 1)],
        now - 30_000_000_000,
        now - 1_000_000_000,
    );
    assert_eq!(
        srv.post_proto("/v1/metrics", m.encode_to_vec()).await.status(),
        200
    );

    // traces, gzip protobuf, with an exception event naming the handler
    let t = traces_req(
        "shop",
        vec![
            server_span(tid(1), 1, "/error", 500, now, 8, Some(("RuntimeError", PY_STACK))),
            server_span(tid(2), 2, "/orders/<id>", 200, now, 60, None),
        ],
    );
    let r = reqwest::Client::new()
        .post(srv.otlp("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .header("x-obs-stack-key", &srv.key)
        .body(gzip(&t.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // traces, OTLP/JSON as the Node.js SDK writes it (hex ids, int64 as strings, enum ints)
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"front"}}}},
        {{"key":"telemetry.sdk.language","value":{{"stringValue":"nodejs"}}}}]}},
        "scopeSpans":[{{"scope":{{"name":"@opentelemetry/instrumentation-http","version":"0.57.0"}},"spans":[
        {{"traceId":"{}","spanId":"00000000000000aa","name":"GET","kind":2,
          "startTimeUnixNano":"{now}","endTimeUnixNano":"{}",
          "attributes":[{{"key":"http.method","value":{{"stringValue":"GET"}}}},{{"key":"http.target","value":{{"stringValue":"/users/12345?x=1"}}}},
                        {{"key":"http.status_code","value":{{"intValue":"200"}}}},{{"key":"user.email","value":{{"stringValue":"jane@example.com"}}}}],
          "status":{{"code":0}}}}]}}]}}]}}"#,
        hexid(tid(3)),
        now + 20_000_000
    );
    let r = reqwest::Client::new()
        .post(srv.otlp("/v1/traces"))
        .header("content-type", "application/json")
        .header("x-obs-stack-key", &srv.key)
        .body(json)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{}");

    // an error log with a Node.js stack
    let log = error_log(
        "front",
        now,
        "Error: payment failed\n    at charge (/app/server.js:40:11)\n    at Layer.handle (/app/node_modules/express/lib/router/layer.js:95:5)",
    );
    assert_eq!(
        srv.post_proto("/v1/logs", log.encode_to_vec()).await.status(),
        200
    );

    // services: shop from metrics, front from spans
    let (code, v) = srv.get("/api/v1/services?project=demo").await;
    assert_eq!(code, 200, "{v}");
    let svcs = v["services"].as_array().unwrap();
    let shop = svcs.iter().find(|s| s["name"] == "shop").unwrap();
    assert_eq!(shop["source"], "metrics");
    assert_eq!(shop["calls"], 127.0);
    assert_eq!(shop["errors"], 7.0);
    assert_eq!(shop["language"], "python");
    let front = svcs.iter().find(|s| s["name"] == "front").unwrap();
    assert_eq!(front["source"], "spans");
    assert_eq!(front["language"], "nodejs");

    // routes: exact counts, p50 of the known-latency route
    let (_, v) = srv.get("/api/v1/routes?project=demo&service=shop").await;
    let routes = v["routes"].as_array().unwrap();
    let orders = routes.iter().find(|r| r["route"] == "/orders/<id>").unwrap();
    assert_eq!(orders["calls"], 120.0);
    assert_eq!(orders["errors"], 0.0);
    let p50 = orders["p50_ms"].as_f64().unwrap();
    assert!((50.0..=75.0).contains(&p50), "p50 {p50}");
    let err = routes.iter().find(|r| r["route"] == "/error").unwrap();
    assert_eq!(err["calls"], 7.0);
    assert_eq!(err["errors"], 7.0);
    assert_eq!(err["status_classes"]["5xx"], 7.0);
    // the raw path collapsed to a template
    let (_, v) = srv.get("/api/v1/routes?project=demo&service=front").await;
    assert_eq!(v["routes"][0]["route"], "/users/{id}", "{v}");

    // series
    let (_, v) = srv
        .get("/api/v1/series?project=demo&service=shop&route=/error&step=60000")
        .await;
    let total: f64 = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["errors"].as_f64().unwrap())
        .sum();
    assert_eq!(total, 7.0);

    // traces: list, filters, one trace, redaction
    let (_, v) = srv.get("/api/v1/traces?project=demo&error=true").await;
    let ts = v["traces"].as_array().unwrap();
    assert_eq!(ts.len(), 1, "{v}");
    assert_eq!(ts[0]["trace_id"], hexid(tid(1)));
    let (_, v) = srv.get("/api/v1/traces?project=demo&min_duration_ms=50").await;
    assert_eq!(v["traces"].as_array().unwrap().len(), 1);
    let (code, v) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(3))))
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["spans"][0]["attributes"]["user.email"], "****");
    assert_eq!(v["spans"][0]["kind"], "server");
    let (code, _) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(99))))
        .await;
    assert_eq!(code, 404);

    // errors: grouped, the stack names the handler, sample trace ids
    let (_, v) = srv.get("/api/v1/errors?project=demo").await;
    let groups = v["errors"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{v}");
    let g = groups.iter().find(|g| g["type"] == "RuntimeError").unwrap();
    assert_eq!(g["services"][0], "shop");
    assert_eq!(g["routes"][0], "/error");
    let (code, d) = srv
        .get(&format!(
            "/api/v1/errors/{}?project=demo",
            g["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(code, 200);
    assert!(d["stack_trace"].as_str().unwrap().contains("error_handler"));
    assert_eq!(d["sample_trace_ids"][0], hexid(tid(1)));
    let node = groups.iter().find(|g| g["type"] == "Error").unwrap();
    assert_eq!(node["message"], "payment failed");

    // stats
    let st = srv.stats().await;
    assert_eq!(st["received"]["spans"], 3);
    assert_eq!(st["received"]["points"], 4);
    assert_eq!(st["received"]["logs"], 1);

    // /metrics
    let body = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/metrics", srv.api))
        .bearer_auth(&srv.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains(r#"obs_stack_http_requests_total{project="demo",service="shop",route="/error",method="GET",status_class="5xx"} 7"#), "{body}");
    assert!(body.contains("obs_stack_ingest_received_spans_total 3"));
}

#[tokio::test]
async fn grpc_gzip_and_keys() {
    let srv = Server::start(&[]).await;
    let now = now_ns();
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", srv.grpc))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let mut req = tonic::Request::new(traces_req(
        "grpc-svc",
        vec![server_span(tid(7), 1, "/a", 200, now, 5, None)],
    ));
    req.metadata_mut()
        .insert("x-obs-stack-key", srv.key.parse().unwrap());
    client.export(req).await.expect("export with the key");
    let no_key = tonic::Request::new(traces_req("grpc-svc", vec![]));
    let e = client.export(no_key).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(traces_req("grpc-svc", vec![]));
    wrong
        .metadata_mut()
        .insert("x-obs-stack-key", "osk_wrong".parse().unwrap());
    assert_eq!(
        client.export(wrong).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    let (_, v) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(7))))
        .await;
    assert_eq!(v["spans"][0]["service"], "grpc-svc");

    // a project added while the server runs is accepted without a restart, and scoped
    let key2 = project_add(&srv.dir, "other");
    let mut req = tonic::Request::new(traces_req(
        "other-svc",
        vec![server_span(tid(8), 1, "/b", 200, now, 5, None)],
    ));
    req.metadata_mut()
        .insert("x-obs-stack-key", key2.parse().unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.export(req).await.expect("new project's key");
    let (code, _) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(8))))
        .await;
    assert_eq!(code, 404, "scoped by project");
    let (code, _) = srv
        .get(&format!("/api/v1/traces/{}?project=other", hexid(tid(8))))
        .await;
    assert_eq!(code, 200);
    assert_eq!(srv.stats().await["refused"]["auth"], 2);

    // admin API: idempotent, same key as the CLI
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/projects", srv.api))
        .bearer_auth(&srv.token)
        .json(&serde_json::json!({"name": "other"}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["ingest_key"], key2);
}

#[tokio::test]
async fn api_needs_the_token() {
    let srv = Server::start(&[]).await;
    let base = format!("http://127.0.0.1:{}", srv.api);
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{base}/api/v1/stats"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(format!("{base}/metrics")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        c.get(format!("{base}/api/v1/stats"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(format!("{base}/healthz")).send().await.unwrap().status(),
        200
    );
    let r = c
        .get(format!("{base}/api/v1/stats?token={}", srv.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with(&format!("obs_stack_token={}", srv.token)));
    let r = c
        .get(format!("{base}/api/v1/services?project=demo"))
        .header("cookie", format!("obs_stack_token={}", srv.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(srv.get("/api/v1/services").await.0, 400, "project is required");
    assert_eq!(srv.get("/api/v1/services?project=nope").await.0, 404);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(srv.dir.join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // checks from `up`
    let r = c
        .post(format!("{base}/api/v1/checks"))
        .bearer_auth(&srv.token)
        .json(&serde_json::json!({"project": "demo", "service": "nginx", "kind": "http_check", "ts_ms": now_ns() / 1_000_000, "up": true, "latency_ms": 12.5, "status_code": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = srv.get("/api/v1/runtime?project=demo&service=nginx").await;
    let names: Vec<&str> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"http_check.latency_ms"), "{v}");
}

#[tokio::test]
async fn hostile_input_is_refused_and_counted_never_a_crash() {
    let srv = Server::start(&[]).await;
    let c = reqwest::Client::new();
    let post = |ct: &str, body: Vec<u8>, key: Option<&str>| {
        let mut r = c
            .post(srv.otlp("/v1/traces"))
            .header("content-type", ct.to_string())
            .body(body);
        if let Some(k) = key {
            r = r.header("x-obs-stack-key", k.to_string());
        }
        r.send()
    };
    let key = srv.key.as_str();
    assert_eq!(
        post("application/x-protobuf", vec![], None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post("application/x-protobuf", vec![], Some("osk_nope"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post("text/plain", b"hi".to_vec(), Some(key))
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(
        post("application/x-protobuf", vec![0xff; 64], Some(key))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("application/json", b"{\"resourceSpans\": [".to_vec(), Some(key))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("application/json", b"[1,2,3]".to_vec(), Some(key))
            .await
            .unwrap()
            .status(),
        400
    );
    // invalid UTF-8 inside a protobuf string field (span name, field 5 of Span)
    let mut span = vec![0x0a, 16];
    span.extend([1u8; 16]);
    span.extend([0x2a, 3, 0xff, 0xfe, 0xfd]);
    let mut scope = vec![0x12, span.len() as u8];
    scope.extend(&span);
    let mut rs = vec![0x12, scope.len() as u8];
    rs.extend(&scope);
    let mut req = vec![0x0a, rs.len() as u8];
    req.extend(&rs);
    assert_eq!(
        post("application/x-protobuf", req, Some(key))
            .await
            .unwrap()
            .status(),
        400
    );
    // deep nesting: JSON arrays 10k deep, and kvlists in protobuf 200 deep
    let deep = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"a","value":{}1{}}}]}}}}]}}"#,
        "{\"arrayValue\":{\"values\":[".repeat(5000),
        "]}}".repeat(5000)
    );
    assert_eq!(
        post("application/json", deep.into_bytes(), Some(key))
            .await
            .unwrap()
            .status(),
        400
    );
    let mut v = vec![0x18, 0x01]; // AnyValue{int_value: 1}
    for _ in 0..200 {
        // KeyValue{key:"k", value: v} inside KeyValueList inside AnyValue.kvlist_value
        let mut kv = vec![0x0a, 1, b'k', 0x12];
        push_len(&mut kv, &v);
        let mut list = vec![0x0a];
        push_len_raw(&mut list, &kv);
        let mut any = vec![0x32];
        push_len_raw(&mut any, &list);
        v = any;
    }
    let mut kv = vec![0x0a, 1, b'a', 0x12];
    push_len(&mut kv, &v);
    let mut res = vec![0x0a];
    push_len_raw(&mut res, &kv);
    let mut rs = vec![0x0a];
    push_len_raw(&mut rs, &res);
    let mut req = vec![0x0a];
    push_len_raw(&mut req, &rs);
    let code = post("application/x-protobuf", req, Some(key))
        .await
        .unwrap()
        .status()
        .as_u16();
    assert!(code == 400 || code == 200, "{code}");
    // a 100 MB body: 413 (declared length), and a gzip bomb: 413
    let big = vec![0u8; 100 << 20];
    let r = post("application/x-protobuf", big, Some(key)).await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    let bomb = gzip(&vec![0u8; 64 << 20]);
    let r = c
        .post(srv.otlp("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .header("x-obs-stack-key", key)
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = c
        .post(srv.otlp("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "br")
        .header("x-obs-stack-key", key)
        .body(vec![1, 2])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // still alive, every refusal counted
    assert_eq!(
        reqwest::get(format!("http://127.0.0.1:{}/healthz", srv.api))
            .await
            .unwrap()
            .status(),
        200
    );
    let st = srv.stats().await;
    assert_eq!(st["refused"]["auth"], 2, "{st}");
    assert!(st["refused"]["malformed"].as_u64().unwrap() >= 5, "{st}");
    assert!(st["refused"]["too_large"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["refused"]["unsupported"], 2, "{st}");
}

fn push_len(out: &mut Vec<u8>, data: &[u8]) {
    push_len_raw(out, data)
}

fn push_len_raw(out: &mut Vec<u8>, data: &[u8]) {
    let mut n = data.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(data);
}

#[tokio::test]
async fn route_cardinality_is_bounded() {
    let srv = Server::start(&[]).await;
    let now = now_ns();
    // 20,000 unique raw paths that do not look like ids, as spans without http.route
    for chunk in 0..4 {
        let spans = (0..5000u64)
            .map(|n| {
                let mut sp = server_span(tid(chunk * 5000 + n), n + 1, "", 200, now, 1, None);
                sp.attributes = vec![
                    s("http.request.method", "GET"),
                    s("url.path", &format!("/page/w{}x", chunk * 5000 + n)),
                    i("http.response.status_code", 200),
                ];
                sp
            })
            .collect();
        assert_eq!(
            srv.post_proto("/v1/traces", traces_req("many", spans).encode_to_vec())
                .await
                .status(),
            200
        );
    }
    let (_, v) = srv.get("/api/v1/routes?project=demo&service=many").await;
    let routes = v["routes"].as_array().unwrap();
    assert!(routes.len() <= 201, "{}", routes.len());
    let other = routes
        .iter()
        .find(|r| r["route"] == "__other__")
        .expect("overflow bucket");
    assert_eq!(other["calls"], 20_000.0 - 200.0);
}

#[tokio::test]
async fn kill_9_keeps_everything_acknowledged() {
    let mut srv = Server::start(&[]).await;
    let now = now_ns();
    let mut acked = 0u64;
    // keep sending while a killer fires at a random-ish moment
    let pid = srv.pid();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    });
    for b in 0..10_000u64 {
        let spans = (0..50u64)
            .map(|n| server_span(tid(b * 50 + n), n + 1, "/k", 200, now, 1, None))
            .collect();
        let body = traces_req("dur", spans).encode_to_vec();
        let r = reqwest::Client::new()
            .post(srv.otlp("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .header("x-obs-stack-key", &srv.key)
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => acked += 50,
            _ => break,
        }
    }
    killer.await.unwrap();
    srv.kill9();
    assert!(acked > 0);
    srv.spawn().await;
    let st = srv.stats().await;
    let stored: u64 = st["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spans"].as_u64().unwrap())
        .sum();
    assert!(stored >= acked, "acknowledged {acked}, stored {stored}");
    assert!(st["received"]["spans"].as_u64().unwrap() >= acked);
    // and the last acknowledged trace is there, whole
    let last = acked / 50 - 1;
    let (code, _) = srv
        .get(&format!(
            "/api/v1/traces/{}?project=demo",
            hexid(tid(last * 50 + 49))
        ))
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn size_cap_evicts_the_oldest_partitions() {
    let srv = Server::start(&["--max-size", "3MiB"]).await;
    let hour = 3_600_000_000_000u64;
    let now = now_ns();
    let attrs_pad = "x".repeat(1500);
    for h in (0..6u64).rev() {
        let start = now - h * hour;
        let spans = (0..1000u64)
            .map(|n| {
                let mut sp = server_span(tid(h * 10_000 + n), n + 1, "/big", 200, start, 1, None);
                sp.attributes.push(s("pad", &attrs_pad));
                sp
            })
            .collect();
        assert_eq!(
            srv.post_proto("/v1/traces", traces_req("big", spans).encode_to_vec())
                .await
                .status(),
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = srv.stats().await;
    let parts = st["partitions"].as_array().unwrap();
    assert!(parts.len() < 6, "{st}");
    assert!(st["dropped"]["retention"].as_u64().unwrap() >= 1000, "{st}");
    assert!(st["db_size_bytes"].as_i64().unwrap() <= 3 << 20, "{st}");
    // newest kept, oldest gone
    let (code, _) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(5))))
        .await;
    assert_eq!(code, 200, "newest trace kept");
    let (code, _) = srv
        .get(&format!(
            "/api/v1/traces/{}?project=demo",
            hexid(tid(5 * 10_000 + 5))
        ))
        .await;
    assert_eq!(code, 404, "oldest trace evicted");
    // data older than the retention is refused as out of window (partial success)
    let old = traces_req(
        "big",
        vec![server_span(
            tid(999_999),
            1,
            "/old",
            200,
            now - 30 * hour,
            1,
            None,
        )],
    );
    let r = srv.post_proto("/v1/traces", old.encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    assert!(srv.stats().await["dropped"]["out_of_window"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn load_far_beyond_capacity_is_shed_under_the_memory_cap() {
    let srv = Server::start(&["--max-memory", "96MiB"]).await;
    let now = now_ns();
    let pad = "y".repeat(2000);
    // ~8 MB bodies, 24 at once, several rounds
    let spans: Vec<_> = (0..4000u64)
        .map(|n| {
            let mut sp = server_span(tid(n), n + 1, "/load", 200, now, 1, None);
            sp.attributes.push(s("pad", &pad));
            sp
        })
        .collect();
    let body = traces_req("load", spans).encode_to_vec();
    let mut refused = 0;
    let mut retry_after = false;
    for _ in 0..3 {
        let mut tasks = vec![];
        for _ in 0..24 {
            let body = body.clone();
            let url = srv.otlp("/v1/traces");
            let key = srv.key.clone();
            tasks.push(tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/x-protobuf")
                    .header("x-obs-stack-key", key)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.headers().contains_key("retry-after"))
            }));
        }
        for t in tasks {
            let (code, ra) = t.await.unwrap();
            assert!(code == 200 || code == 503, "{code}");
            if code == 503 {
                refused += 1;
                retry_after |= ra;
            }
        }
    }
    assert!(refused > 0, "nothing was shed");
    assert!(retry_after, "503 without Retry-After");
    let st = srv.stats().await;
    assert!(st["refused"]["overload"].as_u64().unwrap() >= refused, "{st}");
    let peak = peak_rss(srv.pid()).unwrap();
    eprintln!(
        "peak RSS under load: {} MiB (cap 96 MiB), refused {refused}",
        peak >> 20
    );
    assert!(peak < 96 << 20, "peak RSS {} MiB over the 96 MiB cap", peak >> 20);
}

#[tokio::test]
async fn sigterm_stops_cleanly_even_with_a_client_connected() {
    let mut srv = Server::start(&[]).await;
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", srv.grpc))
        .await
        .unwrap();
    let mut req = tonic::Request::new(traces_req(
        "term",
        vec![server_span(tid(1), 1, "/t", 200, now_ns(), 1, None)],
    ));
    req.metadata_mut()
        .insert("x-obs-stack-key", srv.key.parse().unwrap());
    client.export(req).await.unwrap();
    let mut child = srv.child.take().unwrap();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    drop(client);
    srv.spawn().await;
    let (code, _) = srv
        .get(&format!("/api/v1/traces/{}?project=demo", hexid(tid(1))))
        .await;
    assert_eq!(code, 200);
}
