//! End to end, in the lab: `obs-stack init` on compose/lab-project (Flask + Express +
//! PostgreSQL), the generated stack brought up with docker-compose next to the project (lab
//! images: collector from Go modules, Prometheus and Alertmanager from Debian; Grafana, Tempo
//! and Loki cannot run here and are disabled), real traffic, then:
//! - Prometheus holds RED metrics for each app service;
//! - every PromQL expression in the generated dashboards and rules evaluates without error, and
//!   the RED panels return data;
//! - 5xx responses fire the error alert through Alertmanager to a webhook receiver;
//! - a request carrying an e-mail address and a card number arrives redacted in the collector's
//!   output (its file exporter).
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const COLLECTOR: &str = "obs-lab/otelcol:0.159.0";
const PROMETHEUS: &str = "obs-lab/prometheus:2.42";
const ALERTMANAGER: &str = "obs-lab/alertmanager:0.25";
const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111111111111111";

fn sh(cmd: &mut Command) -> (bool, String) {
    match cmd.output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot run {cmd:?}: {e}")),
    }
}

fn image_tag(repo: &str) -> Option<String> {
    let out = docker(&["images", repo, "--format", "{{.Tag}}"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|t| format!("{repo}:{t}"))
}

/// The compose project; `down -v` on drop (its volumes are the test's own).
struct Project {
    dir: PathBuf,
    name: String,
    files: Vec<String>,
}

impl Project {
    fn compose(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker-compose");
        c.current_dir(&self.dir)
            .env("COMPOSE_PROJECT_NAME", &self.name)
            .arg("-p")
            .arg(&self.name);
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        c.args(args);
        c
    }

    fn port(&self, service: &str, port: u16) -> u16 {
        let (ok, out) = sh(&mut self.compose(&["port", service, &port.to_string()]));
        assert!(ok, "docker-compose port {service} {port}: {out}");
        out.trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{out}"))
    }

    fn logs(&self, service: &str) -> String {
        sh(&mut self.compose(&["logs", "--no-color", "--tail", "60", service])).1
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::env::var("OBS_STACK_KEEP").is_ok() {
            eprintln!(
                "OBS_STACK_KEEP: leaving project {} in {}",
                self.name,
                self.dir.display()
            );
            return;
        }
        // No `down -v`: the obs-agent-<runtime>-<version> volumes are shared with
        // `obs-stack inject` (and its tests, possibly running now). Only this project's own
        // volumes (<project>_*) go.
        let (ok, out) = sh(&mut self.compose(&["down", "--remove-orphans", "-t", "2"]));
        if !ok {
            eprintln!("docker-compose down failed, removing by label:\n{out}");
            let label = format!("label=com.docker.compose.project={}", self.name);
            let ids = docker(&["ps", "-aq", "--filter", &label]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = docker(&["rm", "-f", "-v", id]);
            }
            let nets = docker(&["network", "ls", "-q", "--filter", &label]);
            for id in String::from_utf8_lossy(&nets.stdout).split_whitespace() {
                let _ = docker(&["network", "rm", id]);
            }
        }
        // The two projects hold each other's networks (the collector joins the app's network,
        // the apps join the stack's): whichever goes down first cannot remove its network, so
        // both are removed by label here, by the project taken down last as well.
        for p in [
            self.name.clone(),
            self.name.trim_end_matches("-obs").to_string(),
            format!("{}-obs", self.name),
        ] {
            let label = format!("label=com.docker.compose.project={p}");
            let nets = docker(&["network", "ls", "-q", "--filter", &label]);
            for id in String::from_utf8_lossy(&nets.stdout).split_whitespace() {
                let _ = docker(&["network", "rm", id]);
            }
        }
        let vols = docker(&["volume", "ls", "--format", "{{.Name}}"]);
        for v in String::from_utf8_lossy(&vols.stdout).lines() {
            if v.starts_with(&format!("{}_", self.name)) {
                let _ = docker(&["volume", "rm", "-f", v]);
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// An instant query; Err(text) when Prometheus rejects it.
fn query(port: u16, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let path = format!("/api/v1/query?query={}", urlencode(expr));
    let (_, resp) = http_get(port, &path, Duration::from_secs(10)).ok_or("no answer")?;
    let v: serde_json::Value =
        serde_json::from_str(body(&resp)).map_err(|e| format!("{e}: {}", body(&resp)))?;
    if v["status"] != "success" {
        return Err(format!("{expr}: {}", v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Grafana variables replaced with values that select everything.
fn grafana_expr(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$job", ".+")
}

fn exprs_in_dashboards(dir: &Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let board = p.file_name().unwrap().to_string_lossy().to_string();
        for panel in d["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().into_iter().flatten() {
                out.push((
                    board.clone(),
                    panel["title"].as_str().unwrap().to_string(),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

fn exprs_in_rules(path: &Path) -> Vec<(String, String)> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for g in v["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let name = r
                .get("record")
                .or_else(|| r.get("alert"))
                .and_then(|n| n.as_str())
                .unwrap()
                .to_string();
            out.push((name, r["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// A tiny webhook receiver on the stack's network: prints every POST body on one line.
const WEBHOOK: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get('Content-Length', 0))
        print('WEBHOOK ' + self.rfile.read(n).decode('utf-8', 'replace').replace('\n', ' '), flush=True)
        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')
    def log_message(self, *a): pass
http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()
"#;

#[test]
fn init_brings_up_an_observed_lab_project() {
    if !docker_tests_enabled("init_brings_up_an_observed_lab_project") {
        return;
    }
    let started = Instant::now();
    let repo = repo_root();
    let (ok, out) = sh(Command::new(repo.join("tests/lab/build-stack-images.sh")).current_dir(&repo));
    assert!(
        ok,
        "building the Prometheus/Alertmanager lab images failed:\n{out}"
    );
    for img in [
        COLLECTOR,
        "obs-lab/fixture-py-flask:latest",
        "obs-lab/fixture-node-express:latest",
        "obs-lab/fixture-infra-postgres:latest",
    ] {
        assert!(
            docker(&["image", "inspect", img]).status.success(),
            "{img} is missing: run tests/run.sh (it builds the lab)"
        );
    }
    let agent_py =
        image_tag("obs-lab/autoinstrumentation-python").expect("obs-lab/autoinstrumentation-python missing");
    let agent_node =
        image_tag("obs-lab/autoinstrumentation-nodejs").expect("obs-lab/autoinstrumentation-nodejs missing");
    let agent_java =
        image_tag("obs-lab/autoinstrumentation-java").expect("obs-lab/autoinstrumentation-java missing");

    // The project in a temp dir under a unique project name.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::copy(
        repo.join("compose/lab-project/docker-compose.yml"),
        dir.join("docker-compose.yml"),
    )
    .unwrap();
    let name = format!("obsinit{}", std::process::id());
    // The stack runs as a compose project of its own (`<project>-obs`); declared first so it
    // is taken down last, after the app containers left its network.
    let stack = Project {
        dir: dir.clone(),
        name: format!("{name}-obs"),
        files: vec!["obs-stack.yml".into()],
    };
    let mut project = Project {
        dir: dir.clone(),
        name: name.clone(),
        files: vec!["docker-compose.yml".into()],
    };
    let (ok, out) = sh(&mut project.compose(&["up", "-d"]));
    assert!(ok, "the lab project did not start:\n{out}");

    // Components the lab collector really has.
    let comps = docker(&["run", "--rm", "--entrypoint", "/otelcol", COLLECTOR, "components"]);
    assert!(comps.status.success());
    std::fs::write(dir.join("components.yaml"), &comps.stdout).unwrap();

    // init, with the lab's images and fast alert timings (test override of the dev profile).
    let t = Instant::now();
    let init_args: Vec<String> = [
        "init",
        "--profile=dev",
        "--disable=grafana,tempo,loki",
        "--debug-output",
        "--assume=shop=python:flask",
        "--assume=api=node:express",
        "--assume=billing=java:spring-boot",
        "--assume=db=infra",
        &format!("--image=collector={COLLECTOR}"),
        &format!("--image=prometheus={PROMETHEUS}"),
        &format!("--image=alertmanager={ALERTMANAGER}"),
        &format!("--image=agent-python={agent_py}"),
        &format!("--image=agent-node={agent_node}"),
        &format!("--image=agent-java={agent_java}"),
        "--webhook=http://obs-webhook:8080/alerts",
        "--collector-components=components.yaml",
        "--set=scrape_interval=5s",
        "--set=evaluation_interval=5s",
        "--set=alert_for_fast=10s",
        "--set=group_wait=5s",
        "--set=group_interval=10s",
        "--set=metric_export_interval=5000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, out) = sh(Command::new(env!("CARGO_BIN_EXE_obs-stack"))
        .current_dir(&dir)
        .env("COMPOSE_PROJECT_NAME", &name)
        .args(&init_args));
    assert!(ok, "init failed:\n{out}");
    eprintln!("init took {:?}\n{out}", t.elapsed());
    assert!(out.contains("docker-compose.yml") || out.contains("obs-stack.yml"));

    // init's printed next steps, as printed: the stack in its own project, then the user's
    // services with the override, in theirs.
    let report: serde_json::Value = {
        let (ok, out) = sh(Command::new(env!("CARGO_BIN_EXE_obs-stack"))
            .current_dir(&dir)
            .env("COMPOSE_PROJECT_NAME", &name)
            .args(["--json"])
            .args(&init_args));
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let commands: Vec<String> = report["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        commands,
        [
            format!("docker-compose -p {name}-obs -f obs-stack.yml up -d"),
            "docker-compose -f docker-compose.yml -f obs-stack.apps.yml up -d".to_string()
        ]
    );
    let (ok, out) = sh(&mut stack.compose(&["up", "-d"]));
    assert!(ok, "docker-compose up of the stack failed:\n{out}");
    assert!(!out.contains("orphan"), "compose saw orphans:\n{out}");
    project.files = vec!["docker-compose.yml".into(), "obs-stack.apps.yml".into()];
    let (ok, out) = sh(&mut project.compose(&["up", "-d"]));
    assert!(
        ok,
        "docker-compose up of the instrumented services failed:\n{out}"
    );
    assert!(!out.contains("orphan"), "compose saw orphans:\n{out}");
    let webhook = TestContainer::run(
        "webhook",
        "obs-lab/fixture-py-flask:latest",
        &[
            "--network",
            &format!("{name}-obs_obs"),
            "--network-alias",
            "obs-webhook",
            "--entrypoint",
            "python3",
        ],
        &["-u", "-c", WEBHOOK],
    );

    // Re-running init on the running stack changes nothing: its own ports are kept although
    // they are now taken (by the stack itself).
    let (ok, out) = sh(Command::new(env!("CARGO_BIN_EXE_obs-stack"))
        .current_dir(&dir)
        .env("COMPOSE_PROJECT_NAME", &name)
        .args(["--json"])
        .args(&init_args));
    assert!(ok, "second init failed:\n{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let changed: Vec<&serde_json::Value> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] != "unchanged")
        .collect();
    assert!(changed.is_empty(), "second init changed files: {changed:?}");

    let prom = stack.port("prometheus", 9090);
    wait_for("Prometheus ready", Duration::from_secs(90), || {
        http_get(prom, "/-/ready", Duration::from_secs(2)).filter(|(c, _)| *c == 200)
    });
    let shop = project.port("shop", 5000);
    let api = project.port("api", 3000);
    let billing = project.port("billing", 8080);

    // Traffic in the background until the end of the test: mostly 2xx, some 5xx on shop.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (port, path) in [
                    (shop, "/"),
                    (shop, "/orders/42"),
                    (shop, "/work"),
                    (api, "/"),
                    (api, "/orders/7"),
                    (api, "/work"),
                    (billing, "/"),
                    (billing, "/orders/9"),
                ] {
                    let _ = http_get(port, path, Duration::from_secs(3));
                }
                if i.is_multiple_of(2) {
                    let _ = http_get(shop, "/error", Duration::from_secs(3));
                    let _ = http_get(api, "/error", Duration::from_secs(3));
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // PII in the URL path and query.
    for port in [shop, api] {
        let _ = http_get(
            port,
            &format!("/orders/{EMAIL}?email={EMAIL}&card={CARD}"),
            Duration::from_secs(5),
        );
    }

    // 1. RED metrics for each app service.
    for svc in ["shop", "api", "billing"] {
        let expr = format!(
            r#"sum(http_server_request_duration_seconds_count{{job="{name}/{svc}"}}) or sum(http_server_duration_milliseconds_count{{job="{name}/{svc}"}})"#
        );
        wait_for(&format!("RED metrics of {svc}"), Duration::from_secs(180), || {
            query(prom, &expr).ok().filter(|r| !r.is_empty())
        });
        // The error ratio exists as soon as the recording rules have run.
        wait_for(&format!("error ratio of {svc}"), Duration::from_secs(90), || {
            query(
                prom,
                &format!(r#"job:http_error_ratio:rate5m{{job="{name}/{svc}"}}"#),
            )
            .ok()
            .filter(|r| !r.is_empty())
        });
    }
    let names = query(
        prom,
        &format!(r#"count by (__name__) ({{__name__=~".+", job=~"{name}/(shop|api|billing)"}})"#),
    )
    .unwrap();
    // One identity: one job per service, `<project>/<service>`, the one the rules filter on.
    let jobs = query(prom, "count by (job) (target_info)").unwrap();
    let mut jobs: Vec<String> = jobs
        .iter()
        .filter_map(|r| r["metric"]["job"].as_str().map(String::from))
        .filter(|j| j.contains("shop") || j.contains("api") || j.contains("billing"))
        .collect();
    jobs.sort();
    assert_eq!(
        jobs,
        [
            format!("{name}/api"),
            format!("{name}/billing"),
            format!("{name}/shop")
        ]
    );
    let names: Vec<String> = names
        .iter()
        .filter_map(|r| r["metric"]["__name__"].as_str().map(String::from))
        .collect();
    eprintln!("metrics from the instrumented services: {names:?}");
    let own = query(prom, r#"count by (__name__) ({job="otel-collector", __name__=~"otelcol_(receiver|exporter|processor)_.*"})"#).unwrap();
    let own: Vec<&str> = own
        .iter()
        .filter_map(|r| r["metric"]["__name__"].as_str())
        .collect();
    eprintln!("collector telemetry: {own:?}");

    // 2. Every PromQL expression evaluates; RED panels return data.
    let cfg = dir.join("obs-stack");
    let mut failures = Vec::new();
    // panel -> (has data, its expressions)
    let mut panels: BTreeMap<(String, String), (bool, Vec<String>)> = BTreeMap::new();
    // Grafana is disabled in the lab, so init did not write its folder: the dashboards are
    // the embedded files, copied verbatim when Grafana is on.
    let boards = repo.join("templates/stack/CONFIG_DIR/grafana/dashboards");
    for (board, title, expr) in exprs_in_dashboards(&boards) {
        let p = panels.entry((board.clone(), title.clone())).or_default();
        p.1.push(expr.clone());
        match query(prom, &grafana_expr(&expr)) {
            Err(e) => failures.push(format!("{board} / {title}: {e}")),
            Ok(r) => p.0 |= !r.is_empty(),
        }
    }
    let mut with_data: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for ((board, _), (data, _)) in &panels {
        let e = with_data.entry(board.as_str()).or_default();
        e.0 += usize::from(*data);
        e.1 += 1;
    }
    eprintln!("dashboard panels with data (with data, total): {with_data:?}");
    for (name, expr) in exprs_in_rules(&cfg.join("prometheus/rules/obs-stack.rules.yml")) {
        if let Err(e) = query(prom, &expr) {
            failures.push(format!("rule {name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "expressions Prometheus rejects:\n{}",
        failures.join("\n")
    );
    // Every RED panel returns data (rates need two samples per series: allow a little time).
    let red_empty = |panels: &BTreeMap<(String, String), (bool, Vec<String>)>| -> Vec<String> {
        panels
            .iter()
            .filter(|((board, title), (data, _))| {
                board == "http-red.json" && title != "Firing alerts" && !data
            })
            .map(|((_, title), (_, exprs))| format!("{title}: {exprs:?}"))
            .collect()
    };
    let mut empty_red = red_empty(&panels);
    if !empty_red.is_empty() {
        std::thread::sleep(Duration::from_secs(20));
        for ((board, _), (data, exprs)) in panels.iter_mut() {
            if board == "http-red.json" && !*data {
                *data = exprs
                    .iter()
                    .any(|e| query(prom, &grafana_expr(e)).is_ok_and(|r| !r.is_empty()));
            }
        }
        empty_red = red_empty(&panels);
    }
    assert!(
        empty_red.is_empty(),
        "RED panels without data:\n{}",
        empty_red.join("\n")
    );
    let rule_health = query(prom, "ALERTS").unwrap();
    eprintln!("alerts in Prometheus: {}", rule_health.len());

    // 3. The error alert reaches the webhook through Alertmanager.
    let got = wait_for("the error alert at the webhook", Duration::from_secs(240), || {
        let logs = webhook.logs();
        logs.lines()
            .filter(|l| l.starts_with("WEBHOOK "))
            .find(|l| {
                (l.contains("\"alertname\":\"HighErrorRate\"")
                    || l.contains("\"alertname\":\"SLOErrorBudgetBurn\""))
                    && l.contains(&format!("\"job\":\"{name}/shop\""))
                    && l.contains("\"status\":\"firing\"")
            })
            .map(String::from)
    });
    eprintln!("webhook received: {}", &got[..got.len().min(400)]);

    // 4. PII arrives redacted in the collector's output (file exporter in the debug volume).
    let collector = {
        let (ok, out) = sh(&mut stack.compose(&["ps", "-q", "otel-collector"]));
        assert!(ok, "{out}");
        out.trim().to_string()
    };
    let dump = wait_for(
        "the PII request in the collector output",
        Duration::from_secs(60),
        || {
            let out = Command::new("docker")
                .args([
                    "cp",
                    &format!("{collector}:/var/lib/otelcol/debug/telemetry.jsonl"),
                    "-",
                ])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (text.contains("/orders/") && text.contains("redaction.masked")).then_some(text)
        },
    );
    assert!(
        !dump.contains(EMAIL),
        "the e-mail address reached the collector output unredacted"
    );
    assert!(
        !dump.contains(CARD),
        "the card number reached the collector output unredacted"
    );
    // Non-vacuous: the query string of that request is in the output, masked.
    assert!(
        dump.contains("email=****&card=****"),
        "the PII request's url.query is not in the output, masked"
    );

    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    eprintln!("collector log tail:\n{}", stack.logs("otel-collector"));
    eprintln!("end-to-end took {:?}", started.elapsed());
}
