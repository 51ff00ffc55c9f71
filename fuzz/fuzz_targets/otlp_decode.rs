//! Any bytes, as any signal in either encoding (and gzip): decoding must answer Ok or a
//! refusal, and whatever decodes must go through redaction and derivation without a panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use obs_stack::serve::http::{Decoded, Encoding, Signal, decode, gunzip_bounded};
use obs_stack::serve::receive::{self, Deriver};
use obs_stack::serve::redact::Redactor;

fn redactor() -> Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(|| Redactor::new(None).expect("built-in rules")).clone()
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let (head, body) = data.split_at(1);
    let signal = match head[0] % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    };
    let enc = if head[0] & 0x10 == 0 { Encoding::Protobuf } else { Encoding::Json };
    let owned;
    let body = if head[0] & 0x20 != 0 {
        match gunzip_bounded(body, 1 << 20) {
            Ok(b) => {
                owned = b;
                &owned[..]
            }
            Err(_) => return,
        }
    } else {
        body
    };
    let Ok(decoded) = decode(signal, enc, body) else { return };
    let d = Deriver::new(redactor(), 86_400_000);
    let now = 1_800_000_000_000;
    let _ = match decoded {
        Decoded::Traces(r) => receive::traces(&d, "fuzz", r, now),
        Decoded::Metrics(r) => receive::metrics(&d, "fuzz", r, now),
        Decoded::Logs(r) => receive::logs(&d, "fuzz", r, now),
    };
});
