//! Canary status writes: one server-side apply per reconcile on the status subresource.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::crd::{
    condition_type, find_condition, set_condition, Canary, CanaryStatus, Condition, FIELD_MANAGER,
};
use crate::rollout::text::{bound_status, one_line, MESSAGE_MAX_CHARS};
use crate::rollout::EventReason;

/// The apply body for `status`. What the approval API writes (`approvals`,
/// `commands`, `emergencyOverride`) is left out: other field managers own it, and a
/// forced apply sending it would take it over (and could later drop or resurrect it). `resourceVersion` makes the write
/// conditional, so a status computed from a stale read is refused (409) and redone.
///
/// Free texts are bounded here too ([`bound_status`]), so no path that builds a status
/// outside the rollout core (a config problem) can write an unbounded message.
pub fn status_apply_body(canary: &Canary, status: &CanaryStatus) -> Value {
    let mut bounded = status.clone();
    bound_status(&mut bounded);
    let mut s = serde_json::to_value(&bounded).unwrap_or_else(|_| json!({}));
    if let Some(obj) = s.as_object_mut() {
        obj.remove("approvals");
        obj.remove("commands");
        obj.remove("emergencyOverride");
    }
    json!({
        "apiVersion": "serin.dev/v1alpha1",
        "kind": "Canary",
        "metadata": {
            "name": canary.name_any(),
            "namespace": canary.namespace(),
            "resourceVersion": canary.resource_version(),
        },
        "status": s,
    })
}

/// Each Canary as this controller last wrote (or read) it, until the watch cache has
/// that version. A reconcile uses the cached copy when it is at that version or later (the
/// watch brought our write, or someone's after it), the written copy while the cache is
/// older, and reads the Canary when neither can be told (versions that are not numbers,
/// a cache older than our write once our copy is gone, the retry after a conflict). Every status write carries
/// its resourceVersion, so even a stale copy could not be acted on: it would be refused
/// (409) and redone.
///
/// A Canary this process has not written is taken from the cache. The watches start
/// only once this replica holds the Lease, after the previous leader's fence closed
/// (`fence.rs`), so the list behind the cache has every write that leader made; later
/// writes by anyone else arrive by the watch, as for any Canary whose write the cache
/// has caught up with. Reading each one instead cost a GET per Canary after every
/// restart (10,000 in the first seconds at 10,000 Canaries).
#[derive(Debug, Default)]
pub struct WrittenVersions(Mutex<ByNamespace>);

/// Namespace, then name: an entry per Canary that was ever written, kept compact.
type ByNamespace = HashMap<Box<str>, HashMap<Box<str>, Written>>;

#[derive(Debug)]
struct Written {
    /// `None`: read the Canary on its next reconcile (a write of ours was refused as a
    /// conflict, so the cache is behind someone's write).
    resource_version: Option<Box<str>>,
    /// Dropped once the cache has caught up: only lagging Canaries keep a second copy.
    /// Boxed: a Canary is kilobytes inline, and the map holds an entry per Canary.
    copy: Option<Box<Canary>>,
}

impl WrittenVersions {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByNamespace> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember `written`, as the API server answered our write or read.
    pub fn record(&self, written: &Canary) {
        if let Some(rv) = written.resource_version() {
            let mut copy = written.clone();
            copy.metadata.managed_fields = None;
            let entry = Written {
                resource_version: Some(rv.into()),
                copy: Some(Box::new(copy)),
            };
            let ns = written.namespace().unwrap_or_default();
            let name = written.metadata.name.as_deref().unwrap_or_default();
            put(&mut self.lock(), &ns, name, entry);
        }
    }

    /// Read the Canary on its next reconcile, once: a write was refused as a conflict,
    /// so neither the cache nor our last copy has the version someone else wrote.
    pub fn read_next(&self, namespace: &str, name: &str) {
        let entry = Written {
            resource_version: None,
            copy: None,
        };
        put(&mut self.lock(), namespace, name, entry);
    }

    pub fn forget(&self, namespace: &str, name: &str) {
        remove(&mut self.lock(), namespace, name);
    }

    /// The Canary as of the newer of `cached` and our last write; `None`: read it.
    pub fn current(&self, cached: &Canary) -> Option<Canary> {
        let ns = cached.metadata.namespace.as_deref().unwrap_or_default();
        let name = cached.metadata.name.as_deref().unwrap_or_default();
        let mut written = self.lock();
        let Some(ours) = written.get_mut(ns).and_then(|names| names.get_mut(name)) else {
            return Some(cached.clone());
        };
        let Some(rv) = ours.resource_version.as_deref() else {
            // Read once; after that the cache answers again.
            remove(&mut written, ns, name);
            return None;
        };
        let order =
            crate::workloads::fresh_store::order(cached.resource_version(), Some(rv.to_string()));
        match order? {
            std::cmp::Ordering::Less => ours.copy.as_deref().cloned(),
            _ => {
                ours.copy = None;
                Some(cached.clone())
            }
        }
    }
}

fn put(by_ns: &mut ByNamespace, namespace: &str, name: &str, entry: Written) {
    let names = match by_ns.get_mut(namespace) {
        Some(names) => names,
        None => by_ns.entry(namespace.into()).or_default(),
    };
    names.insert(name.into(), entry);
}

fn remove(by_ns: &mut ByNamespace, namespace: &str, name: &str) {
    if let Some(names) = by_ns.get_mut(namespace) {
        names.remove(name);
        if names.is_empty() {
            by_ns.remove(namespace);
        }
    }
}

pub async fn write_status(
    api: &Api<Canary>,
    canary: &Canary,
    status: &CanaryStatus,
) -> Result<Canary, kube::Error> {
    let body = status_apply_body(canary, status);
    api.patch_status(
        &canary.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
}

/// The reason the onboarding controller gives a bad annotation. The Canary's own
/// reconcile never clears it (its spec is the last good one, so it sees no problem);
/// only the onboarding controller does, once the annotations are fixed.
pub const INVALID_ANNOTATION: &str = EventReason::InvalidAnnotation.as_str();

/// Set `ConfigValid` from the Canary reconcile's own checks; returns true when it
/// flipped or its message changed. An annotation problem stays until it is fixed.
pub fn set_config_condition(
    status: &mut CanaryStatus,
    problem: Option<(&str, String)>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    let annotation_problem = find_condition(&status.conditions, condition_type::CONFIG_VALID)
        .is_some_and(|c| {
            c.status == "False"
                && EventReason::parse(&c.reason) == Some(EventReason::InvalidAnnotation)
        });
    if problem.is_none() && annotation_problem {
        return false;
    }
    put_config_condition(status, problem, generation, now)
}

/// Set `ConfigValid` as given (the onboarding controller's view of the annotations).
pub fn put_config_condition(
    status: &mut CanaryStatus,
    problem: Option<(&str, String)>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    let (ok, reason, message) = match problem {
        None => (true, "Valid", String::new()),
        // Bounded before the comparison, or a long message would differ from its
        // written (bounded) self every time and repeat its Warning Event.
        Some((reason, message)) => (false, reason, one_line(&message, MESSAGE_MAX_CHARS)),
    };
    set_condition(
        &mut status.conditions,
        Condition {
            type_: condition_type::CONFIG_VALID.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message,
            last_transition_time: now,
            observed_generation: generation,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Approval, CanarySpec, GateKind};
    use chrono::TimeZone;

    #[test]
    fn status_body_is_conditional_and_leaves_approver_lists_alone() {
        let mut c = Canary::new(
            "podinfo",
            CanarySpec {
                target_ref: crate::crd::TargetRef {
                    name: "podinfo".into(),
                },
                strategy: Default::default(),
                service: Default::default(),
                router: None,
                routing: Default::default(),
                analysis: Default::default(),
                gates: Default::default(),
                skip_analysis: false,
                suspend: false,
                webhooks: vec![],
            },
        );
        c.metadata.namespace = Some("shop".into());
        c.metadata.resource_version = Some("42".into());
        let t = Utc.timestamp_opt(0, 0).unwrap();
        let st = CanaryStatus {
            canary_weight: 25,
            approvals: vec![Approval {
                id: "x".into(),
                gate: GateKind::BeforePromotion,
                revision: "r".into(),
                step: 1,
                approved: true,
                by: "a".into(),
                via: "cli".into(),
                at: t,
                groups: Vec::new(),
            }],
            emergency_override: Some(Box::new(crate::crd::EmergencyOverrideRecord {
                revision: "r".into(),
                by: "oncall".into(),
                via: "cli".into(),
                reason: "hotfix".into(),
                at: t,
                until: None,
            })),
            // The controller's own record of announcing it is still written.
            override_announced: Some(t),
            ..Default::default()
        };
        let b = status_apply_body(&c, &st);
        assert_eq!(b["metadata"]["resourceVersion"], "42");
        assert!(b["status"].get("emergencyOverride").is_none());
        assert_eq!(b["status"]["overrideAnnounced"], "1970-01-01T00:00:00Z");
        assert_eq!(b["status"]["canaryWeight"], 25);
        assert!(b["status"].get("approvals").is_none());
        assert!(b["status"].get("commands").is_none());
        assert!(
            b.get("spec").is_none(),
            "status writes never touch the spec"
        );
    }

    #[test]
    fn status_body_bounds_free_texts() {
        let mut c = Canary::new(
            "podinfo",
            serde_json::from_value(json!({"targetRef": {"name": "podinfo"}})).unwrap(),
        );
        c.metadata.namespace = Some("shop".into());
        let st = CanaryStatus {
            message: format!("metrics unavailable: {}", "%7B".repeat(700)),
            ..Default::default()
        };
        let b = status_apply_body(&c, &st);
        let written = b["status"]["message"].as_str().unwrap();
        assert_eq!(written.chars().count(), MESSAGE_MAX_CHARS);
        assert!(written.ends_with('…'));
    }

    #[test]
    fn a_long_config_problem_is_bounded_and_unchanged_when_repeated() {
        let t = Utc.timestamp_opt(0, 0).unwrap();
        let mut st = CanaryStatus::default();
        let long = format!(
            "annotation serin.dev/steps={:?}: expected weights",
            "1,".repeat(400)
        );
        assert!(set_config_condition(
            &mut st,
            Some(("InvalidSpec", long.clone())),
            Some(1),
            t
        ));
        assert_eq!(st.conditions[0].message.chars().count(), MESSAGE_MAX_CHARS);
        // A retry with the same problem must not count as a change (no second Event).
        assert!(!set_config_condition(
            &mut st,
            Some(("InvalidSpec", long)),
            Some(1),
            t
        ));
    }

    #[test]
    fn config_condition_reports_changes_only() {
        let t = Utc.timestamp_opt(0, 0).unwrap();
        let mut st = CanaryStatus::default();
        assert!(set_config_condition(
            &mut st,
            Some(("InvalidSpec", "bad".into())),
            Some(1),
            t
        ));
        assert!(!set_config_condition(
            &mut st,
            Some(("InvalidSpec", "bad".into())),
            Some(1),
            t
        ));
        assert!(set_config_condition(
            &mut st,
            Some(("InvalidSpec", "worse".into())),
            Some(1),
            t
        ));
        assert!(set_config_condition(&mut st, None, Some(1), t));
        assert_eq!(st.conditions[0].status, "True");
    }

    fn at(rv: &str, phase: &str) -> Canary {
        let mut c: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "shop", "resourceVersion": rv},
            "spec": {"targetRef": {"name": "podinfo"}}}))
        .unwrap();
        c.status = Some(CanaryStatus {
            message: phase.into(),
            ..Default::default()
        });
        c
    }

    fn message(c: Option<Canary>) -> Option<String> {
        c.and_then(|c| c.status).map(|s| s.message)
    }

    #[test]
    fn the_newer_of_the_cache_and_our_last_write_is_the_canary() {
        let written = WrittenVersions::default();
        // Nothing written by this process: the cache (listed after the Lease was
        // taken).
        assert_eq!(
            message(written.current(&at("10", "cached"))),
            Some("cached".into())
        );
        written.record(&at("12", "ours"));
        // The cache lags our write: our copy.
        assert_eq!(
            message(written.current(&at("10", "cached"))),
            Some("ours".into())
        );
        // The cache has it, or someone's later write: the cache.
        assert_eq!(
            message(written.current(&at("12", "cached"))),
            Some("cached".into())
        );
        assert_eq!(
            message(written.current(&at("15", "later"))),
            Some("later".into())
        );
        // Our copy is gone once the cache caught up: an older copy now means a read.
        assert!(written.current(&at("10", "cached")).is_none());
        // Versions that do not order: read.
        written.record(&at("x2", "ours"));
        assert!(written.current(&at("x1", "cached")).is_none());
        // A Canary of the same name elsewhere is another Canary.
        let mut elsewhere = at("30", "theirs");
        elsewhere.metadata.namespace = Some("bank".into());
        assert_eq!(message(written.current(&elsewhere)), Some("theirs".into()));
        written.record(&elsewhere);
        assert_eq!(
            message(written.current(&at("29", "cached"))),
            None,
            "shop's entry is untouched (x2 does not order against 29)"
        );
        // A conflict: read once, then the cache again.
        written.read_next("shop", "podinfo");
        assert!(written.current(&at("16", "cached")).is_none());
        assert_eq!(
            message(written.current(&at("16", "cached"))),
            Some("cached".into())
        );
        // Forgotten (the Canary is gone): what the cache has, as for one never written.
        written.record(&at("40", "ours"));
        written.forget("shop", "podinfo");
        assert_eq!(
            message(written.current(&at("39", "cached"))),
            Some("cached".into())
        );
        let mut bank_older = at("29", "cached");
        bank_older.metadata.namespace = Some("bank".into());
        assert_eq!(
            message(written.current(&bank_older)),
            Some("theirs".into()),
            "bank's entry outlives shop's"
        );
    }
}
