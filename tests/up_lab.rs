//! `obs-stack up` / `down` and the terminal views, end to end in the lab (issue F2): a compose
//! project (Flask, Express, Spring Boot, PostgreSQL, a static Go binary) observed with one
//! command from its folder; real agents send to the real backend (a container made from this
//! binary); the views answer with exactly what was sent; `down` restores every container's
//! inspect; SIGKILLs of `up` and `down` converge; two projects share one backend, isolated.
//! One test function: the backend is a machine-wide singleton (`obs-stack`, 127.0.0.1:4319).
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn text(o: &Output) -> String {
    output_text(o)
}

fn obs_cmd(dir: &Path, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_obs-stack"));
    c.current_dir(dir)
        .envs(lab_agent_env())
        .env("OBS_STACK_STATE_DIR", state)
        .env_remove("OBS_STACK_API")
        .env_remove("OBS_STACK_TOKEN")
        .args(args);
    c
}

fn obs(dir: &Path, state: &Path, args: &[&str]) -> Output {
    obs_cmd(dir, state, args).output().expect("run obs-stack")
}

fn json(dir: &Path, state: &Path, args: &[&str]) -> Value {
    let o = obs(dir, state, args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&o)))
}

fn compose(dir: &Path, project: &str, args: &[&str]) -> Output {
    Command::new("docker-compose")
        .current_dir(dir)
        .args(["-p", project])
        .args(args)
        .output()
        .expect("docker-compose")
}

fn host_port(name: &str, port: u16) -> u16 {
    let o = docker(&["port", name, &port.to_string()]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} publishes no {port}: {}", text(&o)))
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// What a container is, for "down restores it exactly": everything inject may change.
fn fingerprint(name: &str) -> String {
    docker_ok(&[
        "inspect",
        "-f",
        "{{json .Config.Env}} {{json .Config.Labels}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} \
         {{json .HostConfig.Mounts}} {{json .HostConfig.Binds}} {{json .HostConfig.PortBindings}} \
         {{json .HostConfig.RestartPolicy}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        name,
    ])
}

const PROJECT_FILE: &str = r#"
services:
  shop:
    image: obs-lab/fixture-py-flask:latest
    ports: ["127.0.0.1::5000"]
    depends_on: [db]
  api:
    image: obs-lab/fixture-node-express:latest
    ports: ["127.0.0.1::3000"]
  billing:
    image: obs-lab/fixture-java-springboot:latest
    ports: ["127.0.0.1::8080"]
    environment:
      JAVA_TOOL_OPTIONS: -Xmx192m
  db:
    image: obs-lab/fixture-infra-postgres:latest
  gateway:
    image: obs-lab/fixture-go-nethttp:latest
    ports: ["127.0.0.1::8080"]
"#;

/// service, container port, (path, requests)
type Sent = (&'static str, u16, Vec<(&'static str, usize)>);

struct Cleanup {
    projects: Vec<(std::path::PathBuf, String)>,
    state: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::env::var("OBS_STACK_KEEP").is_ok() {
            return;
        }
        let _ = Command::new(env!("CARGO_BIN_EXE_obs-stack"))
            .env("OBS_STACK_STATE_DIR", &self.state)
            .args(["down", "--purge", "--grace", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for (dir, p) in &self.projects {
            let _ = compose(dir, p, &["down", "-t", "1"]);
            let label = format!("label=com.docker.compose.project={p}");
            let ids = docker(&["ps", "-aq", "--filter", &label]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = docker(&["rm", "-f", "-v", id]);
            }
        }
    }
}

/// Sends `n` GET requests to `path`, returning how many were answered.
fn hit(port: u16, path: &str, n: usize) -> usize {
    (0..n)
        .filter(|_| http_get(port, path, Duration::from_secs(10)).is_some())
        .count()
}

fn route_calls(status: &Value, service: &str) -> BTreeMap<String, i64> {
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"]["name"] == service)
        .map(|s| {
            s["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        r["route"].as_str().unwrap_or("?").to_string(),
                        r["calls"].as_f64().unwrap_or(0.0).round() as i64,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn up_observes_a_project_and_down_restores_it() {
    if !docker_tests_enabled("up_observes_a_project_and_down_restores_it") {
        return;
    }
    if docker(&["inspect", "obs-stack"]).status.success() {
        panic!("a backend container `obs-stack` already runs on this engine: `obs-stack down` first");
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let dir = tmp.path().join("shop");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), PROJECT_FILE).unwrap();
    let name = format!("obsup{}", std::process::id());
    let dir2 = tmp.path().join("blog");
    std::fs::create_dir_all(&dir2).unwrap();
    std::fs::write(
        dir2.join("docker-compose.yml"),
        "services:\n  blog:\n    image: obs-lab/fixture-py-flask:latest\n    ports: [\"127.0.0.1::5000\"]\n",
    )
    .unwrap();
    let name2 = format!("obsup{}b", std::process::id());
    let _cleanup = Cleanup {
        projects: vec![(dir.clone(), name.clone()), (dir2.clone(), name2.clone())],
        state: state.clone(),
    };
    // The project name comes from COMPOSE_PROJECT_NAME, as compose and `up` both read it.
    unsafe { std::env::set_var("COMPOSE_PROJECT_NAME", &name) };
    let o = compose(&dir, &name, &["up", "-d"]);
    assert!(o.status.success(), "{}", text(&o));
    let c = |svc: &str| format!("{name}_{svc}_1");
    for (svc, port) in [
        ("shop", 5000),
        ("api", 3000),
        ("billing", 8080),
        ("gateway", 8080),
    ] {
        let p = host_port(&c(svc), port);
        wait_for(&format!("{svc} up"), Duration::from_secs(120), || {
            http_get(p, "/", Duration::from_secs(2)).filter(|(s, _)| *s == 200)
        });
    }
    let originals: BTreeMap<String, String> = ["shop", "api", "billing", "db", "gateway"]
        .iter()
        .map(|s| (c(s), fingerprint(&c(s))))
        .collect();

    // 1. up, with no arguments, in the project's folder.
    let t = Instant::now();
    let report = json(&dir, &state, &["--json", "up", "--grace", "3"]);
    let up_secs = t.elapsed().as_secs_f64();
    let rows: BTreeMap<String, Value> = report["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["service"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    assert_eq!(rows.len(), 5, "{report}");
    for svc in ["shop", "api", "billing"] {
        assert_eq!(rows[svc]["action"], "agent", "{svc}: {}", rows[svc]);
        assert_eq!(rows[svc]["outcome"], "instrumented", "{svc}: {}", rows[svc]);
    }
    assert_eq!(rows["db"]["action"], "left_alone", "{}", rows["db"]);
    assert_eq!(rows["gateway"]["action"], "fallback", "{}", rows["gateway"]);
    assert_eq!(rows["gateway"]["http_ports"], serde_json::json!([8080]));
    let ui = report["ui"].as_str().unwrap();
    assert!(ui.starts_with("http://127.0.0.1:4319/?token="), "{ui}");
    // The API and UI are published on 127.0.0.1 only.
    let bindings = docker_ok(&["inspect", "-f", "{{json .HostConfig.PortBindings}}", "obs-stack"]);
    assert!(
        !bindings.contains("0.0.0.0") && bindings.contains("127.0.0.1"),
        "{bindings}"
    );
    eprintln!("up (5 containers, 3 instrumented): {up_secs:.1}s");

    // 2. Known traffic (the instrumented apps got new host ports).
    let sent: Vec<Sent> = vec![
        (
            "shop",
            5000,
            vec![("/orders/1", 12), ("/work", 6), ("/error", 4), ("/orders", 3)],
        ),
        ("api", 3000, vec![("/orders/1", 9), ("/work", 5), ("/error", 3)]),
        (
            "billing",
            8080,
            vec![("/orders/1", 7), ("/work", 4), ("/error", 2)],
        ),
    ];
    let mut first_seen = BTreeMap::new();
    for (svc, port, paths) in &sent {
        let p = host_port(&c(svc), *port);
        let t = Instant::now();
        wait_for(&format!("{svc} serving again"), Duration::from_secs(120), || {
            // Readiness probe on a path that is not counted below.
            http_get(p, "/", Duration::from_secs(2)).filter(|(s, _)| *s == 200)
        });
        for (path, n) in paths {
            assert_eq!(hit(p, path, *n), *n, "{svc} {path}");
        }
        first_seen.insert(*svc, t);
    }
    let routes_of = |svc: &str| -> BTreeMap<&str, &str> {
        match svc {
            "shop" => BTreeMap::from([
                ("/orders/1", "/orders/<int:order_id>"),
                ("/work", "/work"),
                ("/error", "/error"),
                ("/orders", "/orders"),
            ]),
            "api" => BTreeMap::from([
                ("/orders/1", "/orders/:id"),
                ("/work", "/work"),
                ("/error", "/error"),
            ]),
            _ => BTreeMap::from([
                ("/orders/1", "/orders/{id}"),
                ("/work", "/work"),
                ("/error", "/error"),
            ]),
        }
    };
    // 3. status --json: exactly those counts per route (plus the readiness `/` probes).
    let status = wait_for("exact counts in status", Duration::from_secs(150), || {
        let s = json(&dir, &state, &["--json", "status"]);
        let ok = sent.iter().all(|(svc, _, paths)| {
            let calls = route_calls(&s, svc);
            paths
                .iter()
                .all(|(path, n)| calls.get(routes_of(svc)[path]).copied() == Some(*n as i64))
        });
        ok.then_some(s)
    });
    for (svc, t) in &first_seen {
        eprintln!(
            "{svc}: requests visible in status {:.1}s after they were sent",
            t.elapsed().as_secs_f64()
        );
    }
    for (svc, _, _) in &sent {
        let calls = route_calls(&status, svc);
        eprintln!("{svc}: {calls:?}");
    }
    // The Go service: no agent, its HTTP check and container stats.
    let gateway = wait_for("the gateway's HTTP check", Duration::from_secs(60), || {
        // Until the watcher's first check arrives the service does not exist yet (exit 2).
        let o = obs(&dir, &state, &["--json", "status", "gateway"]);
        if !o.status.success() {
            return None;
        }
        let s: Value = serde_json::from_slice(&o.stdout).ok()?;
        let rt = s["services"][0]["runtime"].clone();
        let names: Vec<String> = rt
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["name"].as_str().map(String::from))
            .collect();
        // the check's series names the path it found worth checking: `http_check.status{path=/…}`
        (names.iter().any(|n| n.starts_with("http_check.status{path=/"))
            && names.iter().any(|n| n == "container_stats.memory_bytes"))
        .then_some(rt)
    });
    let status_200 = gateway
        .as_array()
        .unwrap()
        .iter()
        .find(|x| {
            x["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("http_check.status"))
        })
        .and_then(|x| x["points"].as_array()?.last()?.get(1)?.as_f64());
    assert_eq!(status_200, Some(200.0), "{gateway}");
    // errors --json: the failing handler's group, with a stack trace naming it.
    let errors = json(&dir, &state, &["--json", "errors", "shop"]);
    let group = errors["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["type"] == "RuntimeError")
        .unwrap_or_else(|| panic!("{errors}"))
        .clone();
    assert_eq!(group["count"], 4, "{group}");
    let id = group["id"].as_str().unwrap();
    let detail = json(&dir, &state, &["--json", "errors", id]);
    let stack = detail["stack_trace"].as_str().unwrap_or("");
    assert!(stack.contains("in error"), "{stack}");
    // traces --json, and one trace by id with its server span.
    let traces = json(&dir, &state, &["--json", "traces", "shop", "--errors"]);
    let tid = traces["traces"][0]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{traces}"));
    let trace = json(&dir, &state, &["--json", "traces", tid]);
    assert!(
        trace["spans"].as_array().unwrap().iter().any(|s| s["kind"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("server")
            || s["kind"] == 2),
        "{trace}"
    );
    // analyze: replays the stored GET URLs in a bounded burst; finds the planted N+1.
    let a = json(&dir, &state, &["--json", "analyze", "shop", "--requests", "20"]);
    assert_eq!(a["requests"], 20, "{a}");
    let n1 = a["n_plus_one"].as_array().unwrap();
    assert!(
        n1.iter().any(|n| n["route"] == "GET /orders" && n["times"] == 5),
        "the N+1 of GET /orders was not found: {a}"
    );
    // The human views say what they show.
    let human = text(&obs(&dir, &state, &["status"]));
    for svc in ["shop", "api", "billing", "gateway", "db"] {
        assert!(human.contains(svc), "{human}");
    }
    assert!(human.contains("http check:     HTTP 200 on /"), "{human}");
    // the Go service has no agent, but detection's language shows
    let gateway = human
        .lines()
        .find(|l| l.starts_with("gateway "))
        .unwrap_or_default();
    assert!(gateway.split_whitespace().nth(1) == Some("go"), "{human}");

    // 4. top under a pseudo terminal: shows the services, quits on q.
    let session = format!("obsup{}", std::process::id());
    let mut top = Command::new("tmux");
    top.args(["new-session", "-d", "-s", &session, "-x", "120", "-y", "40"])
        .arg(format!(
            "OBS_STACK_STATE_DIR={} COMPOSE_PROJECT_NAME={name} {} top --interval 1; sleep 30",
            state.display(),
            env!("CARGO_BIN_EXE_obs-stack")
        ))
        .current_dir(&dir);
    assert!(top.status().unwrap().success());
    let screen = wait_for("top's screen", Duration::from_secs(30), || {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        (s.contains("shop") && s.contains("q quits")).then_some(s)
    });
    assert!(screen.contains("billing") && screen.contains("REQ/S"), "{screen}");
    let _ = Command::new("tmux")
        .args(["send-keys", "-t", &session, "q"])
        .status();
    wait_for("top to quit on q", Duration::from_secs(10), || {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        (!s.contains("q quits")).then_some(())
    });
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();

    // 5. Two projects on one backend: each sees only its own; a key writes only its own.
    let o = compose(&dir2, &name2, &["up", "-d"]);
    assert!(o.status.success(), "{}", text(&o));
    let r2 = json(
        &dir2,
        &state,
        &["--json", "up", "--project", &name2, "--grace", "3"],
    );
    assert_eq!(r2["containers"].as_array().unwrap().len(), 1, "{r2}");
    assert!(r2["backend_reused"].as_bool().unwrap(), "{r2}");
    let blog = host_port(&format!("{name2}_blog_1"), 5000);
    wait_for("blog serving", Duration::from_secs(60), || {
        http_get(blog, "/", Duration::from_secs(2)).filter(|(s, _)| *s == 200)
    });
    assert_eq!(hit(blog, "/work", 3), 3);
    let s2 = wait_for("blog's data", Duration::from_secs(90), || {
        let s = json(&dir2, &state, &["--json", "status", "--project", &name2]);
        (!route_calls(&s, "blog").is_empty()).then_some(s)
    });
    let names2: Vec<&str> = s2["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["service"]["name"].as_str())
        .collect();
    assert_eq!(names2, ["blog"], "{s2}");
    let s1 = json(&dir, &state, &["--json", "status", "--project", &name]);
    assert!(
        s1["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["service"]["name"] != "blog")
    );
    // Project 1's key, sent straight to the OTLP port: filed under project 1, never project 2.
    let otlp = host_port("obs-stack", 4318);
    let key1 = docker_ok(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &c("shop"),
    ])
    .lines()
    .find_map(|l| l.strip_prefix("OTEL_EXPORTER_OTLP_HEADERS=x-obs-stack-key="))
    .map(|k| k.split(',').next().unwrap().to_string())
    .expect("shop carries its ingest key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"intruder"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"0123456789abcdef0123456789abcdef","spanId":"0123456789abcdef","name":"GET /x","kind":2,"startTimeUnixNano":"{now}","endTimeUnixNano":"{}"}}]}}]}}]}}"#,
        now + 1_000_000
    );
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            &format!("x-obs-stack-key: {key1}"),
        ])
        .args(["--data", &body, &format!("http://127.0.0.1:{otlp}/v1/traces")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{}", text(&o));
    std::thread::sleep(Duration::from_secs(1));
    let s2 = json(&dir2, &state, &["--json", "status", "--project", &name2]);
    assert!(
        s2["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["service"]["name"] != "intruder"),
        "{s2}"
    );
    let s1 = json(&dir, &state, &["--json", "status", "--project", &name]);
    assert!(
        s1["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["service"]["name"] == "intruder"),
        "{s1}"
    );

    // 6. SIGKILL up and down at several moments: every rerun converges.
    for delay_ms in [300u64, 1500, 4000] {
        let mut child = obs_cmd(&dir, &state, &["up", "--grace", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let again = json(&dir, &state, &["--json", "up", "--grace", "2"]);
        for r in again["containers"].as_array().unwrap() {
            if r["action"] == "agent" {
                assert!(
                    matches!(
                        r["outcome"].as_str(),
                        Some("instrumented" | "already instrumented")
                    ),
                    "after a kill at {delay_ms} ms: {r}"
                );
            }
        }
    }
    let mut child = obs_cmd(&dir, &state, &["down", "--grace", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let _ = child.wait();

    // 7. down: every container exactly as before; the backend gone, its data kept.
    let o = obs(&dir, &state, &["down", "--grace", "1"]);
    assert!(o.status.success(), "down: {}", text(&o));
    // what stays on the machine is said: the backend image, the shared agent volumes
    assert!(
        text(&o).contains("kept for the next `up`: image obs-stack/serve:"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("docker volume rm obs-agent-"), "{}", text(&o));
    for (n, before) in &originals {
        assert_eq!(&fingerprint(n), before, "{n} differs after down");
    }
    let leftovers = docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    for l in leftovers.lines() {
        assert!(
            !(l.ends_with(".obs-orig")
                || l.ends_with(".obs-injected")
                || l.starts_with("obs-agent-init")
                || l == "obs-stack"
                || l == "obs-stack-watch"),
            "left behind: {l}"
        );
    }
    assert!(docker(&["volume", "inspect", "obs-stack-data"]).status.success());
    assert!(
        !docker(&["network", "inspect", "obs-stack"]).status.success(),
        "network left"
    );
    // 8. up again finds the old data; down --purge removes it.
    let _ = json(&dir, &state, &["--json", "up", "--grace", "2"]);
    let again = json(&dir, &state, &["--json", "status"]);
    assert!(
        route_calls(&again, "shop").contains_key("/orders/<int:order_id>"),
        "{again}"
    );
    let o = obs(&dir, &state, &["down", "--purge", "--grace", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!docker(&["volume", "inspect", "obs-stack-data"]).status.success());
    let images = docker_ok(&["images", "-q", "obs-stack/serve"]);
    assert!(
        images.trim().is_empty(),
        "--purge leaves the backend image: {images}"
    );
}
