//! Secrets and who may use them: the API token's validity, constant-time comparison, ingest
//! keys looked up by digest, and the same-origin rule for state-changing API calls.
//!
//! A token or key is only ever compared in constant time or through its SHA-256 digest, so a
//! client learns nothing from response timing; a secret shorter than what we generate is never
//! accepted (an emptied token file once meant "no auth": `?token=` matched an empty token).
use sha2::{Digest, Sha256};

/// Hex characters of a generated API token (32 random bytes).
pub const TOKEN_LEN: usize = 64;
/// A generated ingest key: `osk_` and 24 random bytes in hex.
pub const KEY_PREFIX: &str = "osk_";
pub const KEY_LEN: usize = KEY_PREFIX.len() + 48;

/// Whether `t` can serve as the API token: as long as a generated one, and only characters that
/// survive a URL, a cookie and a header unchanged.
pub fn token_ok(t: &str) -> bool {
    t.len() >= TOKEN_LEN
        && t.len() <= 512
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `k` has the shape of an ingest key we generate (prefix, length, hex).
pub fn key_ok(k: &str) -> bool {
    k.len() == KEY_LEN
        && k.starts_with(KEY_PREFIX)
        && k[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Equality that takes the same time wherever the first difference is (the length is not
/// secret: every token has the generated length).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The lookup form of an ingest key: keys are found by their digest, so a hash-map probe
/// reveals nothing about the key itself.
pub fn key_digest(k: &str) -> [u8; 32] {
    Sha256::digest(k.trim().as_bytes()).into()
}

/// Same-origin check for a state-changing request authenticated by the cookie: its `Origin`
/// (else the origin of its `Referer`) must name the host it was sent to. Browsers send
/// `Origin` on every cross-origin POST, so a page elsewhere cannot ride the cookie; a request
/// with neither header is not from a browser form and is refused too (scripts use the bearer
/// token, which no other site can attach).
pub fn same_origin(host: Option<&str>, origin: Option<&str>, referer: Option<&str>) -> bool {
    let Some(host) = host.map(str::trim).filter(|h| !h.is_empty()) else {
        return false;
    };
    let from = match (origin.map(str::trim), referer) {
        (Some(o), _) if !o.is_empty() && o != "null" => o.to_string(),
        (_, Some(r)) => match origin_of(r) {
            Some(o) => o,
            None => return false,
        },
        _ => return false,
    };
    let Some(authority) = from
        .strip_prefix("http://")
        .or_else(|| from.strip_prefix("https://"))
    else {
        return false;
    };
    authority.eq_ignore_ascii_case(host)
}

/// `scheme://authority` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_shorter_than_generated_are_never_valid() {
        assert!(!token_ok(""));
        assert!(!token_ok("abc"));
        assert!(!token_ok(&"a".repeat(63)));
        assert!(token_ok(&"a".repeat(64)));
        assert!(!token_ok(&format!("{} ", "a".repeat(64))));
        assert!(!token_ok(&format!("{};x", "a".repeat(64))));
        assert!(key_ok(&format!("osk_{}", "0f".repeat(24))));
        assert!(!key_ok("osk_"));
        assert!(!key_ok(""));
        assert!(!key_ok(&format!("osk_{}", "zz".repeat(24))));
    }

    #[test]
    fn constant_time_equality() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert_eq!(key_digest(" k "), key_digest("k"));
    }

    #[test]
    fn origins() {
        let h = Some("127.0.0.1:4319");
        assert!(same_origin(h, Some("http://127.0.0.1:4319"), None));
        assert!(same_origin(h, None, Some("http://127.0.0.1:4319/services?x=1")));
        assert!(!same_origin(h, Some("http://evil.example"), None));
        assert!(!same_origin(h, Some("http://127.0.0.1:4319.evil.example"), None));
        assert!(!same_origin(h, Some("null"), None));
        assert!(!same_origin(
            h,
            None,
            Some("http://evil.example/http://127.0.0.1:4319")
        ));
        assert!(!same_origin(h, None, None));
        assert!(!same_origin(None, Some("http://127.0.0.1:4319"), None));
    }
}
