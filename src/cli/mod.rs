//! `kubectl serin status` and `history`: read Canaries with the user's client, render
//! them ([`render`]), and keep re-rendering on changes with `--watch`.

pub mod decide;
pub mod liveness;
pub mod register;
pub mod render;
pub mod render_policy;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::crd::Canary;

/// How to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// The Canary status (one JSON document per line with --watch).
    Json,
    /// The Canary status (`---`-separated documents with --watch).
    Yaml,
}

/// What to show: one Canary, or every Canary of a namespace (`None`: all namespaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    One { namespace: String, name: String },
    List { namespace: Option<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("canary {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("watch: {0}")]
    Watch(#[from] watcher::Error),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding output: {0}")]
    Encode(String),
}

impl CliError {
    /// The reader of our output went away (`kubectl serin status -A | head`): not an
    /// error to report, the command just ends.
    pub fn reader_gone(&self) -> bool {
        matches!(self, CliError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Write a command's output: a rendered view (ending with its own newline) or a one-line
/// message; flushed, so a reader that went away is noticed here, as an error of kind
/// `BrokenPipe`, instead of a panic in `print!`.
pub fn write_output(out: &mut dyn Write, msg: &str) -> std::io::Result<()> {
    if msg.is_empty() {
        return Ok(());
    }
    out.write_all(msg.as_bytes())?;
    if !msg.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn api(client: &Client, namespace: Option<&str>) -> Api<Canary> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn get(client: &Client, namespace: &str, name: &str) -> Result<Canary, CliError> {
    api(client, Some(namespace))
        .get_opt(name)
        .await?
        .ok_or_else(|| CliError::NotFound {
            namespace: namespace.into(),
            name: name.into(),
        })
}

/// Read what `target` names once.
pub async fn fetch(client: &Client, target: &Target) -> Result<Vec<Canary>, CliError> {
    match target {
        Target::One { namespace, name } => Ok(vec![get(client, namespace, name).await?]),
        Target::List { namespace } => Ok(api(client, namespace.as_deref())
            .list(&Default::default())
            .await?
            .items),
    }
}

fn encode(v: &Value, output: Output) -> Result<String, CliError> {
    match output {
        Output::Json => serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Encode(e.to_string())),
        Output::Yaml | Output::Text => {
            serde_yaml::to_string(v).map_err(|e| CliError::Encode(e.to_string()))
        }
    }
}

/// The machine-readable view: one Canary's status, or `[{namespace, name, status,
/// liveness}]` ([`liveness::Liveness`] at `now`).
pub fn status_value(target: &Target, canaries: &[Canary], now: DateTime<Utc>) -> Value {
    let status = |c: &Canary| serde_json::to_value(&c.status).unwrap_or(Value::Null);
    match target {
        Target::One { .. } => canaries.first().map(status).unwrap_or(Value::Null),
        Target::List { .. } => {
            let mut sorted: Vec<&Canary> = canaries.iter().collect();
            sorted.sort_by_key(|c| (c.namespace(), c.name_any()));
            Value::Array(
                sorted
                    .into_iter()
                    .map(|c| {
                        let live = serde_json::to_value(liveness::liveness(c, now))
                            .unwrap_or(Value::Null);
                        json!({"namespace": c.namespace(), "name": c.name_any(), "status": status(c), "liveness": live})
                    })
                    .collect(),
            )
        }
    }
}

/// One view of `target` as `output`.
pub fn frame(
    target: &Target,
    canaries: &[Canary],
    output: Output,
    now: DateTime<Utc>,
) -> Result<String, CliError> {
    match (output, target) {
        (Output::Text, Target::One { namespace, name }) => Ok(match canaries.first() {
            Some(c) => render::render_status(c, now),
            None => format!("canary {namespace}/{name} not found (deleted?)\n"),
        }),
        (Output::Text, Target::List { namespace }) => Ok(if canaries.is_empty() {
            render::no_canaries(namespace.as_deref())
        } else {
            render::render_list(canaries, namespace.is_none(), now)
        }),
        (_, _) => encode(&status_value(target, canaries, now), output),
    }
}

/// `kubectl serin status` without `--watch`.
pub async fn status(
    client: &Client,
    target: &Target,
    output: Output,
    now: DateTime<Utc>,
) -> Result<String, CliError> {
    let canaries = fetch(client, target).await?;
    frame(target, &canaries, output, now)
}

/// `kubectl serin history NAME`: ended releases, newest first.
pub async fn history(
    client: &Client,
    namespace: &str,
    name: &str,
    output: Output,
    now: DateTime<Utc>,
) -> Result<String, CliError> {
    let c = get(client, namespace, name).await?;
    match output {
        Output::Text => Ok(render::render_history(&c, now)),
        _ => {
            let mut h = c.status.map(|s| s.history).unwrap_or_default();
            h.reverse();
            encode(&serde_json::to_value(h).unwrap_or(Value::Null), output)
        }
    }
}

/// How `--watch` draws.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub output: Output,
    /// Clear and redraw in place (stdout is a terminal); otherwise append each change.
    pub redraw: bool,
    /// Redraw this often even without changes, so clocks advance (redraw mode only).
    pub tick: Duration,
}

/// Clear the screen and move the cursor home.
pub const CLEAR: &str = "\x1b[H\x1b[2J";

struct Drawer<'a> {
    target: &'a Target,
    opts: &'a WatchOptions,
    last: Option<String>,
}

impl Drawer<'_> {
    fn draw(
        &mut self,
        store: &BTreeMap<(String, String), Canary>,
        out: &mut dyn Write,
        now: DateTime<Utc>,
    ) -> Result<(), CliError> {
        let canaries: Vec<Canary> = store.values().cloned().collect();
        let text = frame(self.target, &canaries, self.opts.output, now)?;
        if self.last.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        match self.opts.output {
            Output::Json => {
                // One document per line.
                let v = status_value(self.target, &canaries, now);
                let line =
                    serde_json::to_string(&v).map_err(|e| CliError::Encode(e.to_string()))?;
                writeln!(out, "{line}")?;
            }
            Output::Yaml => write!(out, "---\n{text}")?,
            Output::Text if self.opts.redraw => write!(out, "{CLEAR}{text}")?,
            Output::Text => {
                if self.last.is_some() {
                    writeln!(out)?;
                }
                out.write_all(text.as_bytes())?;
            }
        }
        out.flush()?;
        self.last = Some(text);
        Ok(())
    }
}

fn key(c: &Canary) -> (String, String) {
    (c.namespace().unwrap_or_default(), c.name_any())
}

/// A watch whose reader went away ends there, quietly.
fn quiet_if_reader_gone(e: CliError) -> Result<(), CliError> {
    if e.reader_gone() {
        Ok(())
    } else {
        Err(e)
    }
}

/// `--watch`: draw `target` once the watch has listed it, again on every change (and
/// every `tick` when redrawing in place), until `stop` completes. Watch errors are
/// reported on `err` and retried with backoff, as kubectl does.
pub async fn watch(
    client: &Client,
    target: &Target,
    opts: &WatchOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    stop: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let (namespace, config) = match target {
        Target::One { namespace, name } => (
            Some(namespace.as_str()),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        ),
        Target::List { namespace } => (namespace.as_deref(), watcher::Config::default()),
    };
    let stream = watcher::watcher(api(client, namespace), config).default_backoff();
    futures::pin_mut!(stream);
    futures::pin_mut!(stop);
    let mut store = BTreeMap::new();
    let mut listing: Option<BTreeMap<(String, String), Canary>> = None;
    let mut synced = false;
    let mut drawer = Drawer {
        target,
        opts,
        last: None,
    };
    let mut tick = tokio::time::interval(opts.tick.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ticking = opts.redraw && opts.output == Output::Text;
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tick.tick(), if synced && ticking => {
                if let Err(e) = drawer.draw(&store, out, Utc::now()) {
                    return quiet_if_reader_gone(e);
                }
            }
            ev = stream.next() => {
                let Some(ev) = ev else { return Ok(()) };
                match ev {
                    Err(e) => {
                        let _ = writeln!(err, "warning: watch failed, retrying: {e}");
                        continue;
                    }
                    Ok(Event::Init) => listing = Some(BTreeMap::new()),
                    Ok(Event::InitApply(c)) => {
                        listing.get_or_insert_with(BTreeMap::new).insert(key(&c), c);
                    }
                    Ok(Event::InitDone) => {
                        store = listing.take().unwrap_or_default();
                        if !synced {
                            if let (Target::One { namespace, name }, true) = (target, store.is_empty()) {
                                return Err(CliError::NotFound {
                                    namespace: namespace.clone(),
                                    name: name.clone(),
                                });
                            }
                        }
                        synced = true;
                    }
                    Ok(Event::Apply(c)) => {
                        store.insert(key(&c), c);
                    }
                    Ok(Event::Delete(c)) => {
                        store.remove(&key(&c));
                    }
                }
                if synced {
                    if let Err(e) = drawer.draw(&store, out, Utc::now()) {
                        return quiet_if_reader_gone(e);
                    }
                }
            }
        }
    }
}
