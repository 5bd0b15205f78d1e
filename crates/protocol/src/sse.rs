//! Server-Sent Events: an incremental decoder that yields each event as soon
//! as its blank line arrives (so streams are relayed event by event, never
//! buffered whole), and an encoder.

use bytes::{Bytes, BytesMut};

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `retry:` field, if any.
    pub retry: Option<u64>,
}

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event grew past the configured limit.
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
    /// A line was not UTF-8.
    #[error("SSE stream is not UTF-8")]
    NotUtf8,
}

/// Incremental SSE decoder.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    current: Event,
    has_data: bool,
    pending_len: usize,
    max_event: usize,
    saw_cr: bool,
}

impl Decoder {
    /// A decoder that refuses events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            current: Event::default(),
            has_data: false,
            pending_len: 0,
            max_event,
            saw_cr: false,
        }
    }

    /// Feeds bytes and appends every completed event to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        self.buf.extend_from_slice(chunk);
        loop {
            // A `\r\n` split across chunks: skip the `\n` of a line already ended by `\r`.
            if self.saw_cr && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    let _ = self.buf.split_to(1);
                }
                self.saw_cr = false;
            }
            let Some(pos) = memchr::memchr2(b'\n', b'\r', &self.buf) else {
                break;
            };
            let line = self.buf.split_to(pos);
            let term = self.buf.split_to(1);
            if term[0] == b'\r' {
                if self.buf.first() == Some(&b'\n') {
                    let _ = self.buf.split_to(1);
                } else if self.buf.is_empty() {
                    self.saw_cr = true;
                }
            }
            let line = std::str::from_utf8(&line).map_err(|_| SseError::NotUtf8)?;
            self.line(line, out)?;
        }
        if self.buf.len() + self.pending_len > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        Ok(())
    }

    fn line(&mut self, line: &str, out: &mut Vec<Event>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data || self.current.event.is_some() || self.current.id.is_some() {
                let ev = std::mem::take(&mut self.current);
                if self.has_data {
                    out.push(ev);
                } else {
                    // An event without data is not dispatched, but its id still counts.
                    out.push(Event {
                        data: String::new(),
                        ..ev
                    });
                }
            }
            self.has_data = false;
            self.pending_len = 0;
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        self.pending_len += line.len();
        if self.pending_len > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.current.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.current.id = Some(value.to_owned()),
            "retry" => self.current.retry = value.parse().ok(),
            _ => {}
        }
        Ok(())
    }
}

/// Encodes one event. Data containing line breaks becomes several `data:` lines.
pub fn encode(event: Option<&str>, id: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 32);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\n");
    }
    if let Some(ev) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(ev.as_bytes());
        out.extend_from_slice(b"\n");
    }
    let mut rest = data;
    loop {
        let cut = memchr::memchr2(b'\n', b'\r', rest);
        out.extend_from_slice(b"data: ");
        match cut {
            Some(i) => {
                out.extend_from_slice(&rest[..i]);
                out.extend_from_slice(b"\n");
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
            None => {
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\n");
                break;
            }
        }
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

/// An SSE comment, used as a keep-alive and to hand a client an event id
/// before any data (priming event).
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

#[cfg(test)]
mod tests;
