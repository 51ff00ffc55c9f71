//! `obs-stack init` rendering, validated by the real tools: the Compose JSON schema,
//! `docker-compose config`, `promtool check config|rules`, `promtool test rules`,
//! `amtool check-config`, and the collector binary (`otelcol validate`) when its image exists.
//! Grafana, Tempo and Loki cannot run in the lab: their files are checked structurally
//! (parse + the keys they need), and this test says so.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use obs_stack::assets::{Assets, TEMPLATES};
use obs_stack::init::compose;
use obs_stack::init::data::Data;
use obs_stack::init::plan::{InitOptions, Profile, ServiceInfo, plan};
use obs_stack::init::render::{Rendered, render};

const PROJECT: &str = r#"
services:
  shop:
    build: ./shop
    ports: ["127.0.0.1:8080:5000"]
    environment:
      PYTHONPATH: /app
  api:
    image: node:20
    depends_on: [db]
    networks: [front, back]
    environment: ["NODE_OPTIONS=--max-old-space-size=256"]
  billing:
    image: eclipse-temurin:17
    depends_on:
      db:
        condition: service_started
  worker:
    image: golang:1.22
  legacy:
    image: python:3.11
    labels: {io.obs-stack.instrument: "false"}
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: example
networks:
  front: {}
  back: {}
"#;

fn detections() -> Vec<ServiceInfo> {
    [
        "shop=python:flask",
        "api=node:express",
        "billing=java:springboot",
        "worker=go:gin",
        "legacy=python",
        "db=infra",
    ]
    .iter()
    .map(|s| ServiceInfo::parse_assumption(s).unwrap())
    .collect()
}

fn render_with(opts: &InitOptions) -> (Rendered, obs_stack::init::Plan) {
    let assets = Assets::load(&TEMPLATES, None).unwrap();
    let data = Data::load(&assets).unwrap();
    let project = compose::parse(PROJECT, Path::new("/p/shop/compose.yaml"), Path::new("/p/shop")).unwrap();
    let p = plan(&project, &detections(), &BTreeMap::new(), opts, &data).unwrap();
    (render(&assets, &p).unwrap(), p)
}

fn full() -> InitOptions {
    InitOptions {
        webhook: Some("http://hooks.example.internal/alerts".into()),
        debug_output: true,
        user_network: Some("shop_default".into()),
        ..InitOptions::default()
    }
}

fn lab() -> InitOptions {
    InitOptions {
        disabled: ["grafana", "tempo", "loki"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..InitOptions::default()
    }
}

fn write(dir: &Path, files: &Rendered) {
    for (rel, content) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    std::fs::write(dir.join("obs-stack/.env"), "GF_SECURITY_ADMIN_PASSWORD=x\n").unwrap();
}

fn yaml(text: &str) -> serde_yaml_ng::Value {
    let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
    v.apply_merge().unwrap();
    v
}

fn run(cmd: &mut Command) -> (bool, String) {
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

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

#[test]
fn every_yaml_and_json_file_parses() {
    for opts in [
        full(),
        lab(),
        InitOptions {
            lite: true,
            profile: Profile::Prod,
            ..full()
        },
    ] {
        let (files, _) = render_with(&opts);
        assert!(files.contains_key("obs-stack.yml") && files.contains_key("obs-stack.apps.yml"));
        for (name, text) in &files {
            if name.ends_with(".json") {
                serde_json::from_str::<serde_json::Value>(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            } else {
                serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
                    .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            }
        }
    }
}

#[test]
fn compose_file_passes_the_official_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates/schemas/compose-spec.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for opts in [
        full(),
        lab(),
        InitOptions {
            lite: true,
            injector: true,
            ..full()
        },
    ] {
        let (files, _) = render_with(&opts);
        for name in ["obs-stack.yml", "obs-stack.apps.yml"] {
            let v = yaml(&files[name]);
            let json = serde_json::to_value(&v).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&json)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{name} violates the compose schema:\n{}",
                errors.join("\n")
            );
        }
    }
}

#[test]
fn compose_file_security_defaults() {
    let (files, _) = render_with(&full());
    let v = yaml(&files["obs-stack.yml"]);
    let services = v["services"].as_mapping().unwrap();
    for (name, s) in services {
        let name = name.as_str().unwrap();
        assert!(s.get("mem_limit").is_some(), "{name} has no memory limit");
        if let Some(ports) = s.get("ports").and_then(|p| p.as_sequence()) {
            for p in ports {
                assert!(
                    p.as_str().unwrap().starts_with("127.0.0.1:"),
                    "{name} publishes {p:?} beyond localhost"
                );
            }
        }
        if let Some(vols) = s.get("volumes").and_then(|p| p.as_sequence()) {
            for vol in vols {
                let vol = vol.as_str().unwrap();
                if vol.starts_with("/var/run/docker.sock") && name != "obs-injector" {
                    assert!(vol.ends_with(":ro"), "{name} mounts the docker socket writable");
                }
            }
        }
        if !name.starts_with("otel-agent-") {
            assert_eq!(
                s["logging"]["options"]["max-size"].as_str(),
                Some("10m"),
                "{name}: no log rotation"
            );
        }
    }
    let text = &files["obs-stack.yml"];
    assert!(!text.to_lowercase().contains("admin:admin") && !text.contains("GF_SECURITY_ADMIN_PASSWORD: "));
    assert_eq!(
        services["prometheus"]["depends_on"]["alertmanager"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert!(
        services["prometheus"]["healthcheck"]["start_period"]
            .as_str()
            .is_some()
    );
    // The collector's GOMEMLIMIT is 80% of its limit.
    assert_eq!(
        services["otel-collector"]["environment"]["GOMEMLIMIT"].as_str(),
        Some("320MiB")
    );
}

#[test]
fn app_overrides_carry_the_agent_env() {
    let (files, p) = render_with(&lab());
    let v = yaml(&files["obs-stack.apps.yml"]);
    let s = &v["services"];
    let shop = &s["shop"]["environment"];
    assert_eq!(shop["OTEL_SERVICE_NAME"].as_str(), Some("shop"));
    assert_eq!(
        shop["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str(),
        Some("http://otel-collector:4318")
    );
    assert_eq!(
        shop["OTEL_EXPORTER_OTLP_PROTOCOL"].as_str(),
        Some("http/protobuf")
    );
    assert_eq!(
        shop["OTEL_TRACES_SAMPLER"].as_str(),
        Some("parentbased_traceidratio")
    );
    assert_eq!(shop["OTEL_TRACES_SAMPLER_ARG"].as_str(), Some("1"));
    assert_eq!(
        shop["PYTHONPATH"].as_str(),
        Some("/otel-auto-instrumentation-python/obs-stack-guard:/app:/otel-auto-instrumentation-python")
    );
    assert_eq!(
        s["shop"]["volumes"][0].as_str(),
        Some("otel-agent-python:/otel-auto-instrumentation-python:ro")
    );
    let nets: Vec<&str> = s["shop"]["networks"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(nets, ["default", "obs"]);
    let api = &s["api"];
    assert_eq!(
        api["environment"]["NODE_OPTIONS"].as_str(),
        Some(
            "--max-old-space-size=256 --require /otel-auto-instrumentation-nodejs/obs-stack-guard/register.js"
        )
    );
    let nets: Vec<&str> = api["networks"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(nets, ["front", "back", "obs"]);
    assert_eq!(
        s["billing"]["environment"]["JAVA_TOOL_OPTIONS"].as_str(),
        Some("-javaagent:/otel-auto-instrumentation-java/javaagent.jar")
    );
    assert!(s.get("worker").is_none(), "no Go agent: not instrumented");
    assert!(s.get("legacy").is_none(), "opted out by label");
    assert!(s.get("db").is_none());
    let worker = p.apps.iter().find(|a| a.name == "worker").unwrap();
    assert!(!worker.instrumented && worker.reason.contains("go"));
    // prod profile samples 10%
    let (files, _) = render_with(&InitOptions {
        profile: Profile::Prod,
        ..lab()
    });
    let v = yaml(&files["obs-stack.apps.yml"]);
    assert_eq!(
        v["services"]["shop"]["environment"]["OTEL_TRACES_SAMPLER_ARG"].as_str(),
        Some("0.1")
    );
}

#[test]
fn docker_compose_accepts_the_files() {
    if !have("docker-compose") {
        eprintln!("skipping: docker-compose is not installed");
        return;
    }
    for opts in [full(), lab()] {
        let (files, _) = render_with(&opts);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &files);
        std::fs::write(dir.path().join("compose.yaml"), PROJECT).unwrap();
        std::fs::create_dir_all(dir.path().join("shop")).unwrap();
        let (ok, out) = run(Command::new("docker-compose").current_dir(dir.path()).args([
            "-f",
            "obs-stack.yml",
            "config",
            "-q",
        ]));
        assert!(ok, "docker-compose rejects obs-stack.yml:\n{out}");
        // The apps override merges into the user's own project (the stack is a project of
        // its own): no dependency on a service of another project.
        let (ok, out) = run(Command::new("docker-compose").current_dir(dir.path()).args([
            "-f",
            "compose.yaml",
            "-f",
            "obs-stack.apps.yml",
            "config",
        ]));
        assert!(ok, "docker-compose rejects the merged files:\n{out}");
        // The merge keeps the user's dependencies and networks and adds ours.
        let merged = yaml(&out);
        let api = &merged["services"]["api"];
        assert!(
            api["depends_on"].get("db").is_some(),
            "user's depends_on lost:\n{out}"
        );
        assert!(api["depends_on"].get("otel-agent-node").is_none());
        assert!(api["networks"].get("front").is_some() && api["networks"].get("obs").is_some());
        assert_eq!(
            merged["networks"]["obs"]["external"].as_bool(),
            Some(true),
            "{out}"
        );
        for (name, v) in merged["volumes"].as_mapping().unwrap() {
            if name.as_str().unwrap().starts_with("otel-agent-") {
                assert_eq!(
                    v["external"].as_bool(),
                    Some(true),
                    "agent volume {name:?} must be external"
                );
            }
        }
        assert!(merged["services"]["billing"]["depends_on"].get("db").is_some());
    }
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    if !have("promtool") {
        eprintln!("skipping: promtool is not installed");
        return;
    }
    for opts in [
        full(),
        lab(),
        InitOptions {
            profile: Profile::Prod,
            ..full()
        },
    ] {
        let (files, p) = render_with(&opts);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &files);
        let prom = dir.path().join("obs-stack/prometheus");
        let (ok, out) = run(Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(prom.join("prometheus.yml")));
        assert!(ok, "promtool check config:\n{out}");
        let (ok, out) = run(Command::new("promtool")
            .args(["check", "rules"])
            .arg(prom.join("rules/obs-stack.rules.yml")));
        assert!(ok, "promtool check rules:\n{out}");
        let (ok, out) = run(Command::new("promtool").current_dir(prom.join("rules")).args([
            "test",
            "rules",
            "obs-stack.rules.test.yml",
        ]));
        assert!(ok, "promtool test rules ({}):\n{out}", p.profile);
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

#[test]
fn rule_tests_fail_when_a_rule_is_wrong() {
    // The generated unit tests must be able to fail: break the error-ratio recording rule.
    if !have("promtool") {
        return;
    }
    let (mut files, _) = render_with(&lab());
    let rules = files
        .get_mut("obs-stack/prometheus/rules/obs-stack.rules.yml")
        .unwrap();
    *rules = rules.replacen("=~\"5..\"", "=~\"4..\"", 1);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &files);
    let (ok, out) = run(Command::new("promtool")
        .current_dir(dir.path().join("obs-stack/prometheus/rules"))
        .args(["test", "rules", "obs-stack.rules.test.yml"]));
    assert!(!ok, "a broken rule passed its tests:\n{out}");
}

#[test]
fn alertmanager_config_passes_amtool() {
    if !have("amtool") {
        eprintln!("skipping: amtool is not installed");
        return;
    }
    for opts in [full(), lab()] {
        let (files, _) = render_with(&opts);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &files);
        let (ok, out) = run(Command::new("amtool")
            .args(["check-config"])
            .arg(dir.path().join("obs-stack/alertmanager/alertmanager.yml")));
        assert!(ok, "amtool check-config:\n{out}");
    }
}

/// Grafana, Tempo and Loki do not run in the lab (no images): their files are validated
/// structurally here, not by the real binaries.
#[test]
fn grafana_tempo_loki_configs_are_structurally_valid() {
    let (files, _) = render_with(&full());
    let ds = yaml(&files["obs-stack/grafana/provisioning/datasources/datasources.yaml"]);
    assert_eq!(ds["apiVersion"].as_u64(), Some(1));
    let uids: BTreeSet<&str> = ds["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    for d in ds["datasources"].as_sequence().unwrap() {
        for k in ["name", "type", "uid", "url"] {
            assert!(d.get(k).is_some(), "datasource without {k}: {d:?}");
        }
    }
    assert!(uids.contains("obs-prometheus") && uids.contains("obs-tempo") && uids.contains("obs-loki"));
    let prov = yaml(&files["obs-stack/grafana/provisioning/dashboards/dashboards.yaml"]);
    assert_eq!(prov["providers"][0]["type"].as_str(), Some("file"));
    assert_eq!(
        prov["providers"][0]["options"]["path"].as_str(),
        Some("/etc/grafana/dashboards")
    );
    let mut boards = 0;
    for (name, text) in &files {
        if let Some(_b) = name.strip_prefix("obs-stack/grafana/dashboards/") {
            boards += 1;
            let d: serde_json::Value = serde_json::from_str(text).unwrap();
            assert!(d["uid"].is_string() && d["title"].is_string(), "{name}");
            for p in d["panels"].as_array().unwrap() {
                if p["type"] == "row" {
                    continue;
                }
                assert_eq!(p["datasource"]["uid"], "obs-prometheus", "{name}: {}", p["title"]);
                for t in p["targets"].as_array().unwrap() {
                    assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
                }
            }
        }
    }
    assert_eq!(boards, 5, "RED, Python, Node.js, JVM and containers dashboards");
    let tempo = yaml(&files["obs-stack/tempo/tempo.yaml"]);
    assert!(tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"].is_mapping());
    assert_eq!(tempo["storage"]["trace"]["backend"].as_str(), Some("local"));
    assert_eq!(
        tempo["compactor"]["compaction"]["block_retention"].as_str(),
        Some("48h")
    );
    let loki = yaml(&files["obs-stack/loki/loki.yaml"]);
    assert_eq!(
        loki["limits_config"]["allow_structured_metadata"].as_bool(),
        Some(true)
    );
    assert_eq!(loki["compactor"]["retention_enabled"].as_bool(), Some(true));
    assert_eq!(
        loki["schema_config"]["configs"][0]["store"].as_str(),
        Some("tsdb")
    );
}

#[test]
fn collector_config_shape() {
    let (files, _) = render_with(&full());
    let c = yaml(&files["obs-stack/otelcol/config.yaml"]);
    let traces = &c["service"]["pipelines"]["traces"];
    let procs: Vec<&str> = traces["processors"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(procs[0], "memory_limiter", "memory_limiter must come first");
    assert!(procs.contains(&"redaction/pii"));
    let red = &c["processors"]["redaction/pii"];
    assert_eq!(red["allow_all_keys"].as_bool(), Some(true));
    let blocked: Vec<&str> = red["blocked_values"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let email = regex::Regex::new(blocked[0]).unwrap();
    assert!(email.is_match("jane.doe@example.com"));
    let card = regex::Regex::new(blocked[1]).unwrap();
    assert!(card.is_match("4111 1111 1111 1111") && card.is_match("4111111111111111"));
    assert_eq!(
        c["connectors"]["spanmetrics"]["histogram"]["unit"].as_str(),
        Some("s")
    );
    assert!(c["exporters"].get("prometheus").is_some());
    assert!(
        c["exporters"]["prometheus"].get("namespace").is_none(),
        "no namespace: names as the agents emit them"
    );
    assert_eq!(
        c["exporters"]["otlphttp/loki"]["endpoint"].as_str(),
        Some("http://loki:3100/otlp")
    );
    assert!(c["receivers"]["docker_stats"].is_mapping() && c["receivers"]["filelog"].is_mapping());
    // Lab: no Tempo/Loki -> no exporters to them, no container logs.
    let (files, _) = render_with(&lab());
    let c = yaml(&files["obs-stack/otelcol/config.yaml"]);
    assert!(c["exporters"].get("otlp/tempo").is_none() && c["exporters"].get("otlphttp/loki").is_none());
    assert!(c["service"]["pipelines"].get("logs").is_none());
}

/// The real collector validates its config (needs the lab image; skipped otherwise).
#[test]
fn collector_binary_validates_the_config() {
    let image = std::env::var("OBS_LAB_COLLECTOR_IMAGE").unwrap_or_else(|_| "obs-lab/otelcol:0.159.0".into());
    let present = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        eprintln!("skipping: collector image {image} is not built (tests/lab/build-collector.sh)");
        return;
    }
    let out = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "/otelcol", &image, "components"])
        .output()
        .unwrap();
    let comps = obs_stack::init::plan::parse_components(&String::from_utf8_lossy(&out.stdout));
    // The check can fail: a misspelt component is rejected.
    {
        let (files, _) = render_with(&full());
        let dir = tempfile::tempdir().unwrap();
        let bad = files["obs-stack/otelcol/config.yaml"].replace("memory_limiter", "memory_limitr");
        std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
        let (ok, out) = run(Command::new("docker")
            .args(["run", "--rm", "--entrypoint", "/otelcol", "-v"])
            .arg(format!("{}:/cfg.yaml:ro", dir.path().join("bad.yaml").display()))
            .args([&image, "validate", "--config=/cfg.yaml"]));
        assert!(
            !ok && out.contains("memory_limitr"),
            "a broken config passed validation:\n{out}"
        );
    }
    for (label, mut opts) in [("full", full()), ("lab", lab())] {
        opts.collector_components = Some(comps.clone());
        let (files, p) = render_with(&opts);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &files);
        let cfg = dir.path().join("obs-stack/otelcol/config.yaml");
        let (ok, out) = run(Command::new("docker")
            .args(["run", "--rm", "--entrypoint", "/otelcol", "-v"])
            .arg(format!("{}:/cfg.yaml:ro", cfg.display()))
            .args([&image, "validate", "--config=/cfg.yaml"]));
        assert!(
            ok,
            "collector rejects the {label} config (warnings: {:?}):\n{out}\n{}",
            p.warnings, files["obs-stack/otelcol/config.yaml"]
        );
    }
}

// ---- the CLI: idempotence, user edits, secrets, dry-run ---------------------------------

/// init itself, against the lab's engine and agent images (it fills the agent volumes).
fn init_cmd(dir: &Path, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_obs-stack"));
    cmd.envs(common::lab_agent_env());
    cmd.current_dir(dir).args([
        "init",
        "--static",
        "--assume",
        "shop=python:flask",
        "--assume",
        "api=node:express",
    ]);
    cmd.args(["--assume", "billing=java", "--assume", "db=infra"])
        .args(extra);
    run(&mut cmd)
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn cli_is_idempotent_and_keeps_user_edits() {
    if !common::docker_tests_enabled("cli_is_idempotent_and_keeps_user_edits") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), PROJECT).unwrap();
    let user_file = std::fs::read(dir.path().join("compose.yaml")).unwrap();

    let (ok, out) = init_cmd(dir.path(), &["--dry-run"]);
    assert!(ok, "{out}");
    assert_eq!(snapshot(dir.path()).len(), 1, "--dry-run wrote files");

    let (ok, out) = init_cmd(dir.path(), &[]);
    assert!(ok, "{out}");
    let first = snapshot(dir.path());
    assert!(first.contains_key("obs-stack.yml") && first.contains_key(".obs-stack/manifest.json"));
    assert_eq!(
        first["compose.yaml"], user_file,
        "the user's compose file changed"
    );
    // Secrets: mode 0600, random, never admin/admin.
    use std::os::unix::fs::PermissionsExt;
    let env_path = dir.path().join("obs-stack/.env");
    assert_eq!(
        std::fs::metadata(&env_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let env = String::from_utf8(first["obs-stack/.env"].clone()).unwrap();
    let pw = env
        .lines()
        .find_map(|l| l.strip_prefix("GF_SECURITY_ADMIN_PASSWORD="))
        .unwrap();
    assert!(pw.len() >= 32 && pw != "admin");

    // Second run: byte-identical output, every file reported unchanged.
    let (ok, out) = init_cmd(dir.path(), &["--json"]);
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "unchanged"),
        "{out}"
    );
    assert_eq!(snapshot(dir.path()), first);

    // A user edit is kept; the new version goes next to it.
    let prom = dir.path().join("obs-stack/prometheus/prometheus.yml");
    let edited = format!("{}\n# my edit\n", std::fs::read_to_string(&prom).unwrap());
    std::fs::write(&prom, &edited).unwrap();
    let (ok, out) = init_cmd(dir.path(), &["--profile", "prod"]);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(&prom).unwrap(),
        edited,
        "edited file overwritten"
    );
    assert!(
        dir.path()
            .join("obs-stack/prometheus/prometheus.yml.new")
            .is_file()
    );
    assert!(out.contains("edited"), "{out}");
    // Untouched generated files follow the new profile.
    assert!(
        std::fs::read_to_string(dir.path().join("obs-stack.apps.yml"))
            .unwrap()
            .contains("OTEL_TRACES_SAMPLER_ARG: \"0.1\"")
    );
    // Still kept on the next run (the manifest remembers the old hash), replaced with --force.
    let (ok, _) = init_cmd(dir.path(), &["--profile", "prod"]);
    assert!(ok);
    assert_eq!(std::fs::read_to_string(&prom).unwrap(), edited);
    let (ok, out) = init_cmd(dir.path(), &["--profile", "prod", "--force"]);
    assert!(ok, "{out}");
    assert!(!std::fs::read_to_string(&prom).unwrap().contains("# my edit"));
    // The same secrets survive every run.
    assert_eq!(std::fs::read(&env_path).unwrap(), first["obs-stack/.env"]);
}

#[test]
fn cli_refuses_an_invalid_compose_file_before_anything_else() {
    // The schema check runs before the engine is asked: no Docker needed.
    for (bad, why) in [
        ("services:\n  web:\n    imag: nginx\n", "imag"),
        ("services:\n  web:\n    image: nginx\n    ports: 5000\n", "ports"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), bad).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_obs-stack"))
            .current_dir(dir.path())
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .args(["init"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{why}: {err}");
        assert!(
            err.contains("not a valid Compose file") && err.contains(why),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "{why}: files written"
        );
    }
}

#[test]
fn cli_reuses_its_own_flags_on_a_rerun() {
    if !common::docker_tests_enabled("cli_reuses_its_own_flags_on_a_rerun") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), PROJECT).unwrap();
    let (ok, out) = init_cmd(dir.path(), &["--disable", "grafana,loki", "--profile", "prod"]);
    assert!(ok, "{out}");
    let first = snapshot(dir.path());
    assert!(!String::from_utf8_lossy(&first["obs-stack.yml"]).contains("grafana:"));
    // Plain re-run: the same files (grafana and loki stay off, prod stays on).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_obs-stack"));
    let o = cmd
        .envs(common::lab_agent_env())
        .current_dir(dir.path())
        .args(["init", "--static"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        snapshot(dir.path()),
        first,
        "a re-run without flags changed the files"
    );
    // --fresh forgets them.
    let o = Command::new(env!("CARGO_BIN_EXE_obs-stack"))
        .envs(common::lab_agent_env())
        .current_dir(dir.path())
        .args([
            "init",
            "--static",
            "--fresh",
            "--assume",
            "shop=python:flask",
            "--assume",
            "api=node",
        ])
        .args(["--assume", "billing=java", "--assume", "db=infra"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read_to_string(dir.path().join("obs-stack.yml"))
            .unwrap()
            .contains("grafana:")
    );
    // Worse output never replaces good: detection now knows nothing about `shop` (no
    // --assume, no container, no build context): the overrides that instrument it stay.
    let apps = std::fs::read(dir.path().join("obs-stack.apps.yml")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_obs-stack"))
        .envs(common::lab_agent_env())
        .current_dir(dir.path())
        .args([
            "init",
            "--static",
            "--fresh",
            "--assume",
            "api=node",
            "--assume",
            "billing=java",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("obs-stack.apps.yml")).unwrap(),
        apps,
        "{err}"
    );
    assert!(err.contains("detection found nothing for shop"), "{err}");
    assert!(dir.path().join("obs-stack.apps.yml.new").exists());
}

#[test]
fn cli_rejects_bad_input_with_exit_code_2() {
    if !common::docker_tests_enabled("cli_rejects_bad_input_with_exit_code_2") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = init_cmd(dir.path(), &[]);
    assert!(!ok && out.contains("no compose file"), "{out}");
    std::fs::write(dir.path().join("compose.yaml"), "services: [oops").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_obs-stack"))
        .current_dir(dir.path())
        .args(["init", "--static"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(dir.path().join("compose.yaml"), PROJECT).unwrap();
    for bad in [
        vec!["--assume", "nosuch=python"],
        vec!["--image", "nosuch=x"],
        vec!["--disable", "everything"],
        vec!["--port", "grafana=notaport"],
        vec!["--slo", "shop=abc"],
        vec!["--webhook", "ftp://x"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_obs-stack"))
            .current_dir(dir.path())
            .args(["init", "--static"])
            .args(&bad)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!dir.path().join("obs-stack.yml").exists(), "{bad:?} wrote files");
    }
}

#[test]
fn template_overlay_replaces_embedded_files_and_strict_undefined_catches_typos() {
    if !common::docker_tests_enabled(
        "template_overlay_replaces_embedded_files_and_strict_undefined_catches_typos",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), PROJECT).unwrap();
    let overlay = dir.path().join("tpl");
    std::fs::create_dir_all(overlay.join("defaults")).unwrap();
    std::fs::write(
        overlay.join("defaults/redaction.yaml"),
        "blocked_values: [\"ACME-[0-9]{6}\"]\nblocked_key_patterns: [\".*secret.*\"]\n",
    )
    .unwrap();
    let (ok, out) = init_cmd(dir.path(), &["--templates", overlay.to_str().unwrap()]);
    assert!(ok, "{out}");
    let c = std::fs::read_to_string(dir.path().join("obs-stack/otelcol/config.yaml")).unwrap();
    assert!(c.contains("ACME-[0-9]{6}"), "overlay not used");
    std::fs::create_dir_all(overlay.join("stack")).unwrap();
    std::fs::write(
        overlay.join("stack/obs-stack.yml.j2"),
        "services: {{ no_such_variable }}\n",
    )
    .unwrap();
    let (ok, out) = init_cmd(dir.path(), &["--templates", overlay.to_str().unwrap()]);
    assert!(
        !ok && (out.contains("no_such_variable") || out.contains("undefined")),
        "{out}"
    );
}

/// A port the user's own containers publish is not the stack's: init moves the stack off it
/// (as `doctor` says it will), even when the last run had chosen it.
#[test]
fn cli_moves_off_a_port_the_users_app_publishes() {
    if !common::docker_tests_enabled("cli_moves_off_a_port_the_users_app_publishes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let project = common::unique_name("obsports").replace(['-', '.'], "");
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: obs-lab/base:bookworm\n    command: [\"sleep\", \"300\"]\n    \
             ports: [\"127.0.0.1:{port}:80\"]\n"
        ),
    )
    .unwrap();
    let up = Command::new("docker-compose")
        .current_dir(dir.path())
        .args(["-p", &project, "up", "-d"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    // The last run had put Prometheus on that port (free then).
    std::fs::create_dir_all(dir.path().join(".obs-stack")).unwrap();
    std::fs::write(
        dir.path().join(".obs-stack/manifest.json"),
        format!(r#"{{"version":1,"generator":"test","files":{{}},"ports":{{"prometheus":{port}}}}}"#),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_obs-stack"))
        .envs(common::lab_agent_env())
        .env("COMPOSE_PROJECT_NAME", &project)
        .current_dir(dir.path())
        .args(["--json", "init", "--assume", "web=none"])
        .output()
        .unwrap();
    let _ = Command::new("docker-compose")
        .current_dir(dir.path())
        .args(["-p", &project, "down", "-t", "0"])
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let chosen = report["ports"]["prometheus"].as_u64().unwrap();
    assert_ne!(
        chosen,
        u64::from(port),
        "the stack kept a port the user's app publishes"
    );
}
