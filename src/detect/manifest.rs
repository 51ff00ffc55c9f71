//! Manifest, lockfile and package-database parsers: bytes in, dependencies out. Pure, and
//! tolerant: garbage yields nothing (never a panic), partial files yield what parses.
use std::sync::LazyLock;

use regex::Regex;

use super::obs::{Dep, rank};
use super::signature::{Probe, normalize_dep};

/// File names (basenames) the files probe reads as manifests.
pub const MANIFESTS: &[&str] = &[
    "requirements.txt",
    "requirements.in",
    "pyproject.toml",
    "Pipfile",
    "Pipfile.lock",
    "poetry.lock",
    "uv.lock",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "go.mod",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "Gemfile",
    "Gemfile.lock",
    "composer.json",
    "composer.lock",
    "mix.exs",
    "mix.lock",
    "Cargo.toml",
    "Cargo.lock",
    "go.work",
    "setup.py",
    "setup.cfg",
    "deno.json",
    "deno.jsonc",
    "gleam.toml",
];

/// Whether `name` is a manifest this module parses.
pub fn is_manifest(name: &str) -> bool {
    MANIFESTS.contains(&name)
        || name.ends_with(".csproj")
        || name.ends_with(".fsproj")
        || (name.starts_with("requirements") && (name.ends_with(".txt") || name.ends_with(".in")))
}

fn dep(eco: &str, name: &str, version: Option<String>, rank: u8, direct: bool, source: &str) -> Dep {
    Dep {
        ecosystem: eco.to_string(),
        name: normalize_dep(eco, name),
        version: version.filter(|v| !v.is_empty()),
        rank,
        direct,
        source: source.to_string(),
        probe: Probe::Files,
    }
}

/// A version spec → (version, rank): an exact pin keeps its number, a range is kept as written.
fn spec(v: &str) -> (Option<String>, u8) {
    let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
    if v.is_empty() || v == "*" || v == "latest" {
        return (None, rank::RANGE);
    }
    let exact = v
        .strip_prefix("==")
        .or_else(|| v.strip_prefix('='))
        .unwrap_or(v)
        .trim();
    if exact.chars().next().is_some_and(|c| c.is_ascii_digit())
        && exact
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+')
    {
        return (Some(exact.to_string()), rank::PIN);
    }
    (Some(v.to_string()), rank::RANGE)
}

/// Parses one file; `path` is where it was found (its basename selects the parser).
/// Returns the ecosystem (when the file fully describes one) and its dependencies.
pub fn parse(path: &str, text: &str) -> (Option<&'static str>, Vec<Dep>) {
    let base = path.rsplit('/').next().unwrap_or(path);
    let r = match base {
        "pyproject.toml" => ("pypi", pyproject(text, path)),
        "Pipfile" => ("pypi", pipfile(text, path)),
        "Pipfile.lock" => ("pypi", pipfile_lock(text, path)),
        "poetry.lock" | "uv.lock" => ("pypi", toml_lock(text, path, "pypi")),
        "package.json" => ("npm", package_json(text, path)),
        "package-lock.json" | "npm-shrinkwrap.json" => ("npm", package_lock(text, path)),
        "yarn.lock" => ("npm", yarn_lock(text, path)),
        "go.mod" | "go.work" => ("go", go_mod(text, path)),
        "setup.py" => ("pypi", setup_py(text, path)),
        "setup.cfg" => ("pypi", setup_cfg(text, path)),
        "deno.json" | "deno.jsonc" => ("deno", Vec::new()),
        "gleam.toml" => ("gleam", Vec::new()),
        "pom.xml" => ("maven", pom(text, path)),
        "build.gradle" | "build.gradle.kts" => ("maven", gradle(text, path)),
        "Gemfile" => ("gem", gemfile(text, path)),
        "Gemfile.lock" => ("gem", gemfile_lock(text, path)),
        "composer.json" => ("composer", composer_json(text, path)),
        "composer.lock" => ("composer", composer_lock(text, path)),
        "mix.exs" => ("hex", mix_exs(text, path)),
        "mix.lock" => ("hex", mix_lock(text, path)),
        "Cargo.toml" => ("cargo", cargo_toml(text, path)),
        "Cargo.lock" => ("cargo", toml_lock(text, path, "cargo")),
        b if b.ends_with(".csproj") || b.ends_with(".fsproj") => ("nuget", csproj(text, path)),
        b if b.starts_with("requirements") && (b.ends_with(".txt") || b.ends_with(".in")) => {
            ("pypi", requirements(text, path))
        }
        _ => return (None, Vec::new()),
    };
    // a file that did not parse at all does not count as "read" for absence
    if r.1.is_empty() && !looks_parsed(base, text) {
        return (None, Vec::new());
    }
    (Some(r.0), r.1)
}

/// An empty dependency list only counts as "read" when the file is well-formed for its format:
/// a manifest that parses and declares nothing is still a manifest (and evidence of its
/// language); only garbage is ignored.
fn looks_parsed(base: &str, text: &str) -> bool {
    if !is_text(text) {
        return false;
    }
    let t = text.trim_start_matches('\u{feff}');
    match base {
        "package.json"
        | "composer.json"
        | "composer.lock"
        | "Pipfile.lock"
        | "package-lock.json"
        | "npm-shrinkwrap.json"
        | "deno.json" => serde_json::from_str::<serde_json::Value>(t).is_ok(),
        // JSON with comments: accept what is JSON once `//` comment lines are dropped, or any text
        "deno.jsonc" => true,
        "pyproject.toml" | "Pipfile" | "poetry.lock" | "uv.lock" | "Cargo.toml" | "Cargo.lock"
        | "gleam.toml" => toml_value(t).is_some(),
        "go.mod" => t.lines().any(|l| l.trim_start().starts_with("module ")),
        "go.work" => t
            .lines()
            .any(|l| l.trim_start().starts_with("go ") || l.trim_start().starts_with("use")),
        "pom.xml" => t.contains("<project"),
        b if b.ends_with(".csproj") || b.ends_with(".fsproj") => t.contains("<Project"),
        "Gemfile.lock" => {
            t.is_empty() || t.contains("GEM") || t.contains("BUNDLED WITH") || t.contains("PLATFORMS")
        }
        "mix.exs" => t.contains("defmodule") || t.contains("def project"),
        "mix.lock" => t.trim().is_empty() || t.trim_start().starts_with("%{"),
        "yarn.lock" => t.trim().is_empty() || t.contains("yarn lockfile") || t.contains("__metadata"),
        // free-form text formats (requirements*, Gemfile, build.gradle(.kts), setup.py/.cfg):
        // any text file is a valid, possibly empty, manifest
        _ => true,
    }
}

/// Text, not binary: no NUL byte and (almost) no invalid UTF-8.
fn is_text(text: &str) -> bool {
    !text.contains('\0') && text.chars().filter(|&c| c == '\u{fffd}').count() * 100 <= text.len().max(1)
}

static SETUP_DEP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"["']([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*((?:===?|~=|>=|<=|<|>)\s*[^"',;\s]+)?[^"']*["']"#).unwrap()
});

/// setup.cfg: the indented lines under `install_requires =` in `[options]`.
fn setup_cfg(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines().take(20_000) {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("install_requires") {
            inside = true;
            let first = rest.trim_start().trim_start_matches('=').trim();
            if !first.is_empty() {
                pep508(first, path, &mut out);
            }
            continue;
        }
        if inside {
            if line.starts_with([' ', '\t']) && !t.is_empty() {
                pep508(t, path, &mut out);
            } else if !t.is_empty() {
                inside = false;
            }
        }
    }
    out
}

/// setup.py: the strings inside `install_requires=[...]`.
fn setup_py(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Some(at) = text.find("install_requires") else {
        return out;
    };
    let rest = &text[at..];
    let Some(open) = rest.find('[') else { return out };
    let Some(close) = rest[open..].find(']') else {
        return out;
    };
    for c in SETUP_DEP.captures_iter(&rest[open + 1..open + close]) {
        let (v, r) = c.get(2).map(|m| spec(m.as_str())).unwrap_or((None, rank::RANGE));
        out.push(dep("pypi", &c[1], v, r, true, path));
    }
    out
}

static REQ_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*((?:===?|~=|!=|<=|>=|<|>)\s*[^;#\s,]+)?")
        .unwrap()
});

fn requirements(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    for line in text.lines().take(20_000) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') || line.contains("://") {
            continue;
        }
        if let Some(c) = REQ_LINE.captures(line) {
            let (v, r) = c.get(2).map(|m| spec(m.as_str())).unwrap_or((None, rank::RANGE));
            out.push(dep("pypi", &c[1], v, r, true, path));
        }
    }
    out
}

fn pep508(s: &str, path: &str, out: &mut Vec<Dep>) {
    if let Some(c) = REQ_LINE.captures(s.trim()) {
        let (v, r) = c.get(2).map(|m| spec(m.as_str())).unwrap_or((None, rank::RANGE));
        out.push(dep("pypi", &c[1], v, r, true, path));
    }
}

fn toml_value(text: &str) -> Option<toml::Table> {
    text.parse::<toml::Table>().ok()
}

fn pyproject(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Some(t) = toml_value(text) else { return out };
    if let Some(deps) = t
        .get("project")
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_array())
    {
        for d in deps.iter().filter_map(|d| d.as_str()) {
            pep508(d, path, &mut out);
        }
    }
    let poetry = t.get("tool").and_then(|t| t.get("poetry"));
    for key in ["dependencies", "dev-dependencies"] {
        if let Some(tab) = poetry.and_then(|p| p.get(key)).and_then(|d| d.as_table()) {
            for (name, v) in tab {
                if name == "python" {
                    continue;
                }
                let (ver, r) = match v {
                    toml::Value::String(s) => spec(s),
                    toml::Value::Table(t) => t
                        .get("version")
                        .and_then(|v| v.as_str())
                        .map(spec)
                        .unwrap_or((None, rank::RANGE)),
                    _ => (None, rank::RANGE),
                };
                out.push(dep("pypi", name, ver, r, key == "dependencies", path));
            }
        }
    }
    out
}

fn pipfile(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Some(t) = toml_value(text) else { return out };
    if let Some(tab) = t.get("packages").and_then(|d| d.as_table()) {
        for (name, v) in tab {
            let (ver, r) = v.as_str().map(spec).unwrap_or((None, rank::RANGE));
            out.push(dep("pypi", name, ver, r, true, path));
        }
    }
    out
}

fn pipfile_lock(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return out;
    };
    if let Some(m) = v.get("default").and_then(|d| d.as_object()) {
        for (name, e) in m {
            let ver = e
                .get("version")
                .and_then(|v| v.as_str())
                .map(|s| s.trim_start_matches("==").to_string());
            out.push(dep("pypi", name, ver, rank::LOCK, false, path));
        }
    }
    out
}

/// poetry.lock, uv.lock, Cargo.lock: `[[package]] name = ... version = ...`.
fn toml_lock(text: &str, path: &str, eco: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Some(t) = toml_value(text) else { return out };
    if let Some(pkgs) = t.get("package").and_then(|p| p.as_array()) {
        for p in pkgs {
            if let Some(name) = p.get("name").and_then(|n| n.as_str()) {
                let ver = p.get("version").and_then(|v| v.as_str()).map(str::to_string);
                out.push(dep(eco, name, ver, rank::LOCK, false, path));
            }
        }
    }
    out
}

fn package_json(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return out;
    };
    for (key, direct) in [
        ("dependencies", true),
        // declared by the app: front-end frameworks and build tools live here
        ("devDependencies", true),
        ("peerDependencies", false),
    ] {
        if let Some(m) = v.get(key).and_then(|d| d.as_object()) {
            for (name, ver) in m {
                let (ver, r) = ver.as_str().map(spec).unwrap_or((None, rank::RANGE));
                out.push(dep("npm", name, ver, r, direct, path));
            }
        }
    }
    out
}

/// The `version` of a package.json (for node_modules/<dep>/package.json).
pub fn package_version(text: &str) -> Option<String> {
    let v = serde_json::from_str::<serde_json::Value>(text).ok()?;
    v.get("version").and_then(|v| v.as_str()).map(str::to_string)
}

fn package_lock(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return out;
    };
    if let Some(m) = v.get("packages").and_then(|d| d.as_object()) {
        for (key, e) in m {
            let Some(name) = key
                .rsplit("node_modules/")
                .next()
                .filter(|n| !n.is_empty() && key.contains("node_modules/"))
            else {
                continue;
            };
            let ver = e.get("version").and_then(|v| v.as_str()).map(str::to_string);
            out.push(dep("npm", name, ver, rank::LOCK, false, path));
        }
    } else if let Some(m) = v.get("dependencies").and_then(|d| d.as_object()) {
        for (name, e) in m {
            let ver = e.get("version").and_then(|v| v.as_str()).map(str::to_string);
            out.push(dep("npm", name, ver, rank::LOCK, false, path));
        }
    }
    out
}

static YARN_ENTRY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?m)^"?(@?[^@\s"]+)@[^\n]*:\n\s+version:? "?([^"\n]+)"?"#).unwrap());

fn yarn_lock(text: &str, path: &str) -> Vec<Dep> {
    YARN_ENTRY
        .captures_iter(text)
        .map(|c| dep("npm", &c[1], Some(c[2].to_string()), rank::LOCK, false, path))
        .collect()
}

fn go_mod(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines().take(20_000) {
        let l = line.trim();
        if l.starts_with("require (") {
            in_block = true;
            continue;
        }
        if in_block && l.starts_with(')') {
            in_block = false;
            continue;
        }
        let body = if in_block {
            l
        } else if let Some(rest) = l.strip_prefix("require ") {
            rest.trim()
        } else {
            continue;
        };
        let mut parts = body.split_whitespace();
        if let (Some(m), Some(v)) = (parts.next(), parts.next()) {
            let direct = !l.contains("// indirect");
            let v = v.strip_prefix('v').unwrap_or(v);
            out.push(dep("go", m, Some(v.to_string()), rank::PIN, direct, path));
        }
    }
    out
}

static POM_DEP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)<(dependency|parent|plugin)>\s*(.*?)</(?:dependency|parent|plugin)>").unwrap()
});
static XML_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<(groupId|artifactId|version)>\s*([^<\s]+)\s*</").unwrap());

fn pom(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    for c in POM_DEP.captures_iter(text).take(5000) {
        let (mut g, mut a, mut v) = (None, None, None);
        for t in XML_TAG.captures_iter(&c[2]) {
            match &t[1] {
                "groupId" => g = Some(t[2].to_string()),
                "artifactId" => a = Some(t[2].to_string()),
                _ => v = Some(t[2].to_string()),
            }
        }
        if let (Some(g), Some(a)) = (g, a) {
            let (v, r) = match v {
                Some(v) if v.starts_with("${") => (None, rank::RANGE),
                Some(v) => spec(&v),
                None => (None, rank::RANGE),
            };
            out.push(dep("maven", &format!("{g}:{a}"), v, r, true, path));
        }
    }
    out
}

static GRADLE_DEP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"["']([\w.\-]+):([\w.\-]+)(?::([\w.\-]+))?["']"#).unwrap());
static GRADLE_PLUGIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"id\s*\(?\s*["']([\w.\-]+)["']\s*\)?\s*version\s*["']([\w.\-]+)["']"#).unwrap()
});

fn gradle(text: &str, path: &str) -> Vec<Dep> {
    let mut out: Vec<Dep> = GRADLE_DEP
        .captures_iter(text)
        .take(5000)
        .map(|c| {
            let (v, r) = c.get(3).map(|m| spec(m.as_str())).unwrap_or((None, rank::RANGE));
            dep("maven", &format!("{}:{}", &c[1], &c[2]), v, r, true, path)
        })
        .collect();
    for c in GRADLE_PLUGIN.captures_iter(text) {
        // plugin id org.springframework.boot → the Spring Boot version
        let (v, r) = spec(&c[2]);
        out.push(dep(
            "maven",
            &format!("{}:{}", &c[1], c[1].rsplit('.').next().unwrap_or("")),
            v.clone(),
            r,
            true,
            path,
        ));
        if &c[1] == "org.springframework.boot" {
            out.push(dep(
                "maven",
                "org.springframework.boot:spring-boot",
                v,
                r,
                true,
                path,
            ));
        }
    }
    out
}

static GEM_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?m)^\s*gem\s+["']([\w.\-]+)["']\s*(?:,\s*["']([^"']+)["'])?"#).unwrap());

fn gemfile(text: &str, path: &str) -> Vec<Dep> {
    GEM_LINE
        .captures_iter(text)
        .map(|c| {
            let (v, r) = c.get(2).map(|m| spec(m.as_str())).unwrap_or((None, rank::RANGE));
            dep("gem", &c[1], v, r, true, path)
        })
        .collect()
}

static GEMLOCK_SPEC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^    ([A-Za-z0-9][\w.\-]*) \(([^)\s]+)\)$").unwrap());

fn gemfile_lock(text: &str, path: &str) -> Vec<Dep> {
    GEMLOCK_SPEC
        .captures_iter(text)
        .map(|c| dep("gem", &c[1], Some(c[2].to_string()), rank::LOCK, false, path))
        .collect()
}

fn composer_json(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return out;
    };
    for (key, direct) in [("require", true), ("require-dev", false)] {
        if let Some(m) = v.get(key).and_then(|d| d.as_object()) {
            for (name, ver) in m {
                let (ver, r) = ver.as_str().map(spec).unwrap_or((None, rank::RANGE));
                out.push(dep("composer", name, ver, r, direct, path));
            }
        }
    }
    out
}

fn composer_lock(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return out;
    };
    if let Some(a) = v.get("packages").and_then(|d| d.as_array()) {
        for p in a {
            if let Some(name) = p.get("name").and_then(|n| n.as_str()) {
                let ver = p
                    .get("version")
                    .and_then(|v| v.as_str())
                    .map(|s| s.trim_start_matches('v').to_string());
                out.push(dep("composer", name, ver, rank::LOCK, false, path));
            }
        }
    }
    out
}

static MIX_DEP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"\{:([a-z_][\w]*)\s*,\s*"([^"]+)""#).unwrap());
static MIX_LOCK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#""([a-z_][\w]*)":\s*\{:hex,\s*:[\w]+,\s*"([^"]+)""#).unwrap());

fn mix_exs(text: &str, path: &str) -> Vec<Dep> {
    MIX_DEP
        .captures_iter(text)
        .map(|c| {
            let (v, r) = spec(&c[2]);
            dep("hex", &c[1], v, r, true, path)
        })
        .collect()
}

fn mix_lock(text: &str, path: &str) -> Vec<Dep> {
    MIX_LOCK
        .captures_iter(text)
        .map(|c| dep("hex", &c[1], Some(c[2].to_string()), rank::LOCK, false, path))
        .collect()
}

fn cargo_toml(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    let Some(t) = toml_value(text) else { return out };
    if let Some(tab) = t.get("dependencies").and_then(|d| d.as_table()) {
        for (name, v) in tab {
            let (ver, r) = match v {
                toml::Value::String(s) => spec(s),
                toml::Value::Table(t) => t
                    .get("version")
                    .and_then(|v| v.as_str())
                    .map(spec)
                    .unwrap_or((None, rank::RANGE)),
                _ => (None, rank::RANGE),
            };
            out.push(dep("cargo", name, ver, r, true, path));
        }
    }
    out
}

static CSPROJ_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"<PackageReference\s+Include="([^"]+)"(?:\s+Version="([^"]+)")?"#).unwrap()
});

fn csproj(text: &str, path: &str) -> Vec<Dep> {
    let mut out: Vec<Dep> = CSPROJ_REF
        .captures_iter(text)
        .map(|c| {
            let (v, r) = c.get(2).map(|m| spec(m.as_str())).unwrap_or((None, rank::RANGE));
            dep("nuget", &c[1], v, r, true, path)
        })
        .collect();
    if text.contains("Microsoft.NET.Sdk.Web") {
        out.push(dep(
            "nuget",
            "Microsoft.AspNetCore.App",
            None,
            rank::RANGE,
            true,
            path,
        ));
    }
    out
}

/// `*.dist-info` / `*.egg-info` directory names in site-packages → installed Python packages.
pub fn python_installed(dir_name: &str, path: &str) -> Option<Dep> {
    let stem = dir_name
        .strip_suffix(".dist-info")
        .or_else(|| dir_name.strip_suffix(".egg-info"))?;
    let (name, ver) = stem.split_once('-')?;
    let ver = ver.split('-').next().unwrap_or(ver);
    Some(dep(
        "pypi",
        name,
        Some(ver.to_string()),
        rank::INSTALLED,
        false,
        path,
    ))
}

/// Debian's /var/lib/dpkg/status (installed packages only).
pub fn dpkg_status(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    for para in text.split("\n\n").take(50_000) {
        let (mut name, mut ver, mut installed) = (None, None, false);
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                ver = Some(debian_upstream(v.trim()));
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.ends_with(" installed");
            }
        }
        if let (Some(n), true) = (name, installed) {
            out.push(dep("deb", n, ver, rank::INSTALLED, false, path));
        }
    }
    out
}

/// Alpine's /lib/apk/db/installed.
pub fn apk_installed(text: &str, path: &str) -> Vec<Dep> {
    let mut out = Vec::new();
    for para in text.split("\n\n").take(50_000) {
        let (mut name, mut ver) = (None, None);
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("P:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("V:") {
                ver = Some(v.trim().split("-r").next().unwrap_or(v).to_string());
            }
        }
        if let Some(n) = name {
            out.push(dep("apk", n, ver, rank::INSTALLED, false, path));
        }
    }
    out
}

/// `1:2.3.4-5~deb12u1` → `2.3.4`.
fn debian_upstream(v: &str) -> String {
    let v = v.split_once(':').map(|(_, r)| r).unwrap_or(v);
    let v = v.rsplit_once('-').map(|(l, _)| l).unwrap_or(v);
    v.split(['+', '~']).next().unwrap_or(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &[Dep]) -> Vec<(String, Option<String>)> {
        d.iter().map(|d| (d.name.clone(), d.version.clone())).collect()
    }

    #[test]
    fn requirements_pins_and_ranges() {
        let (eco, d) = parse(
            "/app/requirements.txt",
            "# c\nFlask==3.0.3\ngunicorn>=21,<23\nDjango_Rest[extra] ~= 1.0 ; python_version>'3'\n-r other.txt\ngit+https://x/y\n",
        );
        assert_eq!(eco, Some("pypi"));
        let n = names(&d);
        assert_eq!(n[0], ("flask".into(), Some("3.0.3".into())));
        assert_eq!(n[1].0, "gunicorn");
        assert_eq!(n[2].0, "django-rest");
        assert_eq!(d[0].rank, rank::PIN);
        assert_eq!(d[1].rank, rank::RANGE);
    }

    #[test]
    fn package_json_and_lock() {
        let (_, d) = parse(
            "/app/package.json",
            r#"{"dependencies":{"express":"^4.19.2","@nestjs/core":"10.3.8"}}"#,
        );
        let ex = d.iter().find(|x| x.name == "express").unwrap();
        assert_eq!(ex.rank, rank::RANGE);
        let nest = d.iter().find(|x| x.name == "@nestjs/core").unwrap();
        assert_eq!(nest.version.as_deref(), Some("10.3.8"));
        let (_, l) = parse(
            "/app/package-lock.json",
            r#"{"packages":{"":{},"node_modules/express":{"version":"4.19.2"},"node_modules/a/node_modules/@x/y":{"version":"1.0.0"}}}"#,
        );
        let mut n = names(&l);
        n.sort();
        assert_eq!(
            n,
            vec![
                ("@x/y".into(), Some("1.0.0".into())),
                ("express".into(), Some("4.19.2".into()))
            ]
        );
    }

    #[test]
    fn manifests_without_dependencies_are_read() {
        for (name, text, eco) in [
            (
                "pyproject.toml",
                "[project]\nname = \"x\"\nversion = \"0.1\"\n",
                "pypi",
            ),
            ("requirements.txt", "# nothing\n", "pypi"),
            ("requirements-dev.txt", "", "pypi"),
            ("Pipfile", "[requires]\npython_version = \"3.11\"\n", "pypi"),
            (
                "setup.py",
                "from setuptools import setup\nsetup(name='x')\n",
                "pypi",
            ),
            ("Gemfile", "source \"https://rubygems.org\"\n", "gem"),
            (
                "Cargo.toml",
                "[package]\nname = \"x\"\nversion = \"0.1.0\"\n",
                "cargo",
            ),
            ("go.mod", "module example.com/x\n\ngo 1.22\n", "go"),
            ("go.work", "go 1.22\n\nuse ./a\n", "go"),
            ("composer.json", "{\"name\": \"a/b\"}", "composer"),
            ("package.json", "{\"name\": \"x\"}", "npm"),
            (
                "pom.xml",
                "<project><artifactId>x</artifactId></project>",
                "maven",
            ),
            ("build.gradle.kts", "plugins { kotlin(\"jvm\") }\n", "maven"),
            ("mix.exs", "defmodule X.MixProject do\nend\n", "hex"),
            (
                "App.csproj",
                "<Project Sdk=\"Microsoft.NET.Sdk\"></Project>",
                "nuget",
            ),
            ("deno.json", "{}", "deno"),
            ("gleam.toml", "name = \"x\"\n", "gleam"),
        ] {
            let (e, d) = parse(&format!("/src/{name}"), text);
            assert_eq!(e, Some(eco), "{name} must count as a read manifest");
            assert!(d.is_empty() || name == "build.gradle.kts", "{name}: {d:?}");
        }
        // not the format it claims to be: ignored
        assert_eq!(parse("/src/pyproject.toml", "[project\nname=").0, None);
        assert_eq!(parse("/src/go.mod", "hello").0, None);
        assert_eq!(parse("/src/pom.xml", "{}").0, None);
        let (_, d) = parse(
            "/src/setup.py",
            "setup(name='x', install_requires=['Flask>=3', \"gunicorn==22.0.0\"])",
        );
        assert_eq!(names(&d)[0].0, "flask");
        assert_eq!(names(&d)[1], ("gunicorn".into(), Some("22.0.0".into())));
        let (_, d) = parse(
            "/src/setup.cfg",
            "[metadata]\nname = x\n\n[options]\ninstall_requires =\n    flask>=3\n    requests\npython_requires = >=3.9\n",
        );
        assert_eq!(names(&d).len(), 2, "{d:?}");
    }

    #[test]
    fn garbage_is_harmless() {
        let garbage: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let text = String::from_utf8_lossy(&garbage);
        for name in MANIFESTS {
            let (eco, d) = parse(&format!("/app/{name}"), &text);
            assert!(d.len() < 1000, "{name}");
            if *name == "package.json" {
                assert!(eco.is_none(), "garbage package.json must not count as read");
            }
        }
    }

    #[test]
    fn other_ecosystems() {
        let (_, g) = parse(
            "/src/go.mod",
            "module x\n\ngo 1.22\n\nrequire (\n\tgithub.com/gin-gonic/gin v1.9.1\n\tgolang.org/x/net v0.1.0 // indirect\n)\nrequire github.com/labstack/echo/v4 v4.11.0\n",
        );
        assert_eq!(g.len(), 3);
        assert!(g[0].direct && !g[1].direct);
        let (_, p) = parse(
            "/app/pom.xml",
            "<project><parent><groupId>org.springframework.boot</groupId><artifactId>spring-boot-starter-parent</artifactId><version>3.2.5</version></parent><dependencies><dependency><groupId>org.springframework.boot</groupId><artifactId>spring-boot-starter-web</artifactId></dependency></dependencies></project>",
        );
        assert_eq!(p[0].name, "org.springframework.boot:spring-boot-starter-parent");
        assert_eq!(p[0].version.as_deref(), Some("3.2.5"));
        let (_, gl) = parse(
            "/app/Gemfile.lock",
            "GEM\n  specs:\n    sinatra (4.0.0)\n      rack (>= 3)\n    rack (3.0.9)\n",
        );
        assert_eq!(names(&gl)[0], ("sinatra".into(), Some("4.0.0".into())));
        let (_, c) = parse(
            "/app/composer.json",
            r#"{"require":{"laravel/framework":"^11.0"}}"#,
        );
        assert_eq!(c[0].name, "laravel/framework");
        let (_, pp) = parse(
            "/app/pyproject.toml",
            "[project]\nname='x'\ndependencies=['fastapi==0.110.3','uvicorn[standard]>=0.29']\n[tool.poetry.dependencies]\npython='^3.11'\ndjango='^5.0'\n",
        );
        assert_eq!(names(&pp).len(), 3);
        let dp = dpkg_status(
            "Package: redis-server\nStatus: install ok installed\nVersion: 5:7.0.15-1~deb12u1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n",
            "/var/lib/dpkg/status",
        );
        assert_eq!(names(&dp), vec![("redis-server".into(), Some("7.0.15".into()))]);
        assert_eq!(
            python_installed("Flask-3.0.3.dist-info", "/x").map(|d| (d.name, d.version)),
            Some(("flask".into(), Some("3.0.3".into())))
        );
    }
}
