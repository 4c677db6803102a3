//! Issue 13: one namespace can neither read another's Secrets through serin nor make
//! serin send them anywhere. Real HTTP on loopback: a fake Prometheus and a webhook
//! receiver record what reached them.

use super::*;
use crate::gates::testrecv;
use crate::providers::fake_prometheus::{FakePrometheus, Reply};
use crate::providers::{AllowedAddresses, PrometheusSources};

/// "s3cr3t", base64.
const TOKEN_B64: &str = "czNjcjN0";

fn with_sources(h: Harness, sources: PrometheusSources) -> Harness {
    let ctx = Arc::new(Context {
        written: Default::default(),
        templates: None,
        policies: None,
        sources: Arc::new(sources),
        ..(*h.ctx).clone()
    });
    Harness { ctx, ..h }
}

/// A template sending `up` with the token of Secret `secret` to `address`.
fn provider_template(address: &str, secret: &str) -> Value {
    json!({"apiVersion": "serin.dev/v1alpha1", "kind": "AnalysisTemplate",
           "metadata": {"name": "steal", "namespace": NS},
           "spec": {"provider": {"prometheus": {"address": address,
                        "secretRef": {"name": secret, "bearerTokenKey": "token"}}},
                    "metrics": [{"name": "stolen", "query": "up", "threshold": {"max": 1}}]}})
}

/// A Secret holding `token` (such as a service account's), with `labels`.
fn secret(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "sa-token", "namespace": NS, "labels": labels},
           "data": {"token": TOKEN_B64, "ca.crt": TOKEN_B64}})
}

fn opt_in() -> Value {
    json!({"serin.dev/credentials": "true"})
}

fn spec(templates: Value) -> Value {
    json!({"targetRef": {"name": "podinfo"},
           "analysis": {"steps": [10, 50], "interval": "1m", "templates": templates}})
}

/// What a release does, whatever its configuration: set up, a new revision, checks.
/// Returns every API call made.
async fn drive(h: &Harness, image: &str) -> Vec<String> {
    let mut calls = Vec::new();
    h.manual_rollouts();
    calls.extend(h.reconcile().await.1);
    h.settle();
    h.instant_rollouts();
    for _ in 0..3 {
        calls.extend(h.reconcile().await.1);
    }
    h.advance(30);
    calls.extend(h.reconcile().await.1);
    h.set_image(image);
    for _ in 0..2 {
        calls.extend(h.reconcile().await.1);
    }
    for _ in 0..3 {
        h.advance(60);
        calls.extend(h.reconcile().await.1);
    }
    calls
}

fn config_condition(h: &Harness) -> Value {
    let st = h.status();
    st["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "ConfigValid"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_template_pointing_a_secret_without_opt_in_at_its_own_address_sends_nothing() {
    let fake = FakePrometheus::start().await;
    fake.otherwise(Reply::vector(0, &[("{}", "0")]));
    let h = Harness::new(spec(json!([{"name": "steal"}])));
    h.server
        .insert(provider_template(&fake.address, "sa-token"));
    h.server.insert(secret(json!({})));
    let h = with_sources(h, PrometheusSources::new(None, Duration::from_secs(2)));
    drive(&h, "podinfo:2").await;

    assert!(fake.seen().is_empty(), "sent: {:?}", fake.seen());
    let cond = config_condition(&h);
    assert_eq!(cond["status"], "False", "{cond}");
    assert_eq!(cond["reason"], "InvalidTemplate");
    let msg = cond["message"].as_str().unwrap();
    for says in [
        "Secret shop/sa-token",
        "AnalysisTemplate \"steal\"",
        "serin.dev/credentials: \"true\"",
        "kubectl label secret -n shop sa-token serin.dev/credentials=true",
    ] {
        assert!(msg.contains(says), "{says:?} not in {msg}");
    }
    assert!(!msg.contains("ca.crt") && !msg.contains(TOKEN_B64) && !msg.contains("s3cr3t"));
    let warned: Vec<_> = h.events.take().into_iter().filter(|e| e.warning).collect();
    assert!(
        warned
            .iter()
            .any(|e| e.reason == "InvalidTemplate" && e.message.contains("serin.dev/credentials")),
        "{warned:?}"
    );

    // Once the Secret opts in, the same template sends its token: the receiver above
    // would have seen it.
    h.edit("/api/v1/namespaces/shop/secrets/sa-token", |s| {
        s["metadata"]["labels"] = opt_in();
    });
    drive(&h, "podinfo:3").await;
    let seen = fake.seen();
    assert!(!seen.is_empty(), "{}", h.status());
    assert_eq!(seen[0].headers["authorization"], "Bearer s3cr3t");
}

#[tokio::test]
async fn a_provider_address_outside_the_allow_list_is_refused_and_its_secret_unread() {
    let fake = FakePrometheus::start().await;
    fake.otherwise(Reply::vector(0, &[("{}", "0")]));
    let h = Harness::new(spec(json!([{"name": "steal"}])));
    h.server
        .insert(provider_template(&fake.address, "sa-token"));
    h.server.insert(secret(opt_in()));
    let allowed = AllowedAddresses::parse("prometheus.monitoring:9090").unwrap();
    let sources = PrometheusSources::new(
        Some("http://thanos.monitoring:10902".into()),
        Duration::from_secs(2),
    )
    .with_allowed(allowed);
    let h = with_sources(h, sources);
    let calls = drive(&h, "podinfo:2").await;

    assert!(fake.seen().is_empty(), "sent: {:?}", fake.seen());
    assert!(
        !calls.iter().any(|c| c.contains("/secrets/")),
        "the Secret was read: {calls:#?}"
    );
    let cond = config_condition(&h);
    assert_eq!(cond["reason"], "InvalidTemplate", "{cond}");
    let msg = cond["message"].as_str().unwrap();
    assert!(msg.starts_with("template \"steal\": "), "{msg}");
    assert!(
        msg.contains(&format!("{:?} is not among the addresses", fake.address)),
        "{msg}"
    );
    // The list names what is allowed, the controller's own Prometheus included.
    assert!(
        msg.contains("prometheus.monitoring:9090, http://thanos.monitoring:10902"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_provider_error_body_never_reaches_the_status() {
    let fake = FakePrometheus::start().await;
    let page = "<html>internal admin console: db password hunter2</html>";
    fake.otherwise(Reply::text(502, page));
    let h = Harness::new(spec(json!([{"name": "error-rate"}])));
    let h = with_sources(
        h,
        PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2)),
    );
    drive(&h, "podinfo:2").await;

    assert!(!fake.seen().is_empty(), "no check ran: {}", h.status());
    let st = h.status();
    let reason = st["metrics"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("HTTP 502 Bad Gateway from the provider, body not shown"),
        "{st}"
    );
    let all = st.to_string();
    for leaked in ["hunter2", "admin console", "<html>"] {
        assert!(!all.contains(leaked), "{leaked} in {all}");
    }
    let events = format!("{:?}", h.events.take());
    assert!(!events.contains("hunter2"), "{events}");
}

#[tokio::test]
async fn a_webhook_secret_without_opt_in_is_refused_and_nothing_is_called() {
    let mut recv = testrecv::start(vec![]).await;
    let h = Harness::new(json!({"targetRef": {"name": "podinfo"},
        "analysis": {"steps": [10, 50], "interval": "1m", "templates": [{"name": "error-rate"}]},
        "webhooks": [{"name": "smoke", "type": "pre-rollout", "url": recv.url("/hook"),
                      "secretRef": {"name": "sa-token", "key": "token"}}]}));
    h.server
        .insert(secret(json!({"serin.dev/credentials": "yes"})));
    let h = h.with_webhooks();
    *h.metrics.value.lock().unwrap() = Some(Ok(0.0));
    drive(&h, "podinfo:2").await;

    assert!(recv.rx.try_recv().is_err(), "the hook was called");
    let cond = config_condition(&h);
    assert_eq!(cond["reason"], "InvalidWebhook", "{cond}");
    let msg = cond["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Secret shop/sa-token named by webhook \"smoke\" (secretRef) is not labelled serin.dev/credentials: \"true\""),
        "{msg}"
    );

    h.edit("/api/v1/namespaces/shop/secrets/sa-token", |s| {
        s["metadata"]["labels"] = opt_in();
    });
    drive(&h, "podinfo:3").await;
    let got = recv.next(5).await;
    assert!(got.header("x-serin-signature").is_some());
}

/// Issue 16: a Datadog template's keys come from an opted-in Secret, through the same
/// door as Prometheus credentials, and reach Datadog only as its two headers.
#[tokio::test]
async fn a_datadog_templates_keys_come_only_from_an_opted_in_secret() {
    let fake = FakePrometheus::start().await;
    fake.otherwise(Reply::json(
        200,
        r#"{"status":"ok","res_type":"time_series","series":[{"expression":"q","scope":"*","pointlist":[[1799999940000,0.5]]}]}"#,
    ));
    let h = Harness::new(spec(json!([{"name": "dd"}])));
    h.server.insert(json!({"apiVersion": "serin.dev/v1alpha1", "kind": "AnalysisTemplate",
           "metadata": {"name": "dd", "namespace": NS},
           "spec": {"provider": {"datadog": {"address": fake.address,
                        "secretRef": {"name": "dd-keys"}}},
                    "metrics": [{"name": "errors", "query": "sum:errors{service:{{target}}}", "threshold": {"max": 1}}]}}));
    // "api-123" and "app-456", base64.
    h.server.insert(json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "dd-keys", "namespace": NS, "labels": {}},
           "data": {"api-key": "YXBpLTEyMw==", "application-key": "YXBwLTQ1Ng=="}}));
    let h = with_sources(h, PrometheusSources::new(None, Duration::from_secs(2)));
    drive(&h, "podinfo:2").await;
    assert!(fake.seen().is_empty(), "sent: {:?}", fake.seen());
    let msg = config_condition(&h)["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(
            "Secret shop/dd-keys named by AnalysisTemplate \"dd\" (provider.datadog.secretRef)"
        ),
        "{msg}"
    );
    assert!(!msg.contains("YXBp") && !msg.contains("api-123"), "{msg}");

    h.edit("/api/v1/namespaces/shop/secrets/dd-keys", |s| {
        s["metadata"]["labels"] = opt_in();
    });
    drive(&h, "podinfo:3").await;
    let seen = fake.seen();
    assert!(!seen.is_empty(), "{}", h.status());
    assert_eq!(seen[0].path, "/api/v1/query");
    assert_eq!(seen[0].params["query"], "sum:errors{service:podinfo}");
    assert_eq!(seen[0].headers["dd-api-key"], "api-123");
    assert_eq!(seen[0].headers["dd-application-key"], "app-456");
    assert!(seen[0].headers.get("authorization").is_none());
    let metrics = h.status()["metrics"].clone();
    assert!(
        metrics
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["name"] == "errors" && m["value"] == 0.5)),
        "{metrics}"
    );
}
