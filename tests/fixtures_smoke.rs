//! Smoke tests of the fixture corpus (tests/fixtures/apps/*).
//!
//! Without Docker: every fixture directory has a Dockerfile and a valid expected.yaml, and the
//! contract corpus is complete. With Docker (`OBS_STACK_DOCKER_TESTS=1`, images built by
//! tests/lab/build-fixtures.sh): every fixture's container really starts, keeps running, and
//! answers on its port published on 127.0.0.1 (HTTP routes, a PostgreSQL handshake, a Redis
//! PING). All fixtures are checked concurrently; one report lists every broken fixture.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// How long a fixture may take to answer after `docker run` (Spring Boot on 2 busy cores is
/// the slowest, typically 15–40 s).
const STARTUP: Duration = Duration::from_secs(150);
/// A fixture must still be running this long after it was started.
const MIN_UP: Duration = Duration::from_secs(3);

#[test]
fn every_fixture_dir_has_a_valid_expected_yaml() {
    let names = fixture_names();
    assert!(
        !names.is_empty(),
        "no fixtures under {}",
        fixtures_dir().display()
    );
    let mut problems = Vec::new();
    for name in &names {
        match try_expected(name) {
            Ok(e) => {
                if let Err(p) = e.validate() {
                    problems.push(format!("{name}: {p}"));
                }
                let want_prefix = match e.kind.as_str() {
                    "app" => e.language.clone(),
                    "infra" => "infra".to_string(),
                    _ => "neg".to_string(),
                };
                let prefix = if want_prefix == "python" {
                    "py".to_string()
                } else {
                    want_prefix
                };
                if !name.starts_with(&format!("{prefix}-")) {
                    problems.push(format!(
                        "{name}: name does not start with {prefix}- (kind/language)"
                    ));
                }
            }
            Err(e) => problems.push(e),
        }
    }
    assert!(problems.is_empty(), "bad expected.yaml:\n{}", problems.join("\n"));
}

#[test]
fn the_contract_corpus_is_complete() {
    let names = fixture_names();
    let missing: Vec<&&str> = CORPUS.iter().filter(|n| !names.iter().any(|m| m == *n)).collect();
    assert!(
        missing.is_empty(),
        "fixtures missing from tests/fixtures/apps: {missing:?}"
    );
}

#[test]
fn expected_yaml_validation_rejects_bad_values() {
    let good: Expected = serde_yaml_ng::from_str(
        "kind: app\nlanguage: python\nframework: flask\nruntime_version: \"3.11\"\nport: 5000\nhttp_path: /\n",
    )
    .expect("parses");
    assert_eq!(good.validate(), Ok(()));
    for (yaml, why) in [
        (
            "kind: service\nlanguage: python\nframework: flask\nruntime_version: \"3.11\"\n",
            "kind",
        ),
        (
            "kind: app\nlanguage: Python\nframework: flask\nruntime_version: \"3.11\"\n",
            "language",
        ),
        (
            "kind: app\nlanguage: python\nframework: Flask\nruntime_version: \"3.11\"\n",
            "framework",
        ),
        (
            "kind: app\nlanguage: python\nframework: flask\nruntime_version: \"3.11.2\"\n",
            "runtime_version",
        ),
        (
            "kind: app\nlanguage: python\nframework: flask\n",
            "runtime_version",
        ),
        (
            "kind: app\nlanguage: python\nframework: flask\nruntime_version: \"3\"\nport: 80\n",
            "http_path",
        ),
        ("kind: infra\nlanguage: none\nframework: redis\n", "port"),
        ("kind: negative\nlanguage: none\nframework: flask\n", "unknown"),
    ] {
        let e: Expected = serde_yaml_ng::from_str(yaml).expect("parses");
        let err = e.validate().expect_err(yaml);
        assert!(err.contains(why), "{yaml:?}: {err}");
    }
    assert!(
        serde_yaml_ng::from_str::<Expected>("language: python\n").is_err(),
        "kind is required"
    );
}

#[test]
fn every_fixture_container_starts_and_answers() {
    if !docker_tests_enabled("every_fixture_container_starts_and_answers") {
        return;
    }
    let names = fixture_names();
    assert!(!names.is_empty(), "no fixtures");
    let t0 = Instant::now();
    let results: Vec<(String, Result<Duration, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| (name.clone(), s.spawn(move || smoke(name))))
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err("smoke check panicked".to_string()));
                (name, r)
            })
            .collect()
    });
    let mut failures = Vec::new();
    for (name, r) in &results {
        match r {
            Ok(d) => eprintln!("fixture {name:<18} ok, answered after {:.1}s", d.as_secs_f64()),
            Err(e) => {
                eprintln!("fixture {name:<18} FAILED");
                failures.push(format!("--- {name}: {e}"));
            }
        }
    }
    eprintln!(
        "{} fixtures checked in {:.1}s",
        results.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "broken fixtures:\n{}", failures.join("\n"));
}

/// Starts one fixture and checks it; returns how long it took to answer.
fn smoke(name: &str) -> Result<Duration, String> {
    let exp = try_expected(name)?;
    exp.validate()?;
    let image = fixture_image(name);
    let exposed = {
        let out = docker(&["image", "inspect", "-f", "{{json .Config.ExposedPorts}}", &image]);
        if !out.status.success() {
            return Err(format!(
                "image {image} is missing (run tests/lab/build-fixtures.sh): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    if let Some(p) = exp.port
        && !exposed.contains(&format!("\"{p}/tcp\""))
    {
        return Err(format!(
            "image does not EXPOSE {p}/tcp (exposed: {})",
            exposed.trim()
        ));
    }
    let started = Instant::now();
    let c = try_start_fixture(name)?;
    let fail = |msg: String| Err(format!("{msg}\n  container logs:\n{}", c.logs()));

    if let Some(port) = exp.port {
        let host = c.host_port(port);
        if let Some(path) = &exp.http_path {
            match http_get(host, path, STARTUP) {
                Some((code, _)) if (200..300).contains(&code) => {}
                Some((code, body)) => return fail(format!("GET {path} answered {code}: {}", head(&body))),
                None => return fail(format!("GET {path} got no HTTP answer within {STARTUP:?}")),
            }
            let mut routes = vec![("/error", 500)];
            if exp.kind == "app" {
                routes.extend([("/orders/42", 200), ("/work", 200)]);
            }
            for (route, want) in routes {
                match http_get(host, route, Duration::from_secs(15)) {
                    Some((code, _)) if code == want => {}
                    Some((code, body)) => {
                        return fail(format!(
                            "GET {route} answered {code}, want {want}: {}",
                            head(&body)
                        ));
                    }
                    None => return fail(format!("GET {route} got no HTTP answer")),
                }
            }
        } else if !wait_tcp(host, STARTUP) {
            return fail(format!(
                "nothing accepts on 127.0.0.1:{host} (container port {port})"
            ));
        }
        let protocol = match exp.framework.as_str() {
            "redis" => redis_ping(host, Duration::from_secs(30)),
            "postgresql" => postgres_handshake(host, Duration::from_secs(60)),
            _ => Ok(()),
        };
        if let Err(e) = protocol {
            return fail(e);
        }
    } else if name == "py-worker" {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !c.logs().contains("processed batch") {
            if Instant::now() > deadline {
                return fail("the worker logged no processed batch within 60s".to_string());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let answered = started.elapsed();
    if let Some(rest) = MIN_UP.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    if !c.is_running() {
        return fail(format!(
            "container is not running: {}",
            c.inspect("status={{.State.Status}} exit={{.State.ExitCode}} error={{.State.Error}}")
        ));
    }
    Ok(answered)
}

fn head(body: &str) -> String {
    body.chars().take(300).collect::<String>().replace("\r\n", " | ")
}

/// Sends `PING` to Redis and expects `+PONG` (retries while the server loads).
fn redis_ping(port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match exchange(port, b"PING\r\n", 7) {
            Ok(reply) if reply.starts_with(b"+PONG") => return Ok(()),
            Ok(reply) => last = format!("reply {:?}", String::from_utf8_lossy(&reply)),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Err(format!("redis PING on 127.0.0.1:{port} failed: {last}"))
}

/// PostgreSQL wire protocol: an SSLRequest (answered `N` or `S`), then a v3 StartupMessage as
/// user postgres, answered by an Authentication message (`R`) once the server accepts logins.
fn postgres_handshake(port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match exchange(port, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], 1) {
            Ok(r) if r == b"N" || r == b"S" => {}
            Ok(r) => {
                last = format!("SSLRequest answered {r:?}");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(e) => {
                last = e;
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        }
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
        for s in ["user", "postgres", "database", "postgres", ""] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        match exchange(port, &msg, 9) {
            Ok(r) if r.first() == Some(&b'R') => return Ok(()),
            Ok(r) => last = format!("StartupMessage answered {:?}", String::from_utf8_lossy(&r)),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!("postgres handshake on 127.0.0.1:{port} failed: {last}"))
}

/// Connects, writes `req`, and reads up to `want` bytes (fewer when the peer closes).
fn exchange(port: u16, req: &[u8], want: usize) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    buf.truncate(got);
    if buf.is_empty() {
        return Err("connection closed without a reply".to_string());
    }
    Ok(buf)
}
