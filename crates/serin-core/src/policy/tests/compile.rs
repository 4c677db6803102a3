//! Compiling policies: errors that name the field, and the sample in the README draft.

use std::collections::BTreeMap;

use super::*;

#[test]
fn compile_errors_name_the_field_and_what_is_accepted() {
    #[rustfmt::skip]
    let cases = [
        ("maxInFlight: 0", "spec.maxInFlight: 0 would stop every release"),
        ("minSoak: soon", "spec.minSoak: \"soon\" is not a duration"),
        ("approvals: {beforePromotion: {count: 0}}", "spec.approvals.beforePromotion.count: 0: require at least 1 approver"),
        ("selector: {matchExpressions: [{key: tier, operator: Is, values: [web]}]}",
         "spec.selector.matchExpressions[0].operator: \"Is\" is not an operator: use In, NotIn, Exists or DoesNotExist"),
        ("selector: {matchExpressions: [{key: tier, operator: In}]}",
         "spec.selector.matchExpressions[0].values: empty: operator In needs at least one value"),
        ("windows: [{days: [Mon, Funday], start: '09:00', end: '17:00'}]",
         "spec.windows[0].days[1]: \"Funday\" is not a day or a day range"),
        ("blackouts: [{start: '2026-12-24', end: '2026-12-27T00:00:00Z', reason: x}]",
         "spec.blackouts[0].start: \"2026-12-24\" is not an RFC 3339 date-time"),
    ];
    for (yaml, want) in cases {
        let err = compile(&spec(yaml)).unwrap_err().to_string();
        assert!(
            err.starts_with(want),
            "{yaml}\n  got: {err}\n  wanted: {want}"
        );
    }
    // A window without timeZone is in UTC.
    let rules = compile(&spec(
        "windows: [{days: [Sat], start: '22:00', end: '02:00'}]",
    ))
    .unwrap();
    assert_eq!(rules.windows[0].describe(), "Sat 22:00-02:00 UTC");
    assert_eq!(
        serde_yaml::from_str::<ReleaseWindow>("{days: [Sat], start: '22:00', end: '02:00'}")
            .unwrap()
            .time_zone,
        "UTC"
    );
}

/// The sample of the README / report, as a platform team writes it.
const SAMPLE: &str = r#"
apiVersion: serin.dev/v1alpha1
kind: ClusterReleasePolicy
metadata:
  name: payments-hours
spec:
  namespaceSelector:
    matchLabels: {team: payments}
  selector:
    matchExpressions:
    - {key: tier, operator: In, values: [critical]}
  windows:
  - days: [Mon-Thu]
    start: "09:00"
    end: "16:00"
    timeZone: Europe/Berlin
  blackouts:
  - start: "2026-12-21T00:00:00+01:00"
    end: "2027-01-04T00:00:00+01:00"
    reason: year-end freeze
  inFlight: Hold
  approvals:
    beforeRollout: {count: 1, groups: [payments-leads]}
    beforePromotion: {count: 2, groups: [payments-leads, sre]}
  maxInFlight: 1
  minSoak: 30m
"#;

#[test]
fn the_sample_compiles_and_selects_by_namespace_and_labels() {
    let cluster: crate::crd::ClusterReleasePolicy = serde_yaml::from_str(SAMPLE).unwrap();
    let compiled = compile_cluster(&cluster).unwrap();
    assert_eq!(compiled.reference, PolicyRef::cluster("payments-hours"));
    let r = &compiled.rules;
    assert_eq!(r.windows[0].describe(), "Mon-Thu 09:00-16:00 Europe/Berlin");
    assert_eq!(r.blackouts[0].start, utc("2026-12-20T23:00:00Z"));
    assert_eq!(
        (r.in_flight, r.max_in_flight, r.min_soak),
        (
            InFlight::Hold,
            Some(1),
            Some(chrono::TimeDelta::minutes(30))
        )
    );
    assert_eq!(r.before_promotion.as_ref().unwrap().count, 2);

    let team: crate::crd::ReleasePolicy = serde_yaml::from_str(
        "apiVersion: serin.dev/v1alpha1\nkind: ReleasePolicy\nmetadata: {name: all, namespace: pay}\nspec: {}",
    )
    .unwrap();
    let other_ns: crate::crd::ReleasePolicy = serde_yaml::from_str(
        "apiVersion: serin.dev/v1alpha1\nkind: ReleasePolicy\nmetadata: {name: all, namespace: shop}\nspec: {}",
    )
    .unwrap();
    let everywhere: crate::crd::ClusterReleasePolicy = serde_yaml::from_str(
        "apiVersion: serin.dev/v1alpha1\nkind: ClusterReleasePolicy\nmetadata: {name: everywhere}\n\
         spec: {selector: {matchExpressions: [{key: serin.dev/no-policy, operator: DoesNotExist}]}}",
    )
    .unwrap();
    let policies = [
        compiled,
        compile_namespaced(&team).unwrap(),
        compile_namespaced(&other_ns).unwrap(),
        compile_cluster(&everywhere).unwrap(),
    ];
    let labels = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let names = |ns: &str, canary: &[(&str, &str)], ns_labels: &[(&str, &str)]| {
        select(&policies, ns, &labels(canary), &labels(ns_labels))
            .iter()
            .map(|p| p.reference.to_string())
            .collect::<Vec<_>>()
    };
    #[rustfmt::skip]
    let cases: &[SelectCase] = &[
        ("pay", &[("tier", "critical")], &[("team", "payments")],
         &["ReleasePolicy pay/all", "ClusterReleasePolicy everywhere", "ClusterReleasePolicy payments-hours"]),
        // Not critical: the cluster payments policy does not select it.
        ("pay", &[("tier", "batch")], &[("team", "payments")],
         &["ReleasePolicy pay/all", "ClusterReleasePolicy everywhere"]),
        // Critical, but the namespace is not the payments team's.
        ("shop", &[("tier", "critical")], &[("team", "shop")],
         &["ReleasePolicy shop/all", "ClusterReleasePolicy everywhere"]),
        // Opted out by label.
        ("web", &[("serin.dev/no-policy", "")], &[], &[]),
    ];
    for (ns, canary, ns_labels, want) in cases {
        assert_eq!(names(ns, canary, ns_labels), *want, "{ns} {canary:?}");
    }
}
