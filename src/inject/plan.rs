//! The pure planning core of `inject`: from a container's full inspect, what we know about its
//! runtime, the agent catalog and the user's options, compute the container to create instead
//! (the complete create body, every network with its aliases and static addresses), the env
//! diff, the agent volume and its init step, warnings, or the reason to leave it alone.
//! No I/O here: everything is plain data, unit-tested over captured `docker inspect` JSON.
use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, Mount, MountType,
    NetworkingConfig, PortBinding,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use crate::agents::agent_volume_name;
use crate::agents::{Catalog, EnvOp, EnvRequest, Identity, Op};
pub use crate::agents::{EnvChange, Profile, apply_env_ops};

/// Labels obs-stack puts on an instrumented container.
pub const LABEL_INJECTED: &str = "io.obs-stack.inject";
pub const LABEL_DIGEST: &str = "io.obs-stack.inject.digest";
pub const LABEL_ORIGINAL_ID: &str = "io.obs-stack.inject.original-id";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const PROMETHEUS_PORT: u16 = 9464;

/// What is known about the app's runtime (from detect, or from `--runtime`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuntimeInfo {
    /// "python" | "node" | "java" | "dotnet" | "go" | "rust" | … ; None = unknown.
    pub language: Option<String>,
    pub runtime_version: Option<String>,
    /// "glibc" | "musl" | "static"
    pub libc: Option<String>,
    pub existing_agents: Vec<String>,
    /// Where this came from ("--runtime", "detect", …), for the report.
    pub source: String,
    /// Detect found infrastructure (a database, cache, proxy: "PostgreSQL 15"), not an app.
    pub infrastructure: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanOptions {
    pub endpoint: String,
    pub profile: Profile,
    pub service_name: Option<String>,
    pub metrics_prometheus: bool,
    pub force: bool,
    /// The agent image to use for this runtime (already resolved from overrides).
    pub agent_image: Option<String>,
    /// Extra networks to attach (e.g. the observability network the collector is on).
    pub extra_networks: Vec<String>,
    /// Whether `Config.Image` (the name the container was created from) still resolves to
    /// the image the container runs; if not, the new container is created from the image ID.
    pub image_name_current: bool,
    /// `OTEL_EXPORTER_OTLP_HEADERS` entries to add (the `serve` backend's ingest key).
    pub headers: Option<String>,
    /// Variables set where the app has none (what `up` asks of agents sending to `serve`).
    pub extra_env: Vec<(String, String)>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            endpoint: "http://otel-collector:4318".into(),
            profile: Profile::Dev,
            service_name: None,
            headers: None,
            extra_env: Vec::new(),
            metrics_prometheus: false,
            force: false,
            agent_image: None,
            extra_networks: Vec::new(),
            image_name_current: true,
        }
    }
}

/// A network to connect the new container to before it starts.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct NetworkAttach {
    pub network: String,
    pub endpoint: EndpointSettings,
}

/// Everything needed to create a container that behaves like the one inspected.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CreateSpec {
    pub name: String,
    pub body: ContainerCreateBody,
    /// Networks beyond the primary one (which is in `body.networking_config`).
    pub connect: Vec<NetworkAttach>,
    /// The original was running, so the new one is started (and health-gated).
    pub start: bool,
    /// The original had a healthcheck (health-gate on `healthy`).
    pub has_healthcheck: bool,
}

impl CreateSpec {
    /// Every network the container will be on (the primary one and those connected before
    /// start).
    pub fn networks(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .body
            .networking_config
            .iter()
            .flat_map(|n| n.endpoints_config.iter().flat_map(|e| e.keys().cloned()))
            .chain(self.connect.iter().map(|c| c.network.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The host name in an OTLP endpoint URL (`http://otel-collector:4318` → `otel-collector`).
pub fn endpoint_host(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://").map(|(_, r)| r).unwrap_or(endpoint);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?.to_string()
    } else {
        authority.split(':').next()?.to_string()
    };
    (!host.is_empty()).then_some(host)
}

/// Why the endpoint's host will not resolve from the container (None: it will, or it cannot
/// be known). `dns_names` holds, per network the container will be on, the names other
/// containers answer to there. An app exporting to a name it cannot resolve fills its logs
/// with export errors and sends nothing.
pub fn endpoint_unresolvable(
    endpoint: &str,
    network_mode: &str,
    dns_names: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    let host = endpoint_host(endpoint)?;
    if host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" || host.contains('.') {
        // An address, or a fully qualified name: resolved by the host's DNS, not Docker's.
        return None;
    }
    if network_mode == "host" || network_mode == "none" || network_mode.starts_with("container:") {
        return None;
    }
    if dns_names.values().any(|names| names.iter().any(|n| n == &host)) {
        return None;
    }
    let nets: Vec<&str> = dns_names.keys().map(String::as_str).collect();
    Some(format!(
        "the endpoint {endpoint} will not resolve: no container answers to {host:?} on {} \
         ({}); start the stack first (or pass --endpoint / --network), or the app's logs fill \
         with export errors",
        if nets.len() == 1 {
            "its network"
        } else {
            "its networks"
        },
        if nets.is_empty() {
            "none".to_string()
        } else {
            nets.join(", ")
        }
    ))
}

/// The one-shot init step: copy the agent payload from its image into a named volume.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentStep {
    pub runtime: String,
    pub image: String,
    pub volume: String,
    /// Candidate paths in the image; the first that exists is copied (`cp -r SRC /obs-agent/`).
    pub sources: Vec<String>,
    /// Mount path inside the app container (read-only).
    pub mount: String,
    /// Relative path that must exist in the volume after the copy.
    pub check_file: String,
    /// Sub-directory of the volume receiving obs-stack's hook file (Python, Node.js).
    pub guard_dir: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Recreate the container with the agent.
    Inject,
    /// Nothing to do: already instrumented by this exact plan.
    NoOp { reason: String },
    /// Left alone on purpose (another agent, unsupported version, …).
    Skip { reason: String },
    /// No in-process agent exists for this runtime: what the stack does instead.
    Fallback { reason: String },
    /// Infrastructure (database, cache, proxy): nothing to instrument, on purpose.
    Infrastructure { reason: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub container: String,
    pub container_id: String,
    pub action: Action,
    pub runtime: Option<String>,
    pub runtime_source: String,
    pub agent: Option<AgentStep>,
    pub env: Vec<EnvChange>,
    pub mounts_added: Vec<Mount>,
    pub ports_added: Vec<String>,
    pub networks: Vec<String>,
    pub warnings: Vec<String>,
    /// The container to create (None unless action is Inject).
    pub create: Option<CreateSpec>,
    pub digest: Option<String>,
    /// The service's identity (job, namespace), the same init gives it.
    pub identity: Option<Identity>,
}

/// The container's name without Docker's leading slash.
pub fn container_name(inspect: &ContainerInspectResponse) -> String {
    inspect
        .name
        .as_deref()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string()
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Splits `KEY=VALUE` env entries, keeping order.
pub fn env_pairs(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect()
}

/// Rebuilds the create spec of an existing container from its inspect, as exactly as the API
/// allows. Used for inject (then modified) and for `--revert` (as is).
pub fn spec_from_inspect(inspect: &ContainerInspectResponse, image_name_current: bool) -> CreateSpec {
    let id = inspect.id.clone().unwrap_or_default();
    let config = inspect.config.clone().unwrap_or_default();
    let mut host = inspect.host_config.clone().unwrap_or_default();
    let network_mode = host.network_mode.clone().unwrap_or_default();
    let shares_netns =
        network_mode == "host" || network_mode.starts_with("container:") || network_mode == "none";

    // Legacy links come back as "/other:/me/alias"; create wants "other:alias".
    if let Some(links) = host.links.as_mut() {
        for l in links.iter_mut() {
            if let Some((src, dst)) = l.split_once(':') {
                let alias = dst.rsplit('/').next().unwrap_or(dst);
                *l = format!("{}:{}", src.trim_start_matches('/'), alias);
            }
        }
    }
    // A --cidfile refuses to create over an existing file; the new container would fail.
    if host.container_id_file.as_deref().is_some_and(|f| !f.is_empty()) {
        host.container_id_file = Some(String::new());
    }
    // Anonymous volumes (image VOLUME or `-v /path`) are not in Binds/Mounts: name them so
    // the new container reuses the data instead of starting with an empty volume.
    let covered: Vec<String> = host
        .binds
        .iter()
        .flatten()
        .filter_map(|b| b.split(':').nth(1).map(str::to_string))
        .chain(host.mounts.iter().flatten().filter_map(|m| m.target.clone()))
        .chain(host.tmpfs.iter().flat_map(|t| t.keys().cloned()))
        .collect();
    for mp in inspect.mounts.iter().flatten() {
        let is_volume = mp.typ.as_deref() == Some("volume");
        let dest = mp.destination.clone().unwrap_or_default();
        if is_volume
            && !dest.is_empty()
            && !covered.contains(&dest)
            && let Some(name) = mp.name.clone()
        {
            host.mounts.get_or_insert_with(Vec::new).push(Mount {
                target: Some(dest),
                source: Some(name),
                typ: Some(MountType::VOLUME),
                read_only: Some(mp.rw == Some(false)),
                ..Default::default()
            });
        }
    }

    // Networks: the primary one (NetworkMode) goes into the create body, the others are
    // connected before start. The old container's short ID alias is Docker's own, dropped.
    let mut networks: BTreeMap<String, EndpointSettings> = BTreeMap::new();
    if let Some(ns) = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
    {
        for (name, ep) in ns {
            networks.insert(name.clone(), endpoint_for_create(name, ep, &id));
        }
    }
    let primary = match network_mode.as_str() {
        "" | "default" => "bridge".to_string(),
        m => m.to_string(),
    };
    let mut connect = Vec::new();
    let mut endpoints = HashMap::new();
    if !shares_netns {
        if let Some(ep) = networks.remove(&primary) {
            endpoints.insert(primary.clone(), ep);
        }
        for (network, endpoint) in networks {
            connect.push(NetworkAttach { network, endpoint });
        }
    }

    let image = if image_name_current {
        config.image.clone().or_else(|| inspect.image.clone())
    } else {
        inspect.image.clone()
    };
    // Docker's default hostname is the container's short ID: leave it to default again (a
    // copied one would also become a stale network alias of the new container).
    let hostname = config
        .hostname
        .clone()
        .filter(|h| !shares_netns && !h.is_empty() && h != short_id(&id));
    let body = ContainerCreateBody {
        hostname,
        domainname: if shares_netns {
            None
        } else {
            config.domainname.clone()
        },
        user: config.user.clone(),
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        exposed_ports: config.exposed_ports.clone(),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        env: config.env.clone(),
        cmd: config.cmd.clone(),
        healthcheck: config.healthcheck.clone(),
        args_escaped: config.args_escaped,
        image,
        volumes: config.volumes.clone(),
        working_dir: config.working_dir.clone(),
        entrypoint: config.entrypoint.clone(),
        network_disabled: config.network_disabled,
        on_build: None,
        labels: config.labels.clone(),
        stop_signal: config.stop_signal.clone(),
        stop_timeout: config.stop_timeout,
        shell: config.shell.clone(),
        host_config: Some(host),
        networking_config: if endpoints.is_empty() {
            None
        } else {
            Some(NetworkingConfig {
                endpoints_config: Some(endpoints),
            })
        },
    };
    let state = inspect.state.as_ref();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    let has_healthcheck = config
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| !t.is_empty() && t[0] != "NONE");
    CreateSpec {
        name: container_name(inspect),
        body,
        connect,
        start: running,
        has_healthcheck,
    }
}

/// The user-settable parts of an endpoint: static addresses, aliases, links, driver options.
fn endpoint_for_create(network: &str, ep: &EndpointSettings, old_id: &str) -> EndpointSettings {
    let user_defined = !matches!(network, "bridge" | "host" | "none");
    let aliases: Vec<String> = ep
        .aliases
        .iter()
        .flatten()
        .filter(|a| a.as_str() != short_id(old_id) && a.as_str() != old_id)
        .cloned()
        .collect();
    EndpointSettings {
        // Kept as Docker reported it (an empty object too), so a revert is exact.
        ipam_config: if user_defined {
            ep.ipam_config.clone()
        } else {
            None
        },
        links: ep.links.clone().filter(|l| !l.is_empty()),
        aliases: if user_defined && !aliases.is_empty() {
            Some(aliases)
        } else {
            None
        },
        driver_opts: ep.driver_opts.clone().filter(|d| !d.is_empty()),
        ..Default::default()
    }
}

/// Agents already present, judged from the container's environment and command line.
pub fn agents_in_config(env: &[(String, String)], cmdline: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut add = |a: &str| {
        if !found.iter().any(|f| f == a) {
            found.push(a.to_string());
        }
    };
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let java = format!(
        "{} {} {} {}",
        get("JAVA_TOOL_OPTIONS"),
        get("JAVA_OPTS"),
        get("_JAVA_OPTIONS"),
        cmdline
    )
    .to_ascii_lowercase();
    let node = format!("{} {}", get("NODE_OPTIONS"), cmdline).to_ascii_lowercase();
    let pypath = get("PYTHONPATH").to_ascii_lowercase();
    let cmd = cmdline.to_ascii_lowercase();
    if java.contains("-javaagent:") && (java.contains("opentelemetry") || java.contains("otel")) {
        add("opentelemetry");
    }
    if java.contains("dd-java-agent") {
        add("datadog");
    }
    if java.contains("newrelic.jar") {
        add("newrelic");
    }
    if java.contains("elastic-apm-agent") {
        add("elastic");
    }
    if node.contains("@opentelemetry/auto-instrumentations-node")
        || node.contains("autoinstrumentation.js")
        || node.contains("obs-stack-guard/register.js")
    {
        add("opentelemetry");
    }
    if node.contains("dd-trace") {
        add("datadog");
    }
    if node.contains("--require newrelic") || node.contains("-r newrelic") {
        add("newrelic");
    }
    if node.contains("elastic-apm-node") {
        add("elastic");
    }
    if pypath.contains("auto_instrumentation")
        || pypath.contains("otel-auto-instrumentation")
        || cmd.contains("opentelemetry-instrument")
        || env.iter().any(|(k, _)| k == "OBS_STACK_PYTHON_AGENT")
    {
        add("opentelemetry");
    }
    if cmd.contains("ddtrace-run") || pypath.contains("ddtrace") {
        add("datadog");
    }
    if cmd.contains("newrelic-admin") {
        add("newrelic");
    }
    let profiler = get("CORECLR_PROFILER").to_ascii_uppercase();
    if profiler.contains("918728DD-259F-4A6A-AC2B-B85E1B658318") {
        add("opentelemetry");
    }
    if profiler.contains("846F5F1C-F9AE-4B07-969E-05C26BC060D8") {
        add("datadog");
    }
    if profiler.contains("36032161-FFC0-4B61-B559-F6C5D41BAE5A") {
        add("newrelic");
    }
    for (k, _) in env {
        if k == "NEW_RELIC_LICENSE_KEY" || k == "NEW_RELIC_APP_NAME" {
            add("newrelic");
        }
        if k == "ELASTIC_APM_SERVER_URL" || k == "ELASTIC_APM_SERVICE_NAME" {
            add("elastic");
        }
        if k == "DD_TRACE_ENABLED" || k == "DD_AGENT_HOST" || k == "DD_TRACE_AGENT_URL" {
            add("datadog");
        }
    }
    found
}

/// The Docker volume name for an agent: `obs-agent-<runtime>-<version>` (version from the
/// image tag when an override image is used).
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v
        .trim()
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// A stable digest of a create spec (labels carrying the digest itself excluded), so a re-run
/// with the same inputs can tell it would change nothing.
pub fn spec_digest(spec: &CreateSpec) -> String {
    let mut s = spec.clone();
    if let Some(l) = s.body.labels.as_mut() {
        l.remove(LABEL_DIGEST);
    }
    // serde_json::Value objects are sorted maps: HashMap order does not leak in.
    let v = serde_json::to_value(&s).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(v.to_string().as_bytes());
    hex::encode(h.finalize())[..16].to_string()
}

/// Plans the injection into the container described by `original` (its inspect before any
/// obs-stack change). `current_digest` is the digest label of the container now carrying the
/// name, when it is one of ours: equal digests mean there is nothing to do.
pub fn plan(
    original: &ContainerInspectResponse,
    rt: &RuntimeInfo,
    catalog: &Catalog,
    opts: &PlanOptions,
    current_digest: Option<&str>,
) -> Plan {
    let name = container_name(original);
    let id = original.id.clone().unwrap_or_default();
    let config = original.config.clone().unwrap_or_default();
    let labels = config.labels.clone().unwrap_or_default();
    let env0 = env_pairs(config.env.as_deref().unwrap_or(&[]));
    let cmdline = config
        .entrypoint
        .iter()
        .flatten()
        .chain(config.cmd.iter().flatten())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let mut plan = Plan {
        container: name.clone(),
        container_id: id.clone(),
        action: Action::Inject,
        runtime: None,
        runtime_source: rt.source.clone(),
        agent: None,
        env: Vec::new(),
        mounts_added: Vec::new(),
        ports_added: Vec::new(),
        networks: Vec::new(),
        warnings: Vec::new(),
        create: None,
        digest: None,
        identity: None,
    };
    let skip = |mut p: Plan, a: Action| {
        p.action = a;
        p
    };

    if let Some(what) = &rt.infrastructure
        && !opts.force
    {
        return skip(
            plan,
            Action::Infrastructure {
                reason: format!(
                    "infrastructure ({what}): nothing to instrument; the stack watches it from the \
                     outside (container metrics and logs)"
                ),
            },
        );
    }

    // Which runtime, and is there an agent for it?
    let language = rt.language.clone().unwrap_or_default().to_ascii_lowercase();
    let Some(key) = crate::agents::runtime_key(&language) else {
        let fb = if language.is_empty() {
            "unknown"
        } else {
            language.as_str()
        };
        let reason = catalog
            .fallback
            .get(fb)
            .or_else(|| catalog.fallback.get("unknown"))
            .cloned()
            .unwrap_or_else(|| format!("no in-process agent for {fb}"));
        plan.runtime = rt.language.clone();
        return skip(plan, Action::Fallback { reason });
    };
    plan.runtime = Some(key.to_string());
    let Some(agent) = catalog.runtimes.get(key) else {
        return skip(
            plan,
            Action::Fallback {
                reason: format!("no agent for {key} in agents.yaml"),
            },
        );
    };

    // Already instrumented (by someone else)?
    let mut agents = agents_in_config(&env0, &cmdline);
    for a in &rt.existing_agents {
        if !agents.contains(a) {
            agents.push(a.clone());
        }
    }
    if !agents.is_empty() && !opts.force {
        return skip(
            plan,
            Action::Skip {
                reason: format!(
                    "already instrumented ({}); left alone — pass --force to inject anyway",
                    agents.join(", ")
                ),
            },
        );
    }
    if !agents.is_empty() {
        plan.warnings.push(format!(
            "--force: injecting although the container already carries {}",
            agents.join(", ")
        ));
    }

    // Runtime version and libc.
    let musl = rt.libc.as_deref() == Some("musl");
    if musl && agent.musl_sources.is_empty() && agent.musl_check_file.is_none() {
        return skip(
            plan,
            Action::Skip {
                reason: format!("the {key} agent has no musl build; the container uses musl libc"),
            },
        );
    }
    if let (Some(v), Some(min)) = (rt.runtime_version.as_deref(), agent.min_runtime.as_deref())
        && let (Some(have), Some(need)) = (major_minor(v), major_minor(min))
        && have < need
    {
        return skip(
            plan,
            Action::Skip {
                reason: format!("{key} {v} is older than the agent supports ({min})"),
            },
        );
    }
    if let (Some(v), Some(abi)) = (rt.runtime_version.as_deref(), agent.python_abi.as_deref())
        && let (Some(have), Some(built)) = (major_minor(v), major_minor(abi))
        && have != built
    {
        return skip(
            plan,
            Action::Skip {
                reason: format!(
                    "the Python agent was built for Python {abi}, the container runs {v}; \
                     pick a matching agent with --agent-image python=REF"
                ),
            },
        );
    }

    // The agent step.
    let image = opts.agent_image.clone().unwrap_or_else(|| agent.image.clone());
    let musl_build = musl && !agent.musl_sources.is_empty();
    let volume = agent_volume_name(key, &image, &agent.version, musl_build);
    let sources = agent.sources_for(musl).to_vec();
    let check_file = if musl {
        agent
            .musl_check_file
            .clone()
            .unwrap_or_else(|| agent.check_file.clone())
    } else {
        agent.check_file.clone()
    };
    plan.agent = Some(AgentStep {
        runtime: key.to_string(),
        image,
        volume: volume.clone(),
        sources,
        mount: agent.mount.clone(),
        check_file,
        guard_dir: agent.guard_dir.clone(),
    });

    // The env: the one computation init uses too (crate::agents::Catalog::service_env).
    let identity = Identity {
        service: opts
            .service_name
            .clone()
            .or_else(|| labels.get(COMPOSE_SERVICE).cloned())
            .unwrap_or_else(|| name.clone()),
        project: labels.get(COMPOSE_PROJECT).cloned(),
    };
    let req = EnvRequest {
        identity: &identity,
        profile: opts.profile,
        endpoint: &opts.endpoint,
        sampler_arg: None,
        metric_export_interval: None,
        headers: opts.headers.clone(),
        musl,
        extra: {
            let mut extra = if opts.metrics_prometheus {
                prometheus_ops()
            } else {
                Vec::new()
            };
            extra.extend(opts.extra_env.iter().map(|(k, v)| EnvOp {
                name: k.clone(),
                op: Op::SetIfUnset,
                value: v.clone(),
                sep: None,
                musl_value: None,
            }));
            extra
        },
    };
    let mut env = env0.clone();
    plan.env = catalog.service_env(agent, &req, &mut env);
    plan.identity = Some(identity);

    // The create spec.
    let mut spec = spec_from_inspect(original, opts.image_name_current);
    if !opts.image_name_current {
        plan.warnings.push(format!(
            "the image name {:?} now points to another image; the new container uses the image ID \
             the original ran ({})",
            config.image.unwrap_or_default(),
            original.image.clone().unwrap_or_default()
        ));
    }
    spec.body.env = Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect());
    let agent_mount = Mount {
        target: Some(agent.mount.clone()),
        source: Some(volume),
        typ: Some(MountType::VOLUME),
        read_only: Some(true),
        ..Default::default()
    };
    let host = spec.body.host_config.get_or_insert_with(HostConfig::default);
    host.mounts.get_or_insert_with(Vec::new).push(agent_mount.clone());
    plan.mounts_added.push(agent_mount);
    let network_mode = host.network_mode.clone().unwrap_or_default();
    let own_netns =
        !(network_mode == "host" || network_mode.starts_with("container:") || network_mode == "none");
    if opts.metrics_prometheus {
        let port = format!("{PROMETHEUS_PORT}/tcp");
        let exposed = spec.body.exposed_ports.get_or_insert_with(Vec::new);
        if !exposed.contains(&port) {
            exposed.push(port.clone());
        }
        if own_netns {
            let bindings = host.port_bindings.get_or_insert_with(HashMap::new);
            bindings.entry(port.clone()).or_insert_with(|| {
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }])
            });
            plan.ports_added.push(format!("127.0.0.1:<random>->{port}"));
        } else {
            plan.ports_added.push(format!("{port} (host network)"));
        }
    }
    // Extra networks (the observability network), unless already attached.
    let attached: Vec<String> = spec
        .body
        .networking_config
        .iter()
        .flat_map(|n| n.endpoints_config.iter().flat_map(|e| e.keys().cloned()))
        .chain(spec.connect.iter().map(|c| c.network.clone()))
        .collect();
    for net in &opts.extra_networks {
        if !own_netns {
            plan.warnings.push(format!(
                "network mode {network_mode}: cannot attach {net}; make sure {} is reachable",
                opts.endpoint
            ));
            continue;
        }
        if !attached.contains(net) {
            spec.connect.push(NetworkAttach {
                network: net.clone(),
                endpoint: EndpointSettings::default(),
            });
        }
    }
    plan.networks = spec
        .body
        .networking_config
        .iter()
        .flat_map(|n| n.endpoints_config.iter().flat_map(|e| e.keys().cloned()))
        .chain(spec.connect.iter().map(|c| c.network.clone()))
        .collect();

    let labels = spec.body.labels.get_or_insert_with(HashMap::new);
    labels.insert(LABEL_INJECTED.into(), key.to_string());
    labels.insert(LABEL_ORIGINAL_ID.into(), short_id(&id).to_string());
    let digest = spec_digest(&spec);
    if let Some(l) = spec.body.labels.as_mut() {
        l.insert(LABEL_DIGEST.into(), digest.clone());
    }

    // Warnings.
    plan.warnings.push(
        "recreating the container loses changes made inside its own filesystem (writable layer); \
         named volumes, anonymous volumes and bind mounts are kept"
            .into(),
    );
    let host = spec.body.host_config.as_ref();
    if host.and_then(|h| h.auto_remove).unwrap_or(false) {
        plan.warnings.push(
            "the container was started with --rm: the original cannot be kept stopped, so a rollback \
             recreates it from the saved spec"
                .into(),
        );
    }
    if original
        .host_config
        .as_ref()
        .and_then(|h| h.container_id_file.as_deref())
        .is_some_and(|f| !f.is_empty())
    {
        plan.warnings
            .push("the --cidfile setting is dropped (Docker refuses to overwrite the file)".into());
    }
    if !spec.start {
        plan.warnings
            .push("the container is not running: it is recreated but not started".into());
    }

    if current_digest == Some(digest.as_str()) {
        plan.digest = Some(digest);
        return skip(
            plan,
            Action::NoOp {
                reason: "already instrumented by obs-stack with these settings".into(),
            },
        );
    }
    plan.digest = Some(digest);
    plan.create = Some(spec);
    plan
}

fn prometheus_ops() -> Vec<EnvOp> {
    let set = |n: &str, v: &str| EnvOp {
        name: n.into(),
        op: Op::SetIfUnset,
        value: v.into(),
        sep: None,
        musl_value: None,
    };
    vec![
        set("OTEL_METRICS_EXPORTER", "prometheus"),
        set("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0"),
        set("OTEL_EXPORTER_PROMETHEUS_PORT", &PROMETHEUS_PORT.to_string()),
    ]
}

/// A small stand-in for the detect module (src/detect, built in parallel): the runtime from
/// the process command lines, the configured command and the image's conventional version
/// variables. `cmd::inject::runtime_info` is the one place to switch to `detect_container`.
pub fn runtime_from_config(inspect: &ContainerInspectResponse, processes: &[String]) -> RuntimeInfo {
    let config = inspect.config.clone().unwrap_or_default();
    let env = env_pairs(config.env.as_deref().unwrap_or(&[]));
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut lines: Vec<String> = processes.to_vec();
    lines.push(
        config
            .entrypoint
            .iter()
            .flatten()
            .chain(config.cmd.iter().flatten())
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
    );
    let exe_names: Vec<String> = lines
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|w| w.rsplit('/').next().unwrap_or(&w).to_string())
        .collect();
    let is = |pred: &dyn Fn(&str) -> bool| exe_names.iter().any(|w| pred(w));
    let py = regex::Regex::new(r"^python[0-9.]*$").expect("static regex");
    let (language, version) = if is(&|w| w == "java") || get("JAVA_VERSION").is_some() {
        ("java", get("JAVA_VERSION"))
    } else if is(&|w| w == "node" || w == "nodejs") || get("NODE_VERSION").is_some() {
        ("node", get("NODE_VERSION"))
    } else if is(&|w| {
        py.is_match(w)
            || matches!(
                w,
                "gunicorn" | "uvicorn" | "flask" | "celery" | "hypercorn" | "daphne"
            )
    }) || get("PYTHON_VERSION").is_some()
    {
        ("python", get("PYTHON_VERSION"))
    } else if is(&|w| w == "dotnet") || get("DOTNET_VERSION").is_some() {
        ("dotnet", get("DOTNET_VERSION"))
    } else {
        return RuntimeInfo {
            source: "process names".into(),
            ..Default::default()
        };
    };
    RuntimeInfo {
        language: Some(language.into()),
        runtime_version: version,
        libc: None,
        existing_agents: Vec::new(),
        source: "process names".into(),
        infrastructure: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_hosts_are_parsed() {
        assert_eq!(
            endpoint_host("http://otel-collector:4318").as_deref(),
            Some("otel-collector")
        );
        assert_eq!(
            endpoint_host("https://u:p@obs-stack:4318/v1").as_deref(),
            Some("obs-stack")
        );
        assert_eq!(endpoint_host("http://[::1]:4318").as_deref(), Some("::1"));
        assert_eq!(endpoint_host("http://"), None);
    }

    #[test]
    fn an_endpoint_no_container_answers_to_is_reported() {
        let nets = BTreeMap::from([(
            "shop_default".to_string(),
            vec!["web".to_string(), "db".to_string()],
        )]);
        let w = endpoint_unresolvable("http://otel-collector:4318", "shop_default", &nets).unwrap();
        assert!(
            w.contains("will not resolve") && w.contains("shop_default"),
            "{w}"
        );
        let with = BTreeMap::from([("shop_default".to_string(), vec!["otel-collector".to_string()])]);
        assert_eq!(
            endpoint_unresolvable("http://otel-collector:4318", "shop_default", &with),
            None
        );
        // Addresses, FQDNs, host networking: not Docker's DNS to judge.
        assert_eq!(
            endpoint_unresolvable("http://10.0.0.5:4318", "bridge", &nets),
            None
        );
        assert_eq!(
            endpoint_unresolvable("http://collector.example.com:4318", "bridge", &nets),
            None
        );
        assert_eq!(
            endpoint_unresolvable("http://otel-collector:4318", "host", &nets),
            None
        );
    }
}
