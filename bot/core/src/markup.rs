//! The small markup every bot reply is made of (bold, code, links, plain
//! text with line breaks) and the templates flows are written in.
//!
//! Authors write `**Settings → iCloud**`, `` `code` ``, `[label](https://…)`
//! and `{name|fallback}` slots. A template is parsed once at load time; filling
//! it inserts slot values as plain text, so nothing a user typed can become
//! markup. Each front-end renders [`Markup`] in its own syntax and escapes
//! every span.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How a span of text is shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "style", content = "href")]
pub enum Style {
    /// Ordinary text; line breaks are kept.
    Plain,
    /// Emphasised text, used for menu paths and button names.
    Bold,
    /// Monospace text, used for error codes.
    Code,
    /// A link to the URL it carries.
    Link(String),
}

/// One run of text in one style.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// How the text is shown.
    #[serde(flatten)]
    pub style: Style,
    /// The literal text, never interpreted as markup.
    pub text: String,
}

/// A formatted message body: a sequence of styled spans.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Markup {
    /// The spans in reading order.
    pub spans: Vec<Span>,
}

impl Markup {
    /// Plain text as a single span.
    pub fn plain(text: impl Into<String>) -> Markup {
        Markup { spans: vec![Span { style: Style::Plain, text: text.into() }] }
    }

    /// Appends a span, merging it into the previous one when the style matches.
    pub fn push(&mut self, style: Style, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(last) = self.spans.last_mut()
            && last.style == style
        {
            last.text.push_str(text);
            return;
        }
        self.spans.push(Span { style, text: text.to_owned() });
    }

    /// Appends another body after a blank line.
    pub fn append_paragraph(&mut self, other: Markup) {
        if !self.spans.is_empty() && !other.spans.is_empty() {
            self.push(Style::Plain, "\n\n");
        }
        for span in other.spans {
            self.push(span.style, &span.text);
        }
    }

    /// Renders without formatting: bold as is, code in backticks, links as
    /// `label (url)`. The console and the transcripts use this form.
    pub fn to_plain(&self) -> String {
        let mut out = String::new();
        for span in &self.spans {
            match &span.style {
                Style::Plain | Style::Bold => out.push_str(&span.text),
                Style::Code => {
                    let _ = write!(out, "`{}`", span.text);
                }
                Style::Link(url) if *url == span.text => out.push_str(url),
                Style::Link(url) => {
                    let _ = write!(out, "{} ({url})", span.text);
                }
            }
        }
        out
    }

    /// Splits into messages that cost at most `limit`, where `cost` prices
    /// each character in its style and `overhead` what one span of a style
    /// adds around its text, such as markdown delimiters or a link's target
    /// (platforms count differently). Breaks at paragraphs, then lines, then
    /// spaces; a styled span cut in two stays styled on both sides, and pays
    /// its overhead in both.
    pub fn split(
        &self,
        limit: usize,
        cost: impl Fn(&Style, char) -> usize,
        overhead: impl Fn(&Style) -> usize,
    ) -> Vec<Markup> {
        let chars: Vec<(&Style, char)> =
            self.spans.iter().flat_map(|span| span.text.chars().map(move |c| (&span.style, c))).collect();
        let whole = chars.iter().map(|&(style, c)| cost(style, c)).sum::<usize>()
            + self.spans.iter().map(|span| overhead(&span.style)).sum::<usize>();
        if whole <= limit {
            return vec![self.clone()];
        }
        // What character `index` adds to a part whose previous character is
        // `index - 1`: its own cost, and its span's overhead where one opens.
        let price = |index: usize, first: bool| {
            let (style, c) = chars[index];
            let opens = first || chars[index - 1].0 != style;
            cost(style, c) + if opens { overhead(style) } else { 0 }
        };
        let mut parts = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = start;
            let mut used = 0;
            while end < chars.len() && used + price(end, end == start) <= limit {
                used += price(end, end == start);
                end += 1;
            }
            // Never an empty part: a single character over the limit goes alone.
            end = end.max(start + 1);
            if end < chars.len() {
                let text: String = chars[start..end].iter().map(|&(_, c)| c).collect();
                let cut = [text.rfind("\n\n"), text.rfind('\n'), text.rfind(' ')]
                    .into_iter()
                    .flatten()
                    .find(|&byte| byte > 0)
                    .map(|byte| text[..byte].chars().count());
                if let Some(cut) = cut {
                    end = start + cut;
                }
            }
            let mut part = Markup::default();
            for &(style, c) in &chars[start..end] {
                part.push(style.clone(), c.encode_utf8(&mut [0; 4]));
            }
            for span in &mut part.spans {
                if span.style != Style::Plain {
                    // No message should end inside a style with only white space.
                    span.text = span.text.trim().to_owned();
                }
            }
            if part.spans.iter().any(|span| !span.text.trim().is_empty()) {
                parts.push(part);
            }
            start = end;
            // The break itself is not carried into the next message.
            while start < chars.len() && chars[start].1.is_whitespace() {
                start += 1;
            }
        }
        parts
    }

    /// Number of characters the plain rendering has; a lower bound for every
    /// front-end's rendering.
    pub fn char_count(&self) -> usize {
        self.spans.iter().map(|span| span.text.chars().count()).sum()
    }
}

/// A piece of a template span: literal text or a slot to fill.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Slot { name: String, fallback: Option<String> },
}

/// A parsed text with `{name|fallback}` slots, ready to be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    spans: Vec<(Style, Vec<Part>)>,
}

/// Longest text a captured value may bring into a reply; the matcher cuts
/// captures to this, so a reply stays within the platforms' limits whatever
/// the user pasted.
pub const MAX_SLOT_CHARS: usize = 64;

impl Template {
    /// Parses author text. Errors name the first construct that is not closed.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut spans: Vec<(Style, Vec<Part>)> = Vec::new();
        let mut style = Style::Plain;
        let mut parts: Vec<Part> = Vec::new();
        let mut literal = String::new();
        let mut rest = source;

        fn flush(literal: &mut String, parts: &mut Vec<Part>) {
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(literal)));
            }
        }
        fn close(spans: &mut Vec<(Style, Vec<Part>)>, style: Style, literal: &mut String, parts: &mut Vec<Part>) {
            flush(literal, parts);
            if !parts.is_empty() {
                spans.push((style, std::mem::take(parts)));
            }
        }

        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("**") {
                let next = if style == Style::Bold { Style::Plain } else { Style::Bold };
                close(&mut spans, std::mem::replace(&mut style, next), &mut literal, &mut parts);
                rest = after;
            } else if c == '`' && style == Style::Plain {
                let after = &rest[1..];
                let end = after.find('`').ok_or("a ` is not closed")?;
                close(&mut spans, Style::Plain, &mut literal, &mut parts);
                spans.push((Style::Code, vec![Part::Literal(after[..end].to_owned())]));
                rest = &after[end + 1..];
            } else if let Some((label, url, after)) = split_link(rest).filter(|_| style == Style::Plain) {
                close(&mut spans, Style::Plain, &mut literal, &mut parts);
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    return Err(format!("link `{url}` must start with https://"));
                }
                spans.push((Style::Link(url.to_owned()), parse_slots(label)?));
                rest = after;
            } else if let Some((slot, after)) = split_slot(rest) {
                flush(&mut literal, &mut parts);
                parts.push(slot);
                rest = after;
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if style == Style::Bold {
            return Err("a ** is not closed".to_owned());
        }
        close(&mut spans, style, &mut literal, &mut parts);
        Ok(Template { spans })
    }

    /// Names of the slots the template uses, with whether each has a fallback.
    pub fn slots(&self) -> impl Iterator<Item = (&str, bool)> {
        self.spans.iter().flat_map(|(_, parts)| parts).filter_map(|part| match part {
            Part::Slot { name, fallback } => Some((name.as_str(), fallback.is_some())),
            Part::Literal(_) => None,
        })
    }

    /// Fills the slots from `values`, or their fallbacks, or leaves them empty.
    pub fn fill(&self, values: &BTreeMap<String, String>) -> Markup {
        let mut markup = Markup::default();
        for (style, parts) in &self.spans {
            let mut text = String::new();
            for part in parts {
                match part {
                    Part::Literal(literal) => text.push_str(literal),
                    Part::Slot { name, fallback } => match values.get(name) {
                        Some(value) => text.push_str(value),
                        None => text.push_str(fallback.as_deref().unwrap_or("")),
                    },
                }
            }
            markup.push(style.clone(), &text);
        }
        markup
    }

    /// Fills the template with no values: slots take their fallbacks.
    pub fn render(&self) -> Markup {
        self.fill(&BTreeMap::new())
    }

    /// Length in characters of the longest text this template can produce.
    pub fn max_chars(&self) -> usize {
        let mut total = 0;
        for (style, parts) in &self.spans {
            for part in parts {
                total += match part {
                    Part::Literal(literal) => literal.chars().count(),
                    Part::Slot { fallback, .. } => {
                        MAX_SLOT_CHARS.max(fallback.as_deref().map_or(0, |f| f.chars().count()))
                    }
                };
            }
            if let Style::Link(url) = style {
                total += url.chars().count() + 3;
            }
        }
        total
    }
}

/// Splits `[label](url)` off the front of `text`.
fn split_link(text: &str) -> Option<(&str, &str, &str)> {
    let inner = text.strip_prefix('[')?;
    let close = inner.find(']')?;
    let after_label = inner[close + 1..].strip_prefix('(')?;
    let end = after_label.find(')')?;
    let url = &after_label[..end];
    if url.is_empty() || url.contains(char::is_whitespace) {
        return None;
    }
    Some((&inner[..close], url, &after_label[end + 1..]))
}

/// Splits a `{name}` or `{name|fallback}` slot off the front of `text`.
/// Anything else in braces is literal text.
fn split_slot(text: &str) -> Option<(Part, &str)> {
    let inner = text.strip_prefix('{')?;
    let end = inner.find('}')?;
    let body = &inner[..end];
    let (name, fallback) = match body.split_once('|') {
        Some((name, fallback)) => (name, Some(fallback.to_owned())),
        None => (body, None),
    };
    let is_name = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    is_name.then(|| (Part::Slot { name: name.to_owned(), fallback }, &inner[end + 1..]))
}

fn parse_slots(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some((slot, after)) = split_slot(rest) {
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(slot);
            rest = after;
        } else {
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

/// Escapes `text` for HTML wherever it goes: element content, quoted
/// attributes (both quotes), SVG, and Telegram's HTML parse mode (which
/// reads the numeric `&#39;` as an apostrophe).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_characters_and_both_quotes() {
        assert_eq!(escape_html("<b>\"Tom\" & 'Jerry'</b>"), "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;");
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_styles_links_and_literal_brackets() {
        let template =
            Template::parse("Open **Settings → [your name]**, see [status](https://apple.com) and `0xE80`.").unwrap();
        let markup = template.render();
        assert_eq!(
            markup.spans,
            vec![
                Span { style: Style::Plain, text: "Open ".into() },
                Span { style: Style::Bold, text: "Settings → [your name]".into() },
                Span { style: Style::Plain, text: ", see ".into() },
                Span { style: Style::Link("https://apple.com".into()), text: "status".into() },
                Span { style: Style::Plain, text: " and ".into() },
                Span { style: Style::Code, text: "0xE80".into() },
                Span { style: Style::Plain, text: ".".into() },
            ]
        );
        assert_eq!(markup.to_plain(), "Open Settings → [your name], see status (https://apple.com) and `0xE80`.");
    }

    #[test]
    fn slot_values_are_plain_text() {
        let template = Template::parse("Free **{needed|enough space}** now.").unwrap();
        assert_eq!(template.render().to_plain(), "Free enough space now.");
        let filled = template.fill(&values(&[("needed", "**5 GB** <b>")]));
        assert_eq!(filled.spans[1], Span { style: Style::Bold, text: "**5 GB** <b>".into() });
    }

    #[test]
    fn unclosed_constructs_are_errors() {
        assert!(Template::parse("**bold").is_err());
        assert!(Template::parse("a `code").is_err());
        assert!(Template::parse("[x](ftp://a)").is_err());
        assert!(Template::parse("{not a slot} and {}").unwrap().slots().next().is_none());
    }

    #[test]
    fn max_chars_counts_slots_at_their_cap() {
        let template = Template::parse("ab{x|c}").unwrap();
        assert_eq!(template.max_chars(), 2 + MAX_SLOT_CHARS);
    }
}
