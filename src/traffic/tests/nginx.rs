use serde_json::{json, Value};

use super::*;
use crate::crd::{RequestMatch, SessionAffinity};
use crate::testing::fixture;
use crate::traffic::{IngressNginxRouter, RouterError, TrafficRouter, DEFAULT_ANNOTATION_PREFIX};

const ING: &str = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses";
const AV: &str = "networking.k8s.io/v1";

fn user_ingress() -> Value {
    json!({
        "apiVersion": AV, "kind": "Ingress",
        "metadata": {"name": "podinfo", "namespace": NS, "annotations": {
            "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
            "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["podinfo.example.com"], "secretName": "podinfo-tls"}],
            "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
            "rules": [
                {"host": "podinfo.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}},
                    {"path": "/static", "pathType": "Prefix", "backend": {"service": {"name": "static", "port": {"number": 80}}}}]}},
                {"host": "static.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "static", "port": {"number": 80}}}}]}}
            ]
        }
    })
}

async fn set_with(
    router_prefix: &str,
    t: &RouteTarget,
    canary: Option<&Value>,
    weight: i32,
) -> Value {
    let (client, mock) = start(vec![
        get(ING, "podinfo", Some(&user_ingress())),
        get(ING, "podinfo-canary", canary),
        apply(ING, "podinfo-canary", AV, "Ingress"),
    ]);
    IngressNginxRouter::new(client, router_prefix)
        .set_weight(t, weight)
        .await
        .unwrap();
    applied(&mock.finish(), 2)
}

async fn observe(t: &RouteTarget, held: Option<&Value>) -> Option<i32> {
    let (client, mock) = start(vec![get(ING, "podinfo-canary", held)]);
    let w = IngressNginxRouter::new(client, DEFAULT_ANNOTATION_PREFIX)
        .observed_weight(t)
        .await
        .unwrap();
    mock.finish();
    w
}

#[tokio::test]
async fn canary_copy_matches_what_a_real_server_accepted() {
    let t = target();
    let body = set_with(DEFAULT_ANNOTATION_PREFIX, &t, None, 10).await;
    let real = fixture("25-ingress-canary-create")["request"]["body"].clone();
    // Same spec as the canary Ingress a real server stored: backends on -canary, no TLS,
    // and none of the paths that route to other Services.
    assert_eq!(body["spec"], real["spec"]);
    for (k, v) in real["metadata"]["annotations"].as_object().unwrap() {
        assert_eq!(&body["metadata"]["annotations"][k], v, "{k}");
    }
    // The user's nginx settings come along; other tools' annotations do not.
    assert_eq!(
        body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"],
        "8m"
    );
    assert!(body["metadata"]["annotations"]
        .get("kubectl.kubernetes.io/last-applied-configuration")
        .is_none());
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], owner().uid);
}

#[tokio::test]
async fn steps_and_rollback() {
    let t = target();
    let mut held: Option<Value> = None;
    assert_eq!(observe(&t, None).await, None);
    for w in [0, 20, 100, 0] {
        let body = set_with(DEFAULT_ANNOTATION_PREFIX, &t, held.as_ref(), w).await;
        let a = &body["metadata"]["annotations"];
        assert_eq!(a["nginx.ingress.kubernetes.io/canary"], "true");
        assert_eq!(
            a["nginx.ingress.kubernetes.io/canary-weight"],
            w.to_string()
        );
        held = Some(merged(held.as_ref(), &body));
        assert_eq!(observe(&t, held.as_ref()).await, Some(w));
    }
    let (client, mock) = start(vec![
        get(ING, "podinfo-canary", held.as_ref()),
        delete(ING, "podinfo-canary"),
    ]);
    IngressNginxRouter::new(client, DEFAULT_ANNOTATION_PREFIX)
        .finalize(&t)
        .await
        .unwrap();
    mock.finish();
}

#[tokio::test]
async fn ab_by_header_and_cookie_with_custom_prefix() {
    let mut t = target();
    t.routing.matches = vec![
        RequestMatch {
            header: Some("x-canary".into()),
            exact: Some("insider".into()),
            ..Default::default()
        },
        RequestMatch {
            cookie: Some("canary".into()),
            ..Default::default()
        },
    ];
    let body = set_with("custom.nginx.org", &t, None, 10).await;
    let a = &body["metadata"]["annotations"];
    assert_eq!(a["custom.nginx.org/canary"], "true");
    assert_eq!(a["custom.nginx.org/canary-weight"], "0");
    assert_eq!(a["custom.nginx.org/canary-by-header"], "x-canary");
    assert_eq!(a["custom.nginx.org/canary-by-header-value"], "insider");
    assert_eq!(a["custom.nginx.org/canary-by-cookie"], "canary");
    assert!(a.get("nginx.ingress.kubernetes.io/canary").is_none());
    // The user's annotations under the default prefix are not this controller's.
    assert!(a
        .get("nginx.ingress.kubernetes.io/proxy-body-size")
        .is_none());
}

#[tokio::test]
async fn ab_weight_is_recorded() {
    let mut t = target();
    t.routing.matches = vec![RequestMatch {
        header: Some("x-canary".into()),
        regex: Some("^in.*".into()),
        ..Default::default()
    }];
    let body = set_with(DEFAULT_ANNOTATION_PREFIX, &t, None, 30).await;
    assert_eq!(
        body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header-pattern"],
        "^in.*"
    );
    assert_eq!(observe(&t, Some(&merged(None, &body))).await, Some(30));
}

#[tokio::test]
async fn unsupported_and_missing_are_config_errors() {
    let mut t = target();
    t.routing.session_affinity = Some(SessionAffinity::default());
    let (client, mock) = start(vec![]);
    let e = IngressNginxRouter::new(client, DEFAULT_ANNOTATION_PREFIX)
        .set_weight(&t, 10)
        .await
        .unwrap_err();
    mock.finish();
    assert!(e.to_string().contains("session affinity"), "{e}");

    let mut t = target();
    t.routing.ingress = Some("web".into());
    let (client, mock) = start(vec![get(ING, "web", None)]);
    let e = IngressNginxRouter::new(client, DEFAULT_ANNOTATION_PREFIX)
        .set_weight(&t, 10)
        .await
        .unwrap_err();
    mock.finish();
    assert!(matches!(e, RouterError::Config(_)));
    assert!(e.to_string().contains("Ingress shop/web not found"), "{e}");

    let mut t = target();
    t.routing.matches = vec![RequestMatch {
        cookie: Some("a".into()),
        exact: Some("yes".into()),
        ..Default::default()
    }];
    let (client, mock) = start(vec![
        get(ING, "podinfo", Some(&user_ingress())),
        get(ING, "podinfo-canary", None),
    ]);
    let e = IngressNginxRouter::new(client, DEFAULT_ANNOTATION_PREFIX)
        .set_weight(&t, 10)
        .await
        .unwrap_err();
    mock.finish();
    assert!(e.to_string().contains("\"always\""), "{e}");
}

#[tokio::test]
async fn a_foreign_canary_ingress_is_left_alone() {
    let foreign = fixture("25-ingress-canary-create")["response"]["body"].clone();
    let (client, mock) = start(vec![
        get(ING, "podinfo", Some(&user_ingress())),
        get(ING, "podinfo-canary", Some(&foreign)),
    ]);
    let e = IngressNginxRouter::new(client, DEFAULT_ANNOTATION_PREFIX)
        .set_weight(&target(), 10)
        .await
        .unwrap_err();
    mock.finish();
    assert!(e.to_string().contains("not created by serin"), "{e}");
}
