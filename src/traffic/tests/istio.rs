use serde_json::{json, Value};

use super::schema::assert_valid;
use super::*;
use crate::crd::{RequestMatch, SessionAffinity};
use crate::testing::{fixture_response, status_body};
use crate::traffic::{IstioRouter, RouterError, TrafficRouter};

const VS: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices";
const DR: &str = "/apis/networking.istio.io/v1/namespaces/shop/destinationrules";

/// One `set_weight` against a server holding `existing`; returns the applied
/// (DestinationRule primary, DestinationRule canary, VirtualService) bodies.
async fn set(t: &RouteTarget, existing: Option<&Value>, weight: i32) -> (Value, Value, Value) {
    let (client, mock) = start(vec![
        get(VS, "podinfo", existing),
        apply(
            DR,
            "podinfo-primary",
            "networking.istio.io/v1",
            "DestinationRule",
        ),
        apply(
            DR,
            "podinfo-canary",
            "networking.istio.io/v1",
            "DestinationRule",
        ),
        apply(VS, "podinfo", "networking.istio.io/v1", "VirtualService"),
    ]);
    IstioRouter::new(client)
        .set_weight(t, weight)
        .await
        .unwrap();
    let log = mock.finish();
    let (p, c, vs) = (applied(&log, 1), applied(&log, 2), applied(&log, 3));
    for o in [&p, &c] {
        assert_valid(o);
    }
    (p, c, vs)
}

async fn observe(t: &RouteTarget, held: Option<&Value>) -> Option<i32> {
    let (client, mock) = start(vec![get(VS, "podinfo", held)]);
    let w = IstioRouter::new(client).observed_weight(t).await.unwrap();
    mock.finish();
    w
}

fn weights(route: &Value) -> Vec<(String, i64)> {
    route
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["destination"]["host"].as_str().unwrap().to_string(),
                r["weight"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn absent_virtual_service_observes_none() {
    assert_eq!(observe(&target(), None).await, None);
}

#[tokio::test]
async fn steps_promotion_and_rollback_on_a_serin_owned_virtual_service() {
    let t = target();
    let mut held: Option<Value> = None;
    // Initialization, steps, blue/green switch, back to the primary.
    for w in [0, 10, 50, 100, 0] {
        let (p, c, vs) = set(&t, held.as_ref(), w).await;
        assert_eq!(p["spec"]["host"], "podinfo-primary");
        assert_eq!(c["spec"]["host"], "podinfo-canary");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], owner().uid);
        assert_eq!(vs["metadata"]["ownerReferences"][0]["uid"], owner().uid);
        assert_eq!(vs["spec"]["hosts"], json!(["podinfo"]));
        assert!(vs["spec"].get("gateways").is_none());
        let http = vs["spec"]["http"].as_array().unwrap();
        assert_eq!(http.len(), 1);
        assert_eq!(
            weights(&http[0]["route"]),
            vec![
                ("podinfo-primary".into(), i64::from(100 - w)),
                ("podinfo-canary".into(), i64::from(w))
            ]
        );
        assert_eq!(http[0]["route"][1]["destination"]["port"]["number"], 9898);
        assert_valid(&vs);
        held = Some(merged(held.as_ref(), &vs));
        assert_eq!(observe(&t, held.as_ref()).await, Some(w));
    }
}

fn user_vs() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": NS, "uid": "user-uid"},
        "spec": {
            "hosts": ["podinfo", "podinfo.example.com"],
            "gateways": ["istio-system/public-gw", "mesh"],
            "http": [
                {"name": "api", "match": [{"uri": {"prefix": "/api"}}],
                 "route": [{"destination": {"host": "podinfo", "port": {"number": 9898}}}],
                 "retries": {"attempts": 3, "perTryTimeout": "2s"}, "timeout": "5s",
                 "corsPolicy": {"allowOrigins": [{"exact": "https://shop.example.com"}]},
                 "headers": {"request": {"set": {"x-from": "mesh"}}}},
                {"name": "static", "route": [{"destination": {"host": "static.shop.svc.cluster.local"}}]}
            ]
        }
    })
}

#[tokio::test]
async fn user_owned_virtual_service_keeps_everything_but_the_split() {
    let t = target();
    let user = user_vs();
    assert_valid(&user);
    let (_, _, vs) = set(&t, Some(&user), 10).await;
    // Only http and serin's annotation are applied: hosts and gateways stay the user's,
    // and no owner reference goes on an object the user owns.
    assert_eq!(
        vs["spec"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["http"]
    );
    assert!(vs["metadata"].get("ownerReferences").is_none());
    assert_eq!(
        vs["metadata"]["annotations"][crate::traffic::WEIGHT_ANNOTATION],
        "10"
    );
    let http = vs["spec"]["http"].as_array().unwrap();
    let before = user["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 2);
    for k in [
        "name",
        "match",
        "retries",
        "timeout",
        "corsPolicy",
        "headers",
    ] {
        assert_eq!(http[0][k], before[0][k], "{k} kept");
    }
    assert_eq!(
        weights(&http[0]["route"]),
        vec![
            ("podinfo-primary".into(), 90),
            ("podinfo-canary".into(), 10)
        ]
    );
    assert_eq!(http[1], before[1], "other routes untouched");
    let held = merged(Some(&user), &vs);
    assert_valid(&held);
    assert_eq!(held["spec"]["gateways"], user["spec"]["gateways"]);
    assert_eq!(observe(&t, Some(&held)).await, Some(10));

    // Idempotent: applying the same weight over the result writes the same http.
    let (_, _, again) = set(&t, Some(&held), 10).await;
    assert_eq!(again["spec"], vs["spec"]);

    // Finalize hands the routes back to the apex Service and removes serin's rules.
    let (client, mock) = start(vec![
        get(VS, "podinfo", Some(&held)),
        apply(VS, "podinfo", "networking.istio.io/v1", "VirtualService"),
        delete(DR, "podinfo-primary"),
        delete(DR, "podinfo-canary"),
    ]);
    IstioRouter::new(client).finalize(&t).await.unwrap();
    let log = mock.finish();
    let back = applied(&log, 1);
    assert!(back["metadata"].get("annotations").is_none());
    assert_eq!(back["spec"]["http"], user["spec"]["http"]);
}

#[tokio::test]
async fn user_virtual_service_without_app_route_is_a_config_error() {
    let mut user = user_vs();
    user["spec"]["http"].as_array_mut().unwrap().remove(0);
    let (client, mock) = start(vec![get(VS, "podinfo", Some(&user))]);
    let e = IstioRouter::new(client)
        .set_weight(&target(), 10)
        .await
        .unwrap_err();
    mock.finish();
    assert!(matches!(e, RouterError::Config(_)));
    assert!(
        e.to_string().contains("no http route to host podinfo"),
        "{e}"
    );
}

#[tokio::test]
async fn ab_by_header_and_cookie() {
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
    let (_, _, vs) = set(&t, None, 10).await;
    assert_valid(&vs);
    let http = vs["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 2);
    assert_eq!(http[0]["name"], "serin-ab-0");
    assert_eq!(
        http[0]["match"][0]["headers"]["x-canary"],
        json!({"exact": "insider"})
    );
    let cookie_re = http[0]["match"][1]["headers"]["cookie"]["regex"]
        .as_str()
        .unwrap();
    assert!(cookie_re.contains("canary=always"), "{cookie_re}");
    assert_eq!(
        weights(&http[0]["route"]),
        vec![("podinfo-canary".into(), 100)]
    );
    // Everyone else stays on the primary.
    assert_eq!(
        weights(&http[1]["route"]),
        vec![
            ("podinfo-primary".into(), 100),
            ("podinfo-canary".into(), 0)
        ]
    );
    let held = merged(None, &vs);
    assert_eq!(observe(&t, Some(&held)).await, Some(10));

    // Rollback removes the A/B route.
    let (_, _, vs) = set(&t, Some(&held), 0).await;
    let http = vs["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 1);
    assert!(http[0].get("name").is_none());
    assert_eq!(observe(&t, Some(&merged(Some(&held), &vs))).await, Some(0));

    // A/B routes left over while the spec no longer asks for A/B: observed as unknown.
    assert_eq!(observe(&target(), Some(&held)).await, None);
}

#[tokio::test]
async fn ab_route_combines_with_the_users_match() {
    let mut t = target();
    t.routing.matches = vec![RequestMatch {
        header: Some("X-User".into()),
        regex: Some("^(alice|bob)$".into()),
        ..Default::default()
    }];
    let user = user_vs();
    let (_, _, vs) = set(&t, Some(&user), 25).await;
    let held = merged(Some(&user), &vs);
    assert_valid(&held);
    let ab = &vs["spec"]["http"][0];
    assert_eq!(ab["name"], "serin-ab-0");
    // The user's /api prefix AND the header: A/B never widens what the route matched.
    assert_eq!(
        ab["match"],
        json!([{"uri": {"prefix": "/api"}, "headers": {"x-user": {"regex": "^(alice|bob)$"}}}])
    );
    assert_eq!(ab["retries"], user["spec"]["http"][0]["retries"]);
}

#[tokio::test]
async fn mirroring() {
    let mut t = target();
    t.routing.mirror_percent = Some(25);
    let (_, _, vs) = set(&t, None, 10).await;
    assert_valid(&vs);
    let r = &vs["spec"]["http"][0];
    assert_eq!(
        r["mirror"],
        json!({"host": "podinfo-canary", "port": {"number": 9898}})
    );
    assert_eq!(r["mirrorPercentage"]["value"].as_f64(), Some(25.0));
    assert_eq!(
        weights(&r["route"]),
        vec![
            ("podinfo-primary".into(), 100),
            ("podinfo-canary".into(), 0)
        ]
    );
    let held = merged(None, &vs);
    assert_eq!(observe(&t, Some(&held)).await, Some(10));
    // The switch: live traffic moves, the mirror goes.
    let (_, _, vs) = set(&t, Some(&held), 100).await;
    let r = &vs["spec"]["http"][0];
    assert!(r.get("mirror").is_none() && r.get("mirrorPercentage").is_none());
    assert_eq!(
        weights(&r["route"]),
        vec![
            ("podinfo-primary".into(), 0),
            ("podinfo-canary".into(), 100)
        ]
    );
}

#[tokio::test]
async fn session_affinity_by_cookie() {
    let mut t = target();
    t.routing.session_affinity = Some(SessionAffinity {
        cookie_name: "serin-canary".into(),
        max_age_seconds: 3600,
    });
    let (_, _, vs) = set(&t, None, 20).await;
    assert_valid(&vs);
    let http = vs["spec"]["http"].as_array().unwrap();
    assert_eq!(http[0]["name"], "serin-affinity-0");
    assert!(http[0]["match"][0]["headers"]["cookie"]["regex"]
        .as_str()
        .unwrap()
        .contains("serin-canary=podinfo"));
    assert_eq!(
        weights(&http[1]["route"]),
        vec![
            ("podinfo-primary".into(), 80),
            ("podinfo-canary".into(), 20)
        ]
    );
    assert_eq!(
        http[1]["route"][1]["headers"]["response"]["add"]["Set-Cookie"],
        "serin-canary=podinfo; Max-Age=3600"
    );
    assert_eq!(observe(&t, Some(&merged(None, &vs))).await, Some(20));
}

#[tokio::test]
async fn gateways_hosts_and_traffic_policy_pass_through() {
    let mut t = target();
    t.routing.gateways = vec!["istio-system/public-gw".into()];
    t.routing.hosts = vec!["podinfo.example.com".into()];
    t.routing.traffic_policy = Some(
        json!({"tls": {"mode": "ISTIO_MUTUAL"}, "connectionPool": {"http": {"http2MaxRequests": 100}}}),
    );
    let (p, c, vs) = set(&t, None, 0).await;
    assert_eq!(vs["spec"]["gateways"], json!(["istio-system/public-gw"]));
    assert_eq!(vs["spec"]["hosts"], json!(["podinfo.example.com"]));
    assert_eq!(p["spec"]["trafficPolicy"]["tls"]["mode"], "ISTIO_MUTUAL");
    assert_eq!(c["spec"]["trafficPolicy"], p["spec"]["trafficPolicy"]);
}

#[tokio::test]
async fn bad_traffic_policy_is_caught_by_the_schema() {
    // The negative case: a trafficPolicy field Istio does not know would be rejected.
    let mut t = target();
    t.routing.traffic_policy = Some(json!({"tls": {"mode": "SOMETIMES"}}));
    let (p, _, _) = {
        let (client, mock) = start(vec![
            get(VS, "podinfo", None),
            apply(
                DR,
                "podinfo-primary",
                "networking.istio.io/v1",
                "DestinationRule",
            ),
            apply(
                DR,
                "podinfo-canary",
                "networking.istio.io/v1",
                "DestinationRule",
            ),
            apply(VS, "podinfo", "networking.istio.io/v1", "VirtualService"),
        ]);
        IstioRouter::new(client).set_weight(&t, 0).await.unwrap();
        let log = mock.finish();
        (applied(&log, 1), (), ())
    };
    let v = super::schema::violations(super::schema::ISTIO, "DestinationRule", "v1", &p["spec"]);
    assert!(!v.is_empty());
}

#[tokio::test]
async fn rejection_by_the_server_is_a_clear_config_error() {
    let (status, body) = fixture_response("15-virtualservice-invalid-422");
    let (client, mock) = start(vec![
        get(VS, "podinfo", None),
        apply(
            DR,
            "podinfo-primary",
            "networking.istio.io/v1",
            "DestinationRule",
        ),
        apply(
            DR,
            "podinfo-canary",
            "networking.istio.io/v1",
            "DestinationRule",
        ),
        crate::testing::expect("PATCH", apply_path(VS, "podinfo"), status, body),
    ]);
    let e = IstioRouter::new(client)
        .set_weight(&target(), 10)
        .await
        .unwrap_err();
    mock.finish();
    assert_eq!(e.category(), "config");
    let msg = e.to_string();
    assert!(
        msg.contains("rejected VirtualService shop/podinfo"),
        "{msg}"
    );
    assert!(msg.contains("must be of type integer"), "{msg}");
}

#[tokio::test]
async fn other_api_errors_stay_kube_errors() {
    let (client, mock) = start(vec![crate::testing::expect(
        "GET",
        format!("{VS}/podinfo"),
        403,
        status_body(403, "Forbidden", "virtualservices is forbidden"),
    )]);
    let e = IstioRouter::new(client)
        .set_weight(&target(), 10)
        .await
        .unwrap_err();
    mock.finish();
    assert_eq!(e.category(), "kube");
}

#[tokio::test]
async fn finalize_deletes_serin_objects() {
    let t = target();
    let (_, _, vs) = set(&t, None, 0).await;
    let held = merged(None, &vs);
    let (client, mock) = start(vec![
        get(VS, "podinfo", Some(&held)),
        delete(VS, "podinfo"),
        delete(DR, "podinfo-primary"),
        delete(DR, "podinfo-canary"),
    ]);
    IstioRouter::new(client).finalize(&t).await.unwrap();
    mock.finish();
}

#[tokio::test]
async fn invalid_routing_spec_makes_no_calls() {
    let mut t = target();
    t.routing.mirror_percent = Some(0);
    let (client, mock) = start(vec![]);
    let e = IstioRouter::new(client)
        .set_weight(&t, 10)
        .await
        .unwrap_err();
    mock.finish();
    assert!(e.to_string().contains("spec.routing.mirrorPercent"), "{e}");
}

#[test]
fn cookie_regex_matches_only_that_cookie() {
    // RE2-style evaluation through CEL's matches(), as the proxies would apply it.
    let re = RequestMatch {
        cookie: Some("canary".into()),
        ..Default::default()
    }
    .cookie_header_regex()
    .unwrap();
    let matches = |header: &str| {
        let mut ctx = cel::Context::default();
        ctx.add_variable_from_value("h", header.to_string());
        ctx.add_variable_from_value("re", re.clone());
        cel::Program::compile("h.matches(re)")
            .unwrap()
            .execute(&ctx)
            .unwrap()
            == cel::Value::Bool(true)
    };
    assert!(matches("canary=always"));
    assert!(matches("session=abc; canary=always"));
    assert!(matches("canary=always; theme=dark"));
    assert!(!matches("canary=never"));
    assert!(!matches("notcanary=always"));
    assert!(!matches("canary=alwaysnot"));
}
