//! The lab's agent images and collector, end to end: real agents (copied Operator-style into a
//! volume and mounted read-only), a real collector built with ocb, real programs, no fakes.
//!
//! Needs the images built by `tests/lab/build-agents.sh`, `tests/lab/build-collector.sh` and
//! the lab runtimes (`obs-lab/python:3.11`, `obs-lab/node:20`, `obs-lab/jre:17`) built with the
//! fixtures; the Java test compiles its probe with the host `javac`.
mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const COLLECTOR_IMAGE: &str = "obs-lab/otelcol:0.159.0";
const PYTHON_AGENT: &str = "obs-lab/autoinstrumentation-python:0.65b0";
const NODE_AGENT: &str = "obs-lab/autoinstrumentation-nodejs:0.78.0";
const JAVA_AGENT: &str = "obs-lab/autoinstrumentation-java:2.31.0";
const PYTHON_RUNTIME: &str = "obs-lab/python:3.11";
const NODE_RUNTIME: &str = "obs-lab/node:20";
const JAVA_RUNTIME: &str = "obs-lab/jre:17";
/// Network alias of the collector on the test network.
const COLLECTOR_HOST: &str = "otelcol";
/// OTLP span kind CLIENT.
const SPAN_KIND_CLIENT: i64 = 3;

fn require_image(image: &str) {
    let out = docker(&["image", "inspect", "-f", "{{.Id}}", image]);
    assert!(
        out.status.success(),
        "image {image} is missing: build the lab first (tests/run.sh, or tests/lab/build-agents.sh, \
         tests/lab/build-collector.sh, tests/lab/build-fixtures.sh)"
    );
}

/// A fresh user-defined network, removed with the guard.
fn test_network(guard: &mut Guard, stem: &str) -> String {
    let net = unique_name(stem);
    docker_ok(&[
        "network",
        "create",
        "--label",
        &format!("{TEST_LABEL}={}", run_id()),
        &net,
    ]);
    guard.network(&net);
    net
}

/// Starts the collector with its default config (= compose/collector/test-config.yaml) on
/// `net`, waits for health_check to answer 200.
fn start_collector(net: &str) -> TestContainer {
    require_image(COLLECTOR_IMAGE);
    let alias = format!("--network-alias={COLLECTOR_HOST}");
    let c = TestContainer::run(
        "otelcol",
        COLLECTOR_IMAGE,
        &["--network", net, &alias, "-p", "127.0.0.1::13133"],
        &[],
    );
    let port = c.host_port(13133);
    let healthy = matches!(http_get(port, "/", Duration::from_secs(60)), Some((200, _)));
    assert!(
        healthy,
        "collector health_check never answered 200; logs:\n{}",
        c.logs()
    );
    c
}

/// Operator-style agent delivery: a one-shot init container copies `/autoinstrumentation/.`
/// into a new named volume. Returns the volume name.
fn agent_volume(guard: &mut Guard, agent_image: &str, mount: &str) -> String {
    require_image(agent_image);
    let vol = unique_name("agent");
    docker_ok(&[
        "volume",
        "create",
        "--label",
        &format!("{TEST_LABEL}={}", run_id()),
        &vol,
    ]);
    guard.volume(&vol);
    docker_ok(&[
        "run",
        "--rm",
        "--label",
        &format!("{TEST_LABEL}={}", run_id()),
        "-v",
        &format!("{vol}:{mount}"),
        agent_image,
        "cp",
        "-r",
        "/autoinstrumentation/.",
        mount,
    ]);
    vol
}

/// Waits for a container to exit; returns its exit code (None on timeout).
fn wait_exit(name: &str, timeout: Duration) -> Option<i64> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let state = docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name]);
        let mut it = state.split_whitespace();
        if it.next() == Some("exited") {
            return it.next().and_then(|c| c.parse().ok());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    None
}

/// Every JSON line the collector's file exporter wrote so far.
fn collector_output(collector: &TestContainer) -> Vec<Value> {
    let out = docker(&["exec", &collector.name, "cat", "/data/otel.jsonl"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A span as received by the collector.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    scope: String,
    name: String,
    kind: i64,
    trace_id: String,
}

fn service_name(resource: &Value) -> String {
    resource["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == "service.name")
        .and_then(|a| a["value"]["stringValue"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn spans(lines: &[Value]) -> Vec<Span> {
    let mut out = Vec::new();
    for line in lines {
        for rs in line["resourceSpans"].as_array().into_iter().flatten() {
            let service = service_name(&rs["resource"]);
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                let scope = ss["scope"]["name"].as_str().unwrap_or_default().to_string();
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push(Span {
                        service: service.clone(),
                        scope: scope.clone(),
                        name: s["name"].as_str().unwrap_or_default().to_string(),
                        kind: s["kind"].as_i64().unwrap_or(0),
                        trace_id: s["traceId"].as_str().unwrap_or_default().to_string(),
                    });
                }
            }
        }
    }
    out
}

/// Services that sent at least one metric data point.
fn metric_services(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| l["resourceMetrics"].as_array().cloned().unwrap_or_default())
        .map(|rm| service_name(&rm["resource"]))
        .collect()
}

/// Polls the collector output until `done` holds for the spans of `service` (or times out),
/// returning those spans.
fn wait_spans(
    collector: &TestContainer,
    service: &str,
    timeout: Duration,
    done: impl Fn(&[Span]) -> bool,
) -> (Vec<Span>, Vec<Value>) {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = collector_output(collector);
        let mine: Vec<Span> = spans(&lines)
            .into_iter()
            .filter(|s| s.service == service)
            .collect();
        if done(&mine) || Instant::now() >= deadline {
            return (mine, lines);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The OTel env every agent gets (what inject sets), for `service`.
fn otel_env(service: &str) -> Vec<String> {
    vec![
        format!("OTEL_SERVICE_NAME={service}"),
        format!("OTEL_EXPORTER_OTLP_ENDPOINT=http://{COLLECTOR_HOST}:4318"),
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf".into(),
        "OTEL_TRACES_EXPORTER=otlp".into(),
        "OTEL_METRICS_EXPORTER=otlp".into(),
        "OTEL_LOGS_EXPORTER=otlp".into(),
    ]
}

/// Runs `image cmd…` on `net` with `env` and the agent (volume, mount point) mounted
/// read-only, waits for it to exit 0 and returns its logs.
fn run_probe(
    stem: &str,
    image: &str,
    net: &str,
    (vol, mount): (&str, &str),
    env: &[String],
    extra: &[&str],
    cmd: &[&str],
) -> String {
    require_image(image);
    let volume = format!("{vol}:{mount}:ro");
    let mut args: Vec<&str> = vec!["--network", net, "-v", &volume];
    for e in env {
        args.push("-e");
        args.push(e);
    }
    args.extend_from_slice(extra);
    let probe = TestContainer::run(stem, image, &args, cmd);
    let code = wait_exit(&probe.name, Duration::from_secs(180));
    let logs = probe.logs();
    assert_eq!(
        code,
        Some(0),
        "{stem} probe did not exit 0 in time; logs:\n{logs}"
    );
    logs
}

fn assert_client_span_in_trace(spans: &[Span], manual: Option<&str>, scope_prefix: &str, lines: &[Value]) {
    let client = spans
        .iter()
        .find(|s| s.kind == SPAN_KIND_CLIENT && s.scope.starts_with(scope_prefix));
    assert!(
        client.is_some(),
        "no CLIENT span from an auto-instrumentation scope {scope_prefix}*; spans: {spans:?}\n\
         collector output: {lines:?}"
    );
    if let Some(manual) = manual {
        let parent = spans.iter().find(|s| s.name == manual);
        assert!(parent.is_some(), "manual span {manual} missing; spans: {spans:?}");
        assert_eq!(
            parent.map(|p| &p.trace_id),
            client.map(|c| &c.trace_id),
            "the auto-instrumented request is not in the manual span's trace"
        );
    }
}

#[test]
fn agent_images_hold_what_inject_relies_on() {
    if !docker_tests_enabled("agent_images_hold_what_inject_relies_on") {
        return;
    }
    let checks: [(&str, &[&str]); 3] = [
        (
            PYTHON_AGENT,
            &[
                "/autoinstrumentation/opentelemetry/instrumentation/auto_instrumentation/sitecustomize.py",
                "/autoinstrumentation/opentelemetry/distro/__init__.py",
                "/autoinstrumentation/opentelemetry/exporter/otlp/proto/http/trace_exporter/__init__.py",
                "/autoinstrumentation/opentelemetry/instrumentation/flask/__init__.py",
                "/autoinstrumentation/opentelemetry/instrumentation/django/__init__.py",
                "/autoinstrumentation/opentelemetry/instrumentation/fastapi/__init__.py",
                "/autoinstrumentation/VERSION",
            ],
        ),
        (
            NODE_AGENT,
            &[
                "/autoinstrumentation/autoinstrumentation.js",
                "/autoinstrumentation/package.json",
                "/autoinstrumentation/node_modules/@opentelemetry/auto-instrumentations-node/build/src/register.js",
                "/autoinstrumentation/VERSION",
            ],
        ),
        (
            JAVA_AGENT,
            &[
                "/autoinstrumentation/javaagent.jar",
                "/javaagent.jar",
                "/autoinstrumentation/VERSION",
            ],
        ),
    ];
    for (image, files) in checks {
        require_image(image);
        // As an unprivileged uid: the app may run as anyone, so every file must be readable.
        let mut args = vec!["run", "--rm", "--user", "65534:65534", image, "ls", "-lL"];
        args.extend_from_slice(files);
        let out = docker(&args);
        assert!(
            out.status.success(),
            "{image}: missing files: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let unreadable = docker_ok(&[
            "run",
            "--rm",
            image,
            "find",
            "/autoinstrumentation",
            "!",
            "-perm",
            "-o+r",
            "-print",
            "-quit",
        ]);
        assert!(unreadable.is_empty(), "{image}: not world-readable: {unreadable}");
        let cp = docker_ok(&["run", "--rm", image, "sh", "-c", "command -v cp"]);
        assert!(!cp.is_empty(), "{image}: no cp for the init container");
    }
    // The jar is a Java agent (and /javaagent.jar resolves to it).
    let manifest = docker_ok(&[
        "run",
        "--rm",
        JAVA_AGENT,
        "sh",
        "-c",
        "cmp /javaagent.jar /autoinstrumentation/javaagent.jar && echo same",
    ]);
    assert_eq!(manifest, "same");
}

#[test]
fn collector_image_validates_its_config_and_lists_the_recorded_components() {
    if !docker_tests_enabled("collector_image_validates_its_config_and_lists_the_recorded_components") {
        return;
    }
    require_image(COLLECTOR_IMAGE);
    let user = docker_ok(&["image", "inspect", "-f", "{{.Config.User}}", COLLECTOR_IMAGE]);
    assert!(
        !user.is_empty() && !user.starts_with("0") && !user.starts_with("root"),
        "collector runs as root ({user:?})"
    );
    docker_ok(&[
        "run",
        "--rm",
        COLLECTOR_IMAGE,
        "validate",
        "--config",
        "/etc/otelcol/config.yaml",
    ]);
    // A broken config must be rejected (the check above is not vacuous).
    let bad = docker(&[
        "run",
        "--rm",
        COLLECTOR_IMAGE,
        "validate",
        "--config",
        "/etc/otelcol/config.yaml",
        "--config",
        "yaml:service::pipelines::traces::receivers: [nosuchreceiver]",
    ]);
    assert!(!bad.status.success(), "validate accepted an unknown receiver");
    let components = docker_ok(&["run", "--rm", COLLECTOR_IMAGE, "components"]);
    let recorded = std::fs::read_to_string(repo_root().join("compose/collector/components.txt"))
        .expect("compose/collector/components.txt");
    let mut n = 0;
    for line in recorded
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let name = line.split_whitespace().nth(1).unwrap_or_default();
        let listed = components.lines().any(|l| {
            let l = l.trim();
            l == format!("- name: {name}") || l == format!("- scheme: {name}")
        });
        assert!(
            listed,
            "components.txt lists {name:?} but the image does not:\n{components}"
        );
        n += 1;
    }
    assert!(n >= 15, "components.txt has only {n} entries");
}

#[test]
fn python_agent_traces_reach_the_collector() {
    if !docker_tests_enabled("python_agent_traces_reach_the_collector") {
        return;
    }
    let mut guard = Guard::new();
    let net = test_network(&mut guard, "pyotel");
    let collector = start_collector(&net);
    let mount = "/otel-auto-instrumentation-python";
    let vol = agent_volume(&mut guard, PYTHON_AGENT, mount);
    let service = format!("lab-python-{}", run_id());
    let mut env = otel_env(&service);
    // The Operator's PYTHONPATH: hook dir first (its sitecustomize), agent tree last.
    env.push(format!(
        "PYTHONPATH={mount}/opentelemetry/instrumentation/auto_instrumentation:{mount}"
    ));
    // No opentelemetry-instrument wrapper: sitecustomize alone instruments urllib.
    let script = format!(
        "import urllib.request\n\
         from opentelemetry import trace\n\
         t = trace.get_tracer('collector-lab')\n\
         with t.start_as_current_span('lab-manual'):\n    \
             r = urllib.request.urlopen('http://{COLLECTOR_HOST}:13133/', timeout=10)\n    \
             print('status', r.status)\n"
    );
    let logs = run_probe(
        "pyprobe",
        PYTHON_RUNTIME,
        &net,
        (&vol, mount),
        &env,
        &["--user", "65534:65534", "--read-only"],
        &["python3", "-c", &script],
    );
    assert!(logs.contains("status 200"), "probe output: {logs}");
    let (spans, lines) = wait_spans(&collector, &service, Duration::from_secs(30), |s| {
        s.iter().any(|x| x.kind == SPAN_KIND_CLIENT) && s.iter().any(|x| x.name == "lab-manual")
    });
    assert_client_span_in_trace(
        &spans,
        Some("lab-manual"),
        "opentelemetry.instrumentation.urllib",
        &lines,
    );
    assert!(
        metric_services(&collector_output(&collector)).contains(&service),
        "no metrics from {service}"
    );
}

#[test]
fn nodejs_agent_traces_reach_the_collector() {
    if !docker_tests_enabled("nodejs_agent_traces_reach_the_collector") {
        return;
    }
    let mut guard = Guard::new();
    let net = test_network(&mut guard, "nodeotel");
    let collector = start_collector(&net);
    let mount = "/otel-auto-instrumentation-nodejs";
    let vol = agent_volume(&mut guard, NODE_AGENT, mount);
    let service = format!("lab-node-{}", run_id());
    let mut env = otel_env(&service);
    env.push(format!("NODE_OPTIONS=--require {mount}/autoinstrumentation.js"));
    // Documented in compose/agents/README.md: no cloud detectors (no 169.254.169.254 probes).
    env.push("OTEL_NODE_RESOURCE_DETECTORS=env,host,os,process,serviceinstance,container".into());
    let script = format!(
        "require('http').get('http://{COLLECTOR_HOST}:13133/', r => {{ \
           r.resume(); r.on('end', () => console.log('status', r.statusCode)); }})"
    );
    let logs = run_probe(
        "nodeprobe",
        NODE_RUNTIME,
        &net,
        (&vol, mount),
        &env,
        &["--user", "65534:65534", "--read-only"],
        &["node", "-e", &script],
    );
    assert!(logs.contains("status 200"), "probe output: {logs}");
    let (spans, lines) = wait_spans(&collector, &service, Duration::from_secs(30), |s| {
        s.iter().any(|x| x.kind == SPAN_KIND_CLIENT)
    });
    assert_client_span_in_trace(&spans, None, "@opentelemetry/instrumentation-http", &lines);
}

#[test]
fn java_agent_traces_reach_the_collector() {
    if !docker_tests_enabled("java_agent_traces_reach_the_collector") {
        return;
    }
    // The probe class, compiled on the host for Java 17 and bind-mounted read-only.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("LabProbe.java");
    std::fs::write(
        &src,
        format!(
            "import java.net.*;\n\
             public class LabProbe {{\n  public static void main(String[] a) throws Exception {{\n    \
             HttpURLConnection c = (HttpURLConnection) new URL(\"http://{COLLECTOR_HOST}:13133/\").openConnection();\n    \
             c.getInputStream().readAllBytes();\n    \
             System.out.println(\"status \" + c.getResponseCode());\n  }}\n}}\n"
        ),
    )
    .expect("write probe");
    let javac = std::process::Command::new("javac")
        .args(["--release", "17", "-d"])
        .arg(dir.path())
        .arg(&src)
        .output()
        .expect("run javac (host JDK 17)");
    assert!(
        javac.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&javac.stderr)
    );
    // Readable by the container's unprivileged user.
    let _ = std::process::Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(dir.path())
        .status();

    let mut guard = Guard::new();
    let net = test_network(&mut guard, "javaotel");
    let collector = start_collector(&net);
    let mount = "/otel-auto-instrumentation-java";
    let vol = agent_volume(&mut guard, JAVA_AGENT, mount);
    let service = format!("lab-java-{}", run_id());
    let mut env = otel_env(&service);
    env.push(format!("JAVA_TOOL_OPTIONS=-javaagent:{mount}/javaagent.jar"));
    let classes = format!("{}:/probe:ro", dir.path().display());
    let logs = run_probe(
        "javaprobe",
        JAVA_RUNTIME,
        &net,
        (&vol, mount),
        &env,
        &["--user", "65534:65534", "-v", &classes],
        &["java", "-cp", "/probe", "LabProbe"],
    );
    assert!(logs.contains("status 200"), "probe output: {logs}");
    let (spans, lines) = wait_spans(&collector, &service, Duration::from_secs(30), |s| {
        s.iter().any(|x| x.kind == SPAN_KIND_CLIENT)
    });
    assert_client_span_in_trace(&spans, None, "io.opentelemetry.http-url-connection", &lines);
}

#[test]
fn docker_stats_receiver_reports_a_test_container() {
    if !docker_tests_enabled("docker_stats_receiver_reports_a_test_container") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    require_image(COLLECTOR_IMAGE);
    // The Docker socket (read-only) for the non-root collector: its group, not root.
    let sock = "/var/run/docker.sock";
    let gid = std::fs::metadata(sock).expect("docker socket").gid().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    // Docker 20.10 answers API <= 1.41; the receiver's default (1.44) is refused.
    std::fs::write(
        dir.path().join("stats.yaml"),
        "receivers:\n  docker_stats:\n    endpoint: unix:///var/run/docker.sock\n    \
         collection_interval: 2s\n    api_version: \"1.41\"\n\
         exporters:\n  file:\n    path: /data/otel.jsonl\n    flush_interval: 1s\n\
         extensions:\n  health_check:\n    endpoint: 0.0.0.0:13133\n\
         service:\n  extensions: [health_check]\n  pipelines:\n    metrics:\n      \
         receivers: [docker_stats]\n      exporters: [file]\n",
    )
    .expect("write config");
    let _ = std::process::Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(dir.path())
        .status();

    let target = TestContainer::run("statstarget", "obs-lab/base:bookworm", &[], &["sleep", "300"]);
    let cfg = format!("{}:/cfg:ro", dir.path().display());
    let socket = format!("{sock}:{sock}:ro");
    let collector = TestContainer::run(
        "otelcol-stats",
        COLLECTOR_IMAGE,
        &[
            "--group-add",
            &gid,
            "-v",
            &socket,
            "-v",
            &cfg,
            "-p",
            "127.0.0.1::13133",
        ],
        &["--config", "/cfg/stats.yaml"],
    );
    let port = collector.host_port(13133);
    let healthy = matches!(http_get(port, "/", Duration::from_secs(60)), Some((200, _)));
    assert!(
        healthy,
        "collector (docker_stats) not healthy; logs:\n{}",
        collector.logs()
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut names: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        let lines = collector_output(&collector);
        names = lines
            .iter()
            .flat_map(|l| l["resourceMetrics"].as_array().cloned().unwrap_or_default())
            .filter(|rm| {
                rm["resource"]["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| {
                        a["key"] == "container.name" && a["value"]["stringValue"] == target.name.as_str()
                    })
            })
            .flat_map(|rm| rm["scopeMetrics"].as_array().cloned().unwrap_or_default())
            .flat_map(|sm| sm["metrics"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m["name"].as_str().map(str::to_string))
            .collect();
        if names.iter().any(|n| n == "container.memory.usage.total") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        names.iter().any(|n| n == "container.memory.usage.total")
            && names.iter().any(|n| n.starts_with("container.cpu.")),
        "no docker_stats metrics for {}: {names:?}; logs:\n{}",
        target.name,
        collector.logs()
    );
}
