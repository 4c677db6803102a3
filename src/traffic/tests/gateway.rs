use serde_json::{json, Value};

use super::schema::{apply_defaults, assert_valid, crd_schema, violations, GATEWAY_API};
use super::*;
use crate::crd::{ParentRef, RequestMatch};
use crate::testing::{fixture, fixture_response};
use crate::traffic::{GatewayApiRouter, RouterError, TrafficRouter};

const HR: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes";
const AV: &str = "gateway.networking.k8s.io/v1";

async fn set(t: &RouteTarget, existing: Option<&Value>, weight: i32) -> Value {
    let (client, mock) = start(vec![
        get(HR, "podinfo", existing),
        apply(HR, "podinfo", AV, "HTTPRoute"),
    ]);
    GatewayApiRouter::new(client)
        .set_weight(t, weight)
        .await
        .unwrap();
    let log = mock.finish();
    let body = applied(&log, 1);
    assert_valid(&merged(existing, &body));
    body
}

async fn observe(t: &RouteTarget, held: Option<&Value>) -> Option<i32> {
    let (client, mock) = start(vec![get(HR, "podinfo", held)]);
    let w = GatewayApiRouter::new(client)
        .observed_weight(t)
        .await
        .unwrap();
    mock.finish();
    w
}

fn backends(rule: &Value) -> Vec<(String, i64, Option<i64>)> {
    rule["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().into(),
                b["port"].as_i64().unwrap(),
                b["weight"].as_i64(),
            )
        })
        .collect()
}

fn public_gw(t: &mut RouteTarget) {
    t.routing.parent_refs = vec![ParentRef {
        name: "public-gw".into(),
        namespace: Some("gateway".into()),
        ..Default::default()
    }];
    t.routing.hosts = vec!["podinfo.example.com".into()];
}

#[tokio::test]
async fn same_route_a_real_server_accepted() {
    // Fixture 11 is an HTTPRoute a real API server stored; serin's route at weight 10
    // for the same settings is the same object once the server's defaults are applied.
    let mut t = target();
    public_gw(&mut t);
    let body = set(&t, None, 10).await;
    let schema = crd_schema(GATEWAY_API, "HTTPRoute", "v1");
    let mut ours = body["spec"].clone();
    apply_defaults(&schema["properties"]["spec"], &mut ours);
    let stored = fixture("11-httproute-create")["response"]["body"]["spec"].clone();
    assert_eq!(ours, stored);
}

#[tokio::test]
async fn steps_on_a_mesh_route_default_parent_is_the_service() {
    let t = target();
    let mut held: Option<Value> = None;
    assert_eq!(observe(&t, None).await, None);
    for w in [0, 5, 50, 100, 0] {
        let body = set(&t, held.as_ref(), w).await;
        // Linkerd / GAMMA mesh routing: the route's parent is the apex Service.
        assert_eq!(
            body["spec"]["parentRefs"],
            json!([{"group": "", "kind": "Service", "name": "podinfo"}])
        );
        assert!(body["spec"].get("hostnames").is_none());
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], owner().uid);
        let rules = body["spec"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            backends(&rules[0]),
            vec![
                ("podinfo-primary".into(), 9898, Some(i64::from(100 - w))),
                ("podinfo-canary".into(), 9898, Some(i64::from(w)))
            ]
        );
        held = Some(merged(held.as_ref(), &body));
        assert_eq!(observe(&t, held.as_ref()).await, Some(w));
    }
}

#[tokio::test]
async fn ab_by_header_and_mirror() {
    let mut t = target();
    public_gw(&mut t);
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
    t.routing.mirror_percent = Some(30);
    let body = set(&t, None, 10).await;
    let rules = body["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0]["name"], "serin-ab");
    assert_eq!(
        rules[0]["matches"][0],
        json!({"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"type": "Exact", "name": "x-canary", "value": "insider"}]})
    );
    assert_eq!(rules[0]["matches"][1]["headers"][0]["name"], "Cookie");
    assert_eq!(
        backends(&rules[0]),
        vec![("podinfo-canary".into(), 9898, None)]
    );
    assert_eq!(
        backends(&rules[1]),
        vec![
            ("podinfo-primary".into(), 9898, Some(100)),
            ("podinfo-canary".into(), 9898, Some(0))
        ]
    );
    assert_eq!(
        rules[1]["filters"],
        json!([{"type": "RequestMirror", "requestMirror": {"backendRef": {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898}, "percent": 30}}])
    );
    let held = merged(None, &body);
    assert_eq!(observe(&t, Some(&held)).await, Some(10));
    // Promotion's last step / rollback: plain route again.
    let body = set(&t, Some(&held), 0).await;
    let rules = body["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].get("filters").is_none());
    assert_eq!(
        observe(&t, Some(&merged(Some(&held), &body))).await,
        Some(0)
    );
}

#[tokio::test]
async fn user_owned_route_keeps_parents_hostnames_and_other_rules() {
    let user = json!({
        "apiVersion": AV, "kind": "HTTPRoute",
        "metadata": {"name": "podinfo", "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "edge", "namespace": "gateway", "sectionName": "https"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/podinfo"}}],
                 "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]}}],
                 "backendRefs": [{"name": "podinfo", "port": 9898}],
                 "timeouts": {"request": "10s"}},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                 "backendRefs": [{"name": "static", "port": 80}]}
            ]
        }
    });
    assert_valid(&user);
    let t = target();
    let body = set(&t, Some(&user), 40).await;
    assert_eq!(
        body["spec"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["rules"]
    );
    assert!(body["metadata"].get("ownerReferences").is_none());
    let rules = body["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules[0]["filters"], user["spec"]["rules"][0]["filters"]);
    assert_eq!(rules[0]["timeouts"], user["spec"]["rules"][0]["timeouts"]);
    assert_eq!(
        backends(&rules[0]),
        vec![
            ("podinfo-primary".into(), 9898, Some(60)),
            ("podinfo-canary".into(), 9898, Some(40))
        ]
    );
    assert_eq!(rules[1], user["spec"]["rules"][1]);
    let held = merged(Some(&user), &body);
    assert_eq!(observe(&t, Some(&held)).await, Some(40));

    let (client, mock) = start(vec![
        get(HR, "podinfo", Some(&held)),
        apply(HR, "podinfo", AV, "HTTPRoute"),
    ]);
    GatewayApiRouter::new(client).finalize(&t).await.unwrap();
    let log = mock.finish();
    let back = applied(&log, 1);
    let mut expected_rules = user["spec"]["rules"].clone();
    expected_rules[0]["backendRefs"] =
        json!([{"group": "", "kind": "Service", "name": "podinfo", "port": 9898}]);
    assert_eq!(back["spec"]["rules"], expected_rules);
    assert_valid(&merged(Some(&held), &back));
}

#[tokio::test]
async fn finalize_deletes_serin_route() {
    let t = target();
    let held = merged(None, &set(&t, None, 0).await);
    let (client, mock) = start(vec![get(HR, "podinfo", Some(&held)), delete(HR, "podinfo")]);
    GatewayApiRouter::new(client).finalize(&t).await.unwrap();
    mock.finish();
    // Nothing to do when the route is already gone.
    let (client, mock) = start(vec![get(HR, "podinfo", None)]);
    GatewayApiRouter::new(client).finalize(&t).await.unwrap();
    mock.finish();
}

#[tokio::test]
async fn rejection_by_the_server_is_a_clear_config_error() {
    let (status, body) = fixture_response("13-httproute-cel-invalid-422");
    let (client, mock) = start(vec![
        get(HR, "podinfo", None),
        crate::testing::expect("PATCH", apply_path(HR, "podinfo"), status, body),
    ]);
    let e = GatewayApiRouter::new(client)
        .set_weight(&target(), 10)
        .await
        .unwrap_err();
    mock.finish();
    assert!(matches!(e, RouterError::Config(_)));
    assert!(
        e.to_string().contains("rejected HTTPRoute shop/podinfo"),
        "{e}"
    );
    assert!(e.to_string().contains("absolute path"), "{e}");
}

#[tokio::test]
async fn validator_catches_a_broken_serin_route() {
    // Negative control: serin's own route with a negative weight and a dropped port.
    let body = set(&target(), None, 10).await;
    let mut spec = body["spec"].clone();
    spec["rules"][0]["backendRefs"][0]["weight"] = json!(-1);
    assert!(violations(GATEWAY_API, "HTTPRoute", "v1", &spec)
        .iter()
        .any(|e| e.contains("weight")));
    let mut spec = body["spec"].clone();
    spec["rules"][0]["backendRefs"][1]
        .as_object_mut()
        .unwrap()
        .remove("port");
    let v = violations(GATEWAY_API, "HTTPRoute", "v1", &spec);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(v[0].contains("Must have port for Service reference"));
}

#[test]
fn parent_ref_kinds() {
    use crate::traffic::gateway_api::parent_ref;
    let svc = ParentRef {
        kind: Some("Service".into()),
        name: "podinfo".into(),
        ..Default::default()
    };
    assert_eq!(
        parent_ref(&svc),
        json!({"group": "", "kind": "Service", "name": "podinfo"})
    );
    let core = ParentRef {
        group: Some("core".into()),
        kind: Some("Service".into()),
        name: "p".into(),
        port: Some(80),
        ..Default::default()
    };
    assert_eq!(
        parent_ref(&core),
        json!({"group": "", "kind": "Service", "name": "p", "port": 80})
    );
}

#[tokio::test]
async fn session_affinity_is_refused_before_any_call() {
    let mut t = target();
    t.routing.session_affinity = Some(crate::crd::SessionAffinity::default());
    let (client, mock) = start(vec![]);
    let e = GatewayApiRouter::new(client)
        .set_weight(&t, 10)
        .await
        .unwrap_err();
    mock.finish();
    assert_eq!(e.category(), "config");
    assert!(e.to_string().contains("router gateway-api"), "{e}");
}
