//! The files probe: manifests, lockfiles, installed-package databases and a few layout files,
//! read from the app directories of a container (or a source tree in `--path` mode).
//!
//! Two ways in, one result: on the Docker host as root the container's files are read
//! through `/proc/<pid>/root` (fast, random access; symlinks are resolved *inside* that root,
//! never against the host's); otherwise through the Docker archive API, one streamed tar per
//! app directory, filtered on the fly (works for stopped and distroless containers). Both are
//! capped in bytes, entries and depth, and report what they could not read.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::manifest;
use super::obs::{Dep, FileObs, Observations, rank};
use super::signature::{Probe, SignatureSet};
use super::{DetectOptions, ProbeError};

/// Directories looked at besides WORKDIR and those named on the command line.
pub const COMMON_APP_DIRS: &[&str] = &[
    "/app",
    "/usr/src/app",
    "/srv",
    "/srv/app",
    "/opt/app",
    "/code",
    "/src",
    "/workspace",
    "/var/www/html",
    "/var/www",
];
/// Never descended into while looking for manifests.
const SKIP_DIRS: &[&str] = &[
    "node_modules",
    ".git",
    "__pycache__",
    "site-packages",
    "dist-packages",
    ".venv",
    "venv",
    "vendor",
    "target",
    ".cache",
    "proc",
    "sys",
    "dev",
    ".npm",
    ".m2",
    ".gradle",
    "tmp",
];
const MAX_DEPTH: usize = 2;
const MAX_ENTRIES: usize = 4000;
const MAX_NPM_LOOKUPS: usize = 200;
/// A jar inside a streamed archive is kept in memory up to this size to read its entries.
const MAX_JAR_IN_ARCHIVE: usize = 96 << 20;

/// Where the probe collects into.
#[derive(Default)]
pub struct Collector {
    pub files: FileObs,
    pub deps: Vec<Dep>,
    pub deps_read: BTreeSet<String>,
    pub runtime_versions: Vec<(String, String, u8)>,
    pub errors: Vec<ProbeError>,
    /// wanted paths (signature `file:` patterns): their content is kept for `contains:`
    wanted: BTreeSet<String>,
    max_file: usize,
}

impl Collector {
    pub fn new(sigs: &SignatureSet, opts: &DetectOptions) -> Collector {
        Collector {
            wanted: sigs.wanted_files(),
            max_file: opts.max_file_bytes,
            ..Default::default()
        }
    }

    /// An empty collector with the same settings.
    pub fn new_like(other: &Collector) -> Collector {
        Collector {
            wanted: other.wanted.clone(),
            max_file: other.max_file,
            ..Default::default()
        }
    }

    /// Adds what another collector found.
    pub fn merge(&mut self, o: Collector) {
        self.files.dirs.extend(o.files.dirs);
        self.files.files.extend(o.files.files);
        self.deps.extend(o.deps);
        self.deps_read.extend(o.deps_read);
        self.runtime_versions.extend(o.runtime_versions);
        self.errors.extend(o.errors);
    }

    fn wants(&self, path: &str) -> bool {
        let base = path.rsplit('/').next().unwrap_or(path);
        manifest::is_manifest(base) || self.wanted.iter().any(|w| super::score::file_matches(w, path))
    }

    /// Records a file's existence, and its content when it is one we read.
    pub fn add_file(&mut self, path: &str, content: Option<&[u8]>, size: u64) {
        if self.files.files.len() >= MAX_ENTRIES * 4 {
            return;
        }
        let Some(bytes) = content else {
            self.files.files.insert(path.to_string(), None);
            return;
        };
        if size as usize > self.max_file {
            self.errors.push(ProbeError::new(
                "files",
                format!(
                    "{path} is {} KiB; read only its first {} KiB",
                    size / 1024,
                    self.max_file / 1024
                ),
            ));
        }
        let text = String::from_utf8_lossy(bytes).into_owned();
        let (eco, deps) = manifest::parse(path, &text);
        if let Some(e) = eco {
            self.deps_read.insert(e.to_string());
        } else if manifest::is_manifest(path.rsplit('/').next().unwrap_or(path)) {
            self.errors.push(ProbeError::new(
                "files",
                format!("{path}: not a readable manifest (ignored)"),
            ));
            // an unparsable manifest is no evidence at all, not even of its language
            return;
        }
        self.deps.extend(deps);
        let keep = text.chars().take(self.max_file).collect::<String>();
        self.files.files.insert(path.to_string(), Some(keep));
    }

    pub fn into_observations(mut self, obs: &mut Observations) -> Vec<ProbeError> {
        // a dependency declared in a manifest and also locked/installed: keep both, but mark
        // the locked/installed ones as direct so their versions count fully
        let declared: BTreeSet<(String, String)> = self
            .deps
            .iter()
            .filter(|d| d.direct)
            .map(|d| (d.ecosystem.clone(), d.name.clone()))
            .collect();
        for d in &mut self.deps {
            if declared.contains(&(d.ecosystem.clone(), d.name.clone())) {
                d.direct = true;
            }
        }
        obs.files = Some(self.files);
        obs.deps.extend(self.deps);
        obs.deps_read.extend(self.deps_read);
        obs.runtime_versions.extend(self.runtime_versions);
        self.errors
    }

    /// npm packages declared by the app whose installed version we should look up.
    fn npm_declared(&self) -> Vec<(String, String)> {
        self.deps
            .iter()
            .filter(|d| d.ecosystem == "npm" && d.direct && d.source.ends_with("package.json"))
            .map(|d| {
                let dir = d.source.trim_end_matches("package.json").to_string();
                (dir, d.name.clone())
            })
            .take(MAX_NPM_LOOKUPS)
            .collect()
    }
}

/// Resolves `path` (absolute, as the container sees it) inside `root`, following symlinks
/// within the root only; `None` when it does not exist, loops or escapes.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .rev()
        .collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let mut cand = root.to_path_buf();
        cand.extend(parts.iter());
        cand.push(&c);
        let meta = std::fs::symlink_metadata(&cand).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&cand).ok()?;
            let t = target.to_string_lossy().to_string();
            if t.starts_with('/') {
                parts.clear();
            }
            for comp in Path::new(&t).components().rev() {
                if let Component::Normal(s) = comp {
                    todo.push(s.to_string_lossy().to_string());
                } else if let Component::ParentDir = comp {
                    todo.push("..".into());
                }
            }
        } else {
            parts.push(c);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts.iter());
    Some(out)
}

fn read_capped(path: &Path, cap: usize) -> Option<(Vec<u8>, u64)> {
    let f = std::fs::File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    let mut buf = Vec::with_capacity((size as usize).min(cap));
    f.take(cap as u64).read_to_end(&mut buf).ok()?;
    Some((buf, size))
}

/// Reads the app directories of a filesystem seen at `root` (a container's /proc/<pid>/root,
/// or `/` with a source tree as the only app dir in static mode).
pub fn read_root(root: &Path, app_dirs: &[String], c: &mut Collector, deadline: Instant, container: bool) {
    let mut seen = BTreeSet::new();
    for dir in app_dirs {
        let Some(real) = resolve_in_root(root, dir) else {
            continue;
        };
        if !real.is_dir() || !seen.insert(real.clone()) {
            continue;
        }
        c.files.dirs.push(dir.clone());
        let mut budget = MAX_ENTRIES;
        walk(root, dir, 0, c, &mut budget, deadline);
        if budget == 0 {
            c.errors.push(ProbeError::new(
                "files",
                format!("{dir}: more than {MAX_ENTRIES} entries; stopped listing"),
            ));
        }
    }
    // installed versions of declared npm packages
    for (dir, name) in c.npm_declared() {
        let p = format!("{dir}node_modules/{name}/package.json");
        if let Some(real) = resolve_in_root(root, &p)
            && let Some((b, _)) = read_capped(&real, 64 * 1024)
            && let Some(v) = manifest::package_version(&String::from_utf8_lossy(&b))
        {
            c.deps.push(Dep {
                ecosystem: "npm".into(),
                name: name.clone(),
                version: Some(v),
                rank: rank::INSTALLED,
                direct: true,
                source: p,
                probe: Probe::Files,
            });
        }
    }
    if !container {
        return;
    }
    // installed Python packages
    let mut site_dirs: Vec<String> = vec!["/usr/lib/python3/dist-packages".into()];
    for base in [
        "/usr/local/lib",
        "/usr/lib",
        "/opt/venv/lib",
        "/venv/lib",
        "/app/.venv/lib",
        "/usr/src/app/.venv/lib",
    ] {
        if let Some(real) = resolve_in_root(root, base)
            && let Ok(rd) = std::fs::read_dir(&real)
        {
            for e in rd.flatten().take(200) {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with("python3") {
                    site_dirs.push(format!("{base}/{n}/site-packages"));
                    site_dirs.push(format!("{base}/{n}/dist-packages"));
                }
            }
        }
    }
    for sd in site_dirs {
        let Some(real) = resolve_in_root(root, &sd) else {
            continue;
        };
        let Ok(rd) = std::fs::read_dir(&real) else {
            continue;
        };
        c.deps_read.insert("pypi".into());
        for e in rd.flatten().take(5000) {
            if let Some(d) = manifest::python_installed(&e.file_name().to_string_lossy(), &sd) {
                c.deps.push(d);
            }
        }
    }
    // OS packages
    for (p, apk) in [("/var/lib/dpkg/status", false), ("/lib/apk/db/installed", true)] {
        if let Some(real) = resolve_in_root(root, p)
            && let Some((b, size)) = read_capped(&real, 8 << 20)
        {
            let text = String::from_utf8_lossy(&b);
            let deps = if apk {
                manifest::apk_installed(&text, p)
            } else {
                manifest::dpkg_status(&text, p)
            };
            if size > 8 << 20 {
                c.errors.push(ProbeError::new(
                    "files",
                    format!("{p} larger than 8 MiB; read partly"),
                ));
            }
            c.deps_read.insert(if apk { "apk" } else { "deb" }.into());
            c.deps.extend(deps);
        }
    }
}

fn walk(root: &Path, dir: &str, depth: usize, c: &mut Collector, budget: &mut usize, deadline: Instant) {
    let Some(real) = resolve_in_root(root, dir) else {
        return;
    };
    let Ok(rd) = std::fs::read_dir(&real) else {
        c.errors
            .push(ProbeError::new("files", format!("{dir}: cannot list")));
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if *budget == 0 {
            return;
        }
        if Instant::now() > deadline {
            c.errors.push(ProbeError::new(
                "files",
                format!("{dir}: time budget exhausted while listing; later entries unread"),
            ));
            return;
        }
        *budget -= 1;
        let name = e.file_name().to_string_lossy().to_string();
        let path = format!("{}/{name}", dir.trim_end_matches('/'));
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if depth < MAX_DEPTH && !SKIP_DIRS.contains(&name.as_str()) && !name.starts_with('.') {
                walk(root, &path, depth + 1, c, budget, deadline);
            } else if name == ".next" {
                c.add_file(&format!("{path}/BUILD_ID"), None, 0);
            }
            continue;
        }
        if ft.is_symlink() {
            // record it; read it only if it resolves to a regular file inside the root
            match resolve_in_root(root, &path) {
                Some(t) if t.is_file() => {}
                _ => {
                    c.add_file(&path, None, 0);
                    continue;
                }
            }
        }
        if c.wants(&path) {
            let Some(real) = resolve_in_root(root, &path) else {
                continue;
            };
            match read_capped(&real, c.max_file) {
                Some((b, size)) => c.add_file(&path, Some(&b), size),
                None => c
                    .errors
                    .push(ProbeError::new("files", format!("{path}: cannot read"))),
            }
        } else {
            c.add_file(&path, None, 0);
        }
        if name.ends_with(".jar") || name.ends_with(".war") {
            c.jar_file(&path);
            if depth <= 1 {
                jar_listing(root, &path, c);
            }
        }
    }
}

/// Lists a jar's entries (zip central directory, read from the end of the file); a Spring
/// Boot fat jar's `BOOT-INF/lib/<artifact>-<version>.jar` become maven dependencies.
pub fn jar_listing(root: &Path, path: &str, c: &mut Collector) {
    let Some(real) = resolve_in_root(root, path) else {
        return;
    };
    let Ok(f) = std::fs::File::open(&real) else { return };
    read_jar(path, &f, c);
}

/// Evidence from a jar or war, whatever its name: its entries (BOOT-INF/lib, WEB-INF/lib, the
/// packages it holds), its `META-INF/MANIFEST.MF` (Spring-Boot-Version, Start-Class,
/// Main-Class) and the framework configuration files it carries.
pub fn read_jar<R: super::elf::ReadAt + ?Sized>(path: &str, r: &R, c: &mut Collector) {
    let Some((entries, complete)) = zip_entries(r) else {
        c.errors
            .push(ProbeError::new("files", format!("{path}: not a readable jar")));
        return;
    };
    if !complete {
        c.errors.push(ProbeError::new(
            "files",
            format!(
                "{path}: central directory larger than the read limit; listed the first {} entries",
                entries.len()
            ),
        ));
    }
    let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    add_jar_entries(path, &names, c);
    // packages (three levels: io/micronaut/http/), for signatures that look for them
    let mut pkgs = BTreeSet::new();
    for n in &names {
        let n = n
            .strip_prefix("BOOT-INF/classes/")
            .or_else(|| n.strip_prefix("WEB-INF/classes/"))
            .unwrap_or(n);
        let parts: Vec<&str> = n.split('/').collect();
        if parts.len() >= 4 && !parts[0].ends_with("-INF") {
            pkgs.insert(format!("{}/{}/{}/", parts[0], parts[1], parts[2]));
        }
        if pkgs.len() >= 400 {
            break;
        }
    }
    for p in pkgs {
        c.add_file(&format!("{path}!/{p}"), None, 0);
    }
    // the manifest and framework configuration inside the jar
    let mut read = 0;
    for e in &entries {
        let wanted = e.name == "META-INF/MANIFEST.MF"
            || (!e.name.contains("/lib/")
                && !e.name.ends_with('/')
                && e.name.matches('/').count() <= 3
                && c.wants(&format!("{path}!/{}", e.name)));
        if !wanted || read >= 20 {
            continue;
        }
        read += 1;
        let inner = format!("{path}!/{}", e.name);
        match zip_read(r, e, 256 * 1024) {
            Some(bytes) => {
                if e.name == "META-INF/MANIFEST.MF" {
                    jar_manifest(path, &String::from_utf8_lossy(&bytes), c);
                }
                c.add_file(&inner, Some(&bytes), bytes.len() as u64);
            }
            None => c
                .errors
                .push(ProbeError::new("files", format!("{inner}: cannot read"))),
        }
    }
}

/// `META-INF/MANIFEST.MF`: Spring Boot writes its version and the app's class; Quarkus'
/// runner names its entry point.
fn jar_manifest(path: &str, text: &str, c: &mut Collector) {
    // continuation lines start with one space
    let joined = text.replace("\r\n ", "").replace("\n ", "");
    for line in joined.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k == "Spring-Boot-Version" && !v.is_empty() {
            c.deps.push(Dep {
                ecosystem: "maven".into(),
                name: "org.springframework.boot:spring-boot".into(),
                version: Some(v.to_string()),
                rank: rank::INSTALLED,
                direct: true,
                source: format!("{path}!/META-INF/MANIFEST.MF"),
                probe: Probe::Files,
            });
        }
    }
}

/// A jar file on disk (a classpath directory, Quarkus' lib/main, an exploded WEB-INF/lib) is
/// an installed maven artifact, named `artifact-1.2.3.jar` or, in Quarkus' fast-jar layout,
/// `group.artifact-1.2.3.jar`.
impl Collector {
    pub fn jar_file(&mut self, path: &str) {
        let base = path.rsplit('/').next().unwrap_or(path);
        let Some((a, v)) = split_jar_name(base) else {
            return;
        };
        let a = a.rsplit('.').next().unwrap_or(&a).to_string();
        self.deps_read.insert("maven".into());
        self.deps.push(Dep {
            ecosystem: "maven".into(),
            name: format!(":{a}"),
            version: Some(v),
            rank: rank::INSTALLED,
            direct: true,
            source: path.to_string(),
            probe: Probe::Files,
        });
    }
}

pub fn add_jar_entries(path: &str, names: &[String], c: &mut Collector) {
    // only a jar that carries its libraries lists the app's dependencies (absence counts then);
    // a shaded jar's classes do not name their artifacts
    if names
        .iter()
        .any(|n| n.starts_with("BOOT-INF/lib/") || n.starts_with("WEB-INF/lib/"))
    {
        c.deps_read.insert("maven".into());
    }
    let mut boot = false;
    for n in names {
        if let Some(lib) = n
            .strip_prefix("BOOT-INF/lib/")
            .or_else(|| n.strip_prefix("WEB-INF/lib/"))
        {
            boot = true;
            if let Some((a, v)) = split_jar_name(lib) {
                c.deps.push(Dep {
                    ecosystem: "maven".into(),
                    name: format!(":{a}"),
                    version: Some(v),
                    rank: rank::INSTALLED,
                    direct: true,
                    source: path.to_string(),
                    probe: Probe::Files,
                });
            }
        }
    }
    if boot {
        c.add_file(&format!("{path}!/BOOT-INF/"), None, 0);
    }
}

/// `spring-boot-3.2.5.jar` → (`spring-boot`, `3.2.5`).
fn split_jar_name(n: &str) -> Option<(String, String)> {
    let stem = n.strip_suffix(".jar")?;
    let idx = stem
        .char_indices()
        .find(|&(i, ch)| ch.is_ascii_digit() && i > 0 && stem.as_bytes()[i - 1] == b'-')?
        .0;
    Some((stem[..idx - 1].to_string(), stem[idx..].to_string()))
}

/// One entry of a zip's central directory.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    pub name: String,
    method: u16,
    comp_size: u64,
    local_offset: u64,
}

/// Entry names from a zip's central directory (bounded).
pub fn zip_names<R: super::elf::ReadAt + ?Sized>(r: &R) -> Option<Vec<String>> {
    zip_entries(r).map(|(e, _)| e.into_iter().map(|e| e.name).collect())
}

/// The central directory (at most 8 MiB of it, 100 000 entries); `false` when cut short.
pub fn zip_entries<R: super::elf::ReadAt + ?Sized>(r: &R) -> Option<(Vec<ZipEntry>, bool)> {
    let len = r.len();
    let tail_len = len.min(66 * 1024) as usize;
    let mut tail = vec![0u8; tail_len];
    let got = r.read_at(len - tail_len as u64, &mut tail);
    tail.truncate(got);
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))?;
    let e = &tail[eocd..];
    let count = u16::from_le_bytes([e[10], e[11]]) as usize;
    let cd_size = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as usize;
    let cd_off = u32::from_le_bytes([e[16], e[17], e[18], e[19]]) as u64;
    let mut cd = vec![0u8; cd_size.min(8 << 20)];
    let got = r.read_at(cd_off, &mut cd);
    cd.truncate(got);
    let mut out = Vec::new();
    let mut at = 0;
    let u16at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    while out.len() < count.min(100_000) && at + 46 <= cd.len() {
        if &cd[at..at + 4] != b"PK\x01\x02" {
            break;
        }
        let nl = u16at(&cd, at + 28) as usize;
        let xl = u16at(&cd, at + 30) as usize;
        let cl = u16at(&cd, at + 32) as usize;
        let Some(n) = cd.get(at + 46..at + 46 + nl) else {
            break;
        };
        out.push(ZipEntry {
            name: String::from_utf8_lossy(n).into_owned(),
            method: u16at(&cd, at + 10),
            comp_size: u32at(&cd, at + 20) as u64,
            local_offset: u32at(&cd, at + 42) as u64,
        });
        at += 46 + nl + xl + cl;
    }
    // a zip with 0xFFFF entries may hold more (zip64): count what was listed as complete only
    // when the central directory was read whole and every entry parsed
    let complete = cd_size <= 8 << 20 && out.len() >= count.min(100_000) && count < 0xFFFF;
    Some((out, complete))
}

/// One entry's content (stored or deflated), at most `cap` bytes.
pub fn zip_read<R: super::elf::ReadAt + ?Sized>(r: &R, e: &ZipEntry, cap: usize) -> Option<Vec<u8>> {
    let mut h = [0u8; 30];
    if r.read_at(e.local_offset, &mut h) < 30 || &h[..4] != b"PK\x03\x04" {
        return None;
    }
    let nl = u16::from_le_bytes([h[26], h[27]]) as u64;
    let xl = u16::from_le_bytes([h[28], h[29]]) as u64;
    let mut data = vec![0u8; (e.comp_size as usize).min(cap.max(1) * 4).min(16 << 20)];
    let got = r.read_at(e.local_offset + 30 + nl + xl, &mut data);
    data.truncate(got);
    match e.method {
        0 => {
            data.truncate(cap);
            Some(data)
        }
        8 => {
            let mut out = Vec::new();
            let _ = flate2::read::DeflateDecoder::new(&data[..])
                .take(cap as u64)
                .read_to_end(&mut out);
            (!out.is_empty()).then_some(out)
        }
        _ => None,
    }
}

/// Static mode: a source tree or build context.
pub fn observe_dir(dir: &Path, sigs: &SignatureSet, opts: &DetectOptions) -> (Observations, Vec<ProbeError>) {
    let mut c = Collector::new(sigs, opts);
    let deadline = Instant::now() + opts.budget;
    read_root(dir, &["/".to_string()], &mut c, deadline, false);
    let mut obs = Observations::default();
    let errors = c.into_observations(&mut obs);
    (obs, errors)
}

/// Filters a streamed tar of `dir` (as the archive API returns it: entries prefixed with the
/// directory's base name) into the collector. Runs on a blocking thread.
pub fn read_tar(reader: impl Read, dir: &str, c: &mut Collector, deadline: Instant) -> Result<(), String> {
    let base = dir
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let parent = dir
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    let mut ar = tar::Archive::new(reader);
    let entries = ar.entries().map_err(|e| format!("{dir}: {e}"))?;
    let mut count = 0usize;
    let mut npm_installed: BTreeMap<String, String> = BTreeMap::new();
    for e in entries {
        if Instant::now() > deadline {
            return Err(format!("{dir}: time budget exhausted while reading the archive"));
        }
        let mut e = match e {
            Ok(e) => e,
            Err(err) => return Err(format!("{dir}: archive cut short: {err}")),
        };
        count += 1;
        if count > 200_000 {
            return Err(format!("{dir}: more than 200000 archive entries; stopped"));
        }
        let Ok(p) = e.path() else { continue };
        let rel = p.to_string_lossy().trim_end_matches('/').to_string();
        let full = if base.is_empty() {
            format!("/{rel}")
        } else {
            format!("{parent}/{rel}")
        };
        let inner = rel
            .strip_prefix(&base)
            .unwrap_or(&rel)
            .trim_start_matches('/')
            .to_string();
        let parts: Vec<&str> = inner.split('/').filter(|s| !s.is_empty()).collect();
        let kind = e.header().entry_type();
        // node_modules/<pkg>/package.json or node_modules/@scope/pkg/package.json: installed versions
        if let Some(nm) = parts.iter().position(|s| *s == "node_modules") {
            let rest = &parts[nm + 1..];
            let is_pkg_json = match rest {
                [_, "package.json"] => true,
                [s, _, "package.json"] => s.starts_with('@'),
                _ => false,
            };
            if is_pkg_json && nm == 0 && kind.is_file() {
                let mut b = Vec::new();
                let _ = (&mut e).take(64 * 1024).read_to_end(&mut b);
                if let Some(v) = manifest::package_version(&String::from_utf8_lossy(&b)) {
                    npm_installed.insert(rest[..rest.len() - 1].join("/"), v);
                }
            }
            continue;
        }
        if parts.len() > MAX_DEPTH + 1
            || parts
                .iter()
                .any(|s| SKIP_DIRS.contains(s) || (s.starts_with('.') && *s != ".next"))
        {
            continue;
        }
        if !kind.is_file() {
            if kind.is_symlink() {
                c.add_file(&full, None, 0);
            }
            continue;
        }
        let size = e.header().size().unwrap_or(0);
        if full.ends_with(".jar") || full.ends_with(".war") {
            c.add_file(&full, None, size);
            c.jar_file(&full);
            if parts.len() <= 2 {
                // the archive streams through anyway: keep this jar in memory to read it
                let cap = MAX_JAR_IN_ARCHIVE;
                let mut b = Vec::with_capacity((size as usize).min(cap));
                let _ = (&mut e).take(cap as u64).read_to_end(&mut b);
                if size as usize > cap {
                    c.errors.push(ProbeError::new(
                        "files",
                        format!("{full} is {} MiB; larger than the {} MiB read limit for a jar in an archive, its entries unread", size >> 20, cap >> 20),
                    ));
                } else {
                    read_jar(&full, &b[..], c);
                }
                continue;
            }
        }
        if c.wants(&full) {
            let mut b = Vec::with_capacity((size as usize).min(c.max_file));
            let _ = (&mut e).take(c.max_file as u64).read_to_end(&mut b);
            c.add_file(&full, Some(&b), size);
        } else {
            c.add_file(&full, None, size);
        }
    }
    for (dir_, name) in c.npm_declared() {
        if let Some(v) = npm_installed.get(&name) {
            c.deps.push(Dep {
                ecosystem: "npm".into(),
                name: name.clone(),
                version: Some(v.clone()),
                rank: rank::INSTALLED,
                direct: true,
                source: format!("{dir_}node_modules/{name}/package.json"),
                probe: Probe::Files,
            });
        }
    }
    Ok(())
}

/// A `Read` over chunks arriving from an async stream.
pub struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            buf: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.buf = b;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Candidate app directories from WORKDIR, the command line and common places.
pub fn app_dirs(workdir: Option<&str>, cmdlines: &[String], home: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |d: &str| {
        let d = d.trim_end_matches('/');
        let d = if d.is_empty() { "/" } else { d };
        if d != "/" && !out.iter().any(|x| x == d) && out.len() < 12 {
            out.push(d.to_string());
        }
    };
    if let Some(w) = workdir.filter(|w| !w.is_empty()) {
        push(w);
    }
    for cmd in cmdlines {
        // a classpath (`-cp a:b/lib/*`, `@argfile`) names several directories
        let args = cmd.split_whitespace().take(64).flat_map(|a| {
            let a = a.split_once('=').map(|(_, v)| v).unwrap_or(a);
            a.trim_start_matches('@')
                .split(':')
                .map(|p| p.trim_end_matches("/*"))
        });
        for arg in args {
            if !arg.starts_with('/')
                || arg.starts_with("/usr/bin")
                || arg.starts_with("/bin")
                || arg.starts_with("/usr/local/bin")
                || arg.starts_with("/usr/sbin")
                || arg.starts_with("/sbin")
                || arg.starts_with("/proc")
                || arg.starts_with("/dev")
                || arg.starts_with("/usr/lib/jvm")
            {
                continue;
            }
            // a file argument: its directory is a candidate
            let p = Path::new(arg);
            let dir = if p.extension().is_some() {
                p.parent().map(|d| d.to_string_lossy().to_string())
            } else {
                Some(arg.to_string())
            };
            if let Some(d) = dir
                && d.matches('/').count() <= 4
            {
                push(&d);
            }
        }
    }
    for d in COMMON_APP_DIRS {
        push(d);
    }
    if let Some(h) = home {
        push(h);
    }
    out
}

pub fn deadline_in(d: Duration) -> Instant {
    Instant::now() + d
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sigs() -> SignatureSet {
        SignatureSet::builtin().unwrap()
    }

    #[test]
    fn static_mode_reads_manifests_and_survives_loops() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("requirements.txt"), "flask==3.0.3\n").unwrap();
        std::fs::write(d.join("package.json"), [0u8, 159, 146, 150, 255, 0, 1]).unwrap();
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("escape.txt")).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::os::unix::fs::symlink("..", d.join("sub/up")).unwrap();
        let (obs, errors) = observe_dir(d, &sigs(), &DetectOptions::default());
        assert!(
            obs.deps
                .iter()
                .any(|x| x.name == "flask" && x.version.as_deref() == Some("3.0.3"))
        );
        assert!(obs.deps_read.contains("pypi"));
        assert!(
            !obs.deps_read.contains("npm"),
            "garbage package.json is not a read manifest"
        );
        assert!(
            errors.iter().any(|e| e.message.contains("package.json")),
            "{errors:?}"
        );
        // the absolute symlink resolves inside the tree (where /etc/passwd does not exist)
        assert_eq!(obs.files.as_ref().unwrap().files.get("/escape.txt"), Some(&None));
    }

    /// A zip written by hand: entries stored, or deflated when `deflate` (CRCs left at 0).
    pub(crate) fn zip(entries: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, data) in entries {
            let body = if deflate {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let method: u16 = if deflate { 8 } else { 0 };
            let off = out.len() as u32;
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // time, date, crc
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&body);
            cd.extend_from_slice(b"PK\x01\x02");
            cd.extend_from_slice(&20u16.to_le_bytes());
            cd.extend_from_slice(&20u16.to_le_bytes());
            cd.extend_from_slice(&0u16.to_le_bytes());
            cd.extend_from_slice(&method.to_le_bytes());
            cd.extend_from_slice(&[0; 8]);
            cd.extend_from_slice(&(body.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attrs
            cd.extend_from_slice(&0u32.to_le_bytes()); // external attrs
            cd.extend_from_slice(&off.to_le_bytes());
            cd.extend_from_slice(name.as_bytes());
        }
        let cd_off = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_off.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn jar_manifest_is_read_stored_or_deflated() {
        for deflate in [false, true] {
            let jar = zip(
                &[
                    (
                        "META-INF/MANIFEST.MF",
                        b"Manifest-Version: 1.0\r\nMain-Class: org.springframework.boot.loader.launch.JarLauncher\r\nStart-Class: com.example.Orders\r\nSpring-Boot-Version: 3.2.5\r\n",
                    ),
                    ("BOOT-INF/lib/spring-webflux-6.1.6.jar", b""),
                    ("BOOT-INF/classes/application.properties", b"server.port=8080\n"),
                    ("org/springframework/boot/loader/launch/JarLauncher.class", b""),
                ],
                deflate,
            );
            let mut c = Collector::new(&sigs(), &DetectOptions::default());
            read_jar("/srv/service.jar", &jar[..], &mut c);
            assert!(c.errors.is_empty(), "{:?}", c.errors);
            let spring = c
                .deps
                .iter()
                .find(|d| d.name == "org.springframework.boot:spring-boot")
                .expect("Spring-Boot-Version read");
            assert_eq!(spring.version.as_deref(), Some("3.2.5"));
            assert!(c.deps.iter().any(|d| d.name == ":spring-webflux"));
            let files = &c.files.files;
            assert!(files.contains_key("/srv/service.jar!/org/springframework/boot/"));
            assert!(
                files
                    .get("/srv/service.jar!/BOOT-INF/classes/application.properties")
                    .is_some_and(|t| t.as_deref() == Some("server.port=8080\n")),
                "{files:?}"
            );
        }
        // a central directory that claims more than it holds is reported, not silently lost
        let mut jar = zip(&[("a/b/c/D.class", b"")], false);
        let n = jar.len();
        jar[n - 12] = 9; // total entries: 9
        let mut c = Collector::new(&sigs(), &DetectOptions::default());
        read_jar("/x.jar", &jar[..], &mut c);
        assert!(
            c.errors.iter().any(|e| e.message.contains("listed the first 1")),
            "{:?}",
            c.errors
        );
    }

    #[test]
    fn jar_files_on_disk_are_installed_artifacts() {
        let mut c = Collector::new(&sigs(), &DetectOptions::default());
        c.jar_file("/deployments/lib/main/io.quarkus.quarkus-core-3.8.4.jar");
        c.jar_file("/app/lib/spring-boot-autoconfigure-3.2.5.jar");
        c.jar_file("/app/app.jar");
        let n: Vec<_> = c
            .deps
            .iter()
            .map(|d| (d.name.as_str(), d.version.as_deref()))
            .collect();
        assert_eq!(
            n,
            vec![
                (":quarkus-core", Some("3.8.4")),
                (":spring-boot-autoconfigure", Some("3.2.5"))
            ]
        );
        let d = app_dirs(
            None,
            &["java -cp /opt/svc/classes:/opt/svc/lib/* com.example.Main".into()],
            None,
        );
        assert_eq!(&d[..2], &["/opt/svc/classes".to_string(), "/opt/svc/lib".into()]);
    }

    #[test]
    fn resolve_stays_in_root() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("srv/app")).unwrap();
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::os::unix::fs::symlink("/srv/app", d.join("app")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc", d.join("srv/up")).unwrap();
        assert_eq!(resolve_in_root(d, "/app"), Some(d.join("srv/app")));
        assert_eq!(resolve_in_root(d, "/srv/up"), Some(d.join("etc")));
        std::os::unix::fs::symlink("b", d.join("a")).unwrap();
        std::os::unix::fs::symlink("a", d.join("b")).unwrap();
        assert_eq!(resolve_in_root(d, "/a"), None);
    }

    #[test]
    fn tar_stream_is_filtered() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |p: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, data).unwrap();
        };
        add(
            "app/node_modules/express/package.json",
            br#"{"version":"4.19.2"}"#,
        );
        add("app/node_modules/express/lib/x.js", b"x");
        add("app/package.json", br#"{"dependencies":{"express":"^4.19.0"}}"#);
        add("app/src/a/b/c/deep.txt", b"x");
        let data = b.into_inner().unwrap();
        let mut c = Collector::new(&sigs(), &DetectOptions::default());
        read_tar(&data[..], "/app", &mut c, Instant::now() + Duration::from_secs(5)).unwrap();
        let v: Vec<_> = c
            .deps
            .iter()
            .map(|d| (d.name.clone(), d.version.clone(), d.rank))
            .collect();
        assert!(
            v.contains(&("express".into(), Some("4.19.2".into()), rank::INSTALLED)),
            "{v:?}"
        );
        assert!(c.files.files.contains_key("/app/package.json"));
        assert!(!c.files.files.keys().any(|k| k.contains("deep")));
        // a truncated archive is an error, not a panic
        let mut c2 = Collector::new(&sigs(), &DetectOptions::default());
        let _ = read_tar(
            &data[..700],
            "/app",
            &mut c2,
            Instant::now() + Duration::from_secs(5),
        );
    }

    #[test]
    fn app_dirs_from_workdir_and_cmdline() {
        let d = app_dirs(
            Some("/srv/api"),
            &["python3 /opt/svc/main.py --x=/data/cfg".into()],
            None,
        );
        assert_eq!(
            &d[..3],
            &["/srv/api".to_string(), "/opt/svc".into(), "/data/cfg".into()]
        );
        assert!(d.contains(&"/app".to_string()));
        assert_eq!(
            split_jar_name("spring-boot-3.2.5.jar"),
            Some(("spring-boot".into(), "3.2.5".into()))
        );
        assert_eq!(
            split_jar_name("tomcat-embed-core-10.1.20.jar"),
            Some(("tomcat-embed-core".into(), "10.1.20".into()))
        );
    }
}
