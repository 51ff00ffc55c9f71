//! Deterministic tar entries (mtime 0, fixed modes): what obs-stack writes into containers
//! (the agent marker and Python guard) and the backend image's root filesystem.
use std::io;

/// Appends a directory entry (`path` without its trailing slash).
pub fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, format!("{path}/"), io::empty())
}

/// Appends a regular file.
pub fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, path, data)
}
