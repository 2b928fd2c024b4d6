//! Text clean-up: what the bot matches and stores is not byte for byte what
//! the user typed. Two passes live here, `sanitize` (what we keep) and
//! `fold` (what the matchers see).

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Removes what must never be matched, stored or echoed: control characters,
/// bidi controls and every invisible (default-ignorable) character. Line
/// breaks of any kind become `\n`, tabs become spaces, and the result is
/// trimmed.
///
/// Invisible characters are dropped rather than turned into spaces because
/// they are how text is smuggled past filters: `a\u{200B}nn@icloud.com` must
/// reach redaction as one address.
pub fn sanitize(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            // `\r\n` is one break; a lone `\r` (old Mac files) is one too,
            // so the words on either side do not run together.
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' => out.push('\n'),
            '\t' => out.push(' '),
            c if is_invisible(c) || c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim().to_owned()
}

/// Whether `c` is a format or default-ignorable character: it shows nothing
/// (or only steers how its neighbours show) yet is a character to a regex.
/// The list is Unicode's `Default_Ignorable_Code_Point` in full (which holds
/// every bidi control), the interlinear annotation controls, and the Braille
/// blank, which renders as nothing and is used as invisible padding too.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'                       // soft hyphen
        | '\u{34F}'                    // combining grapheme joiner
        | '\u{61C}'                    // Arabic letter mark (bidi)
        | '\u{115F}' | '\u{1160}'       // Hangul choseong and jungseong fillers
        | '\u{17B4}' | '\u{17B5}'       // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'      // Mongolian variation selectors, vowel separator
        | '\u{200B}'..='\u{200F}'      // zero-width space, (non-)joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}'      // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'      // word joiner, invisible operators, bidi isolates, deprecated formats
        | '\u{2800}'                   // Braille blank
        | '\u{3164}'                   // Hangul filler
        | '\u{FE00}'..='\u{FE0F}'      // variation selectors
        | '\u{FEFF}'                   // byte-order mark, zero-width no-break space
        | '\u{FFA0}'                   // halfwidth Hangul filler
        | '\u{FFF0}'..='\u{FFFB}'      // interlinear annotation controls and unassigned specials
        | '\u{1BCA0}'..='\u{1BCA3}'    // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}'    // musical symbol format controls
        | '\u{E0000}'..='\u{E0FFF}' // tags, variation selectors supplement
    )
}

/// Produces the form every matcher runs over: compatibility-decomposed with
/// accents dropped (`é` → `e`), typographic quotes and dashes straightened,
/// and runs of white space collapsed to one space. Case is left alone; the
/// matcher is case-insensitive.
///
/// Folding lets content authors write plain ASCII patterns that still match
/// "sauvegarde échouée" and "couldn’t", whatever the user's keyboard did.
pub fn fold(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut pending_space = false;
    let mut emit = |c: char| {
        if !c.is_ascii() && is_combining_mark(c) {
            return;
        }
        let c = straighten(c);
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            return;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    };
    // Character by character rather than through the NFKD iterator: ASCII,
    // nearly all of a paste, decomposes to itself, and NFKD's only other
    // step, reordering combining marks, cannot matter when every mark is
    // dropped (a test below holds this for every character).
    for c in input.chars() {
        if c.is_ascii() {
            emit(c);
        } else {
            decompose_compatible(c, &mut emit);
        }
    }
    out
}

/// Whether folding leaves the character `c` as it is. White space aside
/// (folding collapses it), an ASCII character changes only if straightened,
/// as ASCII decomposes to itself; this spares pattern checks a string per
/// character.
pub fn folds_to_itself(c: char) -> bool {
    if c.is_ascii() {
        return straighten(c) == c;
    }
    let mut buffer = [0; 4];
    let c = &*c.encode_utf8(&mut buffer);
    fold(c) == c
}

/// Typographic quotes, dashes and the ellipsis as typed on a plain keyboard.
fn straighten(c: char) -> char {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' | '`' | '\u{B4}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{AB}' | '\u{BB}' => '"',
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{2026}' => '.',
        c => c,
    }
}

/// Reduces a short message to the form navigation words are compared in:
/// folded, lower-case, punctuation and emoji dropped, single spaces.
/// "Start over!" and "start  over" both become "start over".
pub fn squash(input: &str) -> String {
    let folded = fold(input).to_lowercase();
    let mut squashed = String::with_capacity(folded.len());
    for word in folded.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()) {
        if !squashed.is_empty() {
            squashed.push(' ');
        }
        squashed.push_str(word);
    }
    squashed
}

/// Whether the text holds anything a person could mean as words or numbers;
/// a line of only emoji or punctuation has none.
pub fn has_words(input: &str) -> bool {
    input.chars().any(char::is_alphanumeric)
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reads a duration as people write it, `90s`, `30m`, `24h` or `2d`, in
/// seconds; `None` for anything else, zero and negatives included.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let number: i64 = text[..text.len() - unit.len_utf8()].trim().parse().ok().filter(|n| *n > 0)?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    number.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_drops_invisible_and_control_characters() {
        let input = "a\u{202E}b\u{200B}c\u{7}\r\nd\te\u{FEFF}";
        assert_eq!(sanitize(input), "abc\nd e");
        let isolates = "\u{2066}x\u{2069}\u{2067}y\u{2068}\u{61C}z\u{180E}";
        assert_eq!(sanitize(isolates), "xyz");
        let tags = "flag\u{E0067}\u{E0062}\u{E007F} ok\u{FE0F}\u{E0100}";
        assert_eq!(sanitize(tags), "flag ok");
        assert_eq!(sanitize("one\rtwo\u{2028}three\u{85}four"), "one\ntwo\nthree\nfour");
        assert_eq!(sanitize("\u{3164}\u{2800} a\u{AD}b\u{34F} "), "ab");
    }

    #[test]
    fn fold_removes_accents_and_straightens_quotes() {
        assert_eq!(fold("Sauvegarde  échouée"), "Sauvegarde echouee");
        assert_eq!(fold("Backup couldn’t complete"), "Backup couldn't complete");
        assert_eq!(fold("nicht genügend\n Speicher"), "nicht genugend Speicher");
        assert_eq!(fold("  leading"), "leading");
    }

    #[test]
    fn fold_by_character_equals_nfkd_of_the_whole_text() {
        use unicode_normalization::UnicodeNormalization;
        // What `fold` did through the NFKD iterator, kept as the reference.
        let through_nfkd = |input: &str| -> String {
            let kept: String = input.nfkd().filter(|&c| !is_combining_mark(c)).map(straighten).collect();
            kept.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        // Every character, between letters and beside marks in
        // non-canonical order, which NFKD reorders.
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            let text = format!("a{c}\u{301}\u{327}b \u{327}{c}");
            assert_eq!(fold(&text), through_nfkd(&text), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn folds_to_itself_is_fold_of_the_character_alone() {
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32).filter(|c| !c.is_whitespace()) {
            assert_eq!(folds_to_itself(c), fold(&c.to_string()) == c.to_string(), "U+{:04X}", c as u32);
        }
        assert!(!folds_to_itself('`') && !folds_to_itself('é') && folds_to_itself('e'));
    }

    #[test]
    fn squash_compares_words_only() {
        assert_eq!(squash("  Start   over!! "), "start over");
        assert_eq!(squash("🙂🙂"), "");
        assert_eq!(squash("Atrás"), "atras");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration(" 24h "), Some(86_400));
        assert_eq!(parse_duration("90d"), Some(7_776_000));
        for bad in ["", "h", "0h", "-1h", "12", "1w", "x1d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
