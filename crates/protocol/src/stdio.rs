//! Newline-delimited JSON-RPC framing used by stdio MCP servers.

use bytes::{Bytes, BytesMut};

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A line grew past the limit without a newline.
    #[error("stdio message larger than {0} bytes")]
    TooLarge(usize),
}

/// Splits a byte stream into lines, each one JSON-RPC message.
#[derive(Debug)]
pub struct LineDecoder {
    buf: BytesMut,
    max: usize,
}

impl LineDecoder {
    /// A decoder refusing lines longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        LineDecoder {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Feeds bytes and appends every complete, non-blank line to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Bytes>) -> Result<(), FrameError> {
        self.buf.extend_from_slice(chunk);
        while let Some(pos) = memchr::memchr(b'\n', &self.buf) {
            let mut line = self.buf.split_to(pos + 1);
            line.truncate(pos);
            if line.last() == Some(&b'\r') {
                line.truncate(pos - 1);
            }
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                out.push(line.freeze());
            }
        }
        if self.buf.len() > self.max {
            self.buf.clear();
            return Err(FrameError::TooLarge(self.max));
        }
        Ok(())
    }
}

/// Frames one message for a stdio peer. MCP forbids embedded newlines in
/// stdio messages, so any line break inside the JSON (only possible as
/// insignificant whitespace) is replaced by a space.
pub fn encode(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 1);
    if memchr::memchr2(b'\n', b'\r', message).is_some() {
        out.extend(
            message
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(message);
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn splits_lines_across_chunks_and_skips_blank_ones() {
        let mut d = LineDecoder::new(1024);
        let mut out = Vec::new();
        d.feed(b"{\"a\":1}\r\n\n{\"b\"", &mut out).expect("ok");
        d.feed(b":2}\n", &mut out).expect("ok");
        assert_eq!(
            out,
            vec![
                Bytes::from_static(b"{\"a\":1}"),
                Bytes::from_static(b"{\"b\":2}")
            ]
        );
    }

    #[test]
    fn refuses_an_endless_line() {
        let mut d = LineDecoder::new(8);
        let mut out = Vec::new();
        assert_eq!(
            d.feed(b"0123456789", &mut out),
            Err(FrameError::TooLarge(8))
        );
    }

    proptest! {
        #[test]
        fn encoded_messages_decode_to_one_line(msg in "[ -~]{1,64}") {
            let mut d = LineDecoder::new(1024);
            let mut out = Vec::new();
            d.feed(&encode(msg.as_bytes()), &mut out).expect("ok");
            if msg.trim().is_empty() { prop_assert!(out.is_empty()); } else { prop_assert_eq!(out.len(), 1); }
        }
    }
}
