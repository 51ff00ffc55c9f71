//! The web UI: the built bundle in `ui/dist` (TypeScript + uPlot, built with the pinned esbuild
//! by `ui/build.mjs` and committed, so `cargo build` needs no npm) embedded in the binary and
//! served at `/` and `/assets/*`; every other non-API path gets the index (the UI routes in the
//! location hash). The page itself needs no token — it holds no data — while every API call it
//! makes does. `/?token=…` (the link `up` prints) is checked here, answered with the
//! `obs_stack_token` cookie (HttpOnly, SameSite=Strict) and a redirect that drops the token
//! from the address bar and history. The UI reads only the documented `/api/v1`; the one extra
//! file is `/assets/defaults.json`, the smart defaults of `templates/defaults/frameworks.yaml`
//! (error rate and p95 objectives per language) that the overview's alerts compare with.
//!
//! A unit test recomputes the hash of the UI sources that `ui/build.mjs` records in
//! `ui/dist/SOURCES.sha256`, so a committed bundle that no longer matches its sources fails.
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

use super::Shared;

static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/ui/dist");
// include_dir! does not tell cargo which files it read; these do, so a rebuilt bundle is
// picked up by the next `cargo build`.
const _TRACK: [&[u8]; 4] = [
    include_bytes!("../../ui/dist/index.html"),
    include_bytes!("../../ui/dist/app.js"),
    include_bytes!("../../ui/dist/app.css"),
    include_bytes!("../../ui/dist/SOURCES.sha256"),
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
        .fallback(fallback)
}

struct Asset {
    body: Vec<u8>,
    etag: String,
    version: String,
}

fn asset_of(body: Vec<u8>) -> Asset {
    let hash = hex::encode(Sha256::digest(&body));
    Asset {
        etag: format!("\"{}\"", &hash[..16]),
        version: hash[..10].to_string(),
        body,
    }
}

fn file(path: &str) -> Option<&'static Asset> {
    static FILES: OnceLock<Vec<(String, Asset)>> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        let mut v: Vec<(String, Asset)> = DIST
            .files()
            .filter(|f| f.path() != std::path::Path::new("index.html"))
            .map(|f| {
                (
                    f.path().to_string_lossy().into_owned(),
                    asset_of(f.contents().to_vec()),
                )
            })
            .collect();
        v.push(("defaults.json".into(), asset_of(defaults_json().into_bytes())));
        v
    });
    files.iter().find(|(p, _)| p == path).map(|(_, a)| a)
}

/// The index, with each asset reference carrying its content hash (`?v=`), so assets can be
/// cached for good while the index is revalidated on every load.
fn index_asset() -> &'static Asset {
    static INDEX: OnceLock<Asset> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut html = DIST
            .get_file("index.html")
            .and_then(|f| f.contents_utf8())
            .unwrap_or("<!doctype html><title>obs-stack</title><p>The UI was not built into this binary.")
            .to_string();
        for name in ["app.js", "app.css"] {
            if let Some(a) = file(name) {
                html = html.replace(
                    &format!("/assets/{name}\""),
                    &format!("/assets/{name}?v={}\"", a.version),
                );
            }
        }
        asset_of(html.into_bytes())
    })
}

/// `frameworks.yaml` as JSON (`{"default": {...}, "python": {...}, ...}`); `{}` if unreadable.
fn defaults_json() -> String {
    crate::assets::TEMPLATES
        .get_file("defaults/frameworks.yaml")
        .and_then(|f| f.contents_utf8())
        .and_then(|t| serde_yaml_ng::from_str::<serde_json::Value>(t).ok())
        .map(|v| v.to_string())
        .unwrap_or_else(|| "{}".into())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn send(a: &Asset, ctype: &str, cache: &str, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        a.body.clone().into_response()
    };
    let h = resp.headers_mut();
    for (k, v) in [
        (header::CONTENT_TYPE, ctype),
        (header::CACHE_CONTROL, cache),
        (header::ETAG, a.etag.as_str()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    resp
}

fn page(headers: &HeaderMap) -> Response {
    let mut r = send(index_asset(), "text/html; charset=utf-8", "no-cache", headers);
    r.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r.headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

fn token_param(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("token="))
        .map(str::to_string)
}

async fn index(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let Some(t) = token_param(req.uri().query()) else {
        return page(req.headers());
    };
    if !super::auth::same(&t, &shared.token) {
        // a wrong token: the page, no cookie; its API calls answer 401 and it asks for one
        return page(req.headers());
    }
    let rest: Vec<&str> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("token="))
        .collect();
    let location = if rest.is_empty() {
        "/".to_string()
    } else {
        format!("/?{}", rest.join("&"))
    };
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    let cookie = format!("obs_stack_token={t}; Path=/; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn asset(req: Request) -> Response {
    let path = req.uri().path().trim_start_matches("/assets/");
    let Some(a) = file(path).filter(|_| path != "SOURCES.sha256") else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    // a reference with the current ?v= never changes: cache it for good; else revalidate
    let versioned = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == format!("v={}", a.version)));
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    send(a, content_type(path), cache, req.headers())
}

async fn fallback(req: Request) -> Response {
    let p = req.uri().path();
    let api = ["/api/", "/v1/", "/metrics", "/healthz", "/assets/"]
        .iter()
        .any(|pre| p.starts_with(pre));
    if api || req.method() != axum::http::Method::GET {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"error\":\"not found\"}",
        )
            .into_response();
    }
    page(req.headers())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Same list and hash as `sourcesHash()` in ui/build.mjs.
    fn sources_hash(ui: &Path) -> String {
        let mut files: Vec<String> = [
            "build.mjs",
            "index.html",
            "package-lock.json",
            "package.json",
            "tsconfig.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut src: Vec<String> = std::fs::read_dir(ui.join("src"))
            .unwrap()
            .map(|e| format!("src/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        src.sort();
        files.extend(src);
        files.sort();
        let mut h = Sha256::new();
        for f in files {
            let text = std::fs::read_to_string(ui.join(&f))
                .unwrap_or_else(|e| panic!("ui/{f}: {e}"))
                .replace("\r\n", "\n");
            h.update(f.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }

    #[test]
    fn committed_bundle_matches_its_sources() {
        let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let recorded = std::fs::read_to_string(ui.join("dist/SOURCES.sha256")).unwrap();
        assert_eq!(
            recorded.trim(),
            sources_hash(&ui),
            "ui/dist is stale: run `cd ui && npm ci && npm run build` and commit ui/dist"
        );
        for f in ["index.html", "app.js", "app.css"] {
            assert!(DIST.get_file(f).is_some(), "ui/dist/{f} is not embedded");
        }
    }

    #[test]
    fn index_references_versioned_assets() {
        let html = String::from_utf8(index_asset().body.clone()).unwrap();
        let js = file("app.js").unwrap();
        assert!(
            html.contains(&format!("/assets/app.js?v={}", js.version)),
            "{html}"
        );
        assert!(html.contains("/assets/app.css?v="), "{html}");
    }

    #[test]
    fn defaults_come_from_the_templates() {
        let v: serde_json::Value = serde_json::from_str(&defaults_json()).unwrap();
        assert!(v["default"]["latency_p95"].as_f64().is_some(), "{v}");
        assert!(v["node"]["error_rate"].as_f64().is_some(), "{v}");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("app.css"), "text/css; charset=utf-8");
        assert_eq!(token_param(Some("a=1&token=abc")).as_deref(), Some("abc"));
        assert_eq!(token_param(Some("a=1")), None);
    }
}
