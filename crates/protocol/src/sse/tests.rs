use proptest::prelude::*;

use super::*;

fn decode_all(chunks: &[&[u8]]) -> Vec<Event> {
    let mut d = Decoder::new(1 << 20);
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, &mut out).expect("decodes");
    }
    out
}

#[test]
fn decodes_events_split_at_any_byte() {
    let stream =
        b"id: 1\nevent: message\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: x\r\ndata: y\r\n\r\n";
    let whole = decode_all(&[stream]);
    assert_eq!(whole.len(), 2);
    assert_eq!(whole[0].id.as_deref(), Some("1"));
    assert_eq!(whole[0].event.as_deref(), Some("message"));
    assert_eq!(whole[0].data, "{\"a\":1}");
    assert_eq!(whole[1].data, "x\ny");
    for cut in 0..stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(decode_all(&[a, b]), whole, "split at {cut}");
    }
}

#[test]
fn an_event_is_yielded_as_soon_as_its_blank_line_arrives() {
    let mut d = Decoder::new(1024);
    let mut out = Vec::new();
    d.feed(b"data: first\n", &mut out).expect("ok");
    assert!(out.is_empty());
    d.feed(b"\n", &mut out).expect("ok");
    assert_eq!(out.len(), 1);
}

#[test]
fn oversized_events_are_refused() {
    let mut d = Decoder::new(16);
    let mut out = Vec::new();
    assert_eq!(
        d.feed(b"data: 0123456789abcdefghij", &mut out),
        Err(SseError::TooLarge(16))
    );
}

#[test]
fn priming_events_with_only_an_id_are_reported() {
    let out = decode_all(&[b"id: 42\ndata:\n\n"]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].id.as_deref(), Some("42"));
    assert_eq!(out[0].data, "");
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips(data in "[^\r\n]{0,64}(\n[^\r\n]{0,64}){0,3}", id in proptest::option::of("[a-z0-9]{1,8}")) {
        let bytes = encode(Some("message"), id.as_deref(), data.as_bytes());
        let out = decode_all(&[&bytes]);
        prop_assert_eq!(out.len(), 1);
        prop_assert_eq!(&out[0].data, &data);
        prop_assert_eq!(&out[0].id, &id);
    }

    #[test]
    fn decoder_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut d = Decoder::new(256);
        let mut out = Vec::new();
        for c in chunks {
            if d.feed(&c, &mut out).is_err() { break; }
        }
    }
}
