//! The chart's roles against the fake API server, which enforces RBAC verbs as a real
//! server does: an approver can approve (through the controller) and nothing more;
//! the controller's own role can write the records; and two decisions racing on the
//! same gate end in one outcome.

use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use super::super::record::tests::canary_json;
use super::super::*;
use crate::crd::Canary;
use crate::testing::apiserver::{FakeApiServer, Rbac};

/// `<release>-approver` as the chart renders it (kept equal by tests/helm_chart.rs).
fn approver_role() -> Value {
    serde_json::from_str(include_str!(
        "../../../charts/serin/tests/rendered-approver.json"
    ))
    .expect("rendered-approver.json")
}

/// The controller's ClusterRole as the chart renders it.
fn controller_role() -> Value {
    serde_json::from_str(include_str!(
        "../../../charts/serin/tests/rendered-rbac.json"
    ))
    .expect("rendered-rbac.json")
}

fn cluster_with_waiting_canary() -> FakeApiServer {
    let s = FakeApiServer::new();
    s.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    let mut c = canary_json("WaitingApproval", Some("beforePromotion"));
    c["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    s.insert(c);
    s
}

fn status_of(s: &FakeApiServer) -> Value {
    s.get("serin.dev/v1alpha1", "canaries", Some("shop"), "podinfo")
        .unwrap()["status"]
        .clone()
}

fn code(r: Result<Canary, kube::Error>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(kube::Error::Api(s)) => s.code,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn an_approver_cannot_skip_analysis_or_set_the_phase() {
    let s = cluster_with_waiting_canary();
    let rbac = Rbac::from_rules(&approver_role()).with_user("alice");
    // What the role is for: the virtual subresource the controller asks about.
    assert!(rbac.allows("create", "serin.dev", "canaries/approve", Some("podinfo")));
    s.set_rbac(Some(rbac));
    let api: Api<Canary> = Api::namespaced(s.client(), "shop");
    api.get("podinfo").await.expect("approvers read Canaries");
    let merge = PatchParams::default();
    // Every way of writing what decides a release is refused by RBAC.
    let skip = json!({"spec": {"skipAnalysis": true}});
    assert_eq!(
        code(api.patch("podinfo", &merge, &Patch::Merge(&skip)).await),
        403
    );
    let promote = json!({"status": {"phase": "Succeeded", "pendingGate": null}});
    assert_eq!(
        code(
            api.patch_status("podinfo", &merge, &Patch::Merge(&promote))
                .await
        ),
        403
    );
    let apply = json!({"apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
        "metadata": {"name": "podinfo"}, "status": {"phase": "Succeeded"}});
    let pp = PatchParams::apply("alice").force();
    assert_eq!(
        code(
            api.patch_status("podinfo", &pp, &Patch::Apply(&apply))
                .await
        ),
        403
    );
    let mut whole: Canary = serde_json::from_value(
        s.get("serin.dev/v1alpha1", "canaries", Some("shop"), "podinfo")
            .unwrap(),
    )
    .unwrap();
    whole.spec.skip_analysis = true;
    assert_eq!(
        code(api.replace("podinfo", &Default::default(), &whole).await),
        403
    );
    // Nor can the approver write a record of their own past the controller.
    let record = json!({"status": {"approvals": [{"id": "beforePromotion/rev2/2",
        "gate": "beforePromotion", "revision": "rev2", "step": 2, "approved": true,
        "by": "someone-else", "via": "cli", "at": "2026-11-22T11:00:00Z"}]}});
    assert_eq!(
        code(
            api.patch_status("podinfo", &merge, &Patch::Merge(&record))
                .await
        ),
        403
    );
    s.set_rbac(None);
    let st = status_of(&s);
    assert_eq!(st["phase"], "WaitingApproval");
    assert!(st.get("approvals").is_none() || st["approvals"] == json!([]));
    let spec = s
        .get("serin.dev/v1alpha1", "canaries", Some("shop"), "podinfo")
        .unwrap()["spec"]
        .clone();
    assert_ne!(spec["skipAnalysis"], true);
}

#[tokio::test]
async fn the_controller_role_records_decisions_under_one_manager() {
    let s = cluster_with_waiting_canary();
    s.set_rbac(Some(Rbac::from_rules(&controller_role())));
    let client = s.client();
    let out = apply_decision(
        &client,
        "shop",
        "podinfo",
        &DecisionRequest::new(Verb::Approve),
        "alice",
        Via::Api,
    )
    .await
    .unwrap();
    assert!(out.changed);
    let canary = s
        .get("serin.dev/v1alpha1", "canaries", Some("shop"), "podinfo")
        .unwrap();
    assert_eq!(canary["status"]["approvals"][0]["by"], "alice");
    let managers: Vec<&str> = canary["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .filter(|m| m.starts_with("serin"))
        .collect();
    assert_eq!(managers, ["serin-approver"]);
    // The same decision again changes nothing.
    let again = apply_decision(
        &client,
        "shop",
        "podinfo",
        &DecisionRequest::new(Verb::Approve),
        "bob",
        Via::Slack,
    )
    .await
    .unwrap();
    assert!(!again.changed);
}

#[tokio::test]
async fn a_decision_racing_another_on_the_same_gate_loses_cleanly() {
    let s = cluster_with_waiting_canary();
    // Between bob's read and bob's write, alice's approval lands (another replica,
    // or the Slack button): the server moves the Canary on under bob's feet.
    let mut fired = false;
    s.set_hook(Box::new(move |req, ctl| {
        if fired || req.method != "PATCH" || req.subresource.as_deref() != Some("status") {
            return None;
        }
        fired = true;
        let mut c = ctl
            .get("serin.dev/v1alpha1", "canaries", Some("shop"), "podinfo")
            .unwrap();
        c["status"]["approvals"] = json!([{"id": "beforePromotion/rev2/2",
            "gate": "beforePromotion", "revision": "rev2", "step": 2, "approved": true,
            "by": "alice (slack:U1)", "via": "slack", "at": "2026-11-22T11:00:00Z"}]);
        ctl.insert(c);
        None
    }));
    let err = apply_decision(
        &s.client(),
        "shop",
        "podinfo",
        &DecisionRequest::new(Verb::Reject),
        "bob",
        Via::Api,
    )
    .await
    .unwrap_err();
    assert_eq!(err.http_status(), 409, "{err}");
    assert!(
        err.to_string().contains("already approved by alice"),
        "{err}"
    );
    let approvals = status_of(&s)["approvals"].clone();
    assert_eq!(approvals.as_array().unwrap().len(), 1);
    assert_eq!(approvals[0]["approved"], true);
    let codes: Vec<String> = s.requests().iter().map(|r| r.line()).collect();
    assert!(
        codes
            .iter()
            .any(|l| l.starts_with("PATCH") && l.ends_with("409")),
        "{codes:?}"
    );
}
