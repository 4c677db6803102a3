use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::crd::{
    CanaryPhase, CanarySpec, CanaryStatus, GateKind, MetricStatus, MetricVerdict, NotifierSpec,
    NotifierType, SecretKeyRef, Severity,
};
use crate::gates::{testrecv, SecretString};
use crate::notify::{HttpNotifier, NotifierRegistry};
use crate::rollout::{Note, NoteType};

fn spec() -> CanarySpec {
    serde_json::from_value(
        json!({"targetRef": {"name": "podinfo"}, "analysis": {"steps": [10, 25, 50]}}),
    )
    .unwrap()
}

fn metric(name: &str, value: f64, verdict: MetricVerdict) -> MetricStatus {
    MetricStatus {
        points: Vec::new(),
        name: name.into(),
        value: Some(value),
        baseline: None,
        effect: None,
        p_value: None,
        interval_low: None,
        interval_high: None,
        verdict,
        reason: format!("{name} judged"),
        dry_run: false,
        consecutive_errors: 0,
        sequential: None,
        checked_at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
    }
}

pub(crate) fn event(reason: &'static str, type_: NoteType, step: i32) -> NotifyEvent {
    let status = CanaryStatus {
        phase: if reason == "WaitingApproval" {
            CanaryPhase::WaitingApproval
        } else {
            CanaryPhase::Progressing
        },
        pending_gate: (reason == "WaitingApproval").then_some(GateKind::BeforeTrafficIncrease),
        stable_revision: Some("rev1".into()),
        canary_revision: Some("rev2".into()),
        current_step: step,
        canary_weight: 25,
        metrics: vec![
            metric("error-rate", 0.5, MetricVerdict::Pass),
            metric("latency-p99", 812.0, MetricVerdict::Fail),
        ],
        ..Default::default()
    };
    let note = Note {
        type_,
        reason: crate::rollout::EventReason::parse(reason).expect("a reason serin sends"),
        message: format!("{reason} at step {step}"),
    };
    NotifyEvent::from_note(
        "shop",
        "podinfo",
        &spec(),
        &status,
        &note,
        Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap(),
    )
}

fn notifier_spec(kind: NotifierType, severity: Severity) -> NotifierSpec {
    NotifierSpec {
        type_: kind,
        secret_ref: SecretKeyRef {
            name: "s".into(),
            key: "url".into(),
        },
        channel: Some("#releases".into()),
        severity,
        canaries: vec![],
    }
}

fn with_timeout(spec: NotifierSpec, key: &str, url: String, ms: u64) -> Arc<dyn Notifier> {
    Arc::new(
        HttpNotifier::from_spec(key, &spec, SecretString::new(url), reqwest::Client::new())
            .with_timeout(Duration::from_millis(ms)),
    )
}

fn notifier(key: &str, kind: NotifierType, severity: Severity, url: String) -> Arc<dyn Notifier> {
    with_timeout(notifier_spec(kind, severity), key, url, 300)
}

fn fast() -> QueueConfig {
    QueueConfig {
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..Default::default()
    }
}

fn registry(ns: &str, notifiers: Vec<Arc<dyn Notifier>>) -> Arc<NotifierRegistry> {
    let r = NotifierRegistry::new();
    r.set_namespace(ns, notifiers);
    Arc::new(r)
}

async fn until(
    handle: &NotifyHandle,
    what: &str,
    f: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    for _ in 0..500 {
        let s = handle.stats();
        if f(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: {:?}", handle.stats());
}

#[tokio::test]
async fn slack_message_reaches_receiver_with_buttons_and_metrics() {
    let mut recv = testrecv::start(vec![]).await;
    let (h, _task) = notifier_queue(
        registry(
            "shop",
            vec![notifier(
                "n/slack",
                NotifierType::Slack,
                Severity::Info,
                recv.url("/services/T/B/X"),
            )],
        ),
        fast(),
    );
    assert!(h.send(event("WaitingApproval", NoteType::Normal, 2)));
    let got = recv.next(5).await;
    assert_eq!(got.path, "/services/T/B/X");
    let body = got.json();
    assert_eq!(body["channel"], "#releases");
    let text = body["blocks"].to_string();
    assert!(text.contains("rev1 → rev2"), "{text}");
    assert!(text.contains("2/3") && text.contains("25%"));
    assert!(text.contains("latency-p99: 812 Fail"), "{text}");
    assert!(text.contains("error-rate: 0.5000 Pass"));
    let actions = body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap();
    let value = actions["elements"][0]["value"].as_str().unwrap();
    let (ns, name, gate) = crate::gates::parse_button_value(value).unwrap();
    assert_eq!(
        (
            ns.as_str(),
            name.as_str(),
            gate.revision.as_str(),
            gate.step
        ),
        ("shop", "podinfo", "rev2", 2)
    );
    until(&h, "delivered", |s| s.delivered == 1).await;
}

#[tokio::test]
async fn retries_500_then_delivers() {
    let mut recv = testrecv::start(vec![(500, Duration::ZERO)]).await;
    let (h, _task) = notifier_queue(
        registry(
            "shop",
            vec![notifier(
                "n/hook",
                NotifierType::Webhook,
                Severity::Info,
                recv.url("/"),
            )],
        ),
        fast(),
    );
    h.send(event("StepAdvanced", NoteType::Normal, 1));
    let first = recv.next(5).await.json();
    let second = recv.next(5).await.json();
    assert_eq!(first, second);
    assert_eq!(second["reason"], "StepAdvanced");
    assert_eq!(second["toRevision"], "rev2");
    let s = until(&h, "delivered", |s| s.delivered == 1).await;
    assert_eq!((s.retried, s.failed), (1, 0));
}

#[tokio::test]
async fn stalled_receiver_delays_only_itself() {
    let stall = Duration::from_secs(30);
    let stalled = testrecv::start(vec![(200, stall); 8]).await;
    let mut healthy = testrecv::start(vec![]).await;
    let mut cfg = fast();
    cfg.per_notifier_capacity = 1;
    cfg.max_attempts = 1;
    let (h, _task) = notifier_queue(
        registry(
            "shop",
            vec![
                with_timeout(
                    notifier_spec(NotifierType::Slack, Severity::Info),
                    "n/stalled",
                    stalled.url("/"),
                    1500,
                ),
                notifier(
                    "n/healthy",
                    NotifierType::Teams,
                    Severity::Info,
                    healthy.url("/"),
                ),
            ],
        ),
        cfg,
    );
    // Each message reaches the healthy receiver at once although the other never answers.
    for step in 1..=4 {
        assert!(h.send(event("StepAdvanced", NoteType::Normal, step)));
        let card = healthy.next(2).await.json();
        assert_eq!(card["attachments"][0]["content"]["type"], "AdaptiveCard");
    }
    // The stalled notifier held one in flight (1.5 s timeout) and one queued; the
    // other two were dropped, and both it tried failed.
    let s = until(&h, "stalled accounted", |s| s.failed == 2).await;
    assert_eq!((s.delivered, s.dropped_notifier_full), (4, 2));
    drop(stalled);
}

#[tokio::test]
async fn send_never_waits_when_full() {
    let (h, _task) = notifier_queue(
        registry("shop", vec![]),
        QueueConfig {
            capacity: 2,
            ..Default::default()
        },
    );
    // On this single-threaded runtime the dispatcher has not run yet: the queue fills.
    assert!(h.send(event("StepAdvanced", NoteType::Normal, 1)));
    assert!(h.send(event("StepAdvanced", NoteType::Normal, 2)));
    assert!(!h.send(event("StepAdvanced", NoteType::Normal, 3)));
    let s = h.stats();
    assert_eq!((s.queued, s.dropped_full), (2, 1));
}

#[tokio::test]
async fn repeats_are_sent_once() {
    let mut recv = testrecv::start(vec![]).await;
    let (h, _task) = notifier_queue(
        registry(
            "shop",
            vec![notifier(
                "n",
                NotifierType::Webhook,
                Severity::Info,
                recv.url("/"),
            )],
        ),
        fast(),
    );
    h.send(event("StepAdvanced", NoteType::Normal, 1));
    h.send(event("StepAdvanced", NoteType::Normal, 1));
    h.send(event("StepAdvanced", NoteType::Normal, 2));
    let s = until(&h, "two delivered", |s| {
        s.delivered == 2 && s.deduplicated == 1
    })
    .await;
    assert_eq!(s.queued, 3);
    assert_eq!(recv.next(5).await.json()["step"], 1);
    assert_eq!(recv.next(5).await.json()["step"], 2);
    assert!(recv.rx.try_recv().is_err());
}

#[tokio::test]
async fn rate_cap_drops_the_flood() {
    let _recv = testrecv::start(vec![]).await;
    let mut cfg = fast();
    cfg.per_minute = 2;
    let (h, _task) = notifier_queue(
        registry(
            "shop",
            vec![notifier(
                "n",
                NotifierType::Webhook,
                Severity::Info,
                _recv.url("/"),
            )],
        ),
        cfg,
    );
    for step in 1..=5 {
        h.send(event("CheckFailed", NoteType::Warning, step));
    }
    let s = until(&h, "capped", |s| s.delivered == 2 && s.rate_limited == 3).await;
    assert_eq!(s.failed, 0);
}

#[tokio::test]
async fn severity_filter_keeps_only_rollbacks() {
    let mut recv = testrecv::start(vec![]).await;
    let (h, _task) = notifier_queue(
        registry(
            "shop",
            vec![notifier(
                "n",
                NotifierType::Webhook,
                Severity::Error,
                recv.url("/"),
            )],
        ),
        fast(),
    );
    h.send(event("StepAdvanced", NoteType::Normal, 1));
    h.send(event("CheckFailed", NoteType::Warning, 1));
    h.send(event("RolledBack", NoteType::Warning, 1));
    until(&h, "filtered", |s| s.filtered == 2 && s.delivered == 1).await;
    let got = recv.next(5).await.json();
    assert_eq!(got["reason"], "RolledBack");
    assert_eq!(got["severity"], "error");
}

#[test]
fn namespace_notifiers_override_cluster_default() {
    let r = NotifierRegistry::new();
    let a = notifier(
        "a",
        NotifierType::Slack,
        Severity::Info,
        "http://127.0.0.1:9/".into(),
    );
    let b = notifier(
        "b",
        NotifierType::Slack,
        Severity::Info,
        "http://127.0.0.1:9/".into(),
    );
    let c = notifier(
        "c",
        NotifierType::Slack,
        Severity::Info,
        "http://127.0.0.1:9/".into(),
    );
    r.set_cluster(vec![(vec![], a), (vec!["payments".into()], b)]);
    r.set_namespace("shop", vec![c]);
    let keys = |ns: &str| {
        r.notifiers_for(ns)
            .iter()
            .map(|n| n.key().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys("shop"), vec!["c"]);
    assert_eq!(keys("payments"), vec!["a", "b"]);
    assert_eq!(keys("other"), vec!["a"]);
}

#[test]
fn a_revision_waiting_for_policy_approvals_is_announced_with_its_gate_passage() {
    let status = CanaryStatus {
        phase: CanaryPhase::Waiting,
        stable_revision: Some("rev1".into()),
        canary_revision: Some("rev1".into()),
        current_step: 3,
        policy_wait: Some(Box::new(crate::crd::PolicyWait {
            reason: crate::crd::PolicyWaitReason::OutsideWindow,
            policy: "ReleasePolicy shop/prod".into(),
            revision: "rev2".into(),
            stage: crate::crd::PolicyStage::Start,
            message: "outside the release windows".into(),
            until: None,
            queue_position: None,
            approvals: Some(crate::crd::ApprovalsStillNeeded {
                gate: GateKind::BeforeRollout,
                have: 0,
                need: 2,
                groups: vec![],
            }),
            since: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
        })),
        ..Default::default()
    };
    let note = Note {
        type_: NoteType::Normal,
        reason: crate::rollout::EventReason::ReleaseWaiting,
        message: "new revision rev2 waits".into(),
    };
    let at = Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap();
    let e = NotifyEvent::from_note("shop", "podinfo", &spec(), &status, &note, at);
    assert_eq!(
        e.to_revision.as_deref(),
        Some("rev2"),
        "the waiting revision"
    );
    assert_eq!(
        e.pending,
        Some(crate::gates::GateRef {
            gate: GateKind::BeforeRollout,
            revision: "rev2".into(),
            step: 0,
        })
    );
    assert_eq!(e.severity, Severity::Info);
    // Without approvals to give, no buttons.
    let mut plain = status.clone();
    plain.policy_wait.as_mut().unwrap().approvals = None;
    assert_eq!(
        NotifyEvent::from_note("shop", "podinfo", &spec(), &plain, &note, at).pending,
        None
    );
}
