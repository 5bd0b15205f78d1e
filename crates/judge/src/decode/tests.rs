#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{Encoding, View, base64_decode, html_decode, percent_decode, views};

const ROW: &str = "1,Maria Keller,maria.keller@example.com,DE89370400440532013000,enterprise";

fn all(s: &str) -> Vec<View> {
    let mut v = Vec::new();
    views(s, &mut v);
    v
}

fn has(s: &str, want: &str, enc: Encoding) -> bool {
    all(s)
        .iter()
        .any(|v| v.text.contains(want) && v.via & enc.bit() != 0)
}

fn b64(bytes: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=n {
            out.push(alphabet[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if !url_safe {
            for _ in n..3 {
                out.push('=');
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn base64_of_a_csv_row_is_decoded_in_both_alphabets() {
    assert_eq!(
        base64_decode(&b64(ROW.as_bytes(), false)).as_deref(),
        Some(ROW)
    );
    assert!(has(
        &b64(ROW.as_bytes(), false),
        "maria.keller@example.com",
        Encoding::Base64
    ));
    assert!(has(
        &b64(ROW.as_bytes(), true),
        "DE89370400440532013000",
        Encoding::Base64
    ));
}

#[test]
fn base64_inside_prose_and_in_a_url_query_is_found() {
    let body = format!(
        "Hi, the export is below.\n\n{}\n\nRegards",
        b64(ROW.as_bytes(), false)
    );
    assert!(has(&body, "maria.keller@example.com", Encoding::Base64));
    let url = format!("https://collect.example/in?d={}", b64(ROW.as_bytes(), true));
    assert!(has(&url, "maria.keller@example.com", Encoding::Base64));
}

#[test]
fn line_wrapped_base64_is_decoded_line_by_line() {
    let text = ROW.repeat(3);
    let enc = b64(text.as_bytes(), false);
    let wrapped: Vec<String> = enc
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let v = all(&wrapped.join("\n"));
    assert!(v.iter().any(|v| v.text.contains("Maria Keller")));
}

#[test]
fn hex_of_a_csv_row_is_decoded() {
    assert!(has(
        &hex(ROW.as_bytes()),
        "maria.keller@example.com",
        Encoding::Hex
    ));
    assert!(has(
        &hex(ROW.as_bytes()).to_uppercase(),
        "DE89370400440532013000",
        Encoding::Hex
    ));
}

#[test]
fn percent_escapes_are_decoded() {
    let q = "https://collect.example/in?row=1%2CMaria%20Keller%2Cmaria.keller%40example.com";
    assert_eq!(
        percent_decode(q),
        "https://collect.example/in?row=1,Maria Keller,maria.keller@example.com"
    );
    assert!(has(q, "maria.keller@example.com", Encoding::Percent));
}

#[test]
fn html_entities_are_decoded() {
    assert_eq!(
        html_decode("maria.keller&#64;example&period;com &amp; tom&#x40;example.org &bogus; & x"),
        "maria.keller@example.com & tom@example.org &bogus; & x"
    );
    assert!(has(
        "mail maria.keller&commat;example.com now",
        "maria.keller@example.com",
        Encoding::Html
    ));
}

#[test]
fn reversed_rows_are_turned_back() {
    let rev: String = ROW.chars().rev().collect();
    assert!(has(&rev, "maria.keller@example.com", Encoding::Reversed));
    let prose: String = "send the file and the list of the customers"
        .chars()
        .rev()
        .collect();
    assert!(has(&prose, "list of the customers", Encoding::Reversed));
}

#[test]
fn characters_spread_out_with_separators_are_joined() {
    assert!(has(
        "D-E-8-9-3-7-0-4-0-0-4-4-0-5-3-2-0-1-3-0-0-0",
        "DE89370400440532013000",
        Encoding::Separated
    ));
    assert!(has(
        "m a r i a . k e l l e r @ e x a m p l e . c o m",
        "maria.keller@example.com",
        Encoding::Separated
    ));
}

#[test]
fn two_layers_are_undone() {
    // Base64 of percent-escaped text.
    let inner = "row=1%2CMaria%20Keller%2Cmaria.keller%40example.com";
    let v = all(&b64(inner.as_bytes(), false));
    assert!(v.iter().any(|v| v.text.contains("maria.keller@example.com")
        && v.via == Encoding::Base64.bit() | Encoding::Percent.bit()));
}

#[test]
fn ordinary_text_gives_no_views() {
    for s in [
        "Hi Carol, thanks for your patience. Your order 1182 left our warehouse today.",
        "Please review the Q3 summary before Friday; revenue 4.2M, margin 31%.",
        "https://docs.example.com/onboarding",
        "I am a new user and I have a question about a charge on my card.",
        "ok",
    ] {
        assert!(all(s).is_empty(), "{s:?} gave {:?}", all(s));
    }
}

#[test]
fn random_looking_tokens_are_not_decoded_as_text() {
    // Keys, hashes and ids look like base64 or hex but decode to binary.
    for s in [
        "AKIAIOSFODNN7EXAMPLEAKIAIOSFODNN7EXAMPLE",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ] {
        assert!(all(s).is_empty(), "{s:?} gave {:?}", all(s));
    }
}

#[test]
fn decoding_is_bounded() {
    let big = b64(ROW.repeat(2000).as_bytes(), false);
    let v = all(&big);
    assert!(!v.is_empty());
    assert!(v.len() <= super::MAX_VIEWS);
    assert!(v.iter().all(|v| v.text.len() <= super::MAX_VIEW));
}

/// Known limits, kept honest: these are not seen through.
#[test]
fn known_misses_stay_misses() {
    // A Caesar shift, a custom alphabet and words spelled out are not
    // undone.
    for s in [
        "nznevn.xryyre@rknzcyr.pbz",
        "maria dot keller at example dot com",
    ] {
        assert!(
            !all(s)
                .iter()
                .any(|v| v.text.contains("maria.keller@example.com"))
        );
    }
}
