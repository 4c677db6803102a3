//! The annotation examples users copy go through serin's own annotation parser: a key
//! or value serin rejects fails here, not on a user's cluster. (The router sections
//! once showed `serin.dev/port` and `serin.dev/analysis-templates`, neither of which
//! serin reads.)

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml::Value;
use serin::annotations::{is_enabled, spec_from_annotations, KEYS};
use serin::controller::policies::PROMOTE_FROM_ANNOTATION;
use serin::rollout::ReleasePlan;

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The ```yaml blocks of a Markdown text, with the line each starts on.
fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut current, fence) {
            (None, true) if line.trim() == "```yaml" => current = Some((i + 1, String::new())),
            (Some(_), true) => blocks.extend(current.take()),
            (Some((_, text)), false) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Lines that set a `serin.dev/` key (not `apiVersion: serin.dev/v1alpha1`).
fn key_lines(block: &str) -> usize {
    block
        .lines()
        .filter(|l| l.trim_start().starts_with("serin.dev/"))
        .count()
}

/// The annotations one YAML document of an example sets: a Deployment's, or those of a
/// fragment (`annotations:` on its own, or bare `serin.dev/...` keys).
fn annotations_of(doc: &Value) -> Option<(bool, &serde_yaml::Mapping)> {
    let map = doc.as_mapping()?;
    if doc["kind"].as_str() == Some("Deployment") {
        return Some((true, doc["metadata"]["annotations"].as_mapping()?));
    }
    if let Some(a) = map.get("annotations").and_then(Value::as_mapping) {
        return Some((false, a));
    }
    let bare = map
        .keys()
        .any(|k| k.as_str().is_some_and(|k| k.starts_with("serin.dev/")));
    bare.then_some((false, map))
}

/// Check one example's annotations as serin would read them; returns how many
/// `serin.dev/` keys it had.
fn check(where_: &str, map: &serde_yaml::Mapping, deployment: bool) -> usize {
    let mut a = BTreeMap::new();
    for (k, v) in map {
        let k = k.as_str().unwrap_or_else(|| panic!("{where_}: key {k:?}"));
        // Kubernetes rejects a Deployment whose annotation values are not strings.
        let v = v
            .as_str()
            .unwrap_or_else(|| panic!("{where_}: {k}: {v:?} is not a string; quote it"));
        a.insert(k.to_string(), v.to_string());
    }
    if deployment {
        assert_eq!(is_enabled(&a), Ok(true), "{where_}: serin.dev/enabled");
    }
    let spec = spec_from_annotations("podinfo", &a)
        .unwrap_or_else(|errors| panic!("{where_}: serin rejects {errors:#?}"));
    ReleasePlan::from_spec(&spec, false)
        .unwrap_or_else(|e| panic!("{where_}: the resulting Canary is invalid: {e}"));
    a.keys().filter(|k| k.starts_with("serin.dev/")).count()
}

#[test]
fn every_annotation_example_in_the_readme_is_accepted() {
    let readme = read("README.md");
    let mut examples = 0;
    for (line, block) in yaml_blocks(&readme) {
        let expected = key_lines(&block);
        if expected == 0 {
            continue;
        }
        let mut seen = 0;
        for doc in serde_yaml::Deserializer::from_str(&block) {
            let doc = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("README.md:{line}: not YAML: {e}"));
            if let Some((deployment, map)) = annotations_of(&doc) {
                seen += check(&format!("README.md:{line}"), map, deployment);
                examples += 1;
            }
        }
        // Every key line belongs to an example read above: none escapes the check.
        assert_eq!(
            seen, expected,
            "README.md:{line}: serin.dev/ keys outside a Deployment's annotations"
        );
    }
    // The onboarding example, Istio (and its A/B fragment), Gateway API, Linkerd,
    // ingress-nginx, SMI.
    assert!(examples >= 7, "found only {examples} annotation examples");
}

/// Whether a `kubectl annotate` line annotates a Canary (not a Deployment).
fn annotates_canary(line: &str) -> bool {
    line.split_whitespace()
        .skip_while(|w| *w != "annotate")
        .nth(1)
        .is_some_and(|kind| {
            let kind = kind.split('/').next().unwrap_or(kind);
            matches!(kind, "canary" | "canaries" | "cny") || kind.starts_with("canaries.")
        })
}

/// `serin.dev/k=v` arguments of `kubectl annotate` commands (double quotes allowed),
/// of Deployments, or of Canaries when `canaries`.
fn annotate_args(text: &str, canaries: bool) -> Vec<BTreeMap<String, String>> {
    let joined = text.replace("\\\n", " ");
    let mut found = Vec::new();
    for line in joined
        .lines()
        .filter(|l| l.contains("kubectl") && l.contains(" annotate "))
        .filter(|l| annotates_canary(l) == canaries)
    {
        let mut words = Vec::new();
        let (mut word, mut quoted) = (String::new(), false);
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                c if c.is_whitespace() && !quoted => {
                    words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)))
                }
                c => word.push(c),
            }
        }
        words.extend((!word.is_empty()).then_some(word));
        let a: BTreeMap<String, String> = words
            .iter()
            .filter(|w| w.starts_with("serin.dev/"))
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !a.is_empty() {
            found.push(a);
        }
    }
    found
}

#[test]
fn kubectl_annotate_examples_are_accepted() {
    let mut n = 0;
    for path in ["README.md", "charts/serin/templates/NOTES.txt"] {
        for a in annotate_args(&read(path), false) {
            let map = a
                .into_iter()
                .map(|(k, v)| (Value::from(k), Value::from(v)))
                .collect();
            check(path, &map, false);
            n += 1;
        }
    }
    assert!(n >= 1, "the chart's NOTES.txt shows a kubectl annotate");
}

#[test]
fn the_readme_tables_list_exactly_the_keys_serin_reads() {
    let readme = read("README.md");
    let documented: BTreeSet<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `serin.dev/"))
        .filter_map(|rest| rest.split('`').next())
        .collect();
    let known: BTreeSet<&str> = KEYS
        .iter()
        .map(|(k, _)| *k)
        .chain(serin::traffic::annotations::KEYS)
        .map(|k| k.trim_start_matches("serin.dev/"))
        .collect();
    assert_eq!(documented, known);
}

/// A Canary takes one annotation of its own, `serin.dev/promote-from`; the README's
/// `kubectl annotate canary` examples set only that (a Deployment key there would be
/// ignored, and the Canary key on a Deployment is rejected as unknown).
#[test]
fn kubectl_annotate_canary_examples_set_only_canary_keys() {
    let found = annotate_args(&read("README.md"), true);
    assert!(!found.is_empty(), "the README shows serin.dev/promote-from");
    for a in found {
        for (k, v) in &a {
            assert_eq!(k, PROMOTE_FROM_ANNOTATION, "README.md: {k}={v} on a Canary");
            assert!(
                !v.is_empty() && v.split('/').count() <= 2,
                "README.md: {k}={v}: expected namespace/name or name"
            );
        }
        assert!(
            spec_from_annotations("podinfo", &a).is_err(),
            "{PROMOTE_FROM_ANNOTATION} is not a Deployment annotation"
        );
    }
}
