//! What the mock API server keeps about whole releases: which Canary each request
//! concerns, the requests of each release from its release write until the Canary's
//! status says `Succeeded`, and the time from each approval write to the next router
//! write of that Canary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use serde_json::{json, Value};

use super::mock_list::Selector;

/// The object a serin-made object is named after: `<name>-primary` and `<name>-canary`
/// belong to the Canary `<name>`.
pub fn base_name(name: &str) -> &str {
    name.strip_suffix("-primary")
        .or_else(|| name.strip_suffix("-canary"))
        .unwrap_or(name)
}

/// The Canary ("ns/name") a request concerns, if any: by the object's name for
/// Deployments, Services, Canaries, HPAs, ReplicaSets and Pods; ControllerRevisions
/// are named `<name>-primary-<revision>`; Events by the object they are about (the
/// `regarding`/`involvedObject` of the body, or of the Event created under that name);
/// lists by the values of their label selector. AnalysisTemplates, Leases, Namespaces
/// and the watchers' lists concern no one Canary (shared). `known` says whether a
/// Canary of that name exists (its Deployment does).
pub fn attribute(
    track: &Tracker,
    ns: Option<&str>,
    plural: &str,
    name: Option<&str>,
    selector: &Selector,
    body: &Value,
    known: impl Fn(&str, &str) -> bool,
) -> Option<String> {
    let ns = ns?;
    let candidate: Option<String> = match (plural, name) {
        (
            "deployments"
            | "services"
            | "canaries"
            | "horizontalpodautoscalers"
            | "replicasets"
            | "pods",
            Some(n),
        ) => Some(base_name(n).to_string()),
        ("controllerrevisions", Some(n)) => {
            n.rsplit_once('-').map(|(b, _)| base_name(b).to_string())
        }
        ("events", Some(n)) => return track.events.get(&format!("{ns}/{n}")).cloned(),
        ("events", None) => ["regarding", "involvedObject"]
            .iter()
            .find_map(|k| body[k]["name"].as_str())
            .map(|n| base_name(n).to_string()),
        (_, None) => selector
            .equal_values()
            .map(base_name)
            .find(|n| known(ns, n))
            .map(str::to_string),
        _ => None,
    };
    candidate
        .filter(|n| known(ns, n))
        .map(|n| format!("{ns}/{n}"))
}

struct Open {
    started: Instant,
    gated: bool,
    counts: BTreeMap<String, u64>,
}

/// Whole releases that finished: requests (total and by verb and resource) and
/// durations.
#[derive(Default)]
struct Finished {
    requests: Vec<u64>,
    seconds: Vec<f64>,
    by: BTreeMap<String, u64>,
}

impl Finished {
    fn add(&mut self, seconds: f64, counts: BTreeMap<String, u64>) {
        self.requests.push(counts.values().sum());
        self.seconds.push(seconds);
        for (k, n) in counts {
            *self.by.entry(k).or_default() += n;
        }
    }

    /// {count, mean, max, by (summed), median_s}.
    fn summary(&self) -> Value {
        let count = self.requests.len();
        let mean = self.requests.iter().sum::<u64>() as f64 / count.max(1) as f64;
        let mut secs = self.seconds.clone();
        secs.sort_by(f64::total_cmp);
        let median_s = super::figures::percentile(&secs, 0.5);
        json!({"count": count, "mean": mean, "max": self.requests.iter().max().copied().unwrap_or(0),
               "by": self.by, "median_s": median_s})
    }
}

#[derive(Default)]
pub struct Tracker {
    /// "ns/event-name" -> the Canary the Event is about.
    pub events: HashMap<String, String>,
    open: HashMap<String, Open>,
    /// Finished releases, ungated and gated apart. Summed here so that the measured
    /// process fetches a few numbers, not a record per release.
    ungated: Finished,
    gated_done: Finished,
    /// The Canaries that wait at approval gates.
    pub gated: HashSet<String>,
    /// Approval writes not yet followed by a router write, by Canary.
    approved_at: HashMap<String, Instant>,
    approvals: u64,
    /// Milliseconds from an approval write to the Canary's next router write.
    approval_to_route_ms: Vec<f64>,
}

impl Tracker {
    /// A request concerning `canary` (`what`: "VERB resource").
    pub fn request(&mut self, canary: &str, what: &str) {
        if let Some(r) = self.open.get_mut(canary) {
            *r.counts.entry(what.to_string()).or_default() += 1;
        }
    }

    pub fn released(&mut self, canary: String) {
        let gated = self.gated.contains(&canary);
        self.open.insert(
            canary,
            Open {
                started: Instant::now(),
                gated,
                counts: BTreeMap::new(),
            },
        );
    }

    pub fn in_flight(&self, canary: &str) -> bool {
        self.open.contains_key(canary)
    }

    /// The controller wrote the Canary's status, now in `phase`.
    pub fn status(&mut self, canary: &str, phase: &str) {
        if phase != "Succeeded" {
            return;
        }
        if let Some(r) = self.open.remove(canary) {
            let into = if r.gated {
                &mut self.gated_done
            } else {
                &mut self.ungated
            };
            into.add(r.started.elapsed().as_secs_f64(), r.counts);
        }
    }

    /// A human's approval record was written.
    pub fn approval(&mut self, canary: &str) {
        self.approvals += 1;
        self.approved_at.insert(canary.to_string(), Instant::now());
    }

    /// The router wrote the Canary's traffic split.
    pub fn routed(&mut self, canary: &str) {
        if let Some(t) = self.approved_at.remove(canary) {
            self.approval_to_route_ms
                .push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }

    pub fn summary(&self) -> Value {
        json!({"open": self.open.len(), "ungated": self.ungated.summary(),
               "gated": self.gated_done.summary(),
               "approvals": self.approvals, "approvals_unrouted": self.approved_at.len(),
               "approval_to_route_ms": self.approval_to_route_ms})
    }
}
