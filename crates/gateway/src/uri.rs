//! Resource URIs in one canonical spelling, so that the policy, the rules
//! and routing compare the resource an upstream will read, not the bytes
//! an agent chose: `file:///secret/./payroll.txt`,
//! `file:///etc/../secret/payroll.txt`, `file:////secret//payroll.txt` and
//! `FILE:///secret/%70ayroll.txt` are all `file:///secret/payroll.txt`.
//!
//! What is normalised (RFC 3986 section 6.2.2, plus duplicate slashes):
//! the scheme and host are lower-cased; percent-encoded unreserved
//! characters (letters, digits, `-._~`) are decoded and other escapes get
//! upper-case hex; in a path that starts with `/`, runs of `/` become one
//! and `.` and `..` segments are removed (a `..` never climbs above the
//! root). The query and fragment are kept as they are, apart from the
//! escapes. Escapes of reserved characters (`%2F`) stay escaped: they mean
//! something else than the character.

/// The canonical spelling of `uri` (see the module documentation). A
/// string without a scheme is normalised as a path.
pub(crate) fn normalise(uri: &str) -> String {
    let uri = unescape_unreserved(uri);
    let (scheme, rest) = match scheme_end(&uri) {
        Some(e) => (Some(uri[..e].to_ascii_lowercase()), &uri[e + 1..]),
        None => (None, uri.as_str()),
    };
    let mut out = String::with_capacity(uri.len());
    if let Some(s) = &scheme {
        out.push_str(s);
        out.push(':');
    }
    let mut rest = rest;
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let authority = &after[..end];
        // The host (after any user information) is case-insensitive.
        let (user, host) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        out.push_str("//");
        out.push_str(user);
        out.push_str(&host.to_ascii_lowercase());
        rest = &after[end..];
    }
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(path_end);
    if path.starts_with('/') {
        out.push_str(&remove_dot_segments(path));
    } else {
        out.push_str(path);
    }
    out.push_str(tail);
    out
}

/// The end of a scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`
/// before `:`), if `uri` starts with one.
fn scheme_end(uri: &str) -> Option<usize> {
    let b = uri.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let e = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))?;
    (b[e] == b':').then_some(e)
}

/// Decodes escapes of unreserved characters and upper-cases the hex of
/// the others; a `%` not followed by two hex digits stays as it is.
fn unescape_unreserved(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut plain = 0;
    while let Some(p) = s[i..].find('%') {
        let at = i + p;
        let hex = |c: u8| (c as char).to_digit(16);
        let (Some(h), Some(l)) = (
            b.get(at + 1).copied().and_then(hex),
            b.get(at + 2).copied().and_then(hex),
        ) else {
            i = at + 1;
            continue;
        };
        out.push_str(&s[plain..at]);
        let c = (h * 16 + l) as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
        } else {
            out.push('%');
            out.push_str(&s[at + 1..at + 3].to_ascii_uppercase());
        }
        i = at + 3;
        plain = i;
    }
    out.push_str(&s[plain..]);
    out
}

/// RFC 3986 section 5.2.4 on an absolute path, with empty segments (runs
/// of `/`) dropped too. A trailing `/`, `.` or `..` leaves a trailing `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        trailing = false;
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                kept.pop();
                trailing = true;
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn spellings_of_one_file_are_one_uri() {
        let canonical = "file:///secret/payroll.txt";
        for u in [
            "file:///secret/payroll.txt",
            "file:///secret//payroll.txt",
            "file:///secret/./payroll.txt",
            "file:///etc/../secret/payroll.txt",
            "file:////secret/payroll.txt",
            "FILE:///secret/%70ayroll.txt",
            "file:///secret/%2e/payroll.txt",
            "file:///secret/x/%2E%2E/payroll.txt",
            "file:///../../secret/payroll.txt",
        ] {
            assert_eq!(normalise(u), canonical, "{u}");
        }
    }

    #[test]
    fn host_and_scheme_lose_case_and_the_rest_keeps_it() {
        assert_eq!(
            normalise("HTTPS://User@Docs.Example:8443/A/b/../C?Q=%2f#Frag"),
            "https://User@docs.example:8443/A/C?Q=%2F#Frag"
        );
    }

    #[test]
    fn reserved_escapes_and_opaque_uris_stay() {
        assert_eq!(normalise("file:///a%2Fb"), "file:///a%2Fb");
        assert_eq!(normalise("urn:Example:a/../b"), "urn:Example:a/../b");
        assert_eq!(normalise("test://static-text"), "test://static-text");
        assert_eq!(normalise("file:///dir/"), "file:///dir/");
        assert_eq!(normalise("100%"), "100%");
    }
}
