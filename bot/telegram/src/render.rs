//! The core's markup as Telegram HTML. Every span is escaped, so nothing a
//! user pasted can break parsing ("can't parse entities") or inject a tag;
//! long replies are split at paragraph boundaries within Telegram's limit.

use fixbot_core::markup::{Markup, Span, Style};

/// Telegram's limit for a message, in UTF-16 code units after entity parsing.
pub const MAX_MESSAGE_UNITS: usize = 4096;

/// Renders `markup` as Telegram HTML (`parse_mode = HTML`).
pub fn to_html(markup: &Markup) -> String {
    let mut html = String::new();
    for span in &markup.spans {
        let text = escape(&span.text);
        match &span.style {
            Style::Plain => html.push_str(&text),
            Style::Bold => html.push_str(&format!("<b>{text}</b>")),
            Style::Code => html.push_str(&format!("<code>{text}</code>")),
            Style::Link(url) => html.push_str(&format!("<a href=\"{}\">{text}</a>", escape(url))),
        }
    }
    html
}

/// Escapes the three characters Telegram's HTML parser treats specially, and
/// the quote for attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Splits `markup` into messages of at most `limit` UTF-16 units of text,
/// preferring paragraph breaks, then line breaks, then spaces.
pub fn split(markup: &Markup, limit: usize) -> Vec<Markup> {
    let units = |text: &str| text.encode_utf16().count();
    let total: usize = markup.spans.iter().map(|span| units(&span.text)).sum();
    if total <= limit {
        return vec![markup.clone()];
    }
    // Flatten to (style, char) runs cut at the best break before each limit.
    let chars: Vec<(usize, char)> =
        markup.spans.iter().enumerate().flat_map(|(index, span)| span.text.chars().map(move |c| (index, c))).collect();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = start;
        let mut used = 0;
        while end < chars.len() && used + chars[end].1.len_utf16() <= limit {
            used += chars[end].1.len_utf16();
            end += 1;
        }
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
        parts.push(to_markup(markup, &chars[start..end]));
        start = end;
        // The break itself is not carried into the next message.
        while start < chars.len() && chars[start].1.is_whitespace() {
            start += 1;
        }
    }
    parts.retain(|part| part.spans.iter().any(|span| !span.text.trim().is_empty()));
    parts
}

fn to_markup(source: &Markup, chars: &[(usize, char)]) -> Markup {
    let mut markup = Markup::default();
    for &(index, c) in chars {
        let style = source.spans[index].style.clone();
        match markup.spans.last_mut() {
            Some(Span { style: last, text }) if *last == style => text.push(c),
            _ => markup.spans.push(Span { style, text: c.to_string() }),
        }
    }
    for span in &mut markup.spans {
        if span.style == Style::Plain {
            continue;
        }
        // A styled span cut in two stays styled on both sides; trim its edges
        // so no message ends inside a tag with only white space.
        span.text = span.text.trim().to_owned();
    }
    markup
}

#[cfg(test)]
mod tests {
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
        let parts = split(&markup, MAX_MESSAGE_UNITS);
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
        let parts = split(&markup, MAX_MESSAGE_UNITS);
        assert_eq!(parts.len(), 2, "6000 UTF-16 units need two messages");
        assert!(parts.iter().all(|part| part.spans[0].style == Style::Bold));
        assert_eq!(parts[0].spans[0].text.chars().count(), 2048);
    }

    #[test]
    fn short_messages_are_one_part() {
        let markup = Markup::plain("hi");
        assert_eq!(split(&markup, MAX_MESSAGE_UNITS), vec![markup]);
    }
}
