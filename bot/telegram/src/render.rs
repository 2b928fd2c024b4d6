//! The core's markup as Telegram HTML. Every span is escaped, so nothing a
//! user pasted can break parsing ("can't parse entities") or inject a tag;
//! long replies are split at paragraph boundaries within Telegram's limit.

use fixbot_core::markup::{Markup, Style, escape_html};

/// Telegram's limit for a message, in UTF-16 code units after entity parsing.
pub const MAX_MESSAGE_UNITS: usize = 4096;
/// Telegram's limit for the buttons of one inline keyboard.
pub const MAX_BUTTONS: usize = 100;
/// Telegram's limit for a button's callback data, in bytes.
pub const MAX_CALLBACK_BYTES: usize = 64;

/// Renders `markup` as Telegram HTML (`parse_mode = HTML`).
pub fn to_html(markup: &Markup) -> String {
    let mut html = String::new();
    for span in &markup.spans {
        let text = escape_html(&span.text);
        match &span.style {
            Style::Plain => html.push_str(&text),
            Style::Bold => html.push_str(&format!("<b>{text}</b>")),
            Style::Code => html.push_str(&format!("<code>{text}</code>")),
            Style::Link(url) => html.push_str(&format!("<a href=\"{}\">{text}</a>", escape_html(url))),
        }
    }
    html
}

/// Splits `markup` into messages within Telegram's limit, which counts
/// UTF-16 units of the text after entity parsing: tags and link targets cost nothing.
pub fn split(markup: &Markup) -> Vec<Markup> {
    markup.split(MAX_MESSAGE_UNITS, |_, c| c.len_utf16(), |_| 0)
}

#[cfg(test)]
mod tests {
    use fixbot_core::markup::Span;

    use super::*;

    fn span(style: Style, text: &str) -> Span {
        Span { style, text: text.to_owned() }
    }

    #[test]
    fn escapes_every_span() {
        let markup = Markup {
            spans: vec![
                span(Style::Plain, "a <b>&</b> "),
                span(Style::Bold, "<script>"),
                span(Style::Code, "x&y"),
                span(Style::Link("https://e.test/?a=1&b=\"2\"".into()), "<link>"),
            ],
        };
        assert_eq!(
            to_html(&markup),
            "a &lt;b&gt;&amp;&lt;/b&gt; <b>&lt;script&gt;</b><code>x&amp;y</code><a href=\"https://e.test/?a=1&amp;b=&quot;2&quot;\">&lt;link&gt;</a>"
        );
    }

    #[test]
    fn splits_at_paragraphs_within_the_limit() {
        let paragraph = "word ".repeat(300);
        let text = format!("{paragraph}\n\n{paragraph}\n\n{paragraph}");
        let markup = Markup { spans: vec![span(Style::Plain, &text)] };
        let parts = split(&markup);
        assert_eq!(parts.len(), 2);
        for part in &parts {
            let units: usize = part.spans.iter().map(|s| s.text.encode_utf16().count()).sum();
            assert!(units <= MAX_MESSAGE_UNITS);
        }
        assert!(parts[0].spans[0].text.ends_with("word "));
        assert!(parts[1].spans[0].text.starts_with("word"));
    }

    #[test]
    fn splits_a_single_huge_word_and_counts_utf16() {
        let markup = Markup { spans: vec![span(Style::Bold, &"😀".repeat(3000))] };
        let parts = split(&markup);
        assert_eq!(parts.len(), 2, "6000 UTF-16 units need two messages");
        assert!(parts.iter().all(|part| part.spans[0].style == Style::Bold));
        assert_eq!(parts[0].spans[0].text.chars().count(), 2048);
    }

    #[test]
    fn short_messages_are_one_part() {
        let markup = Markup::plain("hi");
        assert_eq!(split(&markup), vec![markup]);
    }
}
