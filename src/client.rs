//! A client of the `serve` backend's documented JSON API (docs/serve.md): what `up`, the
//! terminal views and the watcher use. It never reads the backend's database.
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::docker::Engine;
use crate::up::{API_PORT, BACKEND};

#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            http,
        })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await
            .with_context(|| format!("asking the backend at {}", self.base))?;
        answer(resp, path).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("sending to the backend at {}", self.base))?;
        answer(resp, path).await
    }

    /// The project's ingest key (created when new).
    pub async fn project_key(&self, project: &str) -> Result<String> {
        let v = self
            .post("/api/v1/projects", &serde_json::json!({ "name": project }))
            .await?;
        v["ingest_key"]
            .as_str()
            .map(String::from)
            .context("the backend answered without an ingest key")
    }

    /// The login URL of the UI (the token is exchanged for a cookie on first use).
    pub fn ui_url(&self) -> String {
        format!("{}/?token={}", self.base, self.token)
    }
}

async fn answer(resp: reqwest::Response, path: &str) -> Result<Value> {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).to_string()));
    if !status.is_success() {
        let msg = v["error"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| v.to_string());
        bail!("the backend answered {status} to {path}: {msg}");
    }
    Ok(v)
}

/// The token in the backend container's data volume (`/data/token`), read through the
/// engine's archive API (the image has no shell).
pub async fn backend_token(engine: &Engine) -> Result<String> {
    let (bytes, _) = engine
        .read_archive(BACKEND, "/data/token", 64 * 1024)
        .await
        .context("reading the backend's token")?;
    let mut a = tar::Archive::new(&bytes[..]);
    for e in a.entries()? {
        let mut e = e?;
        if e.header().entry_type().is_file() {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s)?;
            return Ok(s.trim().to_string());
        }
    }
    bail!("the backend has no token yet")
}

/// The host port the backend's API is published on (127.0.0.1).
pub fn published_api_port(inspect: &bollard::models::ContainerInspectResponse) -> Option<u16> {
    inspect
        .network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(&format!("{API_PORT}/tcp"))?
        .as_ref()?
        .iter()
        .find_map(|b| b.host_port.as_deref()?.parse().ok())
}

/// Finds the backend: `--api`/`OBS_STACK_API` and `--token`/`OBS_STACK_TOKEN` when given,
/// else the `obs-stack` container `up` started (its published port, its token).
pub async fn discover(api: Option<&str>, token: Option<&str>) -> Result<Client> {
    if let (Some(api), Some(token)) = (api, token) {
        return Client::new(api, token);
    }
    let engine = Engine::connect().await?;
    let Some(c) = engine.try_inspect(BACKEND).await? else {
        bail!(
            "no obs-stack backend is running\n  hint: `obs-stack up` starts it (or pass --api URL --token TOKEN)"
        );
    };
    if !c.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
        bail!("the obs-stack backend container is stopped\n  hint: `obs-stack up` starts it again");
    }
    let base = match api {
        Some(a) => a.to_string(),
        None => {
            let port = published_api_port(&c).context("the backend publishes no API port")?;
            format!("http://127.0.0.1:{port}")
        }
    };
    let token = match token {
        Some(t) => t.to_string(),
        None => backend_token(&engine).await?,
    };
    Client::new(&base, &token)
}
