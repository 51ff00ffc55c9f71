//! The installer, for real: `installer/package.sh` packages the test binary into a release
//! folder, `python3 -m http.server` serves it on 127.0.0.1 (a random port), and
//! `curl … | bash` runs `install.sh` into a temporary HOME. Checks the install, the no-op
//! re-run, `--dry-run`, `--uninstall`, a corrupted archive, a rollback, an upgrade under
//! load (the binary on PATH always runs), truncated downloads, and shellcheck.
//!
//! Needs bash, curl, python3, tar, gzip and sha256sum (all in the lab); no Docker (the
//! doctor run after an install reports whatever it finds and never fails the install).
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

const TARGET: &str = "x86_64-unknown-linux-gnu";
const END_LINE: &str = "main \"$@\" --obs-stack-install-end\n";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// A release folder served over loopback HTTP; the server is killed on drop.
struct Release {
    dist: tempfile::TempDir,
    server: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Release {
    /// A copy of the packaged release (see `packaged`), served on a random loopback port.
    fn new() -> Release {
        let dist = tempfile::tempdir().unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", packaged().display()))
            .arg(dist.path())
            .status();
        assert!(st.is_ok_and(|s| s.success()), "copying the release failed");
        // The request log lives in the served folder (nothing fetches it).
        let log = dist.path().join(".http.log");
        let mut server = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "0",
                "--directory",
            ])
            .arg(dist.path())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 -m http.server");
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port: u16 = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Release {
            dist,
            server,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dist.path().join(rel)
    }

    /// Request lines the server has logged so far.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET "))
            .map(str::to_string)
            .collect()
    }

    fn set_latest(&self, v: &str) {
        std::fs::write(self.path("latest"), format!("{v}\n")).unwrap();
    }

    /// A hand-made release `v` whose binary is a tiny C program answering `obs-stack <v>`
    /// (an ELF, like the real one: a shell script would be re-opened by name by its
    /// interpreter, which is not what an upgrade under load should measure).
    fn add_tiny_release(&self, v: &str) {
        let body = format!("puts(\"obs-stack {v}\"); return 0;");
        self.add_tiny_archive(v, TARGET, &body);
    }

    /// Writes `<v>/obs-stack-<target>.tar.gz` holding a C program with `main`'s `body`, and
    /// (re)writes `<v>/SHA256SUMS` over every archive of `v`.
    fn add_tiny_archive(&self, v: &str, target: &str, body: &str) {
        let stage = tempfile::tempdir().unwrap();
        let name = format!("obs-stack-{target}");
        let dir = stage.path().join(&name);
        std::fs::create_dir(&dir).unwrap();
        let bin = dir.join("obs-stack");
        let src = stage.path().join("main.c");
        std::fs::write(&src, format!("#include <stdio.h>\nint main(void) {{ {body} }}\n")).unwrap();
        let cc = Command::new("cc")
            .arg("-O2")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .output()
            .unwrap();
        assert!(cc.status.success(), "cc: {}", show(&cc));
        std::fs::remove_file(&src).unwrap();
        let out_dir = self.path(v);
        std::fs::create_dir_all(&out_dir).unwrap();
        let archive = out_dir.join(format!("{name}.tar.gz"));
        let st = Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(stage.path())
            .arg(&name)
            .status()
            .unwrap();
        assert!(st.success());
        let sums = Command::new("sh")
            .arg("-c")
            .arg("sha256sum obs-stack-*.tar.gz > SHA256SUMS")
            .current_dir(&out_dir)
            .status()
            .unwrap();
        assert!(sums.success());
    }
}

/// Runs package.sh on the test binary once per test process (packaging an 80 MB debug
/// binary takes a few seconds) into the cargo target's tmp dir; each test gets a copy.
fn packaged() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // Releases packaged by earlier runs.
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("installer-dist-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("installer-dist-{}", std::process::id()));
        package_into(&dir);
        dir
    })
}

fn package_into(dir: &Path) {
    let out = Command::new("bash")
        .arg(repo().join("installer/package.sh"))
        .env("OBS_STACK_DIST_DIR", dir)
        .env("OBS_STACK_BINARY", env!("CARGO_BIN_EXE_obs-stack"))
        .env("OBS_STACK_BINARY_TARGET", TARGET)
        .output()
        .unwrap();
    assert!(out.status.success(), "package.sh failed: {}", show(&out));
}

/// A temporary HOME for one simulated user.
struct User {
    home: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn bin_dir(&self) -> PathBuf {
        self.home.path().join(".local/bin")
    }

    /// `curl -sSf <url>/install.sh | bash -s -- <args>`, as a user would run it.
    fn curl_bash(&self, rel: &Release, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg("set -o pipefail; curl -sSf \"$OBS_STACK_BASE_URL/install.sh\" | bash -s -- \"$@\"")
            .arg("install")
            .args(args);
        self.env(&mut cmd, rel, env);
        cmd.output().unwrap()
    }

    fn env(&self, cmd: &mut Command, rel: &Release, env: &[(&str, &str)]) {
        cmd.env("HOME", self.home.path())
            .env("OBS_STACK_BASE_URL", &rel.url)
            .env_remove("OBS_STACK_INSTALL_DIR")
            .env_remove("OBS_STACK_VERSION")
            .env_remove("OBS_STACK_TARGET")
            .env_remove("OBS_STACK_NO_DOCTOR")
            .env_remove("OBS_STACK_INSTALL_FAULT")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
    }

    fn run_installed(&self, name: &str, args: &[&str]) -> Output {
        Command::new(self.bin_dir().join(name))
            .args(args)
            .output()
            .unwrap()
    }

    fn installed_version(&self) -> String {
        let o = self.run_installed("obs-stack", &["--version"]);
        assert!(
            o.status.success(),
            "installed obs-stack does not run: {}",
            show(&o)
        );
        text(&o.stdout).trim().to_string()
    }
}

/// Everything under `root`: kind, mode, size, content hash or link target, inode and mtime.
fn snapshot(root: &Path, with_identity: bool) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, id: bool, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ident = if id {
                format!(" ino={} mtime={}.{}", m.ino(), m.mtime(), m.mtime_nsec())
            } else {
                String::new()
            };
            let desc = if m.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                format!("dir {:o}", m.mode() & 0o7777)
            } else {
                format!("file {:o} {} {}", m.mode() & 0o7777, m.len(), sha256_file(&p))
            };
            out.insert(rel, format!("{desc}{ident}"));
            if m.is_dir() {
                walk(root, &p, id, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, with_identity, &mut out);
    out
}

#[test]
fn curl_pipe_bash_installs_reruns_as_noop_and_uninstalls_without_trace() {
    let rel = Release::new();
    let user = User::new();
    assert!(snapshot(user.home.path(), false).is_empty());

    let o = user.curl_bash(&rel, &[], &[]);
    assert!(o.status.success(), "install failed: {}", show(&o));
    let out = text(&o.stdout);
    assert!(out.contains("verified SHA-256"), "{out}");
    assert!(out.contains("is not on your PATH"), "PATH hint missing: {out}");
    // Doctor ran and its verdict was printed, whatever Docker's state here.
    assert!(
        out.contains("verdict: ") && out.contains("obs-stack-install: doctor: "),
        "{out}"
    );

    assert_eq!(user.installed_version(), format!("obs-stack {}", version()));
    let d = user.run_installed("obs-detect", &["--version"]);
    assert!(d.status.success(), "obs-detect --version: {}", show(&d));
    assert!(text(&d.stdout).contains(version()), "{}", show(&d));
    // The links dispatch: obs-inject --help is inject's help.
    let i = user.run_installed("obs-inject", &["--help"]);
    assert!(text(&i.stdout).contains("obs-inject"), "{}", show(&i));
    let bin = user.bin_dir();
    assert_eq!(
        std::fs::read_link(bin.join("obs-detect")).unwrap(),
        Path::new("obs-stack")
    );
    assert_eq!(
        std::fs::read_link(bin.join("obs-inject")).unwrap(),
        Path::new("obs-stack")
    );
    let manifest = std::fs::read_to_string(bin.join(".obs-stack-install-manifest")).unwrap();
    assert!(manifest.contains(&format!("version={}", version())), "{manifest}");
    // Nothing else was left in the install folder (no temp or backup files).
    let names: Vec<String> = std::fs::read_dir(&bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 4, "unexpected files in {}: {names:?}", bin.display());

    // Re-run: a no-op. Same inodes and mtimes, and the archive is not downloaded again.
    let before = snapshot(user.home.path(), true);
    let archive_gets = |r: &Release| r.requests().iter().filter(|l| l.contains(".tar.gz")).count();
    let gets = archive_gets(&rel);
    assert_eq!(gets, 1);
    let o = user.curl_bash(&rel, &[], &[]);
    assert!(o.status.success(), "re-run failed: {}", show(&o));
    assert!(text(&o.stdout).contains("nothing to do"), "{}", show(&o));
    assert_eq!(
        snapshot(user.home.path(), true),
        before,
        "the re-run changed files"
    );
    assert_eq!(
        archive_gets(&rel),
        gets,
        "the re-run downloaded the archive again"
    );

    // Uninstall: not a trace, including the folders the install created.
    let o = user.curl_bash(&rel, &["--uninstall"], &[]);
    assert!(o.status.success(), "uninstall failed: {}", show(&o));
    assert!(
        snapshot(user.home.path(), false).is_empty(),
        "left behind: {:?}",
        snapshot(user.home.path(), false)
    );
    // Uninstalling again is harmless.
    let o = user.curl_bash(&rel, &["--uninstall"], &[]);
    assert!(
        o.status.success() && text(&o.stdout).contains("nothing to uninstall"),
        "{}",
        show(&o)
    );
}

#[test]
fn uninstall_removes_only_what_it_installed() {
    let rel = Release::new();
    let user = User::new();
    let bin = user.bin_dir();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("other-tool"), "#!/bin/sh\n").unwrap();
    // Someone else's obs-inject: left alone by install and uninstall.
    std::fs::write(bin.join("obs-inject"), "not ours\n").unwrap();
    let o = user.curl_bash(
        &rel,
        &["--no-doctor"],
        &[("OBS_STACK_INSTALL_DIR", bin.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("was not installed by obs-stack; leaving it"),
        "{}",
        show(&o)
    );
    assert_eq!(
        std::fs::read_to_string(bin.join("obs-inject")).unwrap(),
        "not ours\n"
    );
    assert!(user.run_installed("obs-detect", &["--version"]).status.success());

    let o = user.curl_bash(&rel, &["--uninstall"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    let left: Vec<String> = snapshot(user.home.path(), false).into_keys().collect();
    assert_eq!(
        left,
        vec![
            ".local",
            ".local/bin",
            ".local/bin/obs-inject",
            ".local/bin/other-tool"
        ]
    );
}

#[test]
fn dry_run_changes_nothing() {
    let rel = Release::new();
    let user = User::new();
    let o = user.curl_bash(&rel, &["--dry-run"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(
        out.contains("would download") && out.contains("nothing was changed"),
        "{out}"
    );
    assert!(
        snapshot(user.home.path(), false).is_empty(),
        "dry run created files"
    );
    assert!(
        !rel.requests().iter().any(|l| l.contains(".tar.gz")),
        "dry run downloaded the archive"
    );

    let o = user.curl_bash(&rel, &["--no-doctor"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    let before = snapshot(user.home.path(), true);
    for args in [&["--dry-run"][..], &["--uninstall", "--dry-run"][..]] {
        let o = user.curl_bash(&rel, args, &[]);
        assert!(o.status.success(), "{args:?}: {}", show(&o));
        assert_eq!(snapshot(user.home.path(), true), before, "{args:?} changed files");
    }
    let o = user.curl_bash(&rel, &["--uninstall", "--dry-run"], &[]);
    assert!(text(&o.stdout).contains("would run: rm -f"), "{}", show(&o));
}

#[test]
fn corrupted_archive_and_failed_upgrade_keep_the_previous_install_and_upgrade_is_atomic() {
    let rel = Release::new();
    let user = User::new();
    rel.add_tiny_release("0.0.9");

    // The previous install: 0.0.9, pinned.
    let o = user.curl_bash(&rel, &["--version", "0.0.9", "--no-doctor"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(user.installed_version(), "obs-stack 0.0.9");
    let previous = snapshot(user.home.path(), true);

    // A release whose archive does not match SHA256SUMS is refused; nothing changes.
    let bad = rel.path("0.9.9");
    std::fs::create_dir_all(&bad).unwrap();
    let good_archive = rel.path(&format!("{}/obs-stack-{TARGET}.tar.gz", version()));
    let mut bytes = std::fs::read(&good_archive).unwrap();
    std::fs::write(
        bad.join("SHA256SUMS"),
        format!("{}  obs-stack-{TARGET}.tar.gz\n", sha256_file(&good_archive)),
    )
    .unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(bad.join(format!("obs-stack-{TARGET}.tar.gz")), &bytes).unwrap();
    rel.set_latest("0.9.9");
    let o = user.curl_bash(&rel, &["--no-doctor"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(text(&o.stderr).contains("checksum mismatch"), "{}", show(&o));
    assert_eq!(
        snapshot(user.home.path(), true),
        previous,
        "a refused install changed files"
    );
    assert_eq!(user.installed_version(), "obs-stack 0.0.9");

    // A failure after the new binary is in place rolls back to the previous version.
    rel.set_latest(version());
    let o = user.curl_bash(
        &rel,
        &["--no-doctor"],
        &[("OBS_STACK_INSTALL_FAULT", "after-swap")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("restoring the previous state"),
        "{}",
        show(&o)
    );
    assert_eq!(
        snapshot(user.home.path(), false),
        snapshot_without_identity(&previous),
        "rollback did not restore the previous install"
    );
    assert_eq!(user.installed_version(), "obs-stack 0.0.9");

    // The upgrade, while another process keeps running the binary on PATH: every run must
    // find a complete binary (old or new), never a half-written one.
    let stop = Arc::new(AtomicBool::new(false));
    let runner = {
        let stop = stop.clone();
        let bin = user.bin_dir().join("obs-stack");
        std::thread::spawn(move || {
            let (mut runs, mut bad) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match Command::new(&bin).arg("--version").output() {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => bad.push(show(&o)),
                    Err(e) => bad.push(e.to_string()),
                }
                runs += 1;
            }
            (runs, bad)
        })
    };
    let o = user.curl_bash(&rel, &["--no-doctor"], &[]);
    stop.store(true, Ordering::SeqCst);
    let (runs, bad) = runner.join().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        bad.is_empty(),
        "{} of {runs} runs failed during the upgrade: {:?}",
        bad.len(),
        bad.first()
    );
    assert!(runs > 0);
    eprintln!("upgrade under load: {runs} runs of the binary on PATH, none failed");
    assert_eq!(user.installed_version(), format!("obs-stack {}", version()));
    assert!(user.run_installed("obs-detect", &["--version"]).status.success());

    let o = user.curl_bash(&rel, &["--uninstall"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(snapshot(user.home.path(), false).is_empty());
}

fn snapshot_without_identity(s: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    s.iter()
        .map(|(k, v)| (k.clone(), v.split(" ino=").next().unwrap().to_string()))
        .collect()
}

#[test]
fn truncated_install_sh_executes_nothing() {
    let rel = Release::new();
    let script = std::fs::read(repo().join("installer/install.sh")).unwrap();
    assert!(
        script.ends_with(END_LINE.as_bytes()),
        "install.sh must end with {END_LINE:?}"
    );
    let end = script.len() - END_LINE.len();
    let mut cuts: Vec<usize> = (1..10).map(|i| script.len() * i / 10).collect();
    // Between two functions (the script parses cleanly, defining functions only) ...
    let mut pos = 0;
    for line in script.split_inclusive(|b| *b == b'\n') {
        pos += line.len();
        if line == b"}\n" {
            cuts.push(pos);
        }
    }
    // ... and inside the last line: "main", "main \"$@\"", "main \"$@\" --obs-stack-inst".
    cuts.extend([end + 4, end + 5, end + 9, end + 10, end + 26, script.len() - 2]);
    cuts.sort_unstable();
    cuts.dedup();
    assert!(cuts.len() > 20);

    for shell in ["bash", "sh"] {
        for &cut in &cuts {
            let user = User::new();
            let requests = rel.requests().len();
            let mut cmd = Command::new(shell);
            user.env(&mut cmd, &rel, &[]);
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&script[..cut]).unwrap();
            let o = child.wait_with_output().unwrap();
            let err = text(&o.stderr);
            assert!(o.stdout.is_empty(), "{shell}, cut at {cut}: printed {}", show(&o));
            // The only message main may print is the refusal.
            for line in err.lines().filter(|l| l.contains("obs-stack-install")) {
                assert!(
                    line.contains("script is incomplete"),
                    "{shell}, cut at {cut}: {err}"
                );
            }
            assert!(
                snapshot(user.home.path(), false).is_empty(),
                "{shell}, cut at {cut}: created files"
            );
            assert_eq!(
                rel.requests().len(),
                requests,
                "{shell}, cut at {cut}: made requests"
            );
            if cut >= end {
                assert!(!o.status.success(), "{shell}, cut at {cut}: {}", show(&o));
            }
        }
    }

    // The same through curl | bash: a truncated file on the server.
    std::fs::write(rel.path("install.sh"), &script[..end + 4]).unwrap();
    let user = User::new();
    let o = user.curl_bash(&rel, &[], &[]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(text(&o.stderr).contains("script is incomplete"), "{}", show(&o));
    assert!(snapshot(user.home.path(), false).is_empty());
    eprintln!("{} cut points x 2 shells: nothing ran", cuts.len());
}

#[test]
fn base_url_must_be_https_except_loopback() {
    let rel = Release::new();
    let user = User::new();
    let script = repo().join("installer/install.sh");
    for (url, ok) in [
        ("http://example.com/releases", false),
        ("http://10.1.2.3:8080", false),
        ("ftp://127.0.0.1/x", false),
        ("file:relative/dist", false),
        ("http://localhost:1", true),
    ] {
        let mut cmd = Command::new("bash");
        cmd.arg(&script).arg("--dry-run");
        user.env(&mut cmd, &rel, &[("OBS_STACK_BASE_URL", url)]);
        let o = cmd.output().unwrap();
        let err = text(&o.stderr);
        if ok {
            // Allowed, then fails to connect (nothing listens on port 1).
            assert!(
                err.contains("cannot read the latest version"),
                "{url}: {}",
                show(&o)
            );
        } else {
            assert!(
                err.contains("only https:") || err.contains("must start with https://"),
                "{url}: {}",
                show(&o)
            );
        }
        assert_eq!(o.status.code(), Some(1), "{url}: {}", show(&o));
    }
    assert!(snapshot(user.home.path(), false).is_empty());
}

#[test]
fn install_succeeds_when_docker_is_absent_and_prints_doctors_verdict() {
    let rel = Release::new();
    let user = User::new();
    let o = user.curl_bash(&rel, &[], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(
        out.contains("not running: the socket /nonexistent/docker.sock does not exist"),
        "{out}"
    );
    assert!(out.contains("the Docker engine is not reachable"), "{out}");
    assert_eq!(user.installed_version(), format!("obs-stack {}", version()));
}

#[test]
fn release_layout_and_reproducible_archives() {
    let rel = Release::new();
    let v = version();
    assert_eq!(
        std::fs::read_to_string(rel.path("latest")).unwrap(),
        format!("{v}\n")
    );
    let sums = std::fs::read_to_string(rel.path(&format!("{v}/SHA256SUMS"))).unwrap();
    let archive = rel.path(&format!("{v}/obs-stack-{TARGET}.tar.gz"));
    assert_eq!(
        sums,
        format!("{}  obs-stack-{TARGET}.tar.gz\n", sha256_file(&archive))
    );
    assert!(rel.path("install.sh").is_file() && rel.path(&format!("{v}/install.sh")).is_file());
    let list = Command::new("tar").arg("-tvzf").arg(&archive).output().unwrap();
    let list = text(&list.stdout);
    for entry in [
        format!("obs-stack-{TARGET}/obs-stack"),
        format!("obs-stack-{TARGET}/obs-detect -> obs-stack"),
        format!("obs-stack-{TARGET}/obs-inject -> obs-stack"),
    ] {
        assert!(list.contains(&entry), "{entry} missing from:\n{list}");
    }
    // Packaging the same binary again gives the same bytes.
    let again = tempfile::tempdir().unwrap();
    package_into(again.path());
    assert_eq!(
        std::fs::read_to_string(again.path().join(format!("{v}/SHA256SUMS"))).unwrap(),
        sums
    );
}

#[test]
fn shellcheck_clean() {
    if Command::new("shellcheck").arg("--version").output().is_err() {
        assert!(
            std::env::var("OBS_STACK_DOCKER_TESTS").as_deref() != Ok("1"),
            "shellcheck is missing in the lab (tests/lab/ensure-tools.sh installs it)"
        );
        eprintln!("skipping shellcheck_clean: shellcheck is not installed");
        return;
    }
    for (shell, file) in [
        ("sh", "installer/install.sh"),
        ("bash", "installer/install.sh"),
        ("bash", "installer/package.sh"),
    ] {
        let o = Command::new("shellcheck")
            .args(["-s", shell, "-S", "style"])
            .arg(repo().join(file))
            .output()
            .unwrap();
        assert!(o.status.success(), "shellcheck -s {shell} {file}: {}", show(&o));
    }
}

#[test]
fn installs_from_a_local_release_folder_with_a_file_url() {
    // The fresh-clone path: installer/package.sh, then install.sh from dist/ (no server).
    let rel = Release::new();
    let user = User::new();
    let mut cmd = Command::new("sh");
    cmd.arg(rel.path("install.sh")).arg("--no-doctor");
    let url = format!("file://{}", rel.dist.path().display());
    user.env(&mut cmd, &rel, &[("OBS_STACK_BASE_URL", &url)]);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(user.installed_version(), format!("obs-stack {}", version()));
    assert!(
        rel.requests().is_empty(),
        "a file:// install used the HTTP server"
    );
}

/// A PATH holding only the given tools (symlinks to the real ones).
fn restricted_path(tools: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for t in tools {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .output()
            .unwrap();
        let real = text(&o.stdout).trim().to_string();
        assert!(o.status.success() && !real.is_empty(), "{t} is not installed");
        std::os::unix::fs::symlink(real, dir.path().join(t)).unwrap();
    }
    dir
}

#[test]
fn falls_back_to_wget_and_names_missing_commands() {
    let rel = Release::new();
    let base = [
        "uname",
        "mkdir",
        "rmdir",
        "rm",
        "mv",
        "ln",
        "cp",
        "chmod",
        "mktemp",
        "tar",
        "gzip",
        "sed",
        "grep",
        "cut",
        "tr",
        "head",
        "dirname",
        "readlink",
        "sha256sum",
    ];
    let script = rel.path("install.sh");
    let sh = text(
        &Command::new("sh")
            .arg("-c")
            .arg("command -v sh")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();

    // wget instead of curl.
    let user = User::new();
    let path = restricted_path(&[&base[..], &["wget"]].concat());
    let mut cmd = Command::new(&sh);
    cmd.arg(&script).arg("--no-doctor");
    user.env(&mut cmd, &rel, &[("PATH", path.path().to_str().unwrap())]);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    assert!(rel.requests().iter().any(|l| l.contains(".tar.gz")));
    assert_eq!(user.installed_version(), format!("obs-stack {}", version()));

    // Neither curl nor wget; then no sha256 tool: named, nothing installed.
    for (missing, tools) in [
        ("need 'curl' or 'wget'", base.to_vec()),
        (
            "need 'sha256sum', 'shasum' or 'openssl'",
            [&base[..base.len() - 1], &["curl"]].concat(),
        ),
        (
            "need 'gzip'",
            base.iter().copied().filter(|t| *t != "gzip").collect(),
        ),
    ] {
        let user = User::new();
        let path = restricted_path(&tools);
        let mut cmd = Command::new(&sh);
        cmd.arg(&script);
        user.env(&mut cmd, &rel, &[("PATH", path.path().to_str().unwrap())]);
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        assert!(text(&o.stderr).contains(missing), "{missing}: {}", show(&o));
        assert!(snapshot(user.home.path(), false).is_empty());
    }
}

#[test]
fn falls_back_to_the_static_build_when_the_glibc_one_does_not_run() {
    let rel = Release::new();
    let v = version();
    // The real binary as the musl build, and a glibc build that cannot run here (as on a
    // system whose glibc is older than the build machine's).
    let musl = "x86_64-unknown-linux-musl";
    let out = Command::new("bash")
        .arg(repo().join("installer/package.sh"))
        .env("OBS_STACK_DIST_DIR", rel.dist.path())
        .env("OBS_STACK_BINARY", env!("CARGO_BIN_EXE_obs-stack"))
        .env("OBS_STACK_BINARY_TARGET", musl)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    rel.add_tiny_archive(
        v,
        TARGET,
        r#"fputs("obs-stack: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.99' not found\n", stderr); return 1;"#,
    );
    let user = User::new();
    let o = user.curl_bash(&rel, &["--no-doctor"], &[]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text(&o.stderr).contains(&format!("the {TARGET} build does not run on this machine")),
        "{}",
        show(&o)
    );
    assert_eq!(user.installed_version(), format!("obs-stack {v}"));
    let manifest = std::fs::read_to_string(user.bin_dir().join(".obs-stack-install-manifest")).unwrap();
    assert!(manifest.contains(&format!("target={musl}")), "{manifest}");
    // The re-run recognises the fallback build as installed.
    let before = snapshot(user.home.path(), true);
    let o = user.curl_bash(&rel, &["--no-doctor"], &[]);
    assert!(text(&o.stdout).contains("nothing to do"), "{}", show(&o));
    assert_eq!(snapshot(user.home.path(), true), before);
}

#[test]
fn a_failed_first_install_leaves_no_trace() {
    let rel = Release::new();
    let user = User::new();
    let o = user.curl_bash(
        &rel,
        &["--no-doctor"],
        &[("OBS_STACK_INSTALL_FAULT", "after-swap")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("restoring the previous state"),
        "{}",
        show(&o)
    );
    assert!(
        snapshot(user.home.path(), false).is_empty(),
        "left behind: {:?}",
        snapshot(user.home.path(), false)
    );
}
