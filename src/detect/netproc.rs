//! `/proc/<pid>/net/tcp{,6}` parsing: the TCP sockets listening in a network namespace.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub addr: IpAddr,
    pub port: u16,
}

impl Listen {
    /// Reachable from outside the container's network namespace (not loopback-only).
    pub fn external(&self) -> bool {
        !self.addr.is_loopback()
    }

    /// Docker's embedded DNS resolver (127.0.0.11 in every container on a user-defined
    /// network): the engine's socket, not the app's, so not a finding about the app.
    pub fn docker_dns(&self) -> bool {
        self.addr == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11))
    }
}

fn parse_addr(hex: &str) -> Option<IpAddr> {
    match hex.len() {
        8 => {
            let v = u32::from_str_radix(hex, 16).ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(v.swap_bytes())))
        }
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&w.swap_bytes().to_be_bytes());
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Listening sockets (state 0A) from the text of /proc/net/tcp or tcp6; junk lines are skipped.
pub fn parse_listening(text: &str) -> Vec<Listen> {
    let mut out = Vec::new();
    for line in text.lines().skip(1).take(100_000) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[3] != "0A" {
            continue;
        }
        let Some((a, p)) = f[1].split_once(':') else {
            continue;
        };
        let (Some(addr), Ok(port)) = (parse_addr(a), u16::from_str_radix(p, 16)) else {
            continue;
        };
        let l = Listen { addr, port };
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_v6_listeners() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0\n   1: 0100007F:1F90 00000000:0000 0A 0 0 0 0 0 0\n   2: 0100007F:1F90 0100007F:9C40 01 0 0 0 0\n";
        let l = parse_listening(v4);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].port, 5000);
        assert!(l[0].external());
        assert_eq!(l[1].addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(!l[1].external());
        let v6 = "header\n   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 0\n   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0\n";
        let l6 = parse_listening(v6);
        assert_eq!(l6[0].port, 3000);
        assert!(l6[0].external());
        assert_eq!(l6[1].addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(parse_listening("garbage\n\0\0\0 : : 0A\n").is_empty());
    }

    #[test]
    fn docker_embedded_dns_is_recognised() {
        let t = "header\n   0: 0B00007F:A1B2 00000000:0000 0A 0\n   1: 0100007F:1F90 00000000:0000 0A 0\n";
        let l = parse_listening(t);
        assert!(l[0].docker_dns(), "127.0.0.11 is Docker's resolver");
        assert!(!l[1].docker_dns(), "127.0.0.1 is the app's");
    }
}
