//! The invariants, checked after every step and after quiescence.

use serde_json::Value;

use super::world::{World, NS};

/// What the simulation promises, as printed by the test.
pub const INVARIANTS: &[&str] = &[
    "a revision reaches the primary only after passing evidence for every step",
    "after Failed or an abort, the primary runs the stable revision and the canary's weight is 0 once quiet",
    "canary weight above 0 only while the canary has ready pods (mesh routers)",
    "the apex Service always selects ready pods (primary, canary during a switch, or the user's Deployment after hand-back)",
    "after quiescence, status and world agree and no Canary is stuck with its finalizer",
    "a replica that lost the lease writes nothing (two controllers never produce a state neither decided)",
];

fn image(d: &Value) -> Option<&str> {
    d["spec"]["template"]["spec"]["containers"][0]["image"].as_str()
}

fn ready(d: &Value) -> i64 {
    d["status"]["readyReplicas"].as_i64().unwrap_or(0)
}

fn labels(d: &Value) -> &Value {
    &d["spec"]["template"]["metadata"]["labels"]
}

fn selects(selector: &Value, pod_labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &pod_labels[k] == v))
}

/// The canary's weight in the mesh (sum over every VirtualService route to it).
fn mesh_canary_weight(w: &World) -> i64 {
    let mut total = 0;
    for name in w.server.object_names() {
        let Some(vs) = name.strip_prefix(&format!("virtualservices/{NS}/")) else {
            continue;
        };
        let Some(o) = w.get("virtualservices", vs) else {
            continue;
        };
        for http in o["spec"]["http"].as_array().into_iter().flatten() {
            for r in http["route"].as_array().into_iter().flatten() {
                let host = r["destination"]["host"].as_str().unwrap_or_default();
                if host.starts_with("podinfo-canary") {
                    total += r["weight"].as_i64().unwrap_or(100);
                }
            }
        }
    }
    total
}

/// Checked after every step.
pub fn step(w: &World) -> Result<(), String> {
    let s = w.shared.lock().unwrap();
    if let Some(v) = s.fenced_writes.first() {
        return Err(format!("a fenced replica wrote: {v}"));
    }
    let primary = w.get("deployments", "podinfo-primary");
    if let Some(p) = &primary {
        let img = image(p).unwrap_or_default();
        let passes = s.passes.get(img).copied().unwrap_or(0);
        if !s.onboarding_images.contains(img) && passes < w.needed_passes {
            return Err(format!(
                "the primary runs {img}, which had {passes} passing checks of {} needed",
                w.needed_passes
            ));
        }
    }
    let target = w.get("deployments", "podinfo");
    if w.setup.istio && mesh_canary_weight(w) > 0 {
        let ready_canary = target.as_ref().map(ready).unwrap_or(0);
        if ready_canary == 0 {
            return Err(format!(
                "the mesh sends {}% to a canary without ready pods",
                mesh_canary_weight(w)
            ));
        }
    }
    if let Some(apex) = w.get("services", "podinfo") {
        let sel = &apex["spec"]["selector"];
        let serving = [&primary, &target]
            .into_iter()
            .flatten()
            .any(|d| selects(sel, labels(d)) && ready(d) > 0);
        if !serving && !s.primary_deleted {
            return Err(format!(
                "the apex Service selects {sel} and no ready pod matches"
            ));
        }
    }
    Ok(())
}

/// Checked once nothing faults any more and the controller had time to converge.
pub fn quiet(w: &World) -> Result<(), String> {
    step(w)?;
    let target = w
        .get("deployments", "podinfo")
        .ok_or("the user's Deployment is gone")?;
    let Some(canary) = w.canary() else {
        // Handed back: the user's Deployment serves on its own, on the stable spec.
        if target["spec"]["replicas"].as_i64().unwrap_or(0) < 1 || ready(&target) < 1 {
            return Err("handed back, but the user's Deployment has no ready pods".into());
        }
        let s = w.shared.lock().unwrap();
        let handed = image(&target).unwrap_or_default();
        let idle = matches!(
            s.deleted_in_phase.as_deref(),
            Some("Initialized" | "Succeeded" | "Failed")
        );
        if s.initialized_once && !s.image_changed_during_hand_back {
            // Deleted with no release in flight: exactly the stable spec. Otherwise (a
            // promotion under way) a spec with evidence, never an unanalysed one.
            match (&w.last_primary_image, idle) {
                (Some(stable), true) if handed != stable => {
                    return Err(format!("handed back on {handed}, not the stable {stable}"));
                }
                _ => {}
            }
            let passes = s.passes.get(handed).copied().unwrap_or(0);
            if !s.onboarding_images.contains(handed) && passes < w.needed_passes {
                return Err(format!(
                    "handed back on {handed}, which had {passes} passing checks of {} needed",
                    w.needed_passes
                ));
            }
        }
        drop(s);
        let left: Vec<String> = w
            .server
            .object_names()
            .into_iter()
            .filter(|n| {
                n.contains("podinfo-primary")
                    || n.contains("podinfo-canary")
                    || n.starts_with("controllerrevisions/")
                    || n.starts_with("virtualservices/")
                    || n.starts_with("destinationrules/")
            })
            .collect();
        if !left.is_empty() {
            return Err(format!("handed back, but serin's objects remain: {left:?}"));
        }
        let managers: Vec<&str> = target["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        if managers.contains(&"serin") {
            return Err("handed back, but serin still owns fields of the user's Deployment".into());
        }
        if let Some(apex) = w.get("services", "podinfo") {
            if !selects(&apex["spec"]["selector"], labels(&target)) {
                return Err("handed back, but the apex does not select the user's pods".into());
            }
        }
        return Ok(());
    };
    if canary["metadata"]["deletionTimestamp"].is_string() {
        return Err("the Canary is stuck with its finalizer".into());
    }
    let st = &canary["status"];
    let phase = st["phase"].as_str().unwrap_or_default();
    if !matches!(phase, "Initialized" | "Succeeded" | "Failed") {
        return Err(format!("not settled: phase {phase}: {}", st["message"]));
    }
    let primary = w
        .get("deployments", "podinfo-primary")
        .ok_or("no primary")?;
    let rev = primary["metadata"]["annotations"]["serin.dev/revision"].as_str();
    if rev != st["stableRevision"].as_str() {
        return Err(format!(
            "{phase}: the primary runs {rev:?}, the status says stable {}",
            st["stableRevision"]
        ));
    }
    if ready(&primary) < 1 {
        return Err(format!("{phase}: the primary has no ready pods"));
    }
    if st["canaryWeight"].as_i64() != Some(0) {
        return Err(format!("{phase}: canary weight {}", st["canaryWeight"]));
    }
    if w.setup.istio && mesh_canary_weight(w) != 0 {
        return Err(format!(
            "{phase}: the mesh still sends {}% to the canary",
            mesh_canary_weight(w)
        ));
    }
    let apex = w.get("services", "podinfo").ok_or("no apex Service")?;
    if apex["spec"]["selector"] != serde_json::json!({"app": "podinfo-primary"}) {
        return Err(format!(
            "{phase}: the apex selects {}",
            apex["spec"]["selector"]
        ));
    }
    if target["spec"]["replicas"].as_i64() != Some(0) {
        return Err(format!(
            "{phase}: the canary has {} replicas",
            target["spec"]["replicas"]
        ));
    }
    for svc in ["podinfo-primary", "podinfo-canary"] {
        if w.get("services", svc).is_none() {
            return Err(format!("{phase}: Service {svc} is missing"));
        }
    }
    Ok(())
}
