//! Any byte stream split anywhere: the decoder never panics, and splitting
//! the same bytes differently yields the same events.
#![no_main]

use castellan_protocol::sse::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let cut = data[0] as usize % data.len();
    let body = &data[1..];
    let cut = cut.min(body.len());
    let mut whole = Decoder::new(1 << 16);
    let mut a = Vec::new();
    let ok_whole = whole.feed(body, &mut a).is_ok();
    let mut split = Decoder::new(1 << 16);
    let mut b = Vec::new();
    let ok_split = split.feed(&body[..cut], &mut b).is_ok() && split.feed(&body[cut..], &mut b).is_ok();
    if ok_whole && ok_split {
        assert_eq!(a, b);
    }
});
