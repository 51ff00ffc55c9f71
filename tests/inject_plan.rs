//! The inject planning core over real `docker inspect` JSON captured from lab containers
//! (tests/data/inspect/capture.sh): the config-preservation matrix, per-runtime env, skips,
//! fallbacks and idempotency. Pure: no Docker needed.
use std::collections::HashMap;

use bollard::models::{ContainerInspectResponse, MountType};
use obs_stack::agents::Catalog;
use obs_stack::inject::plan::{
    self, Action, CreateSpec, LABEL_DIGEST, LABEL_INJECTED, Plan, PlanOptions, Profile, RuntimeInfo,
    spec_from_inspect,
};

fn load(name: &str) -> ContainerInspectResponse {
    let path = format!("{}/tests/data/inspect/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rt(lang: &str) -> RuntimeInfo {
    RuntimeInfo {
        language: Some(lang.into()),
        source: "test".into(),
        ..Default::default()
    }
}

fn plan_for(name: &str, lang: &str, opts: &PlanOptions) -> Plan {
    plan::plan(&load(name), &rt(lang), &Catalog::builtin().unwrap(), opts, None)
}

fn env_map(spec: &CreateSpec) -> HashMap<String, String> {
    plan::env_pairs(spec.body.env.as_deref().unwrap_or(&[]))
        .into_iter()
        .collect()
}

fn spec(p: &Plan) -> &CreateSpec {
    assert_eq!(p.action, Action::Inject, "{:?}", p.action);
    p.create.as_ref().expect("create spec")
}

#[test]
fn static_ips_and_aliases_on_two_networks_are_kept() {
    let p = plan_for("matrix-static", "python", &PlanOptions::default());
    let s = spec(&p);
    let host = s.body.host_config.as_ref().unwrap();
    let primary_name = host.network_mode.clone().unwrap();
    assert!(primary_name.ends_with("-front"));
    let eps = s
        .body
        .networking_config
        .as_ref()
        .unwrap()
        .endpoints_config
        .as_ref()
        .unwrap();
    let primary = &eps[&primary_name];
    assert_eq!(
        primary.aliases.as_deref(),
        Some(&["api".to_string()][..]),
        "Docker's short-ID alias dropped"
    );
    assert_eq!(
        primary.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
        Some("172.29.10.10")
    );
    assert_eq!(s.connect.len(), 1);
    let back = &s.connect[0];
    assert!(back.network.ends_with("-back"));
    assert_eq!(
        back.endpoint.aliases.as_deref(),
        Some(&["api-internal".to_string()][..])
    );
    assert_eq!(
        back.endpoint
            .ipam_config
            .as_ref()
            .unwrap()
            .ipv4_address
            .as_deref(),
        Some("172.29.11.10")
    );
    assert_eq!(p.networks.len(), 2);
    // Default hostname (= old short ID) is not copied.
    assert_eq!(s.body.hostname, None);
    assert!(s.start);
}

#[test]
fn volumes_binds_and_ports_are_kept_and_the_agent_is_mounted_read_only() {
    let orig = load("matrix-static");
    let p = plan_for("matrix-static", "python", &PlanOptions::default());
    let host = spec(&p).body.host_config.clone().unwrap();
    assert_eq!(
        host.binds,
        orig.host_config.as_ref().unwrap().binds,
        "named volume bind kept"
    );
    let mounts = host.mounts.unwrap();
    let anon = mounts
        .iter()
        .find(|m| m.target.as_deref() == Some("/scratch"))
        .expect("anonymous volume");
    assert_eq!(anon.typ, Some(MountType::VOLUME));
    let anon_name = orig
        .mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination.as_deref() == Some("/scratch"))
        .and_then(|m| m.name.clone());
    assert_eq!(anon.source, anon_name, "the same anonymous volume, by name");
    let agent = mounts
        .iter()
        .find(|m| m.target.as_deref() == Some("/otel-auto-instrumentation-python"))
        .unwrap();
    assert_eq!(agent.read_only, Some(true));
    assert_eq!(agent.source.as_deref(), Some("obs-agent-python-0.65b0"));
    assert_eq!(
        host.port_bindings,
        orig.host_config.as_ref().unwrap().port_bindings
    );
}

#[test]
fn python_env_follows_operator_order_and_sets_only_unset_otel_vars() {
    let p = plan_for("matrix-static", "python", &PlanOptions::default());
    let env = env_map(spec(&p));
    assert_eq!(
        env["PYTHONPATH"],
        "/otel-auto-instrumentation-python/obs-stack-guard:/otel-auto-instrumentation-python"
    );
    assert_eq!(env["OTEL_SERVICE_NAME"], "matrix-static");
    assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel-collector:4318");
    assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
    assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
    assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "1.0");
    assert_eq!(
        env["OTEL_RESOURCE_ATTRIBUTES"],
        "deployment.environment.name=dev,obs_stack.sampling_ratio=1.0"
    );
    // The image's own variables are untouched.
    assert_eq!(env["PYTHON_VERSION"], "3.11.2");
    assert_eq!(env["FLASK_APP"], "app.py");
}

#[test]
fn an_existing_pythonpath_stays_in_the_middle() {
    let mut orig = load("matrix-static");
    orig.config
        .as_mut()
        .unwrap()
        .env
        .as_mut()
        .unwrap()
        .push("PYTHONPATH=/app/lib:/vendor".into());
    let p = plan::plan(
        &orig,
        &rt("python"),
        &Catalog::builtin().unwrap(),
        &PlanOptions::default(),
        None,
    );
    let env = env_map(spec(&p));
    assert_eq!(
        env["PYTHONPATH"],
        "/otel-auto-instrumentation-python/obs-stack-guard:/app/lib:/vendor:/otel-auto-instrumentation-python"
    );
    let change = p.env.iter().find(|c| c.name == "PYTHONPATH").unwrap();
    assert_eq!(change.before.as_deref(), Some("/app/lib:/vendor"));
}

#[test]
fn prod_profile_samples_ten_percent_and_turns_noisy_instrumentations_off() {
    let opts = PlanOptions {
        profile: Profile::Prod,
        ..Default::default()
    };
    let env = env_map(spec(&plan_for("matrix-static", "python", &opts)));
    assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.1");
    assert!(env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"].contains("requests"));
    let env = env_map(spec(&plan_for("shop-web-1", "node", &opts)));
    assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.1");
    assert!(env.contains_key("OTEL_NODE_DISABLED_INSTRUMENTATIONS"));
}

#[test]
fn healthcheck_restart_policy_limits_caps_and_logging_are_kept() {
    let orig = load("matrix-health");
    let p = plan_for("matrix-health", "python", &PlanOptions::default());
    let s = spec(&p);
    assert!(s.has_healthcheck);
    assert_eq!(s.body.healthcheck, orig.config.as_ref().unwrap().healthcheck);
    let h = s.body.host_config.as_ref().unwrap();
    let oh = orig.host_config.as_ref().unwrap();
    assert_eq!(h.restart_policy, oh.restart_policy);
    assert_eq!(h.restart_policy.as_ref().unwrap().maximum_retry_count, Some(3));
    assert_eq!(h.memory, Some(256 * 1024 * 1024));
    assert_eq!(h.nano_cpus, Some(500_000_000));
    assert_eq!(h.cap_drop.as_deref(), Some(&["CAP_NET_RAW".to_string()][..]));
    assert_eq!(h.log_config, oh.log_config);
    // Default bridge: no endpoint aliases or static addresses are sent.
    let eps = s
        .body
        .networking_config
        .as_ref()
        .unwrap()
        .endpoints_config
        .as_ref()
        .unwrap();
    assert_eq!(eps["bridge"].aliases, None);
}

#[test]
fn read_only_root_tmpfs_user_and_entrypoint_are_kept_for_node() {
    let orig = load("matrix-readonly");
    let p = plan_for("matrix-readonly", "node", &PlanOptions::default());
    let s = spec(&p);
    let h = s.body.host_config.as_ref().unwrap();
    assert_eq!(h.readonly_rootfs, Some(true));
    assert_eq!(h.tmpfs.as_ref().unwrap()["/tmp"], "size=16m");
    assert_eq!(s.body.user.as_deref(), Some("10001:10001"));
    assert_eq!(s.body.entrypoint.as_deref(), Some(&["/bin/sh".to_string()][..]));
    assert_eq!(s.body.cmd, orig.config.as_ref().unwrap().cmd);
    assert_eq!(s.body.working_dir.as_deref(), Some("/app"));
    let env = env_map(s);
    assert_eq!(
        env["NODE_OPTIONS"],
        "--require /otel-auto-instrumentation-nodejs/obs-stack-guard/register.js"
    );
    assert_eq!(
        env["OTEL_NODE_RESOURCE_DETECTORS"],
        "env,host,os,process,serviceinstance,container"
    );
}

#[test]
fn compose_labels_stay_and_user_settings_win() {
    let p = plan_for("shop-web-1", "node", &PlanOptions::default());
    let s = spec(&p);
    let labels = s.body.labels.as_ref().unwrap();
    assert_eq!(labels["com.docker.compose.project"], "shop");
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(
        labels["com.docker.compose.config-hash"], "abc123",
        "compose still owns it"
    );
    assert_eq!(labels[LABEL_INJECTED], "node");
    let env = env_map(s);
    assert_eq!(
        env["OTEL_SERVICE_NAME"], "shop-frontend",
        "the user's own value is kept"
    );
    assert_eq!(
        env["NODE_OPTIONS"],
        "--max-old-space-size=256 --require /otel-auto-instrumentation-nodejs/obs-stack-guard/register.js",
        "appended, never replaced"
    );
    assert_eq!(
        env["OTEL_RESOURCE_ATTRIBUTES"],
        "service.namespace=shop,deployment.environment.name=dev,obs_stack.sampling_ratio=1.0"
    );
    assert!(p.env.iter().all(|c| c.name != "OTEL_SERVICE_NAME"));
}

#[test]
fn service_name_comes_from_the_compose_service_label() {
    let mut orig = load("shop-web-1");
    orig.config
        .as_mut()
        .unwrap()
        .env
        .as_mut()
        .unwrap()
        .retain(|e| !e.starts_with("OTEL_SERVICE_NAME="));
    let p = plan::plan(
        &orig,
        &rt("node"),
        &Catalog::builtin().unwrap(),
        &PlanOptions::default(),
        None,
    );
    assert_eq!(env_map(spec(&p))["OTEL_SERVICE_NAME"], "web");
}

#[test]
fn another_vendor_agent_is_left_alone_unless_forced() {
    let p = plan_for("matrix-datadog", "java", &PlanOptions::default());
    match &p.action {
        Action::Skip { reason } => assert!(reason.contains("datadog"), "{reason}"),
        a => panic!("expected a skip, got {a:?}"),
    }
    assert!(p.create.is_none());
    let forced = PlanOptions {
        force: true,
        ..Default::default()
    };
    let p = plan_for("matrix-datadog", "java", &forced);
    let env = env_map(spec(&p));
    assert_eq!(
        env["JAVA_TOOL_OPTIONS"],
        "-Xmx256m -javaagent:/dd/dd-java-agent.jar -javaagent:/otel-auto-instrumentation-java/javaagent.jar"
    );
    assert!(p.warnings.iter().any(|w| w.contains("--force")));
}

#[test]
fn java_agent_is_appended_to_the_users_options_and_cloud_providers_are_off() {
    let p = plan_for("matrix-java", "java", &PlanOptions::default());
    let env = env_map(spec(&p));
    assert_eq!(
        env["JAVA_TOOL_OPTIONS"],
        "-Xmx128m -javaagent:/otel-auto-instrumentation-java/javaagent.jar"
    );
    for k in ["AWS", "GCP", "AZURE"] {
        assert_eq!(env[&format!("OTEL_RESOURCE_PROVIDERS_{k}_ENABLED")], "false");
    }
    assert_eq!(
        p.agent.as_ref().unwrap().check_file,
        "javaagent.jar",
        "only when the jar is present"
    );
}

#[test]
fn dotnet_gets_the_coreclr_profiler_and_startup_hook() {
    let p = plan_for("matrix-go", "dotnet", &PlanOptions::default());
    let env = env_map(spec(&p));
    assert_eq!(env["CORECLR_ENABLE_PROFILING"], "1");
    assert_eq!(env["CORECLR_PROFILER"], "{918728DD-259F-4A6A-AC2B-B85E1B658318}");
    assert_eq!(
        env["CORECLR_PROFILER_PATH"],
        "/otel-auto-instrumentation-dotnet/linux-x64/OpenTelemetry.AutoInstrumentation.Native.so"
    );
    assert_eq!(
        env["DOTNET_STARTUP_HOOKS"],
        "/otel-auto-instrumentation-dotnet/net/OpenTelemetry.AutoInstrumentation.StartupHook.dll"
    );
    assert_eq!(env["OTEL_DOTNET_AUTO_HOME"], "/otel-auto-instrumentation-dotnet");
    let mut musl = rt("dotnet");
    musl.libc = Some("musl".into());
    let p = plan::plan(
        &load("matrix-go"),
        &musl,
        &Catalog::builtin().unwrap(),
        &PlanOptions::default(),
        None,
    );
    let env = env_map(spec(&p));
    assert!(env["CORECLR_PROFILER_PATH"].contains("/linux-musl-x64/"));
}

#[test]
fn go_and_unknown_runtimes_get_the_generic_fallback() {
    let p = plan_for("matrix-go", "go", &PlanOptions::default());
    match &p.action {
        Action::Fallback { reason } => assert!(reason.contains("eBPF"), "{reason}"),
        a => panic!("expected fallback, got {a:?}"),
    }
    let p = plan::plan(
        &load("matrix-go"),
        &RuntimeInfo::default(),
        &Catalog::builtin().unwrap(),
        &PlanOptions::default(),
        None,
    );
    match &p.action {
        Action::Fallback { reason } => assert!(reason.contains("--runtime"), "{reason}"),
        a => panic!("expected fallback, got {a:?}"),
    }
}

#[test]
fn unsupported_python_builds_are_skipped_at_plan_time() {
    let mut r = rt("python");
    r.runtime_version = Some("3.12.1".into());
    let p = plan::plan(
        &load("matrix-static"),
        &r,
        &Catalog::builtin().unwrap(),
        &PlanOptions::default(),
        None,
    );
    assert!(
        matches!(&p.action, Action::Skip { reason } if reason.contains("3.11")),
        "{:?}",
        p.action
    );
    let mut r = rt("python");
    r.libc = Some("musl".into());
    let p = plan::plan(
        &load("matrix-static"),
        &r,
        &Catalog::builtin().unwrap(),
        &PlanOptions::default(),
        None,
    );
    // musl containers get the Operator image's musl build.
    assert_eq!(
        p.agent.as_ref().unwrap().sources,
        vec!["/autoinstrumentation-musl/.".to_string()]
    );
    // A runtime with no musl build at all is skipped.
    let mut cat = Catalog::builtin().unwrap();
    cat.runtimes.get_mut("python").unwrap().musl_sources.clear();
    let p = plan::plan(&load("matrix-static"), &r, &cat, &PlanOptions::default(), None);
    assert!(
        matches!(&p.action, Action::Skip { reason } if reason.contains("musl")),
        "{:?}",
        p.action
    );
}

#[test]
fn host_network_has_no_endpoints_or_hostname_and_prometheus_port_is_not_published() {
    let opts = PlanOptions {
        metrics_prometheus: true,
        extra_networks: vec!["obs".into()],
        ..Default::default()
    };
    let p = plan_for("matrix-hostnet", "python", &opts);
    let s = spec(&p);
    assert!(s.body.networking_config.is_none());
    assert!(s.connect.is_empty());
    assert_eq!(s.body.hostname, None);
    let h = s.body.host_config.as_ref().unwrap();
    assert!(
        h.port_bindings
            .as_ref()
            .is_none_or(|b| !b.contains_key("9464/tcp"))
    );
    assert!(p.warnings.iter().any(|w| w.contains("cannot attach obs")));
}

#[test]
fn prometheus_metrics_publish_a_loopback_port() {
    let opts = PlanOptions {
        metrics_prometheus: true,
        ..Default::default()
    };
    let p = plan_for("matrix-static", "python", &opts);
    let s = spec(&p);
    let env = env_map(s);
    assert_eq!(env["OTEL_METRICS_EXPORTER"], "prometheus");
    assert_eq!(env["OTEL_EXPORTER_PROMETHEUS_HOST"], "0.0.0.0");
    assert_eq!(env["OTEL_EXPORTER_PROMETHEUS_PORT"], "9464");
    let b = &s
        .body
        .host_config
        .as_ref()
        .unwrap()
        .port_bindings
        .as_ref()
        .unwrap()["9464/tcp"];
    assert_eq!(b.as_ref().unwrap()[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert!(
        s.body
            .exposed_ports
            .as_ref()
            .unwrap()
            .contains(&"9464/tcp".to_string())
    );
}

#[test]
fn the_observability_network_is_connected_before_start() {
    let opts = PlanOptions {
        extra_networks: vec!["obs-stack".into()],
        ..Default::default()
    };
    let p = plan_for("matrix-static", "python", &opts);
    let s = spec(&p);
    assert!(s.connect.iter().any(|c| c.network == "obs-stack"));
    assert!(p.networks.contains(&"obs-stack".to_string()));
}

#[test]
fn same_inputs_give_the_same_digest_and_a_rerun_is_a_noop() {
    let cat = Catalog::builtin().unwrap();
    let orig = load("matrix-static");
    let a = plan::plan(&orig, &rt("python"), &cat, &PlanOptions::default(), None);
    let b = plan::plan(&orig, &rt("python"), &cat, &PlanOptions::default(), None);
    assert_eq!(a.digest, b.digest);
    let label = a.create.as_ref().unwrap().body.labels.as_ref().unwrap()[LABEL_DIGEST].clone();
    assert_eq!(Some(label.clone()), a.digest);
    let again = plan::plan(&orig, &rt("python"), &cat, &PlanOptions::default(), Some(&label));
    assert!(matches!(again.action, Action::NoOp { .. }), "{:?}", again.action);
    assert!(again.create.is_none());
    // Different options: a new plan.
    let prod = PlanOptions {
        profile: Profile::Prod,
        ..Default::default()
    };
    let c = plan::plan(&orig, &rt("python"), &cat, &prod, Some(&label));
    assert_eq!(c.action, Action::Inject);
}

#[test]
fn an_instrumented_env_reads_as_already_instrumented() {
    for (name, lang) in [
        ("matrix-static", "python"),
        ("shop-web-1", "node"),
        ("matrix-java", "java"),
    ] {
        let p = plan_for(name, lang, &PlanOptions::default());
        let mut injected = load(name);
        injected.config.as_mut().unwrap().env = p.create.as_ref().unwrap().body.env.clone();
        let again = plan::plan(
            &injected,
            &rt(lang),
            &Catalog::builtin().unwrap(),
            &PlanOptions::default(),
            None,
        );
        assert!(
            matches!(&again.action, Action::Skip { reason } if reason.contains("opentelemetry")),
            "{name}: {:?}",
            again.action
        );
    }
}

#[test]
fn env_ops_are_idempotent() {
    let cat = Catalog::builtin().unwrap();
    let ops = &cat.runtimes["node"].env;
    let mut env = vec![("NODE_OPTIONS".to_string(), "--inspect".to_string())];
    let expand = |t: &str| t.replace("{mount}", "/m");
    let first = plan::apply_env_ops(&mut env, ops, false, &expand);
    assert_eq!(first.len(), 2);
    let second = plan::apply_env_ops(&mut env, ops, false, &expand);
    assert!(second.is_empty(), "{second:?}");
    assert_eq!(
        env[0].1,
        "--inspect --require /otel-auto-instrumentation-nodejs/obs-stack-guard/register.js"
    );
}

#[test]
fn revert_spec_is_the_original_config() {
    let orig = load("matrix-health");
    let s = spec_from_inspect(&orig, true);
    let c = orig.config.as_ref().unwrap();
    assert_eq!(s.body.env, c.env);
    assert_eq!(s.body.cmd, c.cmd);
    assert_eq!(s.body.entrypoint, c.entrypoint);
    assert_eq!(s.body.labels, c.labels);
    assert_eq!(s.body.image, c.image);
    assert_eq!(s.name, "matrix-health");
    // Stale image name: the image ID is used instead.
    let s = spec_from_inspect(&orig, false);
    assert_eq!(s.body.image, orig.image);
}

#[test]
fn cidfile_and_legacy_links_are_made_creatable() {
    let mut orig = load("matrix-health");
    let h = orig.host_config.as_mut().unwrap();
    h.container_id_file = Some("/tmp/cid".into());
    h.links = Some(vec!["/db:/matrix-health/database".into()]);
    let s = spec_from_inspect(&orig, true);
    let h = s.body.host_config.as_ref().unwrap();
    assert_eq!(h.container_id_file.as_deref(), Some(""));
    assert_eq!(h.links.as_deref(), Some(&["db:database".to_string()][..]));
}

#[test]
fn runtime_stand_in_reads_process_names() {
    let r = plan::runtime_from_config(&load("matrix-static"), &[]);
    assert_eq!(r.language.as_deref(), Some("python"));
    assert_eq!(r.runtime_version.as_deref(), Some("3.11.2"));
    let r = plan::runtime_from_config(&load("shop-web-1"), &[]);
    assert_eq!(r.language.as_deref(), Some("node"));
    let r = plan::runtime_from_config(&load("matrix-java"), &[]);
    assert_eq!(r.language.as_deref(), Some("java"));
    let r = plan::runtime_from_config(&load("matrix-go"), &[]);
    assert_eq!(r.language, None);
    let r = plan::runtime_from_config(
        &load("matrix-go"),
        &[
            "/bin/sh -c gunicorn".into(),
            "/usr/bin/python3 /usr/local/bin/gunicorn -w 2 app:app".into(),
        ],
    );
    assert_eq!(r.language.as_deref(), Some("python"));
}

/// obs-stack's Python guard (compose/agents/python-guard/sitecustomize.py), run by the host's
/// python3 against a stand-in agent whose `initialize()` records that it ran.
mod guard {
    use std::process::Command;

    const GUARD: &str = include_str!("../compose/agents/python-guard/sitecustomize.py");

    struct Setup {
        dir: tempfile::TempDir,
    }

    impl Setup {
        /// agent/ with a fake auto_instrumentation; agent/obs-stack-guard/sitecustomize.py.
        fn new(init_body: &str) -> Setup {
            let dir = tempfile::tempdir().unwrap();
            let ai = dir
                .path()
                .join("agent/opentelemetry/instrumentation/auto_instrumentation");
            std::fs::create_dir_all(&ai).unwrap();
            std::fs::write(
                ai.join("__init__.py"),
                format!("import os\ndef initialize(swallow_exceptions=True):\n    {init_body}\n"),
            )
            .unwrap();
            let g = dir.path().join("agent/obs-stack-guard");
            std::fs::create_dir_all(&g).unwrap();
            std::fs::write(g.join("sitecustomize.py"), GUARD).unwrap();
            Setup { dir }
        }
        fn agent(&self) -> String {
            self.dir.path().join("agent").display().to_string()
        }
        fn pythonpath(&self, middle: &str) -> String {
            let a = self.agent();
            if middle.is_empty() {
                format!("{a}/obs-stack-guard:{a}")
            } else {
                format!("{a}/obs-stack-guard:{middle}:{a}")
            }
        }
        /// Runs `code` under python3 with the guard; returns (stdout, stderr).
        fn run(&self, code: &str, env: &[(&str, &str)], middle: &str) -> (String, String) {
            let mut c = Command::new("python3");
            c.arg("-c")
                .arg(code)
                .current_dir(self.dir.path())
                .env("PYTHONPATH", self.pythonpath(middle))
                .env("OBS_STACK_PYTHON_AGENT", self.agent())
                .env("OBS_STACK_PYTHON_ABI", python_abi())
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                .env_remove("DJANGO_SETTINGS_MODULE");
            for (k, v) in env {
                c.env(k, v);
            }
            let o = c.output().unwrap();
            (
                String::from_utf8_lossy(&o.stdout).to_string(),
                String::from_utf8_lossy(&o.stderr).to_string(),
            )
        }
    }

    fn python_abi() -> String {
        let o = Command::new("python3")
            .args(["-c", "import sys;print('%d.%d'%sys.version_info[:2])"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn have_python() -> bool {
        let ok = Command::new("python3")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipping the Python guard tests: no python3 on this machine");
        }
        ok
    }

    const REPORT: &str = "import os,sys;print('RAN' if os.environ.get('GUARD_TEST_RAN') else 'NOT', os.environ.get('PYTHONPATH',''))";
    const MARK: &str = "os.environ['GUARD_TEST_RAN']='1'";

    #[test]
    fn initializes_the_agent_and_keeps_it_for_children() {
        if !have_python() {
            return;
        }
        let s = Setup::new(MARK);
        let (out, err) = s.run(REPORT, &[], "");
        assert!(out.starts_with("RAN "), "{out} {err}");
        assert!(out.contains("obs-stack-guard"), "children keep the guard: {out}");
        assert!(err.is_empty(), "{err}");
        // The app's own directory wins over the agent's packages (agent last on sys.path).
        let (out, _) = s.run(
            "import sys;a=[p for p in sys.path if p.endswith('/agent')];print(sys.path.index(a[0])==len(sys.path)-1)",
            &[],
            "",
        );
        assert_eq!(out.trim(), "True");
    }

    #[test]
    fn disables_itself_on_another_python_build() {
        if !have_python() {
            return;
        }
        let s = Setup::new(MARK);
        let (out, err) = s.run(REPORT, &[("OBS_STACK_PYTHON_ABI", "3.7")], "/app/lib");
        assert!(out.starts_with("NOT "), "{out}");
        assert!(err.contains("built for Python 3.7"), "{err}");
        assert_eq!(
            out.trim(),
            "NOT /app/lib",
            "guard and agent removed for children, the app's path kept"
        );
        let (out, err) = s.run(REPORT, &[("OBS_STACK_PYTHON_MIN", "3.99")], "");
        assert!(
            out.starts_with("NOT") && err.contains("unsupported Python version"),
            "{out} {err}"
        );
    }

    #[test]
    fn disables_itself_when_the_agent_is_missing_or_grpc_is_asked() {
        if !have_python() {
            return;
        }
        let s = Setup::new(MARK);
        let (out, err) = s.run(REPORT, &[("OBS_STACK_PYTHON_AGENT", "/nonexistent")], "");
        assert!(
            out.starts_with("NOT") && err.contains("agent not found"),
            "{out} {err}"
        );
        let (out, err) = s.run(REPORT, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")], "");
        assert!(out.starts_with("NOT") && err.contains("grpc"), "{out} {err}");
    }

    #[test]
    fn disables_itself_when_the_app_ships_opentelemetry() {
        if !have_python() {
            return;
        }
        let s = Setup::new(MARK);
        let app = s.dir.path().join("app");
        std::fs::create_dir_all(app.join("opentelemetry/sdk")).unwrap();
        let (out, err) = s.run(REPORT, &[], &app.display().to_string());
        assert!(out.starts_with("NOT"), "{out}");
        assert!(err.contains("already ships OpenTelemetry"), "{err}");
    }

    #[test]
    fn a_failing_agent_never_breaks_the_app() {
        if !have_python() {
            return;
        }
        let s = Setup::new("raise SystemExit(3)");
        let (out, err) = s.run("print('APP OK')", &[], "");
        assert_eq!(out.trim(), "APP OK");
        assert!(err.contains("initialising the agent failed: SystemExit"), "{err}");
    }

    #[test]
    fn django_settings_that_cannot_load_turn_only_django_off() {
        if !have_python() {
            return;
        }
        let s = Setup::new(
            "os.environ['SEEN_DJANGO_FLAG']=os.environ.get('OTEL_PYTHON_DJANGO_INSTRUMENT','unset'); os.environ['GUARD_TEST_RAN']='1'",
        );
        let code = "import os;print(os.environ.get('SEEN_DJANGO_FLAG'), os.environ.get('OTEL_PYTHON_DJANGO_INSTRUMENT','unset'))";
        let (out, err) = s.run(code, &[("DJANGO_SETTINGS_MODULE", "nosuch.settings")], "");
        assert_eq!(out.trim(), "False unset", "off during initialize only: {err}");
        // Settings importable from the working directory (as gunicorn will make them): on.
        std::fs::create_dir_all(s.dir.path().join("shop")).unwrap();
        std::fs::write(s.dir.path().join("shop/__init__.py"), "").unwrap();
        std::fs::write(s.dir.path().join("shop/settings.py"), "ROOT_URLCONF='x'\n").unwrap();
        let (out, err) = s.run(code, &[("DJANGO_SETTINGS_MODULE", "shop.settings")], "");
        assert_eq!(out.trim(), "unset unset", "{err}");
    }

    #[test]
    fn the_apps_own_sitecustomize_still_runs() {
        if !have_python() {
            return;
        }
        let s = Setup::new(MARK);
        let app = s.dir.path().join("appsite");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(
            app.join("sitecustomize.py"),
            "import os\nos.environ['APP_SITE']='yes'\n",
        )
        .unwrap();
        let (out, err) = s.run(
            "import os;print(os.environ.get('GUARD_TEST_RAN'), os.environ.get('APP_SITE'))",
            &[],
            &app.display().to_string(),
        );
        assert_eq!(out.trim(), "1 yes", "{err}");
    }
}
