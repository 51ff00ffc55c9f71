//! The data files under `templates/` that drive init: agent settings per runtime (the
//! [`Catalog`] inject reads too), per-framework SLO defaults, stack defaults and the PII
//! redaction patterns. Plain serde types;
//! loaded from the embedded/overlaid [`Assets`](crate::assets::Assets).
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::agents::Catalog;
use crate::assets::Assets;

pub const FRAMEWORKS_FILE: &str = "defaults/frameworks.yaml";
pub const STACK_FILE: &str = "defaults/stack.yaml";
pub const REDACTION_FILE: &str = "defaults/redaction.yaml";

/// One entry of `defaults/frameworks.yaml`; missing fields fall back to the language entry,
/// then to `default`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SloDefaults {
    pub slo: Option<f64>,
    pub latency_p95: Option<f64>,
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub sampling: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StackFile {
    pub images: BTreeMap<String, String>,
    pub ports: BTreeMap<String, u16>,
    pub profiles: BTreeMap<String, ProfileSettings>,
    pub lite: LiteSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProfileSettings {
    pub sampling: f64,
    pub prometheus_retention: String,
    pub prometheus_retention_size: String,
    pub tempo_retention: String,
    pub loki_retention: String,
    pub scrape_interval: String,
    pub evaluation_interval: String,
    pub alert_for_fast: String,
    pub alert_for_slow: String,
    pub memory: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LiteSettings {
    pub prometheus_retention: String,
    pub prometheus_retention_size: String,
    pub tempo_retention: String,
    pub memory: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Redaction {
    #[serde(default)]
    pub blocked_values: Vec<String>,
    #[serde(default)]
    pub blocked_key_patterns: Vec<String>,
}

/// Everything init reads from the data files.
#[derive(Debug, Clone)]
pub struct Data {
    pub agents: Catalog,
    pub frameworks: BTreeMap<String, SloDefaults>,
    pub stack: StackFile,
    pub redaction: Redaction,
}

fn parse<T: serde::de::DeserializeOwned>(assets: &Assets, path: &str) -> Result<T> {
    let text = assets
        .get(path)
        .with_context(|| format!("template data file {path} is missing"))?;
    serde_yaml_ng::from_str(text).with_context(|| format!("parsing template data file {path}"))
}

impl Data {
    pub fn load(assets: &Assets) -> Result<Data> {
        let data = Data {
            agents: Catalog::from_assets(assets)?,
            frameworks: parse(assets, FRAMEWORKS_FILE)?,
            stack: parse(assets, STACK_FILE)?,
            redaction: parse(assets, REDACTION_FILE)?,
        };
        for p in ["dev", "prod"] {
            if !data.stack.profiles.contains_key(p) {
                anyhow::bail!("{STACK_FILE}: profile `{p}` is missing");
            }
        }
        for pattern in data
            .redaction
            .blocked_values
            .iter()
            .chain(&data.redaction.blocked_key_patterns)
        {
            // The collector uses Go RE2; the regex crate accepts the same core syntax, so a
            // pattern that fails here would fail the collector at start.
            regex::Regex::new(pattern)
                .with_context(|| format!("{REDACTION_FILE}: invalid pattern {pattern:?}"))?;
        }
        Ok(data)
    }

    /// SLO defaults for a service: framework entry, then language entry, then `default`.
    pub fn slo_for(&self, language: Option<&str>, framework: Option<&str>, profile: &str) -> ResolvedSlo {
        let chain: Vec<&SloDefaults> = [framework, language, Some("default")]
            .into_iter()
            .flatten()
            .filter_map(|k| self.frameworks.get(k))
            .collect();
        let pick = |f: &dyn Fn(&SloDefaults) -> Option<f64>, fallback: f64| {
            chain.iter().find_map(|d| f(d)).unwrap_or(fallback)
        };
        let sampling = chain
            .iter()
            .find_map(|d| d.sampling.get(profile).copied())
            .or_else(|| self.stack.profiles.get(profile).map(|p| p.sampling))
            .unwrap_or(1.0);
        ResolvedSlo {
            slo: pick(&|d| d.slo, 99.5),
            latency_p95: pick(&|d| d.latency_p95, 0.5),
            error_rate: pick(&|d| d.error_rate, 0.05),
            sampling,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResolvedSlo {
    pub slo: f64,
    pub latency_p95: f64,
    pub error_rate: f64,
    pub sampling: f64,
}
