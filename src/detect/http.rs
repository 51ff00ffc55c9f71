//! A deliberately tiny HTTP/1.1 client for the HTTP probe: one request per connection, a hard
//! deadline, capped header and body sizes, redirects never followed (a `Location` is just a
//! header). Parsing is pure and unit-tested; the I/O part is `request`.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::obs::HttpObs;

pub const MAX_HEADER_BYTES: usize = 64 * 1024;
pub const MAX_BODY_BYTES: usize = 32 * 1024;

/// A parsed (possibly truncated) response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub truncated: bool,
}

/// Splits raw bytes into status, headers and body; `None` when it is not HTTP at all.
pub fn parse_response(raw: &[u8], head: bool) -> Option<Response> {
    let header_end = find(raw, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| find(raw, b"\n\n").map(|i| (i, i + 2)));
    let (hend, bstart, truncated) = match header_end {
        Some((h, b)) => (h, b, false),
        None => (raw.len().min(MAX_HEADER_BYTES), raw.len(), true),
    };
    let head_text = String::from_utf8_lossy(&raw[..hend]);
    let mut lines = head_text.lines();
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .take(1000)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().chars().take(1024).collect(),
            )
        })
        .collect();
    let mut body_bytes = if head {
        Vec::new()
    } else {
        raw[bstart.min(raw.len())..].to_vec()
    };
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body_bytes = dechunk(&body_bytes);
    }
    body_bytes.truncate(MAX_BODY_BYTES);
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body_bytes).into_owned(),
        truncated,
    })
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Best-effort chunked decoding of what was received.
fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let Some(eol) = find(&b[at..], b"\r\n") else { break };
        let size_text = String::from_utf8_lossy(&b[at..at + eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        at += eol + 2;
        if size == 0 {
            break;
        }
        let end = (at + size).min(b.len());
        out.extend_from_slice(&b[at..end]);
        at = end + 2;
    }
    out
}

/// One request with a hard deadline. `Err` says why nothing usable came back.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<Response, String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: obs-detect\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write {addr}: {e}"))?;
        let mut buf = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        loop {
            let n = match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if buf.is_empty() => return Err(format!("read {addr}: {e}")),
                Err(_) => break,
            };
            buf.extend_from_slice(&chunk[..n]);
            let hend = find(&buf, b"\r\n\r\n");
            match hend {
                None if buf.len() > MAX_HEADER_BYTES => break,
                Some(h) if method == "HEAD" || buf.len() >= h + 4 + MAX_BODY_BYTES => break,
                _ => {}
            }
        }
        Ok(buf)
    };
    let buf = match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(format!(
                "{method} {path} on {addr}: no answer within {} ms",
                timeout.as_millis()
            ));
        }
    };
    parse_response(&buf, method == "HEAD").ok_or_else(|| {
        if buf.is_empty() {
            format!("{method} {path} on {addr}: connection closed without an answer")
        } else {
            format!("{method} {path} on {addr}: not an HTTP response")
        }
    })
}

/// Turns a response into an observation for the scorer.
pub fn to_obs(port: u16, request: &str, r: Response) -> HttpObs {
    HttpObs {
        port,
        request: request.to_string(),
        status: r.status,
        headers: r.headers,
        body: r.body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_body_and_chunks() {
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nServer: Werkzeug/3.0.3 Python/3.11.2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(
            r.headers[0],
            ("server".into(), "Werkzeug/3.0.3 Python/3.11.2".into())
        );
        assert_eq!(r.body, "hello world");
        assert!(parse_response(b"-ERR unknown command\r\n", false).is_none());
        assert!(parse_response(b"", false).is_none());
        let huge = [b"HTTP/1.1 200 OK\r\n".to_vec(), vec![b'x'; 200_000]].concat();
        let t = parse_response(&huge, false).unwrap();
        assert!(t.truncated);
    }
}
