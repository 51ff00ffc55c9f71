//! Rendering: every file under `stack/` in the template assets becomes one output file (path
//! without the `stack/` prefix and the `.j2` suffix). `.j2` files are minijinja templates with
//! strict undefined (a typo is an error, not an empty string); others are copied verbatim
//! (Grafana dashboards: their `{{legend}}` syntax is not ours). Files of disabled components
//! are skipped.
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use minijinja::{Environment, UndefinedBehavior};

use super::plan::Plan;
use crate::assets::Assets;

pub const STACK_PREFIX: &str = "stack/";

/// Output files keyed by their path relative to the output directory.
pub type Rendered = BTreeMap<String, String>;

/// Which component a config path belongs to (skipped when that component is off).
fn component_of(out_path: &str, config_dir: &str) -> Option<&'static str> {
    let rel = out_path.strip_prefix(config_dir)?.trim_start_matches('/');
    let top = rel.split('/').next()?;
    match top {
        "grafana" => Some("grafana"),
        "tempo" => Some("tempo"),
        "loki" => Some("loki"),
        "alertmanager" => Some("alertmanager"),
        _ => None,
    }
}

pub fn environment(assets: &Assets) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // No auto-escaping: minijinja would JSON-escape every value in a .yml template. Values
    // that need quoting go through the `yaml_str` filter explicitly.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    // YAML/PromQL quoting of a string: a JSON string is a valid YAML double-quoted scalar.
    env.add_filter("yaml_str", |s: String| {
        serde_json::to_string(&s).unwrap_or_default()
    });
    env.add_filter("regex_escape", |s: String| regex::escape(&s));
    for (name, text) in &assets.files {
        if name.starts_with(STACK_PREFIX) && name.ends_with(".j2") || name.starts_with("macros/") {
            // Leaked once per process: templates are small and loaded once.
            let name: &'static str = Box::leak(name.clone().into_boxed_str());
            let text: &'static str = Box::leak(text.clone().into_boxed_str());
            env.add_template(name, text).ok();
        }
    }
    env
}

pub fn render(assets: &Assets, plan: &Plan) -> Result<Rendered> {
    let env = environment(assets);
    let ctx = minijinja::Value::from(minijinja::value::Serde(plan));
    let mut out = Rendered::new();
    for (name, text) in &assets.files {
        let Some(rel) = name.strip_prefix(STACK_PREFIX) else {
            continue;
        };
        let (out_rel, templated) = match rel.strip_suffix(".j2") {
            Some(r) => (r, true),
            None => (rel, false),
        };
        let out_path = out_rel.replacen("CONFIG_DIR", &plan.config_dir, 1);
        if let Some(c) = component_of(&out_path, &plan.config_dir)
            && !plan.components.get(c).copied().unwrap_or(false)
        {
            continue;
        }
        let content = if templated {
            let tmpl = env
                .get_template(name)
                .with_context(|| format!("template {name} failed to parse"))?;
            tmpl.render(&ctx)
                .map_err(|e| anyhow::anyhow!("rendering template {name}: {e:#}"))?
        } else {
            text.clone()
        };
        if content.trim().is_empty() {
            continue; // a template may render nothing when its feature is off
        }
        out.insert(out_path, content);
    }
    Ok(out)
}
