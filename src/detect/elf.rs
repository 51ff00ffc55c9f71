//! A small, bounded ELF reader: the interpreter (glibc vs musl vs static), `DT_NEEDED`
//! libraries (libpython, libjvm, libcoreclr, ...), Go build info (Go version and module
//! dependencies, which survive `-s -w`), and a chunked scan of a few sections for markers
//! (Rust's `/rustc/<hash>/`, crates.io paths with versions, Go's net/http server).
//!
//! It reads with positioned reads (`ReadAt`), never the whole file, so a 100 MB binary costs a
//! few KiB of memory; every length read from the file is capped. Garbage in gives `None` or
//! empty lists, never a panic.
use std::sync::LazyLock;

use regex::bytes::Regex;

use super::obs::{Dep, ElfObs, rank};
use super::signature::Probe;

/// Positioned reads from a file or a buffer.
pub trait ReadAt {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize;
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match FileExt::read_at(self, &mut buf[done..], off + done as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => done += n,
            }
        }
        done
    }
    fn len(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> usize {
        let Ok(off) = usize::try_from(off) else { return 0 };
        if off >= <[u8]>::len(self) {
            return 0;
        }
        let n = buf.len().min(<[u8]>::len(self) - off);
        buf[..n].copy_from_slice(&self[off..off + n]);
        n
    }
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

const MAX_TABLE: usize = 256 * 1024;
const MAX_SCAN: u64 = 48 * 1024 * 1024;

struct Elf<'a, R: ReadAt + ?Sized> {
    r: &'a R,
    is64: bool,
    le: bool,
    phdrs: Vec<Phdr>,
    shdrs: Vec<Shdr>,
}

#[derive(Debug, Clone, Copy)]
struct Phdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

#[derive(Debug, Clone)]
struct Shdr {
    name: String,
    offset: u64,
    size: u64,
    kind: u32,
}

impl<'a, R: ReadAt + ?Sized> Elf<'a, R> {
    fn bytes(&self, off: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n.min(MAX_TABLE)];
        let got = self.r.read_at(off, &mut b);
        b.truncate(got);
        b
    }
    fn u16(&self, b: &[u8], at: usize) -> u64 {
        let s = b.get(at..at + 2).unwrap_or(&[0, 0]);
        let a = [s[0], s[1]];
        (if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }) as u64
    }
    fn u32(&self, b: &[u8], at: usize) -> u64 {
        let mut a = [0u8; 4];
        if let Some(s) = b.get(at..at + 4) {
            a.copy_from_slice(s);
        }
        (if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }) as u64
    }
    fn u64(&self, b: &[u8], at: usize) -> u64 {
        let mut a = [0u8; 8];
        if let Some(s) = b.get(at..at + 8) {
            a.copy_from_slice(s);
        }
        if self.le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }
    fn word(&self, b: &[u8], at: usize) -> u64 {
        if self.is64 {
            self.u64(b, at)
        } else {
            self.u32(b, at)
        }
    }

    fn open(r: &'a R) -> Option<Elf<'a, R>> {
        let mut h = [0u8; 64];
        if r.read_at(0, &mut h) < 52 || &h[..4] != b"\x7fELF" {
            return None;
        }
        let is64 = match h[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let le = match h[5] {
            1 => true,
            2 => false,
            _ => return None,
        };
        let mut e = Elf {
            r,
            is64,
            le,
            phdrs: Vec::new(),
            shdrs: Vec::new(),
        };
        let (phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx) = if is64 {
            (
                e.u64(&h, 32),
                e.u64(&h, 40),
                e.u16(&h, 54),
                e.u16(&h, 56),
                e.u16(&h, 58),
                e.u16(&h, 60),
                e.u16(&h, 62),
            )
        } else {
            (
                e.u32(&h, 28),
                e.u32(&h, 32),
                e.u16(&h, 42),
                e.u16(&h, 44),
                e.u16(&h, 46),
                e.u16(&h, 48),
                e.u16(&h, 50),
            )
        };
        let min_ph = if is64 { 56 } else { 32 };
        if phentsize >= min_ph && phnum > 0 && phnum < 512 {
            let t = e.bytes(phoff, (phentsize * phnum) as usize);
            for i in 0..phnum as usize {
                let b = match t.get(i * phentsize as usize..(i + 1) * phentsize as usize) {
                    Some(b) => b,
                    None => break,
                };
                let p = if is64 {
                    Phdr {
                        kind: e.u32(b, 0) as u32,
                        flags: e.u32(b, 4) as u32,
                        offset: e.u64(b, 8),
                        vaddr: e.u64(b, 16),
                        filesz: e.u64(b, 32),
                    }
                } else {
                    Phdr {
                        kind: e.u32(b, 0) as u32,
                        offset: e.u32(b, 4),
                        vaddr: e.u32(b, 8),
                        filesz: e.u32(b, 16),
                        flags: e.u32(b, 24) as u32,
                    }
                };
                e.phdrs.push(p);
            }
        }
        let min_sh = if is64 { 64 } else { 40 };
        if shentsize >= min_sh && shnum > 0 && shnum < 4096 {
            let t = e.bytes(shoff, (shentsize * shnum) as usize);
            let mut raw = Vec::new();
            for i in 0..shnum as usize {
                let Some(b) = t.get(i * shentsize as usize..(i + 1) * shentsize as usize) else {
                    break;
                };
                let (name, kind, offset, size) = if is64 {
                    (e.u32(b, 0), e.u32(b, 4) as u32, e.u64(b, 24), e.u64(b, 32))
                } else {
                    (e.u32(b, 0), e.u32(b, 4) as u32, e.u32(b, 16), e.u32(b, 20))
                };
                raw.push((name, kind, offset, size));
            }
            if let Some(&(_, _, stroff, strsize)) = raw.get(shstrndx as usize) {
                let strtab = e.bytes(stroff, strsize.min(MAX_TABLE as u64) as usize);
                for (name, kind, offset, size) in raw {
                    e.shdrs.push(Shdr {
                        name: cstr(&strtab, name as usize),
                        offset,
                        size,
                        kind,
                    });
                }
            }
        }
        Some(e)
    }

    fn vaddr_to_off(&self, vaddr: u64) -> Option<u64> {
        self.phdrs
            .iter()
            .find(|p| p.kind == 1 && vaddr >= p.vaddr && vaddr < p.vaddr.saturating_add(p.filesz))
            .map(|p| vaddr - p.vaddr + p.offset)
    }

    fn interp(&self) -> Option<String> {
        let p = self.phdrs.iter().find(|p| p.kind == 3)?;
        let b = self.bytes(p.offset, p.filesz.min(512) as usize);
        Some(cstr(&b, 0))
    }

    fn needed(&self) -> Vec<String> {
        let Some(d) = self.phdrs.iter().find(|p| p.kind == 2) else {
            return Vec::new();
        };
        let b = self.bytes(d.offset, d.filesz.min(64 * 1024) as usize);
        let ent = if self.is64 { 16 } else { 8 };
        let half = ent / 2;
        let mut needed = Vec::new();
        let mut strtab = None;
        for i in 0..b.len() / ent {
            let tag = self.word(&b, i * ent);
            let val = self.word(&b, i * ent + half);
            match tag {
                0 => break,
                1 => needed.push(val),
                5 => strtab = Some(val),
                _ => {}
            }
        }
        let Some(base) = strtab.and_then(|a| self.vaddr_to_off(a)) else {
            return Vec::new();
        };
        needed
            .into_iter()
            .take(256)
            .map(|o| cstr(&self.bytes(base + o, 256), 0))
            .filter(|s| !s.is_empty())
            .collect()
    }

    fn section(&self, name: &str) -> Option<&Shdr> {
        self.shdrs.iter().find(|s| s.name == name && s.kind != 8)
    }

    /// Go build info: (go version, modinfo text).
    fn go_buildinfo(&self) -> Option<(String, String)> {
        let (off, size) = match self.section(".go.buildinfo") {
            Some(s) => (s.offset, s.size),
            None => {
                let p = self
                    .phdrs
                    .iter()
                    .find(|p| p.kind == 1 && p.flags & 2 != 0 && p.flags & 1 == 0)?;
                (p.offset, p.filesz)
            }
        };
        let data = self.bytes(off, size.min(64 * 1024) as usize);
        const MAGIC: &[u8] = b"\xff Go buildinf:";
        let start = (0..data.len().saturating_sub(32))
            .step_by(16)
            .find(|&i| data[i..].starts_with(MAGIC))?;
        let d = &data[start..];
        let ptr_size = d[14] as usize;
        let flags = d[15];
        let (vers, modinfo) = if flags & 2 != 0 {
            let mut at = 32;
            let v = read_uvarint_str(d, &mut at)?;
            let m = read_uvarint_str(d, &mut at).unwrap_or_default();
            (v, m)
        } else {
            if ptr_size != 4 && ptr_size != 8 {
                return None;
            }
            let be = flags & 1 != 0;
            let rd = |b: &[u8], at: usize| -> u64 {
                let s = b.get(at..at + ptr_size).unwrap_or(&[]);
                let mut v = 0u64;
                for (i, byte) in s.iter().enumerate() {
                    v |= if be {
                        (*byte as u64) << (8 * (ptr_size - 1 - i))
                    } else {
                        (*byte as u64) << (8 * i)
                    };
                }
                v
            };
            let go_string = |ptr_addr: u64| -> Option<String> {
                let hdr = self.bytes(self.vaddr_to_off(ptr_addr)?, ptr_size * 2);
                let (dp, len) = (rd(&hdr, 0), rd(&hdr, ptr_size));
                if len > 1 << 20 {
                    return None;
                }
                let b = self.bytes(self.vaddr_to_off(dp)?, len as usize);
                Some(String::from_utf8_lossy(&b).into_owned())
            };
            (
                go_string(rd(d, 16))?,
                go_string(rd(d, 16 + ptr_size)).unwrap_or_default(),
            )
        };
        let mut m = modinfo.into_bytes();
        if m.len() >= 33 && m[m.len() - 17] == b'\n' {
            m = m[16..m.len() - 16].to_vec();
        }
        Some((vers, String::from_utf8_lossy(&m).into_owned()))
    }

    /// Scans a section in chunks for `re`, calling `f` for every match (capped by MAX_SCAN).
    fn scan(&self, section: &str, re: &Regex, mut f: impl FnMut(&regex::bytes::Captures) -> bool) {
        let Some(s) = self.section(section) else { return };
        const CHUNK: usize = 1 << 20;
        const OVERLAP: usize = 512;
        let end = s.offset + s.size.min(MAX_SCAN);
        let mut pos = s.offset;
        let mut buf = vec![0u8; CHUNK + OVERLAP];
        while pos < end {
            let want = ((end - pos) as usize).min(CHUNK + OVERLAP);
            let got = self.r.read_at(pos, &mut buf[..want]);
            if got == 0 {
                break;
            }
            for c in re.captures_iter(&buf[..got]) {
                if !f(&c) {
                    return;
                }
            }
            pos += CHUNK as u64;
        }
    }
}

fn cstr(b: &[u8], at: usize) -> String {
    let s = b.get(at..).unwrap_or(&[]);
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

fn read_uvarint_str(d: &[u8], at: &mut usize) -> Option<String> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *d.get(*at)?;
        *at += 1;
        len |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 35 {
            return None;
        }
    }
    let len = len as usize;
    let s = d.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(String::from_utf8_lossy(s).into_owned())
}

/// Go module dependencies from modinfo text (`dep\tpath\tversion\tsum`, `=>` replacements).
pub fn parse_modinfo(modinfo: &str, source: &str) -> Vec<Dep> {
    let mut out: Vec<Dep> = Vec::new();
    for line in modinfo.lines().take(5000) {
        let f: Vec<&str> = line.split('\t').collect();
        match f.first().copied() {
            Some("dep") if f.len() >= 2 => out.push(Dep {
                ecosystem: "go".into(),
                name: f[1].to_ascii_lowercase(),
                version: f.get(2).map(|v| v.strip_prefix('v').unwrap_or(v).to_string()),
                rank: rank::INSTALLED,
                direct: true,
                source: source.to_string(),
                probe: Probe::Process,
            }),
            Some("=>") if f.len() >= 3 => {
                if let Some(last) = out.last_mut() {
                    last.version = Some(f[2].strip_prefix('v').unwrap_or(f[2]).to_string());
                }
            }
            _ => {}
        }
    }
    out
}

static RUST_MARK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"/rustc/[0-9a-f]{40}/|index\.crates\.io-[0-9a-f]+/([a-z0-9_\-]+?)-(\d+\.\d+\.\d+)/").unwrap()
});
static NODE_VERSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"/download/release/v(\d+\.\d+\.\d+)/").unwrap());
static GO_HTTP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"net/http\.\(\*Server\)\.Serve").unwrap());

/// Reads what matters from an ELF binary; `None` when it is not ELF.
pub fn inspect<R: ReadAt + ?Sized>(r: &R, path: &str) -> Option<(ElfObs, Vec<Dep>)> {
    let e = Elf::open(r)?;
    let mut obs = ElfObs {
        path: path.to_string(),
        needed: e.needed(),
        interp: e.interp(),
        ..Default::default()
    };
    let mut deps = Vec::new();
    if obs.interp.is_none() {
        obs.tags.push("static".into());
    }
    if let Some((v, modinfo)) = e.go_buildinfo() {
        obs.go_version = Some(v.trim_start_matches("go").to_string());
        obs.tags.push(v.clone());
        deps = parse_modinfo(&modinfo, path);
        let mut http = false;
        e.scan(".gopclntab", &GO_HTTP, |_| {
            http = true;
            false
        });
        if http {
            obs.tags.push("go-http-server".into());
        }
    } else if path
        .rsplit('/')
        .next()
        .is_some_and(|b| b == "node" || b == "nodejs")
    {
        let mut version = None;
        e.scan(".rodata", &NODE_VERSION, |c| {
            version = c
                .get(1)
                .map(|m| String::from_utf8_lossy(m.as_bytes()).to_string());
            false
        });
        if let Some(v) = version {
            obs.tags.push(format!("node-v{v}"));
        }
    } else {
        let mut rust = false;
        let mut crates = std::collections::BTreeMap::new();
        e.scan(".rodata", &RUST_MARK, |c| {
            match (c.get(1), c.get(2)) {
                (Some(n), Some(v)) => {
                    crates.insert(
                        String::from_utf8_lossy(n.as_bytes()).to_string(),
                        String::from_utf8_lossy(v.as_bytes()).to_string(),
                    );
                }
                _ => rust = true,
            }
            crates.len() < 2000
        });
        if rust || !crates.is_empty() {
            obs.tags.push("rust".into());
            deps = crates
                .into_iter()
                .map(|(n, v)| Dep {
                    ecosystem: "cargo".into(),
                    name: n,
                    version: Some(v),
                    rank: rank::INSTALLED,
                    direct: true,
                    source: path.to_string(),
                    probe: Probe::Process,
                })
                .collect();
        }
    }
    Some((obs, deps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_test_binary_itself() {
        let exe = std::env::current_exe().unwrap();
        let f = std::fs::File::open(&exe).unwrap();
        let (obs, _) = inspect(&f, "self").expect("our own test binary is ELF");
        assert!(
            obs.interp.as_deref().is_some_and(|i| i.contains("ld-")),
            "{:?}",
            obs.interp
        );
        assert!(
            obs.needed.iter().any(|n| n.starts_with("libc.so")),
            "{:?}",
            obs.needed
        );
        assert!(obs.tags.contains(&"rust".to_string()), "{:?}", obs.tags);
    }

    #[test]
    fn garbage_and_truncation_are_harmless() {
        assert!(inspect(&b"not an elf"[..], "x").is_none());
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for cut in [16usize, 64, 200, 4096, 100_000] {
            let _ = inspect(&exe[..cut.min(exe.len())], "cut");
        }
        let mut junk = b"\x7fELF\x02\x01\x01".to_vec();
        junk.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8));
        let _ = inspect(&junk[..], "junk");
    }

    #[test]
    fn go_buildinfo_inline_format() {
        // a minimal buildinfo blob as the Go ≥1.18 linker writes it
        let mut blob = b"\xff Go buildinf:".to_vec();
        blob.push(8);
        blob.push(2);
        blob.extend([0u8; 16]);
        let v = b"go1.26.0";
        blob.push(v.len() as u8);
        blob.extend(v);
        let mut m = vec![0u8; 16];
        m.extend(b"path\tx\nmod\tx\t(devel)\t\ndep\tgithub.com/gin-gonic/gin\tv1.9.1\th1:abc\n");
        m.extend([0u8; 16]);
        blob.push(m.len() as u8);
        blob.extend(&m);
        let mut at = 32;
        assert_eq!(read_uvarint_str(&blob, &mut at).as_deref(), Some("go1.26.0"));
        let modinfo = read_uvarint_str(&blob, &mut at).unwrap();
        let stripped = &modinfo[16..modinfo.len() - 16];
        let deps = parse_modinfo(stripped, "/app");
        assert_eq!(deps[0].name, "github.com/gin-gonic/gin");
        assert_eq!(deps[0].version.as_deref(), Some("1.9.1"));
    }
}
