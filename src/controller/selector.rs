//! Label selectors as `kubectl -l` and the API server parse them. kube passes selector
//! strings through to the API server unchecked, so a typo would only show up as a watch
//! failing at runtime; [`parse_selector`] checks them at startup with the same grammar.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kube::core::{Expression, Selector, SelectorExt};

/// A label selector, checked and in canonical order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    /// Requirements, sorted (so the same selector written two ways is one value).
    exprs: Vec<Expression>,
}

impl LabelSelector {
    pub fn selector(&self) -> Selector {
        self.exprs.iter().cloned().collect()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.exprs.iter().all(|e| e.matches(labels))
    }

    /// Selects everything.
    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    /// The label keys the selector reads.
    pub fn keys(&self) -> BTreeSet<&str> {
        self.exprs
            .iter()
            .map(|e| match e {
                Expression::In(k, _)
                | Expression::NotIn(k, _)
                | Expression::Equal(k, _)
                | Expression::NotEqual(k, _)
                | Expression::Exists(k)
                | Expression::DoesNotExist(k) => k.as_str(),
            })
            .collect()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.selector().fmt(f)
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, SelectorError> {
        parse_selector(s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("label selector {selector:?}: {message}")]
pub struct SelectorError {
    pub selector: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Comma,
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Open,
    Close,
    Gt,
    Lt,
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "the end".into(),
        Some(Token::Ident(s)) => format!("{s:?}"),
        Some(Token::Comma) => "\",\"".into(),
        Some(Token::Eq) => "\"=\"".into(),
        Some(Token::DoubleEq) => "\"==\"".into(),
        Some(Token::NotEq) => "\"!=\"".into(),
        Some(Token::Bang) => "\"!\"".into(),
        Some(Token::Open) => "\"(\"".into(),
        Some(Token::Close) => "\")\"".into(),
        Some(Token::Gt) => "\">\"".into(),
        Some(Token::Lt) => "\"<\"".into(),
    }
}

fn lex(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            ',' => out.push(Token::Comma),
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            '>' => out.push(Token::Gt),
            '<' => out.push(Token::Lt),
            '=' if chars.peek() == Some(&'=') => {
                chars.next();
                out.push(Token::DoubleEq);
            }
            '=' => out.push(Token::Eq),
            '!' if chars.peek() == Some(&'=') => {
                chars.next();
                out.push(Token::NotEq);
            }
            '!' => out.push(Token::Bang),
            c => {
                let mut id = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || ",()<>=!".contains(n) {
                        break;
                    }
                    id.push(n);
                    chars.next();
                }
                out.push(Token::Ident(id));
            }
        }
    }
    out
}

fn is_name(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn check_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Err(format!(
                "key {k:?}: the prefix {p:?} must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
            ));
        }
    }
    if !is_name(name, 63) {
        return Err(format!(
            "key {k:?}: the name must be 1-63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn check_value(k: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || is_name(v, 63) {
        Ok(())
    } else {
        Err(format!(
            "value {v:?} of {k:?}: a label value is at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// Parse a label selector as `kubectl -l` and the API server do: comma-separated
/// requirements `key`, `!key`, `key=value`, `key==value`, `key!=value`,
/// `key in (a,b)`, `key notin (a,b)`. The numeric `>`/`<` operators are refused (kube's
/// selector type has no such requirement). An empty string selects everything.
pub fn parse_selector(s: &str) -> Result<LabelSelector, SelectorError> {
    let fail = |message: String| SelectorError {
        selector: s.to_string(),
        message,
    };
    let tokens = lex(s);
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let negated = tokens[i] == Token::Bang;
        if negated {
            i += 1;
        }
        let key = match tokens.get(i) {
            Some(Token::Ident(k)) => k.clone(),
            other => {
                return Err(fail(format!(
                    "expected a label key, found {}",
                    describe(other)
                )))
            }
        };
        check_key(&key).map_err(fail)?;
        i += 1;
        let op = tokens.get(i).filter(|t| **t != Token::Comma);
        let expr = match (negated, op) {
            (true, None) => Expression::DoesNotExist(key),
            (true, Some(t)) => {
                return Err(fail(format!(
                    "\"!{key}\" (key does not exist) takes no operator, found {}",
                    describe(Some(t))
                )))
            }
            (false, None) => Expression::Exists(key),
            (false, Some(Token::Eq | Token::DoubleEq | Token::NotEq)) => {
                let not = tokens[i] == Token::NotEq;
                i += 1;
                let value = match tokens.get(i) {
                    Some(Token::Ident(v)) => {
                        i += 1;
                        v.clone()
                    }
                    None | Some(Token::Comma) => String::new(),
                    other => {
                        return Err(fail(format!(
                            "expected a value for {key:?}, found {}",
                            describe(other)
                        )))
                    }
                };
                check_value(&key, &value).map_err(fail)?;
                if not {
                    Expression::NotEqual(key, value)
                } else {
                    Expression::Equal(key, value)
                }
            }
            (false, Some(Token::Ident(w))) if w == "in" || w == "notin" => {
                let not_in = w == "notin";
                i += 1;
                if tokens.get(i) != Some(&Token::Open) {
                    return Err(fail(format!(
                        "expected \"(\" after \"{key} {w}\", found {}",
                        describe(tokens.get(i))
                    )));
                }
                i += 1;
                let mut values = BTreeSet::new();
                loop {
                    match tokens.get(i) {
                        Some(Token::Ident(v)) => {
                            check_value(&key, v).map_err(fail)?;
                            values.insert(v.clone());
                            i += 1;
                        }
                        // `in (a,,b)` and `in (,a)` mean the empty value, as upstream.
                        Some(Token::Comma | Token::Close) => {
                            values.insert(String::new());
                        }
                        other => {
                            return Err(fail(format!(
                                "expected a value in the set of {key:?}, found {}",
                                describe(other)
                            )))
                        }
                    }
                    match tokens.get(i) {
                        Some(Token::Comma) => i += 1,
                        Some(Token::Close) => {
                            i += 1;
                            break;
                        }
                        other => {
                            return Err(fail(format!(
                                "expected \",\" or \")\" in the set of {key:?}, found {}",
                                describe(other)
                            )))
                        }
                    }
                }
                // Upstream reads `in ()` as the empty value; that is almost always a
                // mistake in a shard flag, so it is refused here (`in (,)` still works).
                if values.len() == 1 && values.contains("") && tokens[i - 2] == Token::Open {
                    return Err(fail(format!(
                        "the set of values of {key:?} is empty; \"{w}\" needs at least one value"
                    )));
                }
                if not_in {
                    Expression::NotIn(key, values)
                } else {
                    Expression::In(key, values)
                }
            }
            (false, Some(Token::Gt | Token::Lt)) => {
                return Err(fail(format!(
                    "the numeric operators > and < are not supported (in {key:?}); use =, !=, in, notin, or the key alone"
                )))
            }
            (false, Some(t)) => {
                return Err(fail(format!(
                    "expected an operator (=, ==, !=, in, notin) or \",\" after {key:?}, found {}",
                    describe(Some(t))
                )))
            }
        };
        exprs.push(expr);
        match tokens.get(i) {
            None => {}
            Some(Token::Comma) => {
                i += 1;
                if i == tokens.len() {
                    return Err(fail(
                        "trailing \",\": expected a requirement after it".into(),
                    ));
                }
            }
            other => {
                return Err(fail(format!(
                    "expected \",\" between requirements, found {}",
                    describe(other)
                )))
            }
        }
    }
    exprs.sort();
    exprs.dedup();
    Ok(LabelSelector { exprs })
}
