//! Text as a model reads it: look-alike letters (Cyrillic, Greek,
//! fullwidth, mathematical alphanumerics) folded to the ASCII letters
//! they imitate, and invisible or formatting characters removed, so that
//! "Ignоre previоus" (with Cyrillic `о`) or a soft hyphen inside a word
//! does not hide an instruction from the signals.
//!
//! The table is deliberately small: the letters that render like Latin
//! ones in common fonts, not Unicode's full confusables list (which would
//! also fold legitimate non-Latin text for no gain here).

/// Characters that render as nothing (or only change the rendering of a
/// neighbour) and have no business in a tool definition: soft hyphen,
/// zero-width characters, bidirectional marks and controls, invisible
/// operators (U+2061..U+2064), the word joiner, variation selectors
/// (U+FE00..U+FE0F, U+E0100..U+E01EF), tag characters and the byte-order
/// mark. (Emoji presentation selectors right after a symbol are ordinary;
/// see [`hidden`].)
pub(crate) fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}'
        | '\u{E0000}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// The ASCII letter or digit `c` imitates, if it is a look-alike.
pub(crate) fn confusable(c: char) -> Option<char> {
    let u = c as u32;
    let ascii = match c {
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' => 'y',
        'х' => 'x',
        'і' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'һ' => 'h',
        'ӏ' => 'l',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'А' => 'A',
        'В' => 'B',
        'Е' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'Х' => 'X',
        'І' => 'I',
        'Ј' => 'J',
        'Ѕ' => 'S',
        'Ү' => 'Y',
        'α' => 'a',
        'ο' => 'o',
        'ν' => 'v',
        'ρ' => 'p',
        'ι' => 'i',
        'κ' => 'k',
        'τ' => 't',
        'υ' => 'u',
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        // Fullwidth forms.
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u - 0xFF01 + 0x21)?,
        // Mathematical alphanumerics: thirteen alphabets of 52 letters,
        // then five of ten digits.
        '\u{1D400}'..='\u{1D6A3}' => {
            let k = (u - 0x1D400) % 52;
            char::from_u32(if k < 26 { 0x41 + k } else { 0x61 + k - 26 })?
        }
        '\u{1D7CE}'..='\u{1D7FF}' => char::from_u32(0x30 + (u - 0x1D7CE) % 10)?,
        _ => return None,
    };
    Some(ascii)
}

/// Spaces other than U+0020 that render as one.
fn space(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// The folded text and, for each of its bytes, the offset in `text` of
/// the character it came from; `None` when folding changes nothing (ASCII
/// text, the common case, costs one check).
pub(crate) fn fold(text: &str) -> Option<(String, Vec<usize>)> {
    if text.is_ascii()
        || !text
            .chars()
            .any(|c| invisible(c) || space(c) || confusable(c).is_some())
    {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if invisible(c) {
            continue;
        }
        let f = if space(c) {
            ' '
        } else {
            confusable(c).unwrap_or(c)
        };
        let n = out.len();
        out.push(f);
        at.extend(std::iter::repeat_n(i, out.len() - n));
    }
    Some((out, at))
}

/// What a definition hides, for [`super::inspect_definition`]: invisible
/// characters (an emoji presentation selector right after a non-ASCII
/// symbol is ordinary), or look-alike letters inside a word of Latin
/// letters. The byte range of the first and why.
pub(crate) fn hidden(text: &str) -> Option<(std::ops::Range<usize>, &'static str)> {
    if text.is_ascii() {
        return None;
    }
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        let emoji_style = matches!(c, '\u{FE0E}' | '\u{FE0F}')
            && prev.is_some_and(|p| !p.is_ascii() && !p.is_alphabetic());
        if invisible(c) && !emoji_style {
            return Some((
                i..i + c.len_utf8(),
                "invisible or formatting characters (hidden text)",
            ));
        }
        prev = Some(c);
    }
    // A word mixing ASCII letters and look-alikes.
    let (mut latin, mut look) = (false, None);
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if c.is_alphanumeric() {
            latin |= c.is_ascii_alphabetic();
            if look.is_none() && !c.is_ascii() && confusable(c).is_some() {
                look = Some(i..i + c.len_utf8());
            }
        } else {
            if latin && let Some(r) = look {
                return Some((r, "look-alike letters mixed into Latin words"));
            }
            (latin, look) = (false, None);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{fold, hidden};

    #[test]
    fn look_alikes_and_invisibles_fold_to_what_a_reader_sees() {
        let (f, at) =
            fold("Ign\u{043E}re prev\u{00AD}i\u{043E}us \u{FF49}nstructions").expect("folds");
        assert_eq!(f, "Ignore previous instructions");
        assert_eq!(at.len(), f.len());
        assert!(fold("plain ascii").is_none());
        assert!(fold("日本語のテキスト").is_none());
    }

    #[test]
    fn hidden_text_is_found_and_ordinary_text_is_not() {
        for s in [
            "Read\u{E0101} the file",
            "Send\u{2062} it",
            "pass\u{00AD}word",
            "left\u{200E}right",
            "Ign\u{043E}re",
            "x\u{FE0F}",
        ] {
            assert!(hidden(s).is_some(), "{s:?}");
        }
        for s in ["Weather ❤\u{FE0F}", "Привет мир", "naïve café", "日本語"] {
            assert!(hidden(s).is_none(), "{s:?}");
        }
    }
}
