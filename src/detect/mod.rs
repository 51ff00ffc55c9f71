//! Detection: which language, framework and version a container (or a source tree) runs, with
//! a calibrated confidence and the evidence behind it.
//!
//! Shape: five probes (`ports`, `env`, `files`, `process`, `http`, in `probe`) turn a container
//! into plain `Observations`; the pure scorer (`score`) combines the evidence that the
//! signatures (`signature`, `signatures/*.yaml`) describe; `assemble` turns the scores into
//! the `Detection` that `obs-detect --json` prints and that inject and init consume.
//! Probes are bounded in time and bytes and record what they could not read in
//! `probe_errors`; absent evidence only counts where a probe actually read its target.
//!
//! The signature format and the scoring model are documented in `docs/signatures.md`.
pub mod elf;
pub mod files;
pub mod http;
pub mod manifest;
pub mod netproc;
pub mod obs;
pub mod probe;
pub mod score;
pub mod signature;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use obs::Observations;
pub use score::Evidence;
pub use signature::{SigKind, SignatureSet};

use score::{Scored, Verdict};

/// Version of the `--json` schema; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    App,
    Infrastructure,
    Unknown,
}

/// One scored hypothesis, for `runner_up` and `candidates`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    pub kind: SigKind,
    pub language: Option<String>,
    pub probability: f64,
    pub version: Option<String>,
}

/// Something a probe could not read (and so could not count as evidence either way).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProbeError {
    pub probe: String,
    pub message: String,
}

impl ProbeError {
    pub fn new(probe: &str, message: impl Into<String>) -> ProbeError {
        ProbeError {
            probe: probe.to_string(),
            message: message.into(),
        }
    }
}

/// The result for one container or directory; also the `--json` schema (one object per target).
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub schema_version: u32,
    pub target: String,
    pub kind: Kind,
    pub language: Option<String>,
    pub framework: Option<String>,
    pub framework_version: Option<String>,
    pub runtime_version: Option<String>,
    pub server: Option<String>,
    pub server_version: Option<String>,
    /// infrastructure (nginx, postgresql, redis, ...): never reported as a framework
    pub infrastructure: Option<String>,
    pub infrastructure_version: Option<String>,
    pub libc: Option<String>,
    /// probability of the reported framework (else language, else infrastructure), 0..1
    pub confidence: f64,
    /// at least two different probes gave positive evidence for the reported technology
    pub confirmed: bool,
    pub existing_agents: Vec<String>,
    pub evidence: Vec<Evidence>,
    pub runner_up: Option<Candidate>,
    /// every hypothesis with probability ≥ 5%, best first
    pub candidates: Vec<Candidate>,
    pub probe_errors: Vec<ProbeError>,
    /// what inject will do when there is no framework-specific path
    pub fallback: Option<String>,
    pub elapsed_ms: u64,
}

/// Limits for one detection.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Overall budget; every probe is cut off at this point.
    pub budget: Duration,
    /// Per HTTP request (connect + answer).
    pub http_timeout: Duration,
    /// Run the HTTP probe at all.
    pub http: bool,
    /// Bytes kept per file read.
    pub max_file_bytes: usize,
    /// Bytes streamed per archive read.
    pub max_archive_bytes: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            budget: Duration::from_secs(4),
            http_timeout: Duration::from_millis(800),
            http: true,
            max_file_bytes: 512 * 1024,
            max_archive_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Detects a container by name or id: ports, env, files, processes and HTTP, concurrently.
pub async fn detect_container(
    engine: &crate::docker::Engine,
    container: &str,
    sigs: &SignatureSet,
    opts: &DetectOptions,
) -> anyhow::Result<Detection> {
    let start = std::time::Instant::now();
    let (obs, errors) = probe::observe_container(engine, container, sigs, opts).await?;
    let mut d = assemble(container, sigs, &obs, errors);
    d.elapsed_ms = start.elapsed().as_millis() as u64;
    Ok(d)
}

/// Static mode: the files probe over a source tree or build context.
pub fn detect_path(dir: &Path, sigs: &SignatureSet) -> anyhow::Result<Detection> {
    let start = std::time::Instant::now();
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let (obs, errors) = files::observe_dir(dir, sigs, &DetectOptions::default());
    let mut d = assemble(&dir.display().to_string(), sigs, &obs, errors);
    d.elapsed_ms = start.elapsed().as_millis() as u64;
    Ok(d)
}

fn candidate(s: &Scored) -> Candidate {
    Candidate {
        id: s.id.clone(),
        name: s.name.clone(),
        kind: s.kind,
        language: s.language.clone(),
        probability: round3(s.probability),
        version: s.version.clone(),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Languages obs-stack has an in-process agent for.
pub const AGENT_LANGUAGES: &[&str] = &["python", "node", "java"];

/// What inject does when there is no framework-specific path.
pub fn fallback_for(kind: Kind, language: Option<&str>, framework: Option<&str>) -> Option<String> {
    match (kind, language, framework) {
        (Kind::Infrastructure, _, _) => Some(
            "infrastructure: no agent is injected; the stack collects its container metrics and logs".into(),
        ),
        (_, Some(l), Some(_)) if AGENT_LANGUAGES.contains(&l) => None,
        (_, Some(l), None) if AGENT_LANGUAGES.contains(&l) => Some(format!(
            "the generic {l} agent with all its library instrumentations (no framework-specific checks)"
        )),
        (_, Some(l), _) => Some(format!(
            "no in-process agent for {l}: container metrics, HTTP black-box checks, and the eBPF option in the generated stack"
        )),
        (_, None, _) => Some(
            "nothing to inject: container metrics, HTTP black-box checks, and the eBPF option in the generated stack"
                .into(),
        ),
    }
}

fn libc_of(obs: &Observations) -> Option<String> {
    let b = obs.binaries.first()?;
    Some(match b.interp.as_deref() {
        Some(i) if i.contains("musl") => "musl".into(),
        Some(_) => "glibc".into(),
        None => "static".into(),
    })
}

/// Pure: scores observations and builds the `Detection`.
pub fn assemble(
    target: &str,
    sigs: &SignatureSet,
    obs: &Observations,
    mut probe_errors: Vec<ProbeError>,
) -> Detection {
    let mut seen = std::collections::BTreeSet::new();
    probe_errors.retain(|e| seen.insert((e.probe.clone(), e.message.clone())));
    let scored = score::score(sigs, obs);
    let v: Verdict = score::decide(&scored);
    let get = |i: Option<usize>| i.map(|i| &scored[i]);
    let lang = get(v.language);
    let fw = get(v.framework);
    let infra = get(v.infrastructure);
    let kind = if infra.is_some() {
        Kind::Infrastructure
    } else if lang.is_some() {
        Kind::App
    } else {
        Kind::Unknown
    };
    // runtime version: the language signature's own, else one a probe found (JDK release file)
    let runtime_version = lang.and_then(|l| {
        let other = obs
            .runtime_versions
            .iter()
            .filter(|(lg, _, _)| *lg == l.id)
            .max_by_key(|(_, _, r)| *r);
        match (&l.version, other) {
            (Some(v), Some((_, ov, r))) => Some(if *r > l.version_rank {
                ov.clone()
            } else {
                v.clone()
            }),
            (Some(v), None) => Some(v.clone()),
            (None, Some((_, ov, _))) => Some(ov.clone()),
            (None, None) => None,
        }
    });
    // Agents are reported too (existing_agents): their evidence explains that verdict.
    let reported: Vec<&Scored> = [infra, fw, get(v.server), lang]
        .into_iter()
        .flatten()
        .chain(v.agents.iter().map(|&i| &scored[i]))
        .collect();
    let mut evidence: Vec<Evidence> = reported
        .iter()
        .flat_map(|s| s.evidence.iter().cloned())
        .filter(|e| e.weight != 0.0)
        .collect();
    if kind == Kind::Unknown
        && let Some(r) = get(v.runner_up)
    {
        evidence.extend(r.evidence.iter().filter(|e| e.weight != 0.0).cloned());
    }
    let mut candidates: Vec<Candidate> = scored
        .iter()
        .filter(|s| s.probability >= 0.05 && s.kind != SigKind::Agent)
        .map(candidate)
        .collect();
    candidates.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    let language = lang.map(|l| l.id.clone());
    let framework = fw.map(|f| f.id.clone());
    let fallback = fallback_for(kind, language.as_deref(), framework.as_deref());
    Detection {
        schema_version: SCHEMA_VERSION,
        target: target.to_string(),
        kind,
        language,
        framework,
        framework_version: fw.and_then(|f| f.version.clone()),
        runtime_version,
        server: get(v.server).map(|s| s.id.clone()),
        server_version: get(v.server).and_then(|s| s.version.clone()),
        infrastructure: infra.map(|s| s.id.clone()),
        infrastructure_version: infra.and_then(|s| s.version.clone()),
        libc: libc_of(obs),
        confidence: round3(v.confidence),
        confirmed: v.confirmed,
        existing_agents: v.agents.iter().map(|&i| scored[i].id.clone()).collect(),
        evidence,
        runner_up: get(v.runner_up).map(candidate),
        candidates,
        probe_errors,
        fallback,
        elapsed_ms: 0,
    }
}

/// Display name of a signature id ("flask" → "Flask"), falling back to the id.
pub fn display_name(sigs: &SignatureSet, id: &str) -> String {
    sigs.get(id)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| id.to_string())
}
