//! What the mock API server's lists and watches honour, as a kube-apiserver does:
//! label selectors (equality, inequality, existence, `in`/`notin`), the field
//! selectors `metadata.name` and `metadata.namespace`, and paginated lists (`limit`
//! and an opaque `continue` token; every page of one list is served from the snapshot
//! the first page was cut from, at its resourceVersion, with `remainingItemCount`).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// One term of a label selector.
#[derive(Debug)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed `labelSelector` plus `fieldSelector` (both empty: everything matches).
#[derive(Debug, Default)]
pub struct Selector {
    labels: Vec<Term>,
    fields: Vec<(String, String, bool)>,
}

/// Split on commas outside parentheses.
fn terms(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn set(s: &str) -> Vec<String> {
    s.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(|v| v.trim().to_string())
        .collect()
}

impl Selector {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Selector {
        let labels = labels
            .map(terms)
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                if let Some((k, v)) = t.split_once("!=") {
                    Term::Ne(k.trim().into(), v.trim().into())
                } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                    Term::Eq(k.trim().into(), v.trim().into())
                } else if let Some((k, v)) = t.split_once(" notin ") {
                    Term::NotIn(k.trim().into(), set(v))
                } else if let Some((k, v)) = t.split_once(" in ") {
                    Term::In(k.trim().into(), set(v))
                } else if let Some(k) = t.strip_prefix('!') {
                    Term::Absent(k.trim().into())
                } else {
                    Term::Exists(t)
                }
            })
            .collect();
        let fields = fields
            .map(terms)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| {
                if let Some((k, v)) = t.split_once("!=") {
                    Some((k.trim().to_string(), v.trim().to_string(), false))
                } else {
                    let (k, v) = t.split_once("==").or_else(|| t.split_once('='))?;
                    Some((k.trim().to_string(), v.trim().to_string(), true))
                }
            })
            .collect();
        Selector { labels, fields }
    }

    /// The values the label selector asks for by equality (to say which Canary a
    /// request concerns).
    pub fn equal_values(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().filter_map(|t| match t {
            Term::Eq(_, v) => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn matches(&self, o: &Value) -> bool {
        let label = |k: &str| o["metadata"]["labels"][k].as_str();
        let labels_ok = self.labels.iter().all(|t| match t {
            Term::Eq(k, v) => label(k) == Some(v.as_str()),
            Term::Ne(k, v) => label(k) != Some(v.as_str()),
            Term::Exists(k) => label(k).is_some(),
            Term::Absent(k) => label(k).is_none(),
            Term::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Term::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
        });
        labels_ok
            && self.fields.iter().all(|(k, v, eq)| {
                let have = match k.as_str() {
                    "metadata.name" => o["metadata"]["name"].as_str(),
                    "metadata.namespace" => o["metadata"]["namespace"].as_str(),
                    // Unmodelled fields: a real server would refuse the selector;
                    // serin's controller asks for none.
                    _ => return true,
                };
                (have == Some(v.as_str())) == *eq
            })
    }
}

/// Every item of one list, shared by its pages.
type Items = Arc<Vec<Arc<Value>>>;

/// Lists cut into pages and not yet read to the end.
#[derive(Default)]
pub struct Snapshots {
    next_id: u64,
    /// id -> (resourceVersion of the list, every item of it)
    open: HashMap<u64, (u64, Items)>,
    /// Pages served of lists asked for with a `limit` (the watchers' lists): count,
    /// and the largest page (reset by the bench between phases).
    pub pages: u64,
    pub largest_page: usize,
}

/// A kube-apiserver keeps continue tokens for 5 minutes (etcd compaction); the mock
/// keeps this many open lists and forgets the oldest.
const OPEN_LISTS: usize = 64;

/// What one list request gets.
pub struct Page {
    pub rv: u64,
    pub items: Vec<Arc<Value>>,
    pub cont: Option<String>,
    pub remaining: usize,
}

pub enum PageError {
    /// 410 Gone: the token is unknown or expired.
    Expired,
    /// 400: not a token this server issued.
    Malformed,
}

impl Snapshots {
    /// The page of a list asked for with `limit` (0: no limit) and `cont`; `all` cuts
    /// the snapshot of a new list (called only when no token is given).
    pub fn page(
        &mut self,
        limit: usize,
        cont: Option<&str>,
        all: impl FnOnce() -> (u64, Vec<Arc<Value>>),
    ) -> Result<Page, PageError> {
        let (id, offset, rv, items) = match cont {
            Some(token) => {
                let (id, offset) = token
                    .strip_prefix("serin-bench:")
                    .and_then(|t| t.split_once(':'))
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<usize>().ok()?)))
                    .ok_or(PageError::Malformed)?;
                let (rv, items) = self.open.get(&id).cloned().ok_or(PageError::Expired)?;
                (id, offset, rv, items)
            }
            None => {
                let (rv, items) = all();
                if limit == 0 || items.len() <= limit {
                    if limit > 0 {
                        self.pages += 1;
                        self.largest_page = self.largest_page.max(items.len());
                    }
                    return Ok(Page {
                        rv,
                        items,
                        cont: None,
                        remaining: 0,
                    });
                }
                self.next_id += 1;
                let id = self.next_id;
                let items = Arc::new(items);
                self.open.insert(id, (rv, items.clone()));
                if self.open.len() > OPEN_LISTS {
                    let oldest = *self.open.keys().min().unwrap();
                    self.open.remove(&oldest);
                }
                (id, 0, rv, items)
            }
        };
        let limit = if limit == 0 { usize::MAX } else { limit };
        let end = offset.saturating_add(limit).min(items.len());
        let page: Vec<Arc<Value>> = items[offset.min(end)..end].to_vec();
        let remaining = items.len() - end;
        let cont = if remaining > 0 {
            Some(format!("serin-bench:{id}:{end}"))
        } else {
            self.open.remove(&id);
            None
        };
        if limit != usize::MAX {
            self.pages += 1;
            self.largest_page = self.largest_page.max(page.len());
        }
        Ok(Page {
            rv,
            items: page,
            cont,
            remaining,
        })
    }
}
