//! The checks behind the redaction rules: what a regex cannot say about a
//! match (a Luhn digit, a digit count, the word before or after it), and
//! the word lists they consult. Each check returns the range to replace,
//! possibly narrowed, or `None` to keep the text.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// Words that, right after a number, say it is a quantity and not a phone
/// number or a card: sizes, counts, units of time.
#[rustfmt::skip]
const UNITS: &[&str] = &[
    "b", "kb", "mb", "gb", "tb", "bytes", "byte", "octets", "kib", "mib", "gib", "files", "fichiers",
    "archivos", "dateien", "arquivos", "photos", "fotos", "items", "elementos", "elements", "elemente",
    "videos", "vidéos", "songs", "apps", "messages", "contacts", "kontakte", "contactos", "contatos", "seconds",
    "minutes", "hours", "days", "ms", "s", "min", "h", "%", "mal", "times", "veces", "fois", "vezes",
];

/// Names that sit where a user name would in a path but are nobody's.
const SHARED_FOLDERS: &[&str] =
    &["shared", "public", "default", "default user", "all users", "guest", "user", "username"];

/// Words before a possessive device name that are not a person's name.
/// Product and platform words matter most: the matchers need them.
#[rustfmt::skip]
const NOT_NAMES: &[&str] = &[
    "apple", "google", "samsung", "microsoft", "huawei", "xiaomi", "motorola", "oneplus", "oppo", "sony",
    "nokia", "finder", "windows", "android", "pixel", "galaxy", "mac", "macbook", "computer", "laptop", "phone",
    "device", "the", "one", "other", "another", "old", "new", "today", "yesterday", "it", "that", "this",
    "what", "where", "here", "there", "who", "he", "she", "let", "how", "everyone", "nobody", "someone",
    "somebody", "everything", "nothing", "something", "mom", "mum", "dad", "mother", "father", "wife",
    "husband", "son", "daughter", "work", "company", "my", "your", "our", "their", "empresa", "trabajo",
    "travail", "arbeit", "firma", "mama", "papa", "mamá", "papá", "mãe", "pai", "maman",
];

/// Query and fragment parameter names whose value is a credential.
#[rustfmt::skip]
const SECRET_PARAMS: &[&str] = &[
    "token", "access_token", "refresh_token", "id_token", "auth_token", "key", "api_key", "apikey", "secret",
    "client_secret", "password", "passwd", "pwd", "pass", "auth", "sig", "signature", "x-amz-signature",
    "x-amz-credential", "x-amz-security-token", "code", "session", "sessionid", "session_id", "sid", "jwt",
    "otp",
];

/// Accepts the match as it is.
pub(super) fn keep(_: &str, range: Range<usize>) -> Option<Range<usize>> {
    Some(range)
}

pub(super) fn digits(text: &str) -> usize {
    text.bytes().filter(u8::is_ascii_digit).count()
}

pub(super) fn has_letter_and_digit(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_alphabetic()) && text.bytes().any(|b| b.is_ascii_digit())
}

pub(super) fn has_both_cases(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_uppercase()) && text.bytes().any(|b| b.is_ascii_lowercase())
}

/// The Luhn check digit test over the digits of `text`, separators ignored.
/// IMEIs, ICCIDs and card numbers carry one; most other long numbers fail it.
pub(super) fn luhn(text: &str) -> bool {
    let mut sum = 0;
    let mut count = 0;
    for (index, digit) in text.bytes().rev().filter(u8::is_ascii_digit).map(|b| u32::from(b - b'0')).enumerate() {
        let value = if index % 2 == 1 { digit * 2 } else { digit };
        sum += if value > 9 { value - 9 } else { value };
        count += 1;
    }
    count > 1 && sum % 10 == 0
}

/// The character just before `at`, if any.
pub(super) fn char_before(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

/// The character just after `at`, if any.
pub(super) fn char_after(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}

/// Whether a number stands alone rather than being a piece of a larger one
/// (`-54`, `1.2345678901234`, `0x…`, a version or a decimal).
pub(super) fn standalone(text: &str, range: &Range<usize>) -> bool {
    let before = char_before(text, range.start);
    let after = text[range.end..].chars().take(2).collect::<Vec<_>>();
    let glued_before = matches!(before, Some('-' | '−' | '.' | ',' | '/' | '_' | '#'));
    let glued_after = match after.as_slice() {
        ['.' | ',', next, ..] => next.is_ascii_digit(),
        ['-' | '/' | '_', ..] => true,
        _ => false,
    };
    !glued_before && !glued_after
}

/// The first word after `at`, lower-cased, without trailing punctuation.
pub(super) fn word_after(text: &str, at: usize) -> String {
    let rest = text[at..].trim_start();
    let word: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    let word = if word.len() > 1 { word.trim_end_matches([',', '.', ';', ':', ')', '!', '?']) } else { &word };
    word.to_lowercase()
}

/// Accepts a phone-number shape whose digit count lies in `min..=max`,
/// that stands alone and is not a quantity (`612 345 678 bytes`). A match
/// that ran into a following number is shortened group by group.
pub(super) fn phone(text: &str, range: Range<usize>, min: usize, max: usize) -> Option<Range<usize>> {
    let mut range = range;
    loop {
        let found = &text[range.clone()];
        let count = digits(found);
        let unit = {
            let word = word_after(text, range.end);
            UNITS.contains(&word.as_str()) || text[range.end..].starts_with('%')
        };
        if count < min {
            return None;
        }
        if count <= max && !unit {
            let before = char_before(text, range.start);
            let glued = matches!(before, Some('-' | '−' | '.' | ',' | '/' | '_' | '#' | 'x' | 'X'))
                || before.is_some_and(|c| c.is_alphanumeric());
            let parens_balanced = found.matches('(').count() == found.matches(')').count();
            return (!glued && parens_balanced && standalone(text, &range)).then_some(range);
        }
        // Drop the last group of digits and the separators before it.
        let cut = found.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches([' ', '.', '-', '/', '(', ')']);
        if cut.len() == found.len() || cut.is_empty() {
            return None;
        }
        range = range.start..range.start + cut.len();
    }
}

/// `555-123-4567` and `555 123 4567`, not `555-123 4567`, which is more
/// often two numbers side by side. The `(555) 123-4567` form is its own.
pub(super) fn same_separators(found: &str) -> bool {
    if found.contains('(') {
        return true;
    }
    let number = match found.as_bytes() {
        [b'1', b' ' | b'.' | b'-', ..] => &found[2..],
        _ => found,
    };
    let mut separators = number.chars().filter(|c| matches!(c, ' ' | '.' | '-'));
    let first = separators.next();
    separators.all(|c| Some(c) == first)
}

/// `05.01.2024`, `01-05-2024 1022`: day-month-year, not a phone number.
pub(super) fn looks_like_date(found: &str) -> bool {
    static DATE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\d{1,2}[./-]\d{1,2}[./-](?:19|20)?\d{2}(?:[ T]\d{2,6})?$").unwrap());
    DATE.is_match(found)
}

/// A password or code typed after a label: quoted, or with a digit, a
/// symbol or an inner capital, so "password: incorrect" keeps its word.
pub(super) fn secret_value(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let found = &text[range.clone()];
    if found.starts_with(['"', '\'']) {
        return Some(range);
    }
    // A password may end in `!` or `?`; a full stop or comma is more often the sentence's.
    let value = found.trim_end_matches(['.', ',', ';', ':', ')']);
    let symbol = value.chars().any(|c| !c.is_alphanumeric());
    let inner_capital = value.chars().skip(1).any(char::is_uppercase);
    let digit = value.chars().any(|c| c.is_ascii_digit());
    (value.chars().count() >= 4 && (symbol || inner_capital || digit)).then(|| range.start..range.start + value.len())
}

/// A token after `token:` or `api key:`: long enough and with a digit, so
/// "token: expired" keeps its word.
pub(super) fn token_value(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let found = &text[range.clone()];
    let value = found.trim_end_matches(['.', ')', '!', '?']);
    (value.len() >= 8 && has_letter_and_digit(value)).then(|| range.start..range.start + value.len())
}

/// Whether a run of token characters is random rather than words: long,
/// letters and digits mixed, both cases (or all hex), and not a slug or a
/// path made of words.
pub(super) fn looks_random(found: &str) -> bool {
    let longest = found.split(|c: char| !c.is_ascii_alphanumeric()).map(str::len).max().unwrap_or(0);
    if longest < 16 || !has_letter_and_digit(found) {
        return false;
    }
    let hex = found.bytes().all(|b| b.is_ascii_hexdigit()) && found.len() >= 32;
    let upper_digits = !found.bytes().any(|b| b.is_ascii_lowercase()) && longest >= 24;
    if !(has_both_cases(found) || hex || upper_digits) {
        return false;
    }
    // A path such as `Library/Mobile2/Backup` is words between slashes.
    let wordy = found.split('/').any(|part| {
        let letters = part.trim_end_matches(|c: char| c.is_ascii_digit());
        letters.len() >= 3
            && letters.chars().skip(1).all(|c| c.is_ascii_lowercase())
            && letters.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    });
    !(found.contains('/') && wordy)
}

/// A long random string standing on its own, not the tail of a word, a
/// domain or a Windows path.
pub(super) fn random_string(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let found = &text[range.clone()];
    let before = char_before(text, range.start);
    let in_word = before.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '\\');
    (!in_word && looks_random(found.trim_end_matches('='))).then_some(range)
}

/// Apple serial numbers: 10 to 12 capitals and digits without I or O, not
/// part of a model code (`SM-G991B…`), an error code or a path.
pub(super) fn apple_serial(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let found = &text[range.clone()];
    let letters = found.bytes().filter(u8::is_ascii_alphabetic).count();
    let digit_count = digits(found);
    let glued_before = matches!(char_before(text, range.start), Some('-' | '_' | '.' | '/' | '\\' | '#'));
    let glued_after = matches!(char_after(text, range.end), Some('-' | '_' | '/' | '\\'));
    let error_code = found.starts_with("0X") || text[..range.start].ends_with("0x");
    (letters >= 2 && digit_count >= 2 && !glued_before && !glued_after && !error_code).then_some(range)
}

/// A public IPv4 address. Private, loopback and link-local addresses tell
/// about a home network, not a person, and help diagnose it; four-part
/// versions (`iTunes 12.13.2.3`) are left alone.
pub(super) fn public_ipv4(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let octets: Vec<u32> = text[range.clone()].split('.').filter_map(|part| part.parse().ok()).collect();
    if octets.len() != 4 || octets.iter().any(|octet| *octet > 255) || !standalone(text, &range) {
        return None;
    }
    let private = matches!(octets.as_slice(), [10 | 127 | 0, ..] | [169, 254, ..] | [192, 168, ..] | [255, ..])
        || (octets[0] == 172 && (16..=31).contains(&octets[1]));
    // Only the few words before matter; lower-casing the whole prefix would
    // make a message of many addresses quadratic.
    let from = text[..range.start].char_indices().rev().nth(24).map_or(0, |(at, _)| at);
    let before = text[from..range.start].to_lowercase();
    let word = before.trim_end().trim_end_matches([':', '=']).trim_end().rsplit(char::is_whitespace).next();
    let version = word.is_some_and(|word| {
        ["version", "versión", "versao", "versão", "itunes", "ios", "v", "build", "firmware", "ver"].contains(&word)
    });
    (!private && !version).then_some(range)
}

/// A shortened IPv6 address (`2a02:810d::1f`): enough groups and a digit,
/// so `std::io`-like text is not one; link-local and loopback are kept.
pub(super) fn compressed_ipv6(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let found = text[range.clone()].to_ascii_lowercase();
    let groups = found.split(':').filter(|group| !group.is_empty()).count();
    let local = found.starts_with("fe80:") || found == "::1";
    (groups >= 3 && !local && found.bytes().any(|b| b.is_ascii_digit())).then_some(range)
}

/// The user-name part of a home-directory path. Windows names may hold
/// spaces (`C:\Users\Ann Smith\…`): the words are kept together when a
/// separator follows them, else only the first word is the name.
pub(super) fn home_user(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let found = &text[range.clone()];
    let whole = found.trim_end();
    let followed_by_separator = text[range.end..].starts_with(['\\', '/']);
    let name = if followed_by_separator && whole.split_whitespace().count() <= 3 {
        whole
    } else {
        found.split_whitespace().next().unwrap_or("")
    };
    let name = name.trim_end_matches(['.', ',', ';', ')', '\'', '"']);
    if name.is_empty() || name.starts_with(['[', '%', '$', '<', '{', '~']) {
        return None;
    }
    if SHARED_FOLDERS.contains(&name.to_lowercase().as_str()) {
        return None;
    }
    // `/home/` inside a web address (`example.com/home/index`) is a page.
    let folder = text[..range.start].trim_end_matches(['/', '\\']);
    if folder.get(folder.len().saturating_sub(4)..).is_some_and(|end| end.eq_ignore_ascii_case("home")) {
        let before = folder[..folder.len() - 4].trim_end_matches(['/', '\\']);
        if before.ends_with(|c: char| c.is_alphanumeric() || c == '.') {
            return None;
        }
    }
    Some(range.start..range.start + name.len())
}

/// A capitalised word before a device name that is a person's name, not a
/// brand, a pronoun or a family role.
pub(super) fn person_name(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let name = text[range.clone()].to_lowercase();
    (!NOT_NAMES.contains(&name.as_str())).then_some(range)
}

/// A labelled IMEI, MEID or ESN: the digits after the label, without a
/// number that merely follows it (`IMEI 35… 2 phones`).
pub(super) fn labelled_device_number(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let mut range = range;
    loop {
        let found = &text[range.clone()];
        let count = found.bytes().filter(u8::is_ascii_hexdigit).count();
        if count < 8 {
            return None;
        }
        if count <= 18 {
            return Some(range);
        }
        let cut = found.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches([' ', '/', '-']);
        if cut.len() == found.len() || cut.is_empty() {
            return None;
        }
        range = range.start..range.start + cut.len();
    }
}

/// A web address carrying a credential: a user name or password before the
/// host, a secret-named parameter, a bot token in the path, or a long random
/// segment (share links work for whoever holds them). Trailing punctuation
/// belongs to the sentence.
pub(super) fn url_with_secret(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let found = text[range.clone()].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '*', '\'', '"']);
    let range = range.start..range.start + found.len();
    let rest = found.split_once("://").map_or(found, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Some(range);
    }
    let after_host = &rest[authority.len()..];
    let secret_param = after_host.split(['?', '&', '#', ';']).skip(1).any(|pair| {
        let name = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
        pair.contains('=') && SECRET_PARAMS.contains(&name.as_str())
    });
    let secret_segment = after_host.split(['/', '?', '&', '#', '=', ';']).any(|segment| {
        let bot_token = segment.strip_prefix("bot").is_some_and(|token| {
            token.split_once(':').is_some_and(|(id, key)| id.bytes().all(|b| b.is_ascii_digit()) && key.len() >= 30)
        });
        bot_token || segment.starts_with("eyJ") || looks_random(segment)
    });
    (secret_param || secret_segment).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_check_digits_only() {
        assert!(luhn("35-209900-176148-1"));
        assert!(luhn("4111 1111 1111 1111"));
        assert!(!luhn("35-209900-176148-2"));
        assert!(!luhn("7"));
    }
}
