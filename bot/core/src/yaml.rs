//! The one place YAML is parsed. We use serde-saphyr: serde_yaml is archived
//! and sits on an unmaintained C-port parser, while serde-saphyr is pure Rust,
//! free of unsafe code, and reports precise line numbers.

use serde::de::DeserializeOwned;

pub use serde_saphyr::Spanned;

/// A YAML document that did not parse into the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line of the offending node, 0 when unknown.
    pub line: u64,
    /// One-line reason, e.g. "unknown field `txt`, expected one of id, text".
    pub message: String,
}

/// Parses `source` into `T`, rejecting unknown keys where `T` asks for it.
pub fn from_str<T: DeserializeOwned>(source: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str(source).map_err(|error| {
        let line = error.location().map_or(0, |location| location.line());
        // The Display form is "error: line L column C: reason" followed by a
        // source snippet; diagnostics want the reason alone.
        let full = error.to_string();
        let first = full.lines().next().unwrap_or_default();
        let message = first
            .strip_prefix("error: ")
            .unwrap_or(first)
            .split_once(": ")
            .filter(|(place, _)| place.starts_with("line "))
            .map_or(first, |(_, reason)| reason)
            .to_owned();
        YamlError { line, message }
    })
}

/// The 1-based line of a spanned value, 0 when the parser could not say.
pub fn line_of<T>(spanned: &Spanned<T>) -> u64 {
    spanned.referenced.line()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
    }

    #[test]
    fn errors_carry_line_and_a_one_line_reason() {
        let error = from_str::<Doc>("name: a\nnmae: b\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.starts_with("unknown field `nmae`"), "{}", error.message);
        assert!(!error.message.contains('\n'));
    }
}
