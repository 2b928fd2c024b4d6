//! Removes personal data from user text before anything is stored, logged or
//! matched: e-mail addresses, phone numbers, device identifiers, tokens and
//! home-directory names. Each kind is replaced by a bracketed tag, so an
//! error message keeps its shape and still diagnoses the same.

use std::sync::LazyLock;

use regex::Regex;

/// A kind of personal data, named in the tag that replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An e-mail address (Apple ID, Google account).
    Email,
    /// A URL parameter or bare string that looks like a secret.
    Token,
    /// A UDID, backup GUID or other long hex identifier.
    DeviceId,
    /// A 15-digit IMEI or 14-hex-digit MEID.
    Imei,
    /// An Apple serial number.
    Serial,
    /// A phone number.
    Phone,
    /// A user name inside a home-directory path.
    HomeDir,
}

impl Kind {
    /// The tag written in place of the data.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Email => "[email]",
            Kind::Token => "[token]",
            Kind::DeviceId => "[device-id]",
            Kind::Imei => "[imei]",
            Kind::Serial => "[serial]",
            Kind::Phone => "[phone]",
            Kind::HomeDir => "[user]",
        }
    }
}

/// Redacted text and the kinds that were removed, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The text with every finding replaced by its tag.
    pub text: String,
    /// Kinds found, each once.
    pub removed: Vec<Kind>,
}

struct Rule {
    kind: Kind,
    regex: Regex,
    /// Capture group holding the part to replace; 0 for the whole match.
    group: usize,
    /// Extra test on the found text, for shapes a regex cannot express alone.
    accept: fn(&str) -> bool,
}

fn always(_: &str) -> bool {
    true
}

fn has_letter_and_digit(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_alphabetic()) && text.chars().any(|c| c.is_ascii_digit())
}

/// Order matters: longer and more specific shapes first, so a token is not
/// half-eaten as a phone number.
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |kind, pattern: &str, group, accept| Rule { kind, regex: Regex::new(pattern).unwrap(), group, accept };
    vec![
        rule(Kind::Email, r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b", 0, always),
        rule(Kind::Token, r"(?i)\b(?:access_token|token|key|secret|password|passwd|pwd|auth)=([^&\s]+)", 1, always),
        rule(Kind::Token, r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b", 0, always),
        rule(Kind::Token, r"\b[A-Za-z0-9_\-]{32,}\b", 0, has_letter_and_digit),
        rule(Kind::DeviceId, r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", 0, always),
        rule(Kind::DeviceId, r"(?i)\b[0-9a-f]{8}-[0-9a-f]{16}\b", 0, always),
        rule(Kind::DeviceId, r"(?i)\b[0-9a-f]{40}\b", 0, always),
        rule(Kind::Imei, r"\b\d{2}[ -]?\d{6}[ -]?\d{6}[ -]?\d\b", 0, always),
        rule(Kind::Imei, r"(?i)\b(?:meid|imei)[:# ]*([0-9a-f]{14,15})\b", 1, always),
        rule(Kind::Serial, r"\b[A-Z0-9]{10,12}\b", 0, |s| has_letter_and_digit(s) && !s.starts_with("0X")),
        rule(Kind::Phone, r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}\b", 0, always),
        rule(Kind::Phone, r"\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b", 0, always),
        rule(
            Kind::HomeDir,
            r"(?i)(?:/Users/|/home/|[A-Z]:\\Users\\|[A-Z]:\\Documents and Settings\\)([^/\\\s]+)",
            1,
            always,
        ),
    ]
});

/// Replaces every personal datum in `text` with its tag.
pub fn redact(text: &str) -> Redacted {
    let mut current = text.to_owned();
    let mut removed = Vec::new();
    for rule in RULES.iter() {
        if !rule.regex.is_match(&current) {
            continue;
        }
        let mut out = String::with_capacity(current.len());
        let mut last = 0;
        for found in rule.regex.captures_iter(&current) {
            let Some(part) = found.get(rule.group) else { continue };
            if !(rule.accept)(part.as_str()) || part.as_str().starts_with('[') {
                continue;
            }
            out.push_str(&current[last..part.start()]);
            out.push_str(rule.kind.tag());
            last = part.end();
            if !removed.contains(&rule.kind) {
                removed.push(rule.kind);
            }
        }
        out.push_str(&current[last..]);
        current = out;
    }
    removed.sort();
    Redacted { text: current, removed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_each_kind() {
        let cases = [
            ("mail me at ann.smith+x@icloud.com please", "mail me at [email] please", Kind::Email),
            ("call +44 20 7946 0958 now", "call [phone] now", Kind::Phone),
            ("or (555) 123-4567", "or [phone]", Kind::Phone),
            ("IMEI 35 209900 176148 1", "IMEI [imei]", Kind::Imei),
            ("serial F2LXK0ABCDEF", "serial [serial]", Kind::Serial),
            ("udid 00008110-001A2B3C4D5E801E", "udid [device-id]", Kind::DeviceId),
            ("https://x.test/cb?token=abc123&x=1", "https://x.test/cb?token=[token]&x=1", Kind::Token),
            ("bot 123456789:AAHk2j3h4k5j6h7k8j9h0k1j2h3k4j5h6k7", "bot [token]", Kind::Token),
            (r"C:\Users\annsmith\Apple\MobileSync", r"C:\Users\[user]\Apple\MobileSync", Kind::HomeDir),
            (
                "/Users/ann/Library/Application Support/MobileSync",
                "/Users/[user]/Library/Application Support/MobileSync",
                Kind::HomeDir,
            ),
        ];
        for (input, expected, kind) in cases {
            let redacted = redact(input);
            assert_eq!(redacted.text, expected, "{input}");
            assert_eq!(redacted.removed, vec![kind], "{input}");
        }
    }

    #[test]
    fn keeps_what_diagnosis_needs() {
        for text in [
            "The last backup could not be completed.",
            "iTunes could not back up the iPhone because an unknown error occurred (-54). Error 0xE8000084",
            "Stuck at 43% since 2024-05-01 10:22, need 5.2 GB, iOS 17.4.1",
            "Not enough iCloud storage. 4.87 GB of 5 GB used",
        ] {
            assert_eq!(redact(text).text, text);
        }
    }
}
