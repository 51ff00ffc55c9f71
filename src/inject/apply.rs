//! The recreate engine: prepare the agent volume, then replace a container by a new spec while
//! keeping the old one (stopped, renamed `<name>.obs-orig`) until the new one is proven —
//! running, healthy when it has a healthcheck, not restarting for a grace period — and roll
//! back automatically otherwise. Every step is journaled before the next one starts, and
//! `recover` turns any interrupted journal back into a consistent state: the app is never
//! left without a container.
use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use super::plan::{AgentStep, CreateSpec, LABEL_DIGEST, spec_from_inspect};
use super::state::{Journal, OpKind, Record, Status, Step, Store};
use crate::docker::{DockerError, Engine};

pub const AGENT_MARKER: &str = ".obs-stack-agent";
const INIT_MOUNT: &str = "/obs-agent";

#[derive(Debug, Clone)]
pub struct GateOptions {
    /// How long the new container must keep running without a restart.
    pub grace: Duration,
    /// How long to wait for `healthy` when the container has a healthcheck.
    pub health_timeout: Duration,
    /// Seconds to wait for the old container to stop (None: its own StopTimeout).
    pub stop_timeout: Option<i32>,
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            grace: Duration::from_secs(10),
            health_timeout: Duration::from_secs(120),
            stop_timeout: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Replaced {
    Done { new_id: String },
    RolledBack { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Recovered {
    /// The interrupted replacement had been proven: finished it.
    Finished { new_id: String },
    /// Put the previous container back in place.
    RolledBack { detail: String },
}

/// Test hook: `OBS_STACK_INJECT_PAUSE_AFTER=<step>` stops (sleeps) right after that step was
/// journaled, so a test can SIGKILL the process at a deterministic point.
async fn pause_hook(step: Step) {
    if std::env::var("OBS_STACK_INJECT_PAUSE_AFTER").as_deref() == Ok(step.as_str()) {
        eprintln!(
            "obs-stack: paused after step {} (OBS_STACK_INJECT_PAUSE_AFTER)",
            step.as_str()
        );
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

fn journal_step(rec: &mut Record, store: &Store, step: Step) -> Result<()> {
    if let Some(j) = rec.journal.as_mut() {
        j.step = step;
    }
    store.save(rec)
}

/// Replaces the container `old_id` (which carries `rec.name`) by a new one created from `spec`.
pub async fn replace(
    engine: &Engine,
    store: &Store,
    rec: &mut Record,
    op: OpKind,
    old_id: &str,
    spec: CreateSpec,
    gate: &GateOptions,
) -> Result<Replaced> {
    let old = engine.inspect(old_id).await?;
    let old_running = old.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let temp_name = match op {
        OpKind::Inject => format!("{}.obs-orig", rec.name),
        OpKind::Revert => format!("{}.obs-injected", rec.name),
    };
    let prev_status = if rec.status == Status::InProgress {
        None
    } else {
        Some(rec.status)
    };
    rec.status = Status::InProgress;
    rec.journal = Some(Journal {
        op,
        step: Step::Planned,
        old_id: old.id.clone().unwrap_or_else(|| old_id.to_string()),
        old_was_running: old_running,
        temp_name: temp_name.clone(),
        new_id: None,
        spec: spec.clone(),
        prev_status,
    });
    store.save(rec)?;
    pause_hook(Step::Planned).await;

    let old_id = old.id.clone().unwrap_or_else(|| old_id.to_string());
    if old_running {
        engine
            .stop(&old_id, gate.stop_timeout)
            .await
            .context("stopping the original container")?;
    }
    journal_step(rec, store, Step::Stopped)?;
    pause_hook(Step::Stopped).await;

    // A --rm container is gone once stopped; the saved spec is the way back then.
    if engine.try_inspect(&old_id).await?.is_some() {
        engine
            .rename(&old_id, &temp_name)
            .await
            .context("renaming the original container")?;
    }
    journal_step(rec, store, Step::Renamed)?;
    pause_hook(Step::Renamed).await;

    let new_id = match create_with_networks(engine, &spec).await {
        Ok(id) => id,
        Err(e) => {
            let reason = format!("Docker refused the new container: {e:#}");
            rollback(engine, store, rec).await?;
            return Ok(Replaced::RolledBack { reason });
        }
    };
    if let Some(j) = rec.journal.as_mut() {
        j.new_id = Some(new_id.clone());
    }
    journal_step(rec, store, Step::Created)?;
    pause_hook(Step::Created).await;

    if spec.start {
        if let Err(e) = engine.start(&new_id).await {
            let reason = format!("the new container did not start: {e}");
            rollback(engine, store, rec).await?;
            return Ok(Replaced::RolledBack { reason });
        }
        journal_step(rec, store, Step::Started)?;
        pause_hook(Step::Started).await;
        if let Err(reason) = health_gate(engine, &new_id, spec.has_healthcheck, gate).await {
            rollback(engine, store, rec).await?;
            return Ok(Replaced::RolledBack { reason });
        }
    }
    journal_step(rec, store, Step::Proven)?;
    pause_hook(Step::Proven).await;

    finish(engine, store, rec, &new_id).await?;
    Ok(Replaced::Done { new_id })
}

/// The new container is proven: remove the old one and close the journal.
async fn finish(engine: &Engine, store: &Store, rec: &mut Record, new_id: &str) -> Result<()> {
    let Some(j) = rec.journal.clone() else {
        return Ok(());
    };
    if engine.try_inspect(&j.old_id).await?.is_some() {
        // Anonymous volumes stay: the new container mounts them by name.
        engine
            .remove(&j.old_id, false)
            .await
            .context("removing the original container")?;
    }
    match j.op {
        OpKind::Inject => {
            rec.status = Status::Injected;
            rec.current_id = Some(new_id.to_string());
            rec.digest = j
                .spec
                .body
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_DIGEST))
                .cloned();
            rec.journal = None;
            store.save(rec)?;
        }
        OpKind::Revert => {
            store.remove(&rec.name)?;
            rec.journal = None;
        }
    }
    Ok(())
}

/// Puts the old container back under its name (or, if it vanished, recreates the original
/// from the saved spec), removing any new container holding the name. Each attempt starts from
/// what the engine has now, so a failed one (a loaded engine timing out) is simply tried
/// again: the app must not be left with neither container.
async fn rollback(engine: &Engine, store: &Store, rec: &mut Record) -> Result<String> {
    let mut pause = std::time::Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match rollback_once(engine, store, rec).await {
            Ok(d) => return Ok(d),
            Err(e) if attempt < ROLLBACK_ATTEMPTS => {
                tracing::warn!("rollback attempt {attempt} failed, trying again: {e:#}");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "rolling back failed {ROLLBACK_ATTEMPTS} times; the journal keeps what was in progress: run `obs-inject --revert {}` (or inject again) once the engine answers",
                    rec.name
                )));
            }
        }
    }
}

/// How often a rollback is attempted before the error is reported (with the journal kept).
const ROLLBACK_ATTEMPTS: u32 = 4;

async fn rollback_once(engine: &Engine, store: &Store, rec: &mut Record) -> Result<String> {
    let Some(j) = rec.journal.clone() else {
        return Ok("nothing to roll back".into());
    };
    let old = engine.try_inspect(&j.old_id).await?;
    if let Some(holder) = engine.try_inspect(&rec.name).await? {
        let holder_id = holder.id.clone().unwrap_or_default();
        if Some(&holder_id) != old.as_ref().and_then(|o| o.id.as_ref()) {
            engine
                .remove(&holder_id, false)
                .await
                .context("removing the new container")?;
        }
    }
    if let Some(new_id) = j.new_id.as_deref()
        && engine.try_inspect(new_id).await?.is_some()
    {
        engine
            .remove(new_id, false)
            .await
            .context("removing the new container")?;
    }
    let detail = match old {
        Some(old) => {
            let old_id = old.id.clone().unwrap_or_default();
            if old.name.as_deref().map(|n| n.trim_start_matches('/')) != Some(rec.name.as_str()) {
                engine
                    .rename(&old_id, &rec.name)
                    .await
                    .context("renaming the original back")?;
            }
            let running = old.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            if j.old_was_running && !running {
                engine
                    .start(&old_id)
                    .await
                    .context("restarting the original container")?;
            }
            "the previous container is back, unchanged".to_string()
        }
        None => {
            let image_current = image_name_current(engine, &rec.original).await;
            let spec = spec_from_inspect(&rec.original, image_current);
            let id = create_with_networks(engine, &spec)
                .await
                .context("recreating the original container from the saved spec")?;
            if j.old_was_running || spec.start {
                engine
                    .start(&id)
                    .await
                    .context("starting the recreated original")?;
            }
            // The original carries the name again: the record has served its purpose.
            rec.current_id = Some(id);
            rec.journal = None;
            store.remove(&rec.name)?;
            return Ok("the original was recreated from the saved spec (its container was gone)".into());
        }
    };
    rec.journal = None;
    match j.prev_status {
        Some(s) => {
            rec.status = s;
            store.save(rec)?;
        }
        None => store.remove(&rec.name)?,
    }
    Ok(detail)
}

/// Converges an interrupted replacement (the process was killed mid-way).
pub async fn recover(engine: &Engine, store: &Store, rec: &mut Record) -> Result<Recovered> {
    let Some(j) = rec.journal.clone() else {
        return Ok(Recovered::RolledBack {
            detail: "nothing was in progress".into(),
        });
    };
    if j.step >= Step::Proven
        && let Some(new_id) = j.new_id.as_deref()
        && let Some(holder) = engine.try_inspect(&rec.name).await?
        && holder.id.as_deref() == Some(new_id)
    {
        finish(engine, store, rec, new_id).await?;
        return Ok(Recovered::Finished {
            new_id: new_id.to_string(),
        });
    }
    let detail = rollback(engine, store, rec).await?;
    Ok(Recovered::RolledBack { detail })
}

/// Creates the container and connects every extra network before it starts.
pub async fn create_with_networks(engine: &Engine, spec: &CreateSpec) -> Result<String> {
    let id = engine.create_container(&spec.name, spec.body.clone()).await?;
    for n in &spec.connect {
        if let Err(e) = engine.connect_network(&n.network, &id, n.endpoint.clone()).await {
            let _ = engine.remove(&id, false).await;
            return Err(anyhow::Error::new(e).context(format!("connecting network {}", n.network)));
        }
    }
    Ok(id)
}

/// Whether the image name the container was created from still points at the image it runs.
pub async fn image_name_current(
    engine: &Engine,
    inspect: &bollard::models::ContainerInspectResponse,
) -> bool {
    let Some(name) = inspect.config.as_ref().and_then(|c| c.image.clone()) else {
        return false;
    };
    match engine.inspect_image(&name).await {
        Ok(img) => img.id.is_some() && img.id == inspect.image,
        Err(_) => false,
    }
}

/// Running, healthy when it has a healthcheck, and not restarting for `grace`.
pub async fn health_gate(
    engine: &Engine,
    id: &str,
    has_healthcheck: bool,
    gate: &GateOptions,
) -> std::result::Result<(), String> {
    use bollard::models::HealthStatusEnum;
    let start = Instant::now();
    let mut healthy = !has_healthcheck;
    loop {
        let i = match engine.inspect(id).await {
            Ok(i) => i,
            Err(e) => return Err(format!("the new container vanished: {e}")),
        };
        let st = i.state.clone().unwrap_or_default();
        let restarts = i.restart_count.unwrap_or(0);
        let tail = || async {
            engine
                .logs_tail(id, 15)
                .await
                .map(|l| {
                    let l = l.trim().to_string();
                    if l.is_empty() {
                        String::new()
                    } else {
                        format!("; last log lines:\n{l}")
                    }
                })
                .unwrap_or_default()
        };
        if restarts > 0 || st.restarting == Some(true) {
            return Err(format!(
                "the instrumented container is crash-looping (restarted {restarts} time(s), exit code {}){}",
                st.exit_code.unwrap_or(0),
                tail().await
            ));
        }
        if st.running != Some(true) {
            return Err(format!(
                "the instrumented container exited (code {}){}",
                st.exit_code.unwrap_or(0),
                tail().await
            ));
        }
        if has_healthcheck {
            match st.health.as_ref().and_then(|h| h.status) {
                Some(HealthStatusEnum::HEALTHY) => healthy = true,
                Some(HealthStatusEnum::UNHEALTHY) => {
                    return Err(format!("the instrumented container is unhealthy{}", tail().await));
                }
                _ => {}
            }
        }
        if healthy && start.elapsed() >= gate.grace {
            return Ok(());
        }
        if !healthy && start.elapsed() > gate.health_timeout {
            return Err(format!(
                "the instrumented container did not become healthy within {}s",
                gate.health_timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn tar_file(path: &str, data: &[u8], mode: u32) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let parts: Vec<&str> = path.split('/').collect();
    for i in 1..parts.len() {
        crate::tarball::dir(&mut b, &parts[..i].join("/"), 0o755)?;
    }
    crate::tarball::file(&mut b, path, data, mode)?;
    Ok(b.into_inner()?)
}

/// The content of the first regular file in a tar archive.
fn first_file(tar_bytes: &[u8]) -> Option<Vec<u8>> {
    let mut a = tar::Archive::new(tar_bytes);
    for e in a.entries().ok()? {
        let mut e = e.ok()?;
        if e.header().entry_type().is_file() {
            let mut v = Vec::new();
            e.read_to_end(&mut v).ok()?;
            return Some(v);
        }
    }
    None
}

async fn path_exists(engine: &Engine, container: &str, path: &str) -> Result<bool> {
    match engine.read_archive(container, path, 1024).await {
        Ok(_) => Ok(true),
        Err(DockerError::Api {
            status: Some(404), ..
        })
        | Err(DockerError::NoSuchContainer(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether `path` in the container is a regular file (a dangling or absolute symlink in the
/// volume would pass an existence check and still break the app).
async fn regular_file(engine: &Engine, container: &str, path: &str) -> Result<bool> {
    match engine.read_archive(container, path, 4096).await {
        Ok((bytes, _)) => {
            let mut a = tar::Archive::new(&bytes[..]);
            let first = a.entries().ok().and_then(|mut e| e.next()).and_then(|e| e.ok());
            Ok(first.is_some_and(|e| e.header().entry_type().is_file()))
        }
        Err(DockerError::Api {
            status: Some(404), ..
        })
        | Err(DockerError::NoSuchContainer(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `prepare_agent` with the file obs-stack adds for the runtime (Python: the guarded
/// sitecustomize; Node.js: its register hook). The one way both inject and init fill an agent
/// volume.
pub async fn prepare_agent_for(engine: &Engine, step: &AgentStep) -> Result<()> {
    prepare_agent(engine, step, super::agent_hook(&step.runtime)).await
}

/// Makes sure the agent volume holds the payload of `step.image` (plus obs-stack's hook file,
/// `(name, text)`, and a marker naming the image ID): a one-shot init container copies it, like
/// the Operator's.
pub async fn prepare_agent(engine: &Engine, step: &AgentStep, guard: Option<(&str, &str)>) -> Result<()> {
    if !engine.image_exists(&step.image).await? {
        engine.pull(&step.image).await.map_err(|e| {
            anyhow::anyhow!(
                "agent image {} is not present and could not be pulled ({e})\n  hint: pull or build it, or \
                 choose another with --agent-image {}=REF",
                step.image,
                step.runtime
            )
        })?;
    }
    let image_id = engine.inspect_image(&step.image).await?.id.unwrap_or_default();
    // The marker names what the volume holds: the image and the hook's version, so a newer
    // obs-stack refreshes a volume an older one filled.
    let marker = match guard {
        Some((_, g)) => {
            use sha2::Digest;
            let h = hex::encode(sha2::Sha256::digest(g.as_bytes()));
            format!("{image_id} guard:{}", &h[..16])
        }
        None => image_id.clone(),
    };
    for attempt in 0..2 {
        let mut labels = HashMap::new();
        labels.insert("io.obs-stack.agent".to_string(), step.runtime.clone());
        labels.insert("io.obs-stack.agent.image".to_string(), step.image.clone());
        engine.create_volume(&step.volume, labels).await?;
        let init = create_init(engine, step, &step.sources[0]).await?;
        let result = fill_volume(engine, step, guard, &init, &marker, attempt).await;
        let _ = engine.remove(&init, false).await;
        match result {
            Ok(true) => return Ok(()),
            Ok(false) => continue, // stale volume removed: once more
            Err(e) => return Err(e),
        }
    }
    anyhow::bail!("could not prepare the agent volume {}", step.volume)
}

/// Label on every helper container obs-stack creates (agent volume fills): `--all` and
/// `--project` skip them, and the clean-up below finds what a killed run left behind.
pub const HELPER_LABEL: &str = "io.obs-stack.agent-init";

/// A helper older than this that is not running is a leftover of a killed run (a live run
/// starts its helper within a second of creating it and removes it when done).
const HELPER_STALE_SECS: i64 = 120;
/// A helper still running after this long is stuck (the copy takes seconds).
const HELPER_STUCK_SECS: i64 = 1800;

/// Removes the helper containers earlier runs left when they were killed (SIGKILL while an
/// agent volume was being filled). Never touches a helper a concurrent run may still use.
/// Returns the names removed.
pub async fn clean_stale_helpers(engine: &Engine) -> Result<Vec<String>> {
    let now = super::state::now_unix() as i64;
    // Test hook: how old a stopped helper must be to count as left behind.
    let stale_after = std::env::var("OBS_STACK_HELPER_STALE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(HELPER_STALE_SECS);
    let mut removed = Vec::new();
    for c in engine.list(true, &[HELPER_LABEL.to_string()]).await? {
        let age = now - c.created.unwrap_or(now);
        let running = c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running");
        let stale = if running {
            age > HELPER_STUCK_SECS
        } else {
            age >= stale_after
        };
        let (Some(id), true) = (c.id.clone(), stale) else {
            continue;
        };
        if engine.remove(&id, true).await.is_ok() {
            let name = c
                .names
                .and_then(|n| n.first().cloned())
                .unwrap_or(id)
                .trim_start_matches('/')
                .to_string();
            removed.push(name);
        }
    }
    Ok(removed)
}

async fn create_init(engine: &Engine, step: &AgentStep, source: &str) -> Result<String> {
    let name = format!(
        "obs-agent-init-{}-{}-{}",
        step.runtime,
        std::process::id(),
        super::state::now_unix() % 100000
    );
    let body = ContainerCreateBody {
        image: Some(step.image.clone()),
        user: Some("0".into()),
        entrypoint: Some(vec![]),
        // -L: the Operator's Java image path may be a symlink (the lab's is): copy its target.
        cmd: Some(vec![
            "cp".into(),
            "-rL".into(),
            source.to_string(),
            format!("{INIT_MOUNT}/"),
        ]),
        network_disabled: Some(true),
        labels: Some(HashMap::from([(HELPER_LABEL.to_string(), step.runtime.clone())])),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                target: Some(INIT_MOUNT.into()),
                source: Some(step.volume.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(false),
                ..Default::default()
            }]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(engine.create_container(&name, body).await?)
}

/// Ok(true) when the volume is ready; Ok(false) when a stale volume was removed (retry).
async fn fill_volume(
    engine: &Engine,
    step: &AgentStep,
    guard: Option<(&str, &str)>,
    init: &str,
    expected_marker: &str,
    attempt: u32,
) -> Result<bool> {
    let marker_path = format!("{INIT_MOUNT}/{AGENT_MARKER}");
    let check_path = format!("{INIT_MOUNT}/{}", step.check_file);
    match engine.read_archive(init, &marker_path, 4096).await {
        Ok((bytes, _)) => {
            let marker = first_file(&bytes).map(|b| String::from_utf8_lossy(&b).trim().to_string());
            if marker.as_deref() == Some(expected_marker) {
                if regular_file(engine, init, &check_path).await? {
                    return Ok(true);
                }
            } else if attempt == 0 {
                let users = engine.containers_using_volume(&step.volume).await?;
                let users: Vec<String> = users
                    .into_iter()
                    .filter(|u| !u.starts_with("obs-agent-init-"))
                    .collect();
                if !users.is_empty() {
                    anyhow::bail!(
                        "agent volume {} holds another build of the agent (not {}) and is used by {}; \
                         remove those containers' injection first or use an image with another tag",
                        step.volume,
                        step.image,
                        users.join(", ")
                    );
                }
                engine.remove(init, false).await?;
                match engine.remove_volume(&step.volume).await {
                    // Another obs-stack is refreshing the same volume right now (its init
                    // container holds it): once more, reading the marker it leaves.
                    Ok(())
                    | Err(DockerError::Api {
                        status: Some(409), ..
                    }) => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(DockerError::Api {
            status: Some(404), ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    // Which source path exists in this image?
    let mut source = None;
    for s in &step.sources {
        let probe = s.trim_end_matches("/.").trim_end_matches('/');
        let probe = if probe.is_empty() { "/" } else { probe };
        if path_exists(engine, init, probe).await? {
            source = Some(s.clone());
            break;
        }
    }
    let Some(source) = source else {
        anyhow::bail!(
            "agent image {} has none of {:?}; is it an autoinstrumentation image?",
            step.image,
            step.sources
        );
    };
    let init = if source != step.sources[0] {
        engine.remove(init, false).await?;
        create_init(engine, step, &source).await?
    } else {
        init.to_string()
    };
    engine
        .start(&init)
        .await
        .context("starting the agent init container")?;
    let code = engine.wait_exit(&init).await?;
    if code != 0 {
        let logs = engine.logs_tail(&init, 20).await.unwrap_or_default();
        let _ = engine.remove(&init, false).await;
        anyhow::bail!(
            "copying the agent out of {} failed (exit {code}): {}",
            step.image,
            logs.trim()
        );
    }
    if let (Some(dir), Some((file, text))) = (step.guard_dir.as_deref(), guard) {
        let tar = tar_file(&format!("{dir}/{file}"), text.as_bytes(), 0o644)?;
        engine
            .upload_archive(&init, INIT_MOUNT, tar)
            .await
            .with_context(|| format!("writing obs-stack's {file} into the agent volume"))?;
    }
    let ok = regular_file(engine, &init, &check_path).await?;
    if !ok {
        let _ = engine.remove(&init, false).await;
        anyhow::bail!(
            "the agent payload from {} has no {} — not injecting (a missing agent would break the app)",
            step.image,
            step.check_file
        );
    }
    let tar = tar_file(AGENT_MARKER, expected_marker.as_bytes(), 0o644)?;
    engine
        .upload_archive(&init, INIT_MOUNT, tar)
        .await
        .context("writing the agent marker")?;
    let _ = engine.remove(&init, false).await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_round_trip() {
        let t = tar_file("obs-stack-guard/sitecustomize.py", b"print(1)\n", 0o644).unwrap();
        assert_eq!(first_file(&t).unwrap(), b"print(1)\n");
    }
}
