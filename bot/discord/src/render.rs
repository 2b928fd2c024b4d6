//! The core's markup as Discord markdown. User-supplied text is escaped, so
//! a paste cannot format, mask a link or render a mention; pings are stopped
//! separately by an empty `allowed_mentions` on every message.

use fixbot_core::markup::{Markup, Style};

/// Discord's limit for message content.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Discord's limit for the buttons of one message: five rows of five.
pub const MAX_BUTTONS: usize = 25;
/// Discord's limit for a button label.
pub const MAX_LABEL_CHARS: usize = 80;
/// Discord's limit for a button's custom id.
pub const MAX_CUSTOM_ID_CHARS: usize = 100;

/// Characters that mean something in Discord markdown somewhere in a line.
fn is_special(c: char) -> bool {
    matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '-' | '[' | ']' | '(' | ')' | '<' | '@' | ':')
}

/// Escapes every markdown character with a backslash.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_special(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Renders `markup` as Discord markdown.
pub fn to_markdown(markup: &Markup) -> String {
    let mut out = String::new();
    for span in &markup.spans {
        match &span.style {
            Style::Plain => out.push_str(&escape(&span.text)),
            Style::Bold => out.push_str(&format!("**{}**", escape(&span.text))),
            // A code span cannot escape a backtick; double delimiters allow single ones inside.
            Style::Code => out.push_str(&format!("`` {} ``", span.text.replace("``", "`\u{200B}`"))),
            // Angle brackets keep Discord from unfurling an embed under every link.
            Style::Link(url) => out.push_str(&format!("[{}](<{url}>)", escape(&span.text))),
        }
    }
    out
}

/// Splits `markup` into parts that render within Discord's limit: each part
/// is priced as [`to_markdown`] writes it, escapes, delimiters and link targets included.
pub fn split(markup: &Markup) -> Vec<Markup> {
    markup.split(MAX_CONTENT_CHARS, |_, c| if is_special(c) { 2 } else { 1 }, delimiters)
}

/// What [`to_markdown`] writes around a span of `style`.
fn delimiters(style: &Style) -> usize {
    match style {
        Style::Plain => 0,
        Style::Bold => "****".len(),
        Style::Code => "``  ``".len(),
        Style::Link(url) => "[](<>)".len() + url.chars().count(),
    }
}

#[cfg(test)]
mod tests {
    use fixbot_core::markup::Span;

    use super::*;

    #[test]
    fn escapes_markdown_mentions_and_links() {
        let markup = Markup {
            spans: vec![
                Span { style: Style::Plain, text: "@everyone <@&123> **x** [a](b) ".into() },
                Span { style: Style::Bold, text: "Settings → iCloud".into() },
                Span { style: Style::Code, text: "0xE80``".into() },
                Span { style: Style::Link("https://support.apple.com".into()), text: "status".into() },
            ],
        };
        let text = to_markdown(&markup);
        assert_eq!(
            text,
            "\\@everyone \\<\\@&123\\> \\*\\*x\\*\\* \\[a\\]\\(b\\) **Settings → iCloud**`` 0xE80`\u{200B}` ``[status](<https://support.apple.com>)"
        );
    }

    /// Link targets and delimiters were left out of the split's count, so a
    /// step of many links (or one after a long intro) rendered past 2,000
    /// characters and Discord refused it, though `fixbot check` passed the flow.
    /// Issue 7, found by the `flow_load` fuzz target's invariants.
    #[test]
    fn links_and_delimiters_count_when_splitting() {
        let mut markup = Markup::plain("It looks like this: ".repeat(10));
        for index in 0..60 {
            markup.push(Style::Link(format!("https://example.com/{}/{index:03}", "a".repeat(22))), "x");
            markup.push(Style::Plain, " ");
            markup.push(Style::Bold, "b");
            markup.push(Style::Code, "c");
        }
        let parts = split(&markup);
        assert!(parts.len() >= 2);
        for part in &parts {
            let chars = to_markdown(part).chars().count();
            assert!(chars <= MAX_CONTENT_CHARS, "a part renders as {chars} characters");
        }
        let short = Markup::plain("short");
        assert_eq!(split(&short), vec![short]);
    }

    #[test]
    fn split_parts_render_within_the_limit() {
        let text = "a-b*c ".repeat(700);
        let parts = split(&Markup::plain(text));
        assert!(parts.len() >= 3);
        assert!(parts.iter().all(|part| to_markdown(part).chars().count() <= MAX_CONTENT_CHARS));
    }
}
