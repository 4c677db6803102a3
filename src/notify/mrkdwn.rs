//! Slack mrkdwn escaping for text serin does not control (names, messages, metric
//! reasons, who decided): Slack reads `<...>` as a link, a mention (`<@U…>`), or a
//! broadcast (`<!channel>`, `<!here>`), so a tenant's text could ping a whole shared
//! channel or show a link under a harmless label (`<http://evil|click>`). Slack's rule:
//! replace `&`, `<` and `>` by `&amp;`, `&lt;` and `&gt;`; nothing else needs it, and
//! with no `<` left there is no link, mention or broadcast syntax at all.

/// `text` with Slack's three control characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as inline code: escaped, and without backticks that would end the span early.
pub fn code(text: &str) -> String {
    format!("`{}`", escape(&text.replace('`', "'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(
            escape("<!channel> <http://evil.example|click> & <@U123> *bold*"),
            "&lt;!channel&gt; &lt;http://evil.example|click&gt; &amp; &lt;@U123&gt; *bold*"
        );
        // Already-escaped text is escaped again: it is shown as typed, never decoded.
        assert_eq!(escape("&lt;"), "&amp;lt;");
        assert_eq!(code("a`<!here>`b"), "`a'&lt;!here&gt;'b`");
    }
}
