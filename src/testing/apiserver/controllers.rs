//! What the control plane does on its own: the Deployment controller finishing
//! rollouts, and the garbage collector deleting objects whose owners are gone.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::store::{meta_str, rt_by, Key, Store, Target};

impl Store {
    /// The Deployment controller finishing a rollout: status follows spec.
    pub fn roll_out(&mut self, key: &Key) {
        let Some(d) = self.objects.get(key).cloned() else {
            return;
        };
        let status = ready_status(&d, &self.now_str());
        if d.get("status") == Some(&status) {
            return;
        }
        let t = Target {
            rt: rt_by("apps", "deployments"),
            version: "v1".into(),
            namespace: Some(key.2.clone()).filter(|s| !s.is_empty()),
            name: key.3.clone(),
            status: true,
        };
        let mut new = d;
        new["status"] = status;
        // Cannot fail: the status write changes nothing that validation looks at.
        let _ = self.update(&t, new, "kube-controller-manager");
    }

    /// Roll out every Deployment whose status is behind its spec.
    pub fn settle(&mut self) {
        let keys: Vec<Key> = self
            .objects
            .keys()
            .filter(|k| k.1 == "deployments")
            .cloned()
            .collect();
        for k in keys {
            self.roll_out(&k);
        }
    }

    /// Delete objects whose owners are all gone, repeatedly (cascading); returns
    /// `plural/namespace/name` of each object deleted or marked for deletion.
    pub fn collect_garbage(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let uids: BTreeSet<String> = self
                .objects
                .values()
                .filter_map(|o| meta_str(o, "uid").map(str::to_string))
                .collect();
            let orphans: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, o)| o["metadata"].get("deletionTimestamp").is_none())
                .filter(|(_, o)| {
                    let refs = o["metadata"]["ownerReferences"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    !refs.is_empty()
                        && refs
                            .iter()
                            .all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()))
                })
                .map(|(k, _)| k.clone())
                .collect();
            if orphans.is_empty() {
                return out;
            }
            for k in orphans {
                let rt = rt_by(&k.0, &k.1);
                let t = Target {
                    rt,
                    version: rt.versions[0].into(),
                    namespace: Some(k.2.clone()).filter(|s| !s.is_empty()),
                    name: k.3.clone(),
                    status: false,
                };
                let _ = self.delete(&t, None);
                out.push(format!("{}/{}/{}", k.1, k.2, k.3));
            }
        }
    }
}

/// What the Deployment controller reports once every replica is updated and ready.
/// Zero counts are left out, as the real server's JSON omits them.
fn ready_status(d: &Value, now: &str) -> Value {
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let mut s = json!({"observedGeneration": generation, "terminatingReplicas": 0});
    if replicas > 0 {
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ] {
            s[k] = json!(replicas);
        }
    }
    let rs = format!(
        "{}-{}",
        d["metadata"]["name"].as_str().unwrap_or_default(),
        template_hash(&d["spec"]["template"])
    );
    let old = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cond = |ty: &str, reason: &str, message: String| {
        let fresh = json!({"type": ty, "status": "True", "reason": reason, "message": message,
                           "lastUpdateTime": now, "lastTransitionTime": now});
        // An unchanged condition keeps its times, so settling twice changes nothing.
        old.iter()
            .find(|c| {
                c["type"] == ty
                    && c["status"] == "True"
                    && c["reason"] == reason
                    && c["message"] == fresh["message"]
            })
            .cloned()
            .unwrap_or(fresh)
    };
    s["conditions"] = json!([
        cond(
            "Available",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into()
        ),
        cond(
            "Progressing",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs}\" has successfully progressed.")
        ),
    ]);
    s
}

/// A pod-template-hash in the real encoding (FNV-1a, digits mapped to safe letters).
fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}
