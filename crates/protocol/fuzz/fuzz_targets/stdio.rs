//! Any byte stream: the line decoder never panics and never yields a line
//! containing a newline.
#![no_main]

use castellan_protocol::stdio::LineDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = LineDecoder::new(1 << 16);
    let mut out = Vec::new();
    for chunk in data.chunks(7) {
        if d.feed(chunk, &mut out).is_err() {
            break;
        }
    }
    assert!(out.iter().all(|l| !l.contains(&b'\n')));
});
