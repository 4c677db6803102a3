//! Where each `{{variable}}` of a PromQL template sits, and what a value may be there.
//!
//! Values are spliced into PromQL text, and arguments come from whoever writes the
//! Canary (or its Deployment's `serin.dev/analysis` annotation). So the template is
//! read once as PromQL, and every variable gets the place it stands in: inside a
//! quoted string its value is escaped; as a label name, a duration, a metric name or a
//! number it must have exactly that syntax. No value can close a string, a selector or
//! a bracket, so no value adds PromQL of its own.

use std::borrow::Cow;

use super::render::RenderError;

/// The place of a `{{variable}}` in a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Inside a `"…"` or `'…'` string: escaped. `regex` for the value of a `=~` or
    /// `!~` matcher.
    Quoted { quote: char, regex: bool },
    /// Inside a raw `` `…` `` string, which has no escapes.
    Raw { regex: bool },
    /// A label name: inside `{…}` outside strings, or in the list of `by`, `without`,
    /// `on`, `ignoring`, `group_left`, `group_right`. `part`: glued to other letters.
    LabelName { part: bool },
    /// A tag's value inside `{…}`, right after `tag:`, as Datadog writes its
    /// filters (`{kube_deployment:{{workload}}}`); never valid PromQL, so no PromQL
    /// template changes meaning. `part`: glued to other value characters.
    TagValue { part: bool },
    /// In `[…]` (a range or a subquery) or after `offset`.
    Duration { part: bool },
    /// A metric or function name: bare, right before `{`, `[` or `(`.
    Name,
    /// Part of a bare word: no space between it and a letter, digit, `_`, `:`, `.` or
    /// another variable.
    Word,
    /// Any other bare place: a number.
    Number,
    /// In a `#` comment (to the end of the line).
    Comment,
}

impl Position {
    pub fn describe(&self) -> &'static str {
        match self {
            Position::Quoted { regex: true, .. } | Position::Raw { regex: true } => {
                "a regex matcher's quoted value (=~ or !~)"
            }
            Position::Quoted { .. } | Position::Raw { .. } => "a quoted string",
            Position::LabelName { part: false } => "a label name position",
            Position::LabelName { part: true } => "part of a label name",
            Position::TagValue { part: false } => "a tag value position (tag:value inside {…})",
            Position::TagValue { part: true } => "part of a tag value",
            Position::Duration { part: false } => "a duration position ([…] or offset)",
            Position::Duration { part: true } => "part of a duration",
            Position::Name => "a metric or function name position",
            Position::Word => "part of a bare word",
            Position::Number => "a bare number position",
            Position::Comment => "a comment",
        }
    }

    pub fn accepted(&self) -> &'static str {
        match self {
            Position::Quoted { .. } => {
                "any text without control characters (quotes and backslashes are escaped)"
            }
            Position::Raw { .. } => "any text without a backtick",
            Position::LabelName { part: false } => "a label name matching [a-zA-Z_][a-zA-Z0-9_]*",
            Position::LabelName { part: true } => "letters, digits and _",
            Position::TagValue { .. } => "letters, digits, -, _ and . (e.g. a Kubernetes name)",
            Position::Duration { part: false } => {
                "a Prometheus duration such as 30s, 5m or 1h30m (units ms, s, m, h, d, w, y)"
            }
            Position::Duration { part: true } => "letters and digits",
            Position::Name => "a metric or function name matching [a-zA-Z_:][a-zA-Z0-9_:]*",
            Position::Word => "letters, digits, _, : and .",
            Position::Number => "a number such as 0.99, 5, -1 or 1e-3 (also Inf, NaN, 0x1f)",
            Position::Comment => "text without line breaks or control characters",
        }
    }

    /// `value` as it is written at this position, or `None` when it cannot stand here.
    /// `literal` values (the names serin fills in) are matched exactly by a regex
    /// matcher: their regex metacharacters are escaped. An argument in a regex matcher
    /// is a regex.
    pub fn place<'v>(&self, value: &'v str, literal: bool) -> Option<Cow<'v, str>> {
        let ok = |fits: bool| fits.then_some(Cow::Borrowed(value));
        match *self {
            Position::Quoted { quote, regex } => {
                let v = if regex && literal {
                    regex_escape(value)
                } else {
                    Cow::Borrowed(value)
                };
                quote_escape(&v, quote).map(Cow::Owned)
            }
            Position::Raw { regex } => {
                if value.contains('`') {
                    return None;
                }
                Some(if regex && literal {
                    regex_escape(value)
                } else {
                    Cow::Borrowed(value)
                })
            }
            Position::LabelName { part } => ok(is_label_name(value, part)),
            Position::TagValue { part } => {
                ok((part || !value.is_empty()) && value.chars().all(|c| is_tag_char(Some(c))))
            }
            Position::Duration { part: false } => ok(is_duration(value)),
            Position::Duration { part: true } => {
                ok(!value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric()))
            }
            Position::Name => ok(is_metric_name(value)),
            Position::Word => ok(value.chars().all(|c| is_bare_word(Some(c)))),
            Position::Number => ok(is_number(value)),
            Position::Comment => ok(!value.chars().any(char::is_control)),
        }
    }
}

/// A query cut into literal text and variables, each with its position.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece<'a> {
    Text(&'a str),
    Var { name: &'a str, position: Position },
}

/// Cut `query` at its `{{ name }}`s and find where each stands.
pub fn parse(query: &str) -> Result<Vec<Piece<'_>>, RenderError> {
    enum Raw<'a> {
        Text(&'a str),
        Var(&'a str),
    }
    let mut raw = Vec::new();
    let mut rest = query;
    let mut offset = 0;
    while let Some(mut start) = rest.find("{{") {
        // `x{{{v}}`: a selector's brace, then the variable.
        while rest[start + 2..].starts_with('{') {
            start += 1;
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or(RenderError::Unclosed(offset + start))?;
        if start > 0 {
            raw.push(Raw::Text(&rest[..start]));
        }
        raw.push(Raw::Var(after[..end].trim()));
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    if !rest.is_empty() {
        raw.push(Raw::Text(rest));
    }
    let mut lexer = Lexer::default();
    let mut out = Vec::with_capacity(raw.len());
    for (i, piece) in raw.iter().enumerate() {
        match piece {
            Raw::Text(t) => {
                t.chars().for_each(|c| lexer.feed(c));
                out.push(Piece::Text(t));
            }
            Raw::Var(name) => {
                // What follows: the next text's characters; another variable reads as a word.
                let next: String = match raw.get(i + 1) {
                    Some(Raw::Text(t)) => t.chars().take(64).collect(),
                    Some(Raw::Var(_)) => "x".into(),
                    None => String::new(),
                };
                let position = lexer.position(&next).ok_or_else(|| RenderError::Escaped {
                    variable: name.to_string(),
                })?;
                lexer.variable();
                out.push(Piece::Var { name, position });
            }
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Open {
    Brace,
    Bracket,
    Paren { grouping: bool },
}

/// Keywords whose parenthesized list holds label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Just enough of PromQL's lexer to know the place of a variable.
#[derive(Default)]
struct Lexer {
    stack: Vec<Open>,
    /// Inside a string: its quote and whether it is a regex matcher's value.
    string: Option<(char, bool)>,
    /// Inside a string, right after an escaping backslash.
    escaped: bool,
    comment: bool,
    /// The current word (lowercased; a variable reads as NUL), empty outside one.
    word: String,
    /// The last word, while only whitespace followed it.
    last_word: Option<String>,
    /// The last two characters outside strings that were not whitespace.
    sig: [char; 2],
    /// The character before the current one (a variable reads as 'x').
    prev: Option<char>,
}

fn is_bare_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.'))
}

fn is_label_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a tag value may hold: nothing that ends the tag (`,`, `}`, space), negates or
/// widens it (`!`, `*`) or starts a string.
fn is_tag_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_alnum(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric())
}

impl Lexer {
    fn feed(&mut self, c: char) {
        self.step(c);
        self.prev = Some(c);
    }

    fn step(&mut self, c: char) {
        if self.comment {
            self.comment = c != '\n';
            return;
        }
        if let Some((quote, _)) = self.string {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' && quote != '`' {
                self.escaped = true;
            } else if c == quote {
                self.string = None;
                self.symbol(c);
            }
            return;
        }
        if is_bare_word(Some(c)) {
            self.word.push(c.to_ascii_lowercase());
            self.sig = [self.sig[1], c];
            return;
        }
        if !self.word.is_empty() {
            self.last_word = Some(std::mem::take(&mut self.word));
        }
        if c.is_whitespace() {
            return;
        }
        match c {
            '"' | '\'' | '`' => {
                let regex = matches!(self.sig, ['=' | '!', '~']);
                self.string = Some((c, regex));
            }
            '#' => self.comment = true,
            '{' => self.stack.push(Open::Brace),
            '[' => self.stack.push(Open::Bracket),
            '(' => {
                let grouping = self
                    .last_word
                    .as_deref()
                    .is_some_and(|w| GROUPING.contains(&w));
                self.stack.push(Open::Paren { grouping });
            }
            '}' | ']' | ')' => {
                self.stack.pop();
            }
            _ => {}
        }
        self.symbol(c);
    }

    fn symbol(&mut self, c: char) {
        self.last_word = None;
        self.sig = [self.sig[1], c];
    }

    /// A variable was just read: it is text inside strings, a word anywhere else.
    fn variable(&mut self) {
        if self.string.is_none() && !self.comment {
            self.word.push('\0');
            self.sig = [self.sig[1], 'x'];
        }
        self.prev = Some('x');
    }

    /// The position of a variable here, `next` being the text after it; `None` right
    /// after an escaping backslash (the value's first character would be escaped).
    fn position(&self, next: &str) -> Option<Position> {
        if self.comment {
            return Some(Position::Comment);
        }
        if let Some((quote, regex)) = self.string {
            if self.escaped {
                return None;
            }
            return Some(if quote == '`' {
                Position::Raw { regex }
            } else {
                Position::Quoted { quote, regex }
            });
        }
        let after = next.chars().next();
        let glued = |class: fn(Option<char>) -> bool| class(self.prev) || class(after);
        Some(match self.stack.last() {
            Some(Open::Bracket) => Position::Duration {
                part: glued(is_alnum),
            },
            Some(Open::Brace) if self.word.ends_with(':') => Position::TagValue {
                part: is_tag_char(after),
            },
            Some(Open::Brace) | Some(Open::Paren { grouping: true }) => Position::LabelName {
                part: glued(is_label_char),
            },
            _ if self.word.is_empty() && self.last_word.as_deref() == Some("offset") => {
                Position::Duration {
                    part: glued(is_alnum),
                }
            }
            _ if glued(is_bare_word) => Position::Word,
            _ if matches!(next.trim_start().chars().next(), Some('{' | '[' | '(')) => {
                Position::Name
            }
            _ => Position::Number,
        })
    }
}

/// `v` inside a string quoted with `quote`: backslashes, the quote and line breaks
/// escaped; `None` for other control characters.
fn quote_escape(v: &str, quote: char) -> Option<String> {
    let mut out = String::with_capacity(v.len() + 2);
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => return None,
            c => {
                if c == quote {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    Some(out)
}

/// `v` matched literally by an RE2 regex.
fn regex_escape(v: &str) -> Cow<'_, str> {
    const META: &str = "\\.+*?()|[]{}^$";
    if !v.chars().any(|c| META.contains(c)) {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 4);
    for c in v.chars() {
        if META.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn is_label_name(v: &str, part: bool) -> bool {
    let mut chars = v.chars();
    match chars.next() {
        None => part,
        Some(c) if !part && c.is_ascii_digit() => false,
        Some(c) => is_label_char(Some(c)) && chars.all(|c| is_label_char(Some(c))),
    }
}

fn is_metric_name(v: &str) -> bool {
    let mut chars = v.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '_' | ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':'))
}

/// Prometheus duration syntax: one or more `<digits><unit>`, e.g. `1h30m`.
pub fn is_duration(v: &str) -> bool {
    let mut rest = v;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// A PromQL number literal, optionally signed: decimal, hex, `Inf` or `NaN`.
pub fn is_number(v: &str) -> bool {
    let unsigned = v.strip_prefix(['+', '-']).unwrap_or(v);
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("nan") {
        return true;
    }
    if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && unsigned.parse::<f64>().is_ok_and(f64::is_finite)
}

#[cfg(test)]
#[path = "positions_tests.rs"]
mod tests;
