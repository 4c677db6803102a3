use std::time::Instant;

use chrono::TimeZone;

use super::*;
use crate::gates::sign::verify_hmac_sha256_hex;
use crate::gates::testrecv;

fn hook(name: &str, kind: WebhookType, url: String) -> WebhookSpec {
    WebhookSpec {
        name: name.into(),
        type_: kind,
        url,
        timeout: "2s".into(),
        retries: 2,
        metadata: BTreeMap::from([(
            "cmd".to_string(),
            "hey -z 1m http://podinfo-canary".to_string(),
        )]),
        secret_ref: None,
    }
}

fn status(phase: CanaryPhase, gate: Option<GateKind>) -> CanaryStatus {
    CanaryStatus {
        phase,
        pending_gate: gate,
        canary_revision: Some("rev2".into()),
        stable_revision: Some("rev1".into()),
        current_step: 1,
        release_started_at: Some(Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()),
        ..Default::default()
    }
}

fn caller() -> WebhookCaller {
    let mut c = WebhookCaller::new().unwrap();
    c.base_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(50);
    c
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap()
}

#[tokio::test]
async fn payload_and_signature_as_documented() {
    let mut recv = testrecv::start(vec![]).await;
    let h = hook("load-test", WebhookType::PreRollout, recv.url("/hook"));
    let secret = SecretString::new("s3cret");
    let st = status(CanaryPhase::Progressing, None);
    let r = caller()
        .call(
            &h,
            Some(&secret),
            &WebhookPayload::new("shop", "podinfo", &st, &h),
        )
        .await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.attempts, 1);
    let got = recv.next(5).await;
    assert_eq!(
        got.json(),
        serde_json::json!({"name": "podinfo", "namespace": "shop", "phase": "Progressing",
            "revision": "rev2", "type": "pre-rollout",
            "metadata": {"cmd": "hey -z 1m http://podinfo-canary"}})
    );
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );
    // Verify the way a receiver would: HMAC over the raw body with the shared secret.
    let sig = got.header("x-serin-signature").unwrap();
    let hex = sig.strip_prefix("sha256=").unwrap();
    assert!(verify_hmac_sha256_hex(b"s3cret", &[&got.body], hex));
    assert!(!verify_hmac_sha256_hex(b"other", &[&got.body], hex));
}

#[tokio::test]
async fn retries_500_then_succeeds() {
    let mut recv = testrecv::start(vec![(500, Duration::ZERO), (503, Duration::ZERO)]).await;
    let h = hook("smoke", WebhookType::Rollout, recv.url("/"));
    let st = status(CanaryPhase::Progressing, None);
    let r = caller()
        .call(&h, None, &WebhookPayload::new("shop", "podinfo", &st, &h))
        .await;
    assert!(r.ok());
    assert_eq!(r.attempts, 3);
    for _ in 0..3 {
        let got = recv.next(5).await;
        assert!(got.header("x-serin-signature").is_none());
    }
}

#[tokio::test]
async fn client_error_is_not_retried() {
    let mut recv = testrecv::start(vec![(403, Duration::ZERO)]).await;
    let h = hook("gate", WebhookType::ConfirmPromotion, recv.url("/"));
    let st = status(
        CanaryPhase::WaitingApproval,
        Some(GateKind::BeforePromotion),
    );
    let r = caller()
        .call(&h, None, &WebhookPayload::new("shop", "podinfo", &st, &h))
        .await;
    assert!(!r.ok());
    assert_eq!((r.status, r.attempts), (Some(403), 1));
    recv.next(5).await;
    assert!(recv.rx.try_recv().is_err());
}

#[tokio::test]
async fn stalled_receiver_times_out_within_bound() {
    let stall = Duration::from_secs(30);
    let recv = testrecv::start(vec![(200, stall), (200, stall)]).await;
    let mut h = hook("slow", WebhookType::Rollout, recv.url("/"));
    h.timeout = "200ms".into();
    h.retries = 1;
    let st = status(CanaryPhase::Progressing, None);
    let t0 = Instant::now();
    let r = caller()
        .call(&h, None, &WebhookPayload::new("shop", "podinfo", &st, &h))
        .await;
    let took = t0.elapsed();
    assert!(!r.ok());
    assert_eq!(r.attempts, 2);
    assert!(r.error.is_some());
    // Two 200 ms timeouts and one 20 ms backoff, far below the stall.
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn bad_timeout_is_a_failed_call_without_request() {
    let mut h = hook("x", WebhookType::Rollout, "http://127.0.0.1:9/".into());
    h.timeout = "soon".into();
    let r = caller()
        .call(
            &h,
            None,
            &WebhookPayload::new("shop", "p", &CanaryStatus::default(), &h),
        )
        .await;
    assert!(!r.ok());
    assert_eq!(r.attempts, 0);
}

fn result(name: &str, kind: WebhookType, status: Option<u16>) -> HookResult {
    HookResult {
        name: name.into(),
        type_: kind,
        status,
        attempts: 1,
        error: None,
    }
}

#[test]
fn confirm_hooks_approve_only_when_all_answer_2xx() {
    let st = status(
        CanaryPhase::WaitingApproval,
        Some(GateKind::BeforeTrafficIncrease),
    );
    let ok = result("a", WebhookType::ConfirmTrafficIncrease, Some(200));
    let wait = result("b", WebhookType::ConfirmTrafficIncrease, Some(409));
    let other = result("c", WebhookType::ConfirmPromotion, Some(200));
    assert!(gate_approvals_from_confirm_hooks(&[ok.clone(), wait], &st, now()).is_empty());
    assert!(gate_approvals_from_confirm_hooks(std::slice::from_ref(&other), &st, now()).is_empty());
    let a = gate_approvals_from_confirm_hooks(&[ok, other], &st, now());
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].id,
        Approval::key(GateKind::BeforeTrafficIncrease, "rev2", 1)
    );
    assert!(a[0].approved);
    assert_eq!(
        (a[0].by.as_str(), a[0].via.as_str()),
        ("webhook:a", "webhook")
    );
    // Not waiting: nothing to approve.
    let progressing = status(CanaryPhase::Progressing, None);
    let ok = result("a", WebhookType::ConfirmTrafficIncrease, Some(200));
    assert!(gate_approvals_from_confirm_hooks(&[ok], &progressing, now()).is_empty());
}

#[test]
fn rollback_hook_2xx_aborts_the_release_in_flight() {
    let st = status(CanaryPhase::Progressing, None);
    assert!(rollback_requested(
        &[result("rb", WebhookType::Rollback, Some(404))],
        &st,
        now()
    )
    .is_none());
    assert!(
        rollback_requested(&[result("ev", WebhookType::Event, Some(200))], &st, now()).is_none()
    );
    let c = rollback_requested(
        &[result("rb", WebhookType::Rollback, Some(200))],
        &st,
        now(),
    )
    .unwrap();
    assert_eq!(c.kind, CommandKind::Abort);
    assert_eq!(c.revision, "rev2");
    // The core honours aborts made at or after the release started.
    assert!(c.at >= st.release_started_at.unwrap());
    let idle = status(CanaryPhase::Succeeded, None);
    assert!(rollback_requested(
        &[result("rb", WebhookType::Rollback, Some(200))],
        &idle,
        now()
    )
    .is_none());
}

#[test]
fn check_hooks_become_metric_verdicts() {
    let m = hook_checks(
        &[
            result("load", WebhookType::PreRollout, Some(200)),
            result("smoke", WebhookType::Rollout, Some(500)),
            result("ev", WebhookType::Event, Some(500)),
            result("down", WebhookType::Rollout, None),
        ],
        now(),
    );
    let verdicts: Vec<(&str, MetricVerdict)> =
        m.iter().map(|m| (m.name.as_str(), m.verdict)).collect();
    assert_eq!(
        verdicts,
        vec![
            ("webhook/load", MetricVerdict::Pass),
            ("webhook/smoke", MetricVerdict::Fail),
            ("webhook/down", MetricVerdict::Fail),
        ]
    );
    assert!(m[1].reason.contains("HTTP 500"));
}

#[test]
fn confirm_hooks_close_their_gates() {
    let mut spec: CanarySpec =
        serde_json::from_value(serde_json::json!({"targetRef": {"name": "p"}})).unwrap();
    assert_eq!(effective_gates(&spec), GatesSpec::default());
    spec.webhooks
        .push(hook("c", WebhookType::ConfirmPromotion, "http://x".into()));
    spec.webhooks
        .push(hook("r", WebhookType::Rollout, "http://x".into()));
    let g = effective_gates(&spec);
    assert!(g.before_promotion && !g.before_rollout && !g.before_traffic_increase);
}

#[test]
fn note_payload_carries_event() {
    let h = hook("ev", WebhookType::Event, "http://x".into());
    let note = Note {
        type_: NoteType::Warning,
        reason: crate::rollout::EventReason::RolledBack,
        message: "revision rev2 rolled back: x".into(),
    };
    let p = WebhookPayload::for_note(
        "shop",
        "podinfo",
        &status(CanaryPhase::Failed, None),
        &h,
        &note,
    );
    assert_eq!(p.metadata["eventType"], "Warning");
    assert_eq!(p.metadata["eventReason"], "RolledBack");
    assert_eq!(p.type_, "event");
}

#[tokio::test]
async fn a_redirect_answer_is_not_followed() {
    use axum::http::{header::LOCATION, StatusCode};
    let mut target = testrecv::start(vec![]).await;
    let location = target.url("/elsewhere");
    let redirector = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, location)]) }
    });
    let addr = testrecv::serve(redirector).await;
    let h = hook("smoke", WebhookType::Rollout, format!("http://{addr}/hook"));
    let secret = SecretString::new("s3cret");
    let st = status(CanaryPhase::Progressing, None);
    let r = caller()
        .call(
            &h,
            Some(&secret),
            &WebhookPayload::new("shop", "podinfo", &st, &h),
        )
        .await;
    assert_eq!(
        (r.status, r.attempts, r.ok()),
        (Some(307), 1, false),
        "{r:?}"
    );
    let check = &hook_checks(&[r], now())[0];
    assert_eq!(check.verdict, MetricVerdict::Fail);
    assert!(
        check
            .reason
            .contains("HTTP 307 after 1 attempt(s): a redirect, and redirects are not followed"),
        "{}",
        check.reason
    );
    let nothing = tokio::time::timeout(Duration::from_millis(300), target.rx.recv()).await;
    assert!(
        nothing.is_err(),
        "the signed payload was re-sent: {nothing:?}"
    );
}
