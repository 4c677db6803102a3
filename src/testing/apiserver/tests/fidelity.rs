//! Answers compared with the real server's recordings, and bodies a real server rejects.

use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::*;
use crate::testing::fixture;

/// The creator's fieldsV1 for each recorded create equals the real server's. (Fixture 24's
/// Service gets more defaults on a real server than here, so only its ports are compared.)
#[tokio::test]
async fn created_objects_have_the_real_servers_managed_fields() {
    let s = FakeApiServer::new();
    for name in [
        "11-httproute-create",
        "14-virtualservice-create",
        "16-trafficsplit-create",
        "21-lease-create",
        "23-event-create",
        "24-service-create",
        "25-ingress-canary-create",
        "26-hpa-create",
    ] {
        let f = fixture(name);
        let path = format!(
            "{}?fieldManager=curl",
            f["request"]["path"].as_str().unwrap()
        );
        let (code, body) = raw(
            &s,
            "POST",
            &path,
            "application/json",
            Some(f["request"]["body"].clone()),
        )
        .await;
        assert_eq!(code, 201, "{name}: {body}");
        let got = &body["metadata"]["managedFields"][0];
        let real = &f["response"]["body"]["metadata"]["managedFields"][0];
        assert_eq!(got["manager"], "curl");
        assert_eq!(got["apiVersion"], real["apiVersion"], "{name}");
        if name.starts_with("24") {
            assert_eq!(
                got["fieldsV1"]["f:spec"]["f:ports"],
                real["fieldsV1"]["f:spec"]["f:ports"]
            );
        } else {
            assert_eq!(got["fieldsV1"], real["fieldsV1"], "{name}");
        }
        let has_generation = f["response"]["body"]["metadata"]
            .get("generation")
            .is_some();
        assert_eq!(
            body["metadata"].get("generation").is_some(),
            has_generation,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_body_in_another_namespace_is_a_bad_request() {
    let s = FakeApiServer::new();
    let mut d = deployment("podinfo", "podinfo:1", 1);
    d["metadata"]["namespace"] = json!("elsewhere");
    let pp = PatchParams::apply("serin");
    let (code, msg) = api_error(
        deployments(&s)
            .patch("podinfo", &pp, &Patch::Apply(&d))
            .await,
    );
    assert_eq!(code, 400);
    assert_eq!(
        msg,
        "the namespace of the provided object does not match the namespace sent on the request"
    );
}

#[tokio::test]
async fn malformed_bodies_are_errors_not_panics() {
    let s = FakeApiServer::new();
    s.insert(deployment("podinfo", "podinfo:1", 1));
    let path = "/apis/apps/v1/namespaces/shop/deployments/podinfo";
    let cases = [
        (
            "POST",
            "/apis/apps/v1/namespaces/shop/deployments",
            "application/json",
            json!([1]),
        ),
        ("PUT", path, "application/json", json!("x")),
        ("PATCH", path, "application/merge-patch+json", json!(7)),
        (
            "PATCH",
            path,
            "application/json-patch+json",
            json!([{"op": "replace", "path": "", "value": 1}]),
        ),
        (
            "PATCH",
            path,
            "application/apply-patch+yaml",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": "x"}),
        ),
        ("PATCH", path, "text/plain", json!({})),
    ];
    for (method, p, ct, body) in cases {
        let p = if ct.contains("apply") {
            format!("{p}?fieldManager=x")
        } else {
            p.to_string()
        };
        let (code, _) = raw(&s, method, &p, ct, Some(body)).await;
        assert!((400..500).contains(&code), "{method} {ct}: {code}");
    }
    assert_eq!(dep(&s, "podinfo")["spec"]["replicas"], 1);
}
