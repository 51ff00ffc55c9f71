//! The one narrow edge to the Docker engine (bollard). Everything above this module works on
//! plain data (inspect results, process lists, file bytes); everything here is I/O with
//! bounded sizes and clear errors. It honours `DOCKER_HOST` and the default socket, pings
//! once on connect, and turns the common failures (daemon not running, permission denied on
//! the socket, no such container) into `DockerError` variants with their own exit codes.
use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerSummary, ImageInspect};
use bollard::query_parameters::{
    DownloadFromContainerOptions, InspectContainerOptions, ListContainersOptions, TopOptions,
};
use futures_util::StreamExt;

pub use bollard::Docker as RawDocker;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine at {host}: {detail}\n  hint: start it (sudo systemctl start docker, or dockerd), or point DOCKER_HOST at a running engine"
    )]
    Unreachable { host: String, detail: String },
    #[error(
        "permission denied on the Docker socket {host}\n  hint: run as root, or add your user to the 'docker' group (sudo usermod -aG docker $USER, then log in again)"
    )]
    PermissionDenied { host: String },
    #[error("no such container: {0}\n  hint: `docker ps -a` lists the containers this engine knows")]
    NoSuchContainer(String),
    #[error("Docker engine error{}: {message}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Api { status: Option<u16>, message: String },
}

/// How long [`Engine::remove`] waits out a removal the engine already has in progress.
pub const REMOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The Docker host this process would use: `DOCKER_HOST` or the default local socket.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// Classifies a bollard error; `container` names the object when a 404 means "no such container".
pub fn classify(err: bollard::errors::Error, host: &str, container: Option<&str>) -> DockerError {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError { status_code, message } => {
            if status_code == 404
                && let Some(name) = container
                && message.to_ascii_lowercase().contains("no such container")
            {
                return DockerError::NoSuchContainer(name.to_string());
            }
            DockerError::Api {
                status: Some(status_code),
                message,
            }
        }
        E::SocketNotFoundError(path) => DockerError::Unreachable {
            host: host.to_string(),
            detail: format!("socket {path} does not exist (is dockerd running?)"),
        },
        E::RequestTimeoutError => DockerError::Unreachable {
            host: host.to_string(),
            detail: "the engine did not answer in time".to_string(),
        },
        other => {
            let text = error_chain_text(&other);
            let lower = text.to_ascii_lowercase();
            if lower.contains("permission denied") {
                DockerError::PermissionDenied {
                    host: host.to_string(),
                }
            } else if lower.contains("connection refused")
                || lower.contains("no such file")
                || lower.contains("error trying to connect")
                || lower.contains("client error (connect)")
                || lower.contains("dns error")
            {
                DockerError::Unreachable {
                    host: host.to_string(),
                    detail: text,
                }
            } else {
                DockerError::Api {
                    status: None,
                    message: text,
                }
            }
        }
    }
}

fn error_chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.contains(&s) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// A connected, pinged engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("host", &self.host).finish()
    }
}

/// One process inside a container, as `docker top` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub user: String,
    pub command: String,
}

impl Engine {
    /// Connects using `DOCKER_HOST` or the default socket, negotiates the API version and
    /// pings once, so later calls fail only for reasons of their own.
    pub async fn connect() -> Result<Engine, DockerError> {
        Engine::connect_to(&docker_host()).await
    }

    /// Connects to an explicit host (`unix:///…`, `tcp://…`), negotiating and pinging.
    pub async fn connect_to(host: &str) -> Result<Engine, DockerError> {
        let host = host.to_string();
        let docker = Docker::connect_with_host(&host)
            .map_err(|e| classify(e, &host, None))?
            .with_timeout(Duration::from_secs(60));
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| classify(e, &host, None))?;
        docker.ping().await.map_err(|e| classify(e, &host, None))?;
        Ok(Engine { docker, host })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The underlying client, for the few callers (inject's recreate) that need calls not
    /// wrapped here. Keep such use inside the command modules that own it.
    pub fn raw(&self) -> &Docker {
        &self.docker
    }

    fn err(&self, e: bollard::errors::Error, container: Option<&str>) -> DockerError {
        classify(e, &self.host, container)
    }

    pub async fn version(&self) -> Result<bollard::models::SystemVersion, DockerError> {
        self.docker.version().await.map_err(|e| self.err(e, None))
    }

    pub async fn inspect(&self, container: &str) -> Result<ContainerInspectResponse, DockerError> {
        self.docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.err(e, Some(container)))
    }

    pub async fn inspect_image(&self, image: &str) -> Result<ImageInspect, DockerError> {
        self.docker
            .inspect_image(image)
            .await
            .map_err(|e| self.err(e, None))
    }

    /// Containers, running only unless `all`; `labels` are `key` or `key=value` filters.
    pub async fn list(&self, all: bool, labels: &[String]) -> Result<Vec<ContainerSummary>, DockerError> {
        let mut filters = HashMap::new();
        if !labels.is_empty() {
            filters.insert("label".to_string(), labels.to_vec());
        }
        let opts = ListContainersOptions {
            all,
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.err(e, None))
    }

    /// Whether a network with this name (or id) exists.
    pub async fn network_exists(&self, name: &str) -> Result<bool, DockerError> {
        match self
            .docker
            .inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
        {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(self.err(e, None)),
        }
    }

    /// Every process in a (running) container, with its full command line.
    pub async fn top(&self, container: &str) -> Result<Vec<Process>, DockerError> {
        let opts = TopOptions {
            ps_args: "-eo pid,ppid,user,args".to_string(),
        };
        let resp = self
            .docker
            .top_processes(container, Some(opts))
            .await
            .map_err(|e| self.err(e, Some(container)))?;
        Ok(parse_top(
            resp.titles.unwrap_or_default(),
            resp.processes.unwrap_or_default(),
        ))
    }

    /// A tar archive of `path` inside the container (works on stopped containers), read up to
    /// `max_bytes`; the flag says whether it was cut short.
    pub async fn read_archive(
        &self,
        container: &str,
        path: &str,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, bool), DockerError> {
        let opts = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut stream = self.docker.download_from_container(container, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(e, Some(container)))?;
            let room = max_bytes.saturating_sub(out.len());
            if chunk.len() > room {
                out.extend_from_slice(&chunk[..room]);
                return Ok((out, true));
            }
            out.extend_from_slice(&chunk);
        }
        Ok((out, false))
    }
}

/// Container lifecycle calls used by `inject`'s recreate engine (additive; see src/inject/apply.rs).
impl Engine {
    /// Like `inspect`, but a missing container is `None` instead of an error.
    pub async fn try_inspect(
        &self,
        container: &str,
    ) -> Result<Option<ContainerInspectResponse>, DockerError> {
        match self.inspect(container).await {
            Ok(i) => Ok(Some(i)),
            Err(DockerError::NoSuchContainer(_)) => Ok(None),
            Err(DockerError::Api {
                status: Some(404), ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a container named `name`; returns its ID.
    pub async fn create_container(
        &self,
        name: &str,
        body: bollard::models::ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let opts = bollard::query_parameters::CreateContainerOptions {
            name: Some(name.to_string()),
            platform: String::new(),
        };
        let r = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| self.err(e, None))?;
        Ok(r.id)
    }

    /// Connects a (created, not yet started) container to a network with its endpoint settings.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        endpoint: bollard::models::EndpointSettings,
    ) -> Result<(), DockerError> {
        let req = bollard::models::NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(endpoint),
        };
        self.docker
            .connect_network(network, req)
            .await
            .map_err(|e| self.err(e, Some(container)))
    }

    pub async fn start(&self, container: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(
                container,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| self.err(e, Some(container)))
    }

    /// Stops with the container's own stop signal; `timeout` seconds before SIGKILL (None =
    /// the container's StopTimeout or Docker's default).
    pub async fn stop(&self, container: &str, timeout: Option<i32>) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::StopContainerOptions {
            signal: None,
            t: timeout,
        };
        match self.docker.stop_container(container, Some(opts)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(self.err(e, Some(container))),
        }
    }

    /// Removes a container (forcefully); anonymous volumes are kept unless `volumes`. Returns
    /// once the container is gone: one already gone is fine, and one whose removal is already
    /// in progress (409, as a loaded engine answers while it tears the container down) is
    /// waited for and asked again, up to [`REMOVE_WAIT`] — callers rename or recreate under
    /// the same name next, which fails while the old one still exists.
    pub async fn remove(&self, container: &str, volumes: bool) -> Result<(), DockerError> {
        let deadline = std::time::Instant::now() + REMOVE_WAIT;
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            let opts = bollard::query_parameters::RemoveContainerOptions {
                v: volumes,
                force: true,
                link: false,
            };
            let e = match self.docker.remove_container(container, Some(opts)).await {
                Ok(()) => return Ok(()),
                Err(e) => self.err(e, Some(container)),
            };
            match e {
                DockerError::NoSuchContainer(_)
                | DockerError::Api {
                    status: Some(404), ..
                } => return Ok(()),
                DockerError::Api {
                    status: Some(409), ..
                }
                | DockerError::Api {
                    status: Some(500), ..
                } if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                e => return Err(e),
            }
        }
    }

    pub async fn rename(&self, container: &str, new_name: &str) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::RenameContainerOptions {
            name: new_name.to_string(),
        };
        self.docker
            .rename_container(container, opts)
            .await
            .map_err(|e| self.err(e, Some(container)))
    }

    /// Waits for a started container to exit; returns its exit code.
    pub async fn wait_exit(&self, container: &str) -> Result<i64, DockerError> {
        let mut s = self
            .docker
            .wait_container(container, None::<bollard::query_parameters::WaitContainerOptions>);
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.err(e, Some(container))),
            None => Err(DockerError::Api {
                status: None,
                message: format!("no exit status for {container}"),
            }),
        }
    }

    /// Extracts a tar archive into `path` inside a container (created or stopped ones too).
    pub async fn upload_archive(&self, container: &str, path: &str, tar: Vec<u8>) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::UploadToContainerOptions {
            path: path.to_string(),
            ..Default::default()
        };
        self.docker
            .upload_to_container(container, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(|e| self.err(e, Some(container)))
    }

    /// The last `lines` lines of a container's stdout+stderr, as text.
    pub async fn logs_tail(&self, container: &str, lines: usize) -> Result<String, DockerError> {
        let opts = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut s = self.docker.logs(container, Some(opts));
        let mut out = String::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(l) => out.push_str(&String::from_utf8_lossy(&l.into_bytes())),
                Err(e) => return Err(self.err(e, Some(container))),
            }
            if out.len() > 64 * 1024 {
                break;
            }
        }
        Ok(out)
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(self.err(e, None)),
        }
    }

    /// Pulls an image (`name:tag` or `name@digest`).
    pub async fn pull(&self, image: &str) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut s = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = s.next().await {
            item.map_err(|e| self.err(e, None))?;
        }
        Ok(())
    }

    /// Creates a named volume (Docker returns the existing one when the name is taken).
    pub async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), DockerError> {
        let req = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map_err(|e| self.err(e, None))?;
        Ok(())
    }

    pub async fn volume_exists(&self, name: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(self.err(e, None)),
        }
    }

    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        self.docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(|e| self.err(e, None))
    }

    /// Names of the volumes whose name starts with `prefix`.
    pub async fn volumes_with_prefix(&self, prefix: &str) -> Result<Vec<String>, DockerError> {
        let mut filters = HashMap::new();
        filters.insert("name".to_string(), vec![prefix.to_string()]);
        let opts = bollard::query_parameters::ListVolumesOptions {
            filters: Some(filters),
        };
        let list = self
            .docker
            .list_volumes(Some(opts))
            .await
            .map_err(|e| self.err(e, None))?;
        // the engine's name filter matches anywhere in the name
        let mut names: Vec<String> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }

    /// `repo:tag` of every local image of `repo`.
    pub async fn image_tags_of(&self, repo: &str) -> Result<Vec<String>, DockerError> {
        let mut filters = HashMap::new();
        filters.insert("reference".to_string(), vec![repo.to_string()]);
        let opts = bollard::query_parameters::ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(|e| self.err(e, None))?;
        let mut tags: Vec<String> = list
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| t.split_once(':').is_some_and(|(r, _)| r == repo))
            .collect();
        tags.sort();
        Ok(tags)
    }

    pub async fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        self.docker
            .remove_image(
                reference,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| self.err(e, None))
    }

    /// Names of the networks carrying a label (`key` or `key=value`).
    pub async fn networks_with_label(&self, label: &str) -> Result<Vec<String>, DockerError> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![label.to_string()]);
        let opts = bollard::query_parameters::ListNetworksOptions {
            filters: Some(filters),
        };
        let list = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(|e| self.err(e, None))?;
        let mut names: Vec<String> = list.into_iter().filter_map(|n| n.name).collect();
        names.sort();
        Ok(names)
    }

    /// The DNS names a running container answers to on `network` (its name, its network
    /// aliases and DNS names): what another container on that network can resolve.
    pub async fn network_dns_names(&self, network: &str) -> Result<Vec<String>, DockerError> {
        let net = match self
            .docker
            .inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
        {
            Ok(n) => n,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.err(e, None)),
        };
        let net_name = net.name.clone().unwrap_or_else(|| network.to_string());
        let mut names = Vec::new();
        for id in net.containers.unwrap_or_default().into_keys().take(500) {
            let Ok(Some(c)) = self.try_inspect(&id).await else {
                continue;
            };
            if let Some(n) = &c.name {
                names.push(n.trim_start_matches('/').to_string());
            }
            if let Some(ep) = c
                .network_settings
                .and_then(|ns| ns.networks)
                .and_then(|mut n| n.remove(&net_name))
            {
                names.extend(ep.aliases.unwrap_or_default());
                names.extend(ep.dns_names.unwrap_or_default());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Imports a root filesystem (a tar) as image `repo:tag` (`docker import`), with
    /// Dockerfile `changes` (LABEL, ENTRYPOINT, …): an image with no registry and no pull.
    pub async fn import_rootfs(
        &self,
        repo: &str,
        tag: &str,
        rootfs: Vec<u8>,
        changes: Vec<String>,
    ) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(tag.into()),
            changes,
            ..Default::default()
        };
        let mut stream = self
            .docker
            .create_image(Some(opts), Some(bollard::body_full(rootfs.into())), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.err(e, None))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Api {
                    status: None,
                    message: format!("importing {repo}:{tag}: {err}"),
                });
            }
        }
        Ok(())
    }

    /// Creates a bridge network with labels (Docker refuses a duplicate name: check first).
    pub async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), DockerError> {
        let req = bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .create_network(req)
            .await
            .map_err(|e| self.err(e, None))?;
        Ok(())
    }

    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        self.docker
            .remove_network(name)
            .await
            .map_err(|e| self.err(e, None))
    }

    /// Disconnects a container from a network (force: also when it is stopped).
    pub async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), DockerError> {
        let req = bollard::models::NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        self.docker
            .disconnect_network(network, req)
            .await
            .map_err(|e| self.err(e, Some(container)))
    }

    /// One stats sample of a running container (no stream).
    pub async fn stats_once(
        &self,
        container: &str,
    ) -> Result<bollard::models::ContainerStatsResponse, DockerError> {
        let opts = bollard::query_parameters::StatsOptions {
            stream: false,
            one_shot: false,
        };
        let mut s = self.docker.stats(container, Some(opts));
        match s.next().await {
            Some(r) => r.map_err(|e| self.err(e, Some(container))),
            None => Err(DockerError::Api {
                status: None,
                message: format!("no stats for {container}"),
            }),
        }
    }

    /// Names of the containers (any state) that mount volume `name`.
    pub async fn containers_using_volume(&self, name: &str) -> Result<Vec<String>, DockerError> {
        let mut filters = HashMap::new();
        filters.insert("volume".to_string(), vec![name.to_string()]);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.err(e, None))?;
        Ok(list
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.first().cloned()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }
}

impl Engine {
    /// The tar archive of `path` inside the container as a stream of chunks (works on stopped
    /// containers); the caller bounds how much it reads.
    pub fn archive_stream<'a>(
        &'a self,
        container: &'a str,
        path: &str,
    ) -> impl futures_util::Stream<Item = Result<Vec<u8>, DockerError>> + 'a {
        let opts = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        self.docker
            .download_from_container(container, Some(opts))
            .map(move |r| r.map(|b| b.to_vec()).map_err(|e| self.err(e, Some(container))))
    }
}

/// Turns `docker top` rows into processes, whatever column order the engine used.
pub fn parse_top(titles: Vec<String>, rows: Vec<Vec<String>>) -> Vec<Process> {
    let col = |names: &[&str]| {
        titles
            .iter()
            .position(|t| names.iter().any(|n| t.eq_ignore_ascii_case(n)))
    };
    let pid = col(&["PID"]);
    let ppid = col(&["PPID"]);
    let user = col(&["USER", "UID"]);
    let cmd = col(&["COMMAND", "CMD", "ARGS"]);
    rows.into_iter()
        .map(|row| {
            let get = |i: Option<usize>| i.and_then(|i| row.get(i)).cloned().unwrap_or_default();
            Process {
                pid: get(pid).trim().parse().unwrap_or(0),
                ppid: get(ppid).trim().parse().unwrap_or(0),
                user: get(user),
                command: get(cmd),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_top_maps_columns_by_title() {
        let titles = vec!["PID".into(), "PPID".into(), "USER".into(), "COMMAND".into()];
        let rows = vec![vec![
            "12".into(),
            "1".into(),
            "root".into(),
            "python3 -m flask run".into(),
        ]];
        let p = parse_top(titles, rows);
        assert_eq!(p[0].pid, 12);
        assert_eq!(p[0].ppid, 1);
        assert_eq!(p[0].command, "python3 -m flask run");
    }

    #[test]
    fn classify_maps_404_to_no_such_container() {
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "No such container: nope".into(),
        };
        assert!(
            matches!(classify(e, "unix:///x", Some("nope")), DockerError::NoSuchContainer(n) if n == "nope")
        );
    }

    #[test]
    fn classify_maps_missing_socket_to_unreachable() {
        let e = bollard::errors::Error::SocketNotFoundError("/nope.sock".into());
        assert!(matches!(
            classify(e, "unix:///nope.sock", None),
            DockerError::Unreachable { .. }
        ));
    }
}
