//! The CRDs checked in under charts/serin/crds must be what `serin crdgen` prints.

#[test]
fn checked_in_crds_match_the_generated_ones() {
    let generated = serin::crd::crds_yaml().expect("CRDs serialize");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/serin/crds/crds.yaml");
    let checked_in = std::fs::read_to_string(path).expect("charts/serin/crds/crds.yaml exists");
    assert!(
        generated == checked_in,
        "charts/serin/crds/crds.yaml is stale: run `cargo run -- crdgen > charts/serin/crds/crds.yaml`"
    );
}

#[test]
fn status_lists_are_list_maps_for_server_side_apply() {
    let yaml = serin::crd::crds_yaml().unwrap();
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let canary = docs
        .iter()
        .find(|d| d["spec"]["names"]["kind"] == "Canary")
        .unwrap();
    let status = &canary["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["status"]["properties"];
    for (list, key) in [
        ("conditions", "type"),
        ("metrics", "name"),
        ("approvals", "id"),
        ("commands", "id"),
    ] {
        assert_eq!(status[list]["x-kubernetes-list-type"], "map", "{list}");
        assert_eq!(status[list]["x-kubernetes-list-map-keys"][0], key, "{list}");
        let required = status[list]["items"]["required"].as_array().unwrap();
        assert!(
            required.iter().any(|r| r == key),
            "{list}: map key {key} must be required"
        );
    }
    assert_eq!(
        canary["spec"]["versions"][0]["subresources"]["status"],
        serde_json::json!({})
    );
}
