//! A workload's revision: a short hash of its pod template and the data of the
//! ConfigMaps and Secrets the pods reference, so a config change is a new release.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Hash a pod template (as JSON) and the tracked config data into a 10-hex-digit revision.
/// `configs` maps "configmap/NAME" or "secret/NAME" to the object's data.
pub fn revision_of(
    template: &serde_json::Value,
    configs: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    let mut h = Sha256::new();
    // serde_json::Value maps are sorted (no preserve_order), so this is canonical.
    h.update(template.to_string().as_bytes());
    for (name, data) in configs {
        h.update(b"\0");
        h.update(name.as_bytes());
        for (k, v) in data {
            h.update(b"\0");
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(v.as_bytes());
        }
    }
    let digest = h.finalize();
    digest[..5].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn revision_changes_with_template_and_config_only() {
        let t1 = json!({"spec": {"containers": [{"name": "app", "image": "app:1"}]}});
        let t2 = json!({"spec": {"containers": [{"name": "app", "image": "app:2"}]}});
        let none = BTreeMap::new();
        let r1 = revision_of(&t1, &none);
        assert_eq!(r1.len(), 10);
        assert_eq!(r1, revision_of(&t1.clone(), &none));
        assert_ne!(r1, revision_of(&t2, &none));
        let mut cfg = BTreeMap::new();
        cfg.insert(
            "configmap/app".to_string(),
            BTreeMap::from([("LOG".to_string(), "info".to_string())]),
        );
        let r_cfg = revision_of(&t1, &cfg);
        assert_ne!(r1, r_cfg);
        cfg.get_mut("configmap/app")
            .unwrap()
            .insert("LOG".into(), "debug".into());
        assert_ne!(r_cfg, revision_of(&t1, &cfg));
    }
}
