//! JSON text on the call path: a writer that produces serde_json's exact
//! compact bytes without its per-byte string escaping, and a strict parser
//! that builds serde_json's `Value` but refuses duplicate object keys.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Appends `v` exactly as `serde_json::to_vec` writes it (compact, map
/// entries in the map's order). Strings without a character to escape,
/// nearly all of them, are copied after a word-at-a-time scan instead of
/// serde_json's byte-by-byte escaping; the others, and numbers, are written
/// by serde_json itself.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            // Writing a number to a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(o) => {
            out.push(b'{');
            for (i, (k, item)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// `v` as compact JSON text, the same as `v.to_string()` (serde_json's
/// `Display`), written by [`write_value`].
pub fn to_string(v: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, v);
    // Always UTF-8: strings and keys are copied from `str`s or escaped by
    // serde_json; the fallback is never taken.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends `s` as a JSON string literal, exactly as serde_json writes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Writing a string to a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether JSON needs an escape in `bytes`: a quote, a backslash or a
/// control character (below 0x20), the bytes serde_json escapes.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const LOW_LIMIT: u64 = u64::from_ne_bytes([0x60; 8]);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        // Bit 7 of each byte lane is set where the byte is zero after the
        // xor (the classic has-zero-byte test, exact about whether any
        // is), and, for `low`, clear where the byte is below 0x20 (bit 7
        // cleared first so no lane carries into the next, then adding 0x60
        // reaches bit 7 from 0x20 up; bytes from 0x80 keep their bit 7).
        let q = x ^ QUOTES;
        let b = x ^ BACKSLASHES;
        let quote = q.wrapping_sub(ONES) & !q;
        let backslash = b.wrapping_sub(ONES) & !b;
        let low = (x & !HIGHS).wrapping_add(LOW_LIMIT) | x;
        if (quote | backslash | !low) & HIGHS != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Parses JSON text into the `Value` `serde_json::from_str` builds, but
/// refuses an object with a duplicate key at any depth. serde_json keeps
/// the last of two equal keys and other parsers the first, so the gateway
/// and an upstream could otherwise read different arguments from the same
/// bytes. The error reads "duplicate key `k` at line L column C".
///
/// One difference on purpose: serde_json reads an object whose first key is
/// its private raw-value token as the JSON text in that key's value; here
/// it is an ordinary key, as every other parser sees it.
pub fn from_str_strict(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Keys longer than this are cut in error messages.
const KEY_IN_MESSAGE: usize = 64;

/// The seed and visitor behind [`from_str_strict`]: serde_json's own
/// `Value` visitor, method for method, with the duplicate check added.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict.deserialize(d)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match object.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(Strict)?);
                }
                Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate key `{}`",
                        shortened(slot.key())
                    )));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// `key`, cut to [`KEY_IN_MESSAGE`] characters, for a message.
fn shortened(key: &str) -> std::borrow::Cow<'_, str> {
    match key.char_indices().nth(KEY_IN_MESSAGE) {
        Some((end, _)) => format!("{}…", &key[..end]).into(),
        None => key.into(),
    }
}

#[cfg(test)]
mod tests;
