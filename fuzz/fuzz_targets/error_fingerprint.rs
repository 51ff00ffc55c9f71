//! Any text as exception type, message and stack trace: fingerprinting and frame parsing never
//! panic, and the fingerprint is stable (same input, same id).
#![no_main]
use libfuzzer_sys::fuzz_target;
use obs_stack::serve::errors::{fingerprint, parse_frames, type_from_stack};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let kind = parts.next().unwrap_or("");
    let message = parts.next().unwrap_or("");
    let stack = parts.next().unwrap_or("");
    let a = fingerprint(kind, message, stack, 500);
    assert_eq!(a.len(), 16);
    assert_eq!(a, fingerprint(kind, message, stack, 500));
    let _ = parse_frames(stack);
    let _ = type_from_stack(stack);
});
