//! The signature model: one YAML file per technology (`signatures/*.yaml`), embedded in the
//! binary and overridable from disk. Every regex is compiled when the set is loaded, so a bad
//! pattern is a clear load error naming the file and the indicator, never a runtime surprise.
//! The format is documented in `docs/signatures.md` (copied into the README).
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::assets::{Assets, SIGNATURES};

/// What a signature describes. Each kind is scored in its own slot family and reported in its
/// own field: an `infrastructure` hit is never reported as an app framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum SigKind {
    Language,
    Framework,
    Server,
    Infrastructure,
    Agent,
}

/// The probe an indicator reads; "confirmed" needs two different probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    Ports,
    Env,
    Files,
    Process,
    Http,
}

impl Probe {
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Ports => "ports",
            Probe::Env => "env",
            Probe::Files => "files",
            Probe::Process => "process",
            Probe::Http => "http",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    id: String,
    name: String,
    kind: SigKind,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    slot: Option<String>,
    prior: f64,
    #[serde(default)]
    indicators: Vec<RawIndicator>,
    #[serde(default)]
    frontend: Option<RawFrontend>,
}

/// `frontend:` of a front-end framework: what its build serves by default, and the
/// observations that say otherwise.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrontend {
    serves: Serves,
    #[serde(default, rename = "static")]
    static_when: Vec<RawIndicator>,
    #[serde(default, rename = "server")]
    server_when: Vec<RawIndicator>,
}

/// What a front-end build runs in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Serves {
    /// Static files only (HTML, JS, CSS) served by any web server: no server-side agent applies.
    Static,
    /// A Node.js server renders or serves it: the Node.js agent applies.
    Server,
}

/// A front-end framework's rule: `serves` unless one of `static_when` / `server_when` matches
/// (the first matching list, static checked first, wins).
#[derive(Debug, Clone)]
pub struct Frontend {
    pub serves: Serves,
    pub static_when: Vec<Matcher>,
    pub server_when: Vec<Matcher>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIndicator {
    // matchers: exactly one
    env: Option<String>,
    port: Option<u16>,
    file: Option<String>,
    dependency: Option<String>,
    cmdline: Option<String>,
    exe: Option<String>,
    elf_needed: Option<String>,
    elf_interp: Option<String>,
    binary: Option<String>,
    header: Option<String>,
    cookie: Option<String>,
    body: Option<String>,
    // modifiers
    value: Option<String>,
    contains: Option<String>,
    ecosystem: Option<String>,
    /// required for `indicators:`; not used in `frontend:` lists
    weight: Option<f64>,
    absent: Option<f64>,
    group: Option<String>,
    #[serde(default)]
    version: bool,
    note: Option<String>,
}

/// How an indicator matches observations.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// An environment variable is set (optionally with a value matching the regex).
    Env { name: String, value: Option<Regex> },
    /// A port is exposed, published or listening.
    Port(u16),
    /// A file exists in an app directory (`path` is a relative path suffix, or `*.ext`),
    /// optionally with content matching the regex.
    File { path: String, contains: Option<Regex> },
    /// A dependency declared, locked, installed or linked into the binary.
    Dependency { ecosystem: String, name: String },
    /// A regex over the command line of any process.
    Cmdline(Regex),
    /// A regex over the basename of any process executable.
    Exe(Regex),
    /// A regex over the main binaries' DT_NEEDED entries.
    ElfNeeded(Regex),
    /// A regex over the main binaries' ELF interpreter.
    ElfInterp(Regex),
    /// A regex over facts about the main binaries: `go1.22.3` (Go build info), `rust`,
    /// `static`, `go-http-server` (the Go binary links net/http's server).
    Binary(Regex),
    /// An HTTP response header (name case-insensitive), value matching the regex.
    Header { name: String, value: Regex },
    /// A cookie name (from Set-Cookie) matching the regex.
    Cookie(Regex),
    /// A regex over response bodies (the `/` page and a not-found page).
    Body(Regex),
}

impl Matcher {
    pub fn probe(&self) -> Probe {
        match self {
            Matcher::Env { .. } => Probe::Env,
            Matcher::Port(_) => Probe::Ports,
            Matcher::File { .. } | Matcher::Dependency { .. } => Probe::Files,
            Matcher::Cmdline(_)
            | Matcher::Exe(_)
            | Matcher::ElfNeeded(_)
            | Matcher::ElfInterp(_)
            | Matcher::Binary(_) => Probe::Process,
            Matcher::Header { .. } | Matcher::Cookie(_) | Matcher::Body(_) => Probe::Http,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Indicator {
    pub matcher: Matcher,
    /// log10 likelihood ratio when the indicator is present.
    pub weight: f64,
    /// log10 likelihood ratio when the probe read its target and the indicator is absent.
    pub absent: Option<f64>,
    /// Correlated indicators share a group; only the strongest positive and the strongest
    /// negative of a group count. Default: the probe name.
    pub group: String,
    /// The match (capture group 1, or the dependency's version) is this technology's version.
    pub version: bool,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Signature {
    pub id: String,
    pub name: String,
    pub kind: SigKind,
    pub language: Option<String>,
    pub slot: String,
    /// log10 prior odds against "none".
    pub prior: f64,
    pub indicators: Vec<Indicator>,
    /// front-end frameworks only: static files or a server
    pub frontend: Option<Frontend>,
    pub source: String,
}

/// All loaded signatures, in a stable order (by file name).
#[derive(Debug, Clone)]
pub struct SignatureSet {
    pub sigs: Vec<Signature>,
}

/// The highest prior a signature may have: together with the port cap, ports alone must stay
/// below even odds (log10 odds < 0).
pub const MAX_PRIOR: f64 = -0.6;
/// Total log10 likelihood ratio all port indicators of one signature can add.
pub const PORT_CAP: f64 = 0.5;

pub const ECOSYSTEMS: &[&str] = &[
    "pypi", "npm", "maven", "go", "gem", "composer", "nuget", "hex", "cargo", "deb", "apk",
];

fn compile(pattern: &str, what: &str) -> Result<Regex> {
    RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .with_context(|| format!("{what}: invalid regex {pattern:?} (the regex crate has no look-around)"))
}

impl SignatureSet {
    /// The signatures embedded in the binary.
    pub fn builtin() -> Result<SignatureSet> {
        SignatureSet::load(None)
    }

    /// The embedded signatures, with `overlay` files added or replacing those of the same name.
    pub fn load(overlay: Option<&Path>) -> Result<SignatureSet> {
        let assets = Assets::load(&SIGNATURES, overlay).context("loading signatures")?;
        let files: Vec<(String, String)> = assets
            .with_suffix(&[".yaml", ".yml"])
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SignatureSet::from_files(&files)
    }

    /// Parses and validates (path, text) pairs.
    pub fn from_files(files: &[(String, String)]) -> Result<SignatureSet> {
        let mut sigs = Vec::new();
        let mut ids = BTreeMap::new();
        for (path, text) in files {
            let sig = parse_signature(path, text).with_context(|| format!("signature {path}"))?;
            if let Some(other) = ids.insert(sig.id.clone(), path.clone()) {
                bail!("signature id {:?} is defined twice ({other} and {path})", sig.id);
            }
            sigs.push(sig);
        }
        if sigs.is_empty() {
            bail!("no signatures loaded");
        }
        let languages: BTreeSet<String> = sigs
            .iter()
            .filter(|s| s.kind == SigKind::Language)
            .map(|s| s.id.clone())
            .collect();
        for s in &sigs {
            if let Some(l) = &s.language
                && !languages.contains(l)
            {
                bail!(
                    "signature {} ({}): language {l:?} has no language signature",
                    s.id,
                    s.source
                );
            }
        }
        Ok(SignatureSet { sigs })
    }

    pub fn get(&self, id: &str) -> Option<&Signature> {
        self.sigs.iter().find(|s| s.id == id)
    }

    /// File patterns whose content some signature looks into (`file:` with `contains:`).
    pub fn wanted_files(&self) -> BTreeSet<String> {
        self.sigs
            .iter()
            .flat_map(|s| {
                let fe = s
                    .frontend
                    .iter()
                    .flat_map(|f| f.static_when.iter().chain(&f.server_when));
                s.indicators.iter().map(|i| &i.matcher).chain(fe)
            })
            .filter_map(|m| match m {
                Matcher::File {
                    path,
                    contains: Some(_),
                } => Some(path.clone()),
                _ => None,
            })
            .collect()
    }
}

pub fn normalize_dep(ecosystem: &str, name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    match ecosystem {
        "pypi" => n.replace(['_', '.'], "-"),
        _ => n,
    }
}

fn parse_signature(path: &str, text: &str) -> Result<Signature> {
    let raw: RawSignature = serde_yaml_ng::from_str(text).context("invalid YAML")?;
    let slug_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '/' | '.');
    if raw.id.is_empty() || !raw.id.chars().all(slug_char) {
        bail!(
            "id {:?} must be a lower-case slug (a-z, 0-9, '-', '/', '.')",
            raw.id
        );
    }
    if !(raw.prior.is_finite() && raw.prior <= MAX_PRIOR && raw.prior >= -6.0) {
        bail!(
            "prior {} must be between -6 and {MAX_PRIOR} (log10 odds)",
            raw.prior
        );
    }
    if matches!(raw.kind, SigKind::Framework | SigKind::Server) && raw.language.is_none() {
        bail!("a {:?} signature needs `language:`", raw.kind);
    }
    if raw.indicators.is_empty() {
        bail!("no indicators");
    }
    let slot = raw.slot.clone().unwrap_or_else(|| match raw.kind {
        SigKind::Language => "language".to_string(),
        SigKind::Infrastructure => "infrastructure".to_string(),
        _ => raw.id.clone(),
    });
    let mut indicators = Vec::new();
    for (n, ri) in raw.indicators.into_iter().enumerate() {
        let what = format!("indicator #{}", n + 1);
        if ri.weight.is_none() {
            bail!("{what}: needs `weight`");
        }
        indicators.push(build_indicator(ri).with_context(|| what.clone())?);
    }
    let frontend = match raw.frontend {
        None => None,
        Some(f) => {
            if raw.kind != SigKind::Framework {
                bail!("`frontend` applies to framework signatures only");
            }
            let mut lists = [Vec::new(), Vec::new()];
            for (k, (name, list)) in [("static", f.static_when), ("server", f.server_when)]
                .into_iter()
                .enumerate()
            {
                for (n, mut ri) in list.into_iter().enumerate() {
                    let what = format!("frontend.{name} #{}", n + 1);
                    ri.weight = Some(ri.weight.unwrap_or(1.0));
                    lists[k].push(build_indicator(ri).with_context(|| what.clone())?.matcher);
                }
            }
            let [static_when, server_when] = lists;
            Some(Frontend {
                serves: f.serves,
                static_when,
                server_when,
            })
        }
    };
    Ok(Signature {
        id: raw.id,
        name: raw.name,
        kind: raw.kind,
        language: raw.language,
        slot,
        prior: raw.prior,
        indicators,
        frontend,
        source: path.to_string(),
    })
}

fn build_indicator(ri: RawIndicator) -> Result<Indicator> {
    let weight = ri.weight.unwrap_or_default();
    let count = [
        ri.env.is_some(),
        ri.port.is_some(),
        ri.file.is_some(),
        ri.dependency.is_some(),
        ri.cmdline.is_some(),
        ri.exe.is_some(),
        ri.elf_needed.is_some(),
        ri.elf_interp.is_some(),
        ri.binary.is_some(),
        ri.header.is_some(),
        ri.cookie.is_some(),
        ri.body.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count != 1 {
        bail!(
            "needs exactly one of env, port, file, dependency, cmdline, exe, elf_needed, elf_interp, binary, header, cookie, body (found {count})"
        );
    }
    if !weight.is_finite() || weight.abs() > 8.0 {
        bail!("weight {weight} must be a log10 likelihood ratio between -8 and 8");
    }
    if let Some(a) = ri.absent
        && (!a.is_finite() || !(-8.0..=0.0).contains(&a))
    {
        bail!("absent {a} must be between -8 and 0");
    }
    if ri.value.is_some() && ri.env.is_none() && ri.header.is_none() {
        bail!("`value` applies to env and header indicators only");
    }
    if ri.contains.is_some() && ri.file.is_none() {
        bail!("`contains` applies to file indicators only");
    }
    if ri.ecosystem.is_some() && ri.dependency.is_none() {
        bail!("`ecosystem` applies to dependency indicators only");
    }
    let matcher = if let Some(name) = ri.env {
        Matcher::Env {
            value: ri.value.as_deref().map(|v| compile(v, "value")).transpose()?,
            name,
        }
    } else if let Some(p) = ri.port {
        if weight > PORT_CAP {
            bail!("a port indicator weighs at most {PORT_CAP}: ports alone never decide");
        }
        Matcher::Port(p)
    } else if let Some(path) = ri.file {
        if path.is_empty() || path.starts_with('/') {
            bail!("file {path:?} must be a relative path or *.ext");
        }
        Matcher::File {
            path,
            contains: ri
                .contains
                .as_deref()
                .map(|v| compile(v, "contains"))
                .transpose()?,
        }
    } else if let Some(name) = ri.dependency {
        let eco = ri.ecosystem.unwrap_or_default();
        if !ECOSYSTEMS.contains(&eco.as_str()) {
            bail!(
                "dependency {name:?}: ecosystem must be one of {}",
                ECOSYSTEMS.join(", ")
            );
        }
        Matcher::Dependency {
            name: normalize_dep(&eco, &name),
            ecosystem: eco,
        }
    } else if let Some(r) = ri.cmdline {
        Matcher::Cmdline(compile(&r, "cmdline")?)
    } else if let Some(r) = ri.exe {
        Matcher::Exe(compile(&r, "exe")?)
    } else if let Some(r) = ri.elf_needed {
        Matcher::ElfNeeded(compile(&r, "elf_needed")?)
    } else if let Some(r) = ri.elf_interp {
        Matcher::ElfInterp(compile(&r, "elf_interp")?)
    } else if let Some(r) = ri.binary {
        Matcher::Binary(compile(&r, "binary")?)
    } else if let Some(name) = ri.header {
        Matcher::Header {
            name: name.to_ascii_lowercase(),
            value: compile(ri.value.as_deref().unwrap_or(".*"), "value")?,
        }
    } else if let Some(r) = ri.cookie {
        Matcher::Cookie(compile(&r, "cookie")?)
    } else if let Some(r) = ri.body {
        Matcher::Body(compile(&r, "body")?)
    } else {
        unreachable!("count checked above")
    };
    let group = ri.group.unwrap_or_else(|| matcher.probe().as_str().to_string());
    Ok(Indicator {
        matcher,
        weight,
        absent: ri.absent,
        group,
        version: ri.version,
        note: ri.note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_signature_loads_and_compiles() {
        let set = SignatureSet::builtin().expect("built-in signatures load");
        assert!(set.sigs.len() >= 30, "only {} signatures", set.sigs.len());
        for id in [
            "flask",
            "django",
            "fastapi",
            "starlette",
            "tornado",
            "aiohttp",
            "gunicorn",
            "uvicorn",
            "express",
            "nestjs",
            "koa",
            "fastify",
            "nextjs",
            "hapi",
            "spring-boot",
            "tomcat",
            "jetty",
            "quarkus",
            "micronaut",
            "gin",
            "echo",
            "fiber",
            "net/http",
            "rails",
            "sinatra",
            "puma",
            "laravel",
            "symfony",
            "php-fpm",
            "aspnetcore",
            "actix",
            "axum",
            "phoenix",
            "nginx",
            "postgresql",
            "mysql",
            "redis",
            "mongodb",
            "rabbitmq",
        ] {
            assert!(set.get(id).is_some(), "missing signature {id}");
        }
        for s in &set.sigs {
            assert!(s.prior <= MAX_PRIOR);
        }
    }

    fn one(text: &str) -> Result<SignatureSet> {
        let lang = "id: python\nname: Python\nkind: language\nprior: -1\nindicators:\n  - exe: '^python'\n    weight: 2\n";
        SignatureSet::from_files(&[
            ("python.yaml".into(), lang.into()),
            ("x.yaml".into(), text.into()),
        ])
    }

    #[test]
    fn bad_regex_is_a_clear_error() {
        let e = one("id: x\nname: X\nkind: framework\nlanguage: python\nprior: -2\nindicators:\n  - cmdline: '(?=look)'\n    weight: 1\n")
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("x.yaml") && msg.contains("indicator #1") && msg.contains("look-around"),
            "{msg}"
        );
    }

    #[test]
    fn heavy_port_and_high_prior_are_rejected() {
        assert!(one("id: x\nname: X\nkind: framework\nlanguage: python\nprior: -2\nindicators:\n  - port: 80\n    weight: 2\n").is_err());
        assert!(one("id: x\nname: X\nkind: framework\nlanguage: python\nprior: 0\nindicators:\n  - port: 80\n    weight: 0.2\n").is_err());
        assert!(one("id: x\nname: X\nkind: framework\nlanguage: nope\nprior: -2\nindicators:\n  - port: 80\n    weight: 0.2\n").is_err());
        assert!(one("id: x\nname: X\nkind: framework\nlanguage: python\nprior: -2\nindicators:\n  - port: 80\n    exe: a\n    weight: 0.2\n").is_err());
        assert!(one("id: x\nname: X\nkind: framework\nlanguage: python\nprior: -2\nbogus: 1\nindicators:\n  - port: 80\n    weight: 0.2\n").is_err());
    }
}
