//! Release policies end to end: a release registered by CI over real HTTP (the
//! approval API served on loopback) waits for its policies, then runs. The window is
//! computed in a real IANA zone relative to the real time; the controller's clock is
//! pinned there and moved by the test.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration as TimeDelta, TimeZone, Timelike, Utc};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{store, Store};
use kube::runtime::watcher::Event;
use serde_json::{json, Value};

use super::*;
use crate::controller::policies::PolicyCaches;
use crate::crd::{Canary, ReleasePolicy};
use crate::gates::{
    api_router, serve_api, ApiState, ApiTransport, Authenticator, GateError, RateLimit,
    RateLimiter, ResourceCheck, UserInfo, APPROVER_FIELD_MANAGER,
};

const TOKEN: &str = "ci-token";
const NEW_IMAGE: &str = "ghcr.io/acme/podinfo:2.0.0";
const RULES: &str = "ReleasePolicy shop/rules";

/// CI's token, and people's tokens (`person:<name>:<group>,<group>`), each allowed
/// everything it asks.
struct Ci;

#[async_trait]
impl Authenticator for Ci {
    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, GateError> {
        if token == TOKEN {
            return Ok(Some(UserInfo {
                username: "system:serviceaccount:shop:ci".into(),
                ..Default::default()
            }));
        }
        Ok(token.strip_prefix("person:").map(|p| {
            let (name, groups) = p.split_once(':').unwrap_or((p, ""));
            UserInfo {
                username: name.into(),
                groups: groups
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect(),
                ..Default::default()
            }
        }))
    }
    async fn authorize(&self, _: &UserInfo, _: &ResourceCheck) -> Result<bool, GateError> {
        Ok(true)
    }
}

fn spec() -> Value {
    json!({"targetRef": {"name": "podinfo"},
           "analysis": {"steps": [10, 50], "interval": "1m", "templates": [{"name": "error-rate"}]}})
}

fn ready<K>(objs: Vec<K>) -> Store<K>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = store::<K>();
    writer.apply_watcher_event(&Event::Init);
    for o in objs {
        writer.apply_watcher_event(&Event::InitApply(o));
    }
    writer.apply_watcher_event(&Event::InitDone);
    reader
}

/// An onboarded Canary (Initialized, target scaled to zero) under `policy_spec`
/// (ReleasePolicy shop/rules, if any), the clock pinned at `now`, the approval API on
/// loopback.
struct World {
    h: Harness,
    api: SocketAddr,
    /// The Canary watch cache the policies read other Canaries from.
    canaries: std::sync::Mutex<Writer<Canary>>,
}

impl World {
    async fn new(policy_spec: Option<Value>, now: DateTime<Utc>) -> World {
        let h = Harness::new(spec());
        initialize(&h).await;
        let policies = policy_spec.map(|spec| {
            serde_json::from_value::<ReleasePolicy>(json!({
                "apiVersion": "serin.dev/v1alpha1", "kind": "ReleasePolicy",
                "metadata": {"name": "rules", "namespace": NS}, "spec": spec,
            }))
            .unwrap()
        });
        let ns = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": NS}}))
        .unwrap();
        let (canaries, mut writer) = store::<Canary>();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        let caches = PolicyCaches::new(
            ready(policies.into_iter().collect()),
            ready(vec![]),
            ready(vec![ns]),
            canaries,
        );
        let h = h.with_ctx(|c| c.policies = Some(Arc::new(caches)));
        let world_api = api_router(ApiState {
            client: h.server.client(),
            auth: Arc::new(Ci),
            limiter: Arc::new(RateLimiter::new(RateLimit {
                burst: 100,
                per_second: 100.0,
            })),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap();
        tokio::spawn(serve_api(listener, world_api, ApiTransport::InsecureHttp));
        let w = World {
            h,
            api,
            canaries: std::sync::Mutex::new(writer),
        };
        w.set_now(now);
        w
    }

    fn set_now(&self, t: DateTime<Utc>) {
        *self.h.now.lock().unwrap() = t;
        self.h.server.set_time(t);
    }

    /// CI registers the new image over HTTP, as `kubectl serin release` would.
    async fn register(&self) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!(
                "http://{}/api/v1/namespaces/{NS}/canaries/podinfo/release",
                self.api
            ))
            .bearer_auth(TOKEN)
            .json(&json!({"images": {"podinfo": NEW_IMAGE}, "reason": "build 42"}))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    /// Register, then the first reconcile: the new revision waits, for `reason`.
    async fn registered_and_waiting(&self, reason: &str, policy: &str) -> Value {
        let (code, body) = self.register().await;
        assert_eq!(code, 202, "{body}");
        assert_eq!(body["changed"], true);
        assert_eq!(self.h.image_of("podinfo"), NEW_IMAGE);
        self.h.ok().await;
        let st = self.h.status();
        assert_eq!(st["phase"], "Waiting", "{st:#}");
        assert_eq!(st["policyWait"]["reason"], reason, "{st:#}");
        assert_eq!(st["policyWait"]["stage"], "Start");
        assert_eq!(st["policyWait"]["policy"], policy);
        assert_ne!(
            st["policyWait"]["revision"], st["stableRevision"],
            "the new revision waits"
        );
        assert_eq!(
            self.h.get(&dep("podinfo"))["spec"]["replicas"],
            0,
            "the canary stays down while it waits"
        );
        let events = self.h.events.take();
        assert_eq!(reasons_of(&events), vec!["ReleaseWaiting"], "{events:#?}");
        st["policyWait"].clone()
    }

    /// The next reconcile starts the release: canary up, the wait gone.
    async fn starts(&self) {
        self.h.ok().await;
        let st = self.h.status();
        assert_eq!(st["phase"], "Progressing", "{st:#}");
        assert!(st.get("policyWait").is_none(), "{st:#}");
        assert_eq!(self.h.get(&dep("podinfo"))["spec"]["replicas"], 1);
        assert_eq!(self.h.image_of("podinfo"), NEW_IMAGE);
    }

    /// A person acts through the approval API over HTTP, as `kubectl serin` would.
    async fn person(&self, token: &str, action: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!(
                "http://{}/api/v1/namespaces/{NS}/canaries/podinfo/{action}",
                self.api
            ))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    fn waits(&self, reason: &str) -> Option<f64> {
        crate::metrics::sample(
            &self.h.ctx.metrics.encode(),
            &format!("serin_policy_waits_total{{reason=\"{reason}\",stage=\"start\"}}"),
        )
    }
}

/// The field managers owning `field` of the status.
fn owners_of(obj: &Value, field: &str) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["fieldsV1"]["f:status"].get(field).is_some())
        .filter_map(|m| m["manager"].as_str().map(str::to_string))
        .collect()
}

fn reasons_of(events: &[crate::controller::RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.reason.as_str()).collect()
}

fn at(v: &Value) -> DateTime<Utc> {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// The real time, to the second.
fn real_now() -> DateTime<Utc> {
    Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap()
}

/// A one-hour window in Europe/Berlin opening at the next whole minute plus two, on
/// that opening's local weekday (so a window opening just after midnight is on the
/// next day), and the opening instant. A window that would pass midnight ends at 24:00.
fn window_opening_soon(now: DateTime<Utc>) -> (Value, DateTime<Utc>) {
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    // Berlin's offset is whole hours: a UTC minute boundary is a local one.
    let open = Utc
        .timestamp_opt((now.timestamp() / 60 + 1) * 60 + 120, 0)
        .unwrap();
    let local = open.with_timezone(&tz);
    let end = match local.hour() {
        23 => "24:00".to_string(),
        h => format!("{:02}:{:02}", h + 1, local.minute()),
    };
    let window = json!({
        "days": [local.format("%a").to_string()],
        "start": local.format("%H:%M").to_string(),
        "end": end,
        "timeZone": "Europe/Berlin",
    });
    (window, open)
}

#[test]
fn the_window_opens_in_two_to_three_minutes_on_its_local_day() {
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 22, 57, 30).unwrap(); // 23:57:30 in Berlin
    let (w, open) = window_opening_soon(now);
    assert_eq!(open, Utc.with_ymd_and_hms(2026, 11, 30, 23, 0, 0).unwrap());
    assert_eq!(
        w,
        json!({"days": ["Tue"], "start": "00:00", "end": "01:00", "timeZone": "Europe/Berlin"})
    );
    let (w, _) = window_opening_soon(Utc.with_ymd_and_hms(2026, 7, 1, 21, 10, 5).unwrap());
    assert_eq!((&w["start"], &w["end"]), (&json!("23:13"), &json!("24:00")));
}

#[tokio::test]
async fn a_release_registered_over_http_waits_for_its_window_then_runs() {
    let now = real_now();
    let (window, open) = window_opening_soon(now);
    let w = World::new(Some(json!({"windows": [window]})), now).await;
    assert_eq!(w.waits("OutsideWindow"), Some(0.0));

    let wait = w.registered_and_waiting("OutsideWindow", RULES).await;
    assert_eq!(at(&wait["until"]), open, "{wait:#}");
    assert_eq!(at(&wait["since"]), now);
    assert_eq!(w.waits("OutsideWindow"), Some(1.0));

    // A minute on, still closed: same wait, not counted or announced again.
    w.set_now(now + TimeDelta::seconds(60));
    w.h.ok().await;
    assert_eq!(w.h.status()["phase"], "Waiting");
    assert_eq!(at(&w.h.status()["policyWait"]["since"]), now);
    assert!(w.h.events.take().is_empty());
    assert_eq!(w.waits("OutsideWindow"), Some(1.0));
    assert_eq!(w.h.get(&dep("podinfo"))["spec"]["replicas"], 0);

    // One second before the opening nothing moves; at the opening it starts.
    w.set_now(open - TimeDelta::seconds(1));
    w.h.ok().await;
    assert_eq!(w.h.status()["phase"], "Waiting");
    w.set_now(open);
    w.starts().await;
    assert_eq!(reasons_of(&w.h.events.take()), vec!["NewRevision"]);
    assert_eq!(w.waits("OutsideWindow"), Some(1.0));
}

#[tokio::test]
async fn two_approvers_from_the_group_let_the_release_start() {
    let now = real_now();
    let rule =
        json!({"approvals": {"beforeRollout": {"count": 2, "groups": ["release-managers"]}}});
    let w = World::new(Some(rule), now).await;
    let wait = w.registered_and_waiting("ApprovalsNeeded", RULES).await;
    assert_eq!(
        wait["approvals"],
        json!({"gate": "beforeRollout", "have": 0, "need": 2, "groups": ["release-managers"]})
    );
    assert!(wait.get("until").is_none(), "waits for people, not time");
    let rev = wait["revision"].as_str().unwrap().to_string();

    // The approval API's records carry the approver's groups; someone outside the
    // group does not count, and a second click by the same person changes nothing.
    w.set_now(now + TimeDelta::seconds(30));
    for (token, changed) in [
        ("person:alice:release-managers", true),
        ("person:alice:release-managers", false),
        ("person:eve:developers", true),
    ] {
        let (code, out) = w.person(token, "approve", json!({})).await;
        assert_eq!(
            (code, out["changed"].as_bool()),
            (200, Some(changed)),
            "{out}"
        );
    }
    w.h.ok().await;
    let st = w.h.status();
    assert_eq!(st["phase"], "Waiting", "{st:#}");
    assert_eq!(st["policyWait"]["approvals"]["have"], 1, "{st:#}");
    assert_eq!(
        st["approvals"].as_array().map(Vec::len),
        Some(2),
        "the controller's status apply keeps the approver's records"
    );

    let (code, out) = w
        .person(
            "person:bob:sre,release-managers",
            "approve",
            json!({
            "gate": "beforeRollout", "revision": rev, "step": 0}),
        )
        .await;
    assert_eq!(code, 200, "{out}");
    w.starts().await;
    assert_eq!(w.h.status()["approvals"].as_array().map(Vec::len), Some(3));
    assert_eq!(w.waits("ApprovalsNeeded"), Some(1.0));
}

#[tokio::test]
async fn an_emergency_override_lifts_a_freeze_and_is_announced_once() {
    let now = real_now();
    let freeze = json!({"blackouts": [{
        "start": (now - TimeDelta::hours(1)).to_rfc3339(),
        "end": (now + TimeDelta::days(1)).to_rfc3339(),
        "reason": "year-end freeze",
    }]});
    let w = World::new(Some(freeze), now).await;
    let wait = w.registered_and_waiting("Blackout", RULES).await;
    assert_eq!(at(&wait["until"]), now + TimeDelta::days(1));
    let rev = wait["revision"].as_str().unwrap().to_string();

    // Without a reason the API refuses, and nothing is written.
    let (code, out) = w.person("person:oncall@acme:", "override", json!({})).await;
    assert_eq!(code, 422, "{out}");
    assert!(w.h.status().get("emergencyOverride").is_none());
    w.set_now(now + TimeDelta::seconds(20));
    let (code, out) = w
        .person(
            "person:oncall@acme:",
            "override",
            json!({"reason": "hotfix for the checkout outage", "for": "2h"}),
        )
        .await;
    assert_eq!(code, 200, "{out}");
    w.starts().await;
    let events = w.h.events.take();
    let overrides: Vec<_> = events
        .iter()
        .filter(|e| e.reason == "EmergencyOverride")
        .collect();
    assert_eq!(overrides.len(), 1, "{events:#?}");
    assert!(overrides[0].warning);
    assert!(
        overrides[0].message.contains("oncall@acme")
            && overrides[0].message.contains("year-end freeze"),
        "{}",
        overrides[0].message
    );
    let st = w.h.status();
    assert_eq!(st["emergencyOverride"]["by"], "oncall@acme", "{st:#}");
    assert_eq!(
        owners_of(&w.h.get(&canary("podinfo")), "f:emergencyOverride"),
        vec![APPROVER_FIELD_MANAGER],
        "the controller's status apply leaves the override to the approval API"
    );

    // Later reconciles go on under the override without announcing it again.
    w.h.ok().await;
    w.set_now(now + TimeDelta::seconds(90));
    w.h.ok().await;
    let again = w.h.events.take();
    assert!(
        !again.iter().any(|e| e.reason == "EmergencyOverride"),
        "{again:#?}"
    );
    assert_eq!(w.h.status()["emergencyOverride"]["revision"], rev);
}

#[tokio::test]
async fn promote_from_alone_gates_the_release_until_upstream_promoted_the_images() {
    let now = real_now();
    // No release policy anywhere: the annotation alone must gate the release.
    let w = World::new(None, now).await;
    w.h.edit(&canary("podinfo"), |c| {
        c["metadata"]["annotations"] = json!({"serin.dev/promote-from": "staging/podinfo"});
    });
    let wait = w
        .registered_and_waiting("UpstreamNotPromoted", "Canary staging/podinfo")
        .await;
    assert!(
        wait["message"].as_str().unwrap().contains(NEW_IMAGE),
        "{wait:#}"
    );

    // Staging promotes exactly these images; the watch cache sees it.
    let staging: Canary = serde_json::from_value(json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "staging"},
        "spec": {"targetRef": {"name": "podinfo"}},
        "status": {"promoted": {"revision": "abc", "images": {"podinfo": NEW_IMAGE},
                                "at": now - TimeDelta::hours(1)}},
    }))
    .unwrap();
    w.canaries
        .lock()
        .unwrap()
        .apply_watcher_event(&Event::Apply(staging));
    w.set_now(now + TimeDelta::seconds(30));
    w.starts().await;
}

#[tokio::test]
async fn the_hand_back_releases_the_images_registered_by_ci_too() {
    // Without a policy a registered release starts at once; removing the Canary then
    // hands the Deployment back with neither of serin's field managers left on it, so
    // the user's next server-side apply of an image meets no conflict.
    let now = real_now();
    let w = World::new(None, now).await;
    let (code, body) = w.register().await;
    assert_eq!(code, 202, "{body}");
    let managers = |d: &Value| -> Vec<String> {
        d["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["manager"].as_str().map(str::to_string))
            .collect()
    };
    assert!(managers(&w.h.get(&dep("podinfo"))).contains(&"serin-release".to_string()));
    w.starts().await;
    w.h.manual_rollouts();
    assert!(w.h.delete(&canary("podinfo")));
    w.h.ok().await;
    w.h.ok().await;
    w.h.settle();
    w.h.ok().await;
    assert!(w.h.get(&canary("podinfo")).is_null(), "handed back");
    let left = managers(&w.h.get(&dep("podinfo")));
    assert!(
        !left.iter().any(|m| m == "serin" || m == "serin-release"),
        "{left:?}"
    );
}
