use super::*;

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn one_error(pairs: &[(&str, &str)]) -> AnnotationError {
    let mut e = spec_from_annotations("podinfo", &ann(pairs)).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    e.remove(0)
}

#[test]
fn defaults_when_only_enabled() {
    let a = ann(&[(ENABLED, "true")]);
    assert!(is_enabled(&a).unwrap());
    let s = spec_from_annotations("podinfo", &a).unwrap();
    assert_eq!(s.target_ref.name, "podinfo");
    assert_eq!(s.strategy, Strategy::Canary);
    assert_eq!(s.analysis.steps, vec![10, 25, 50]);
    assert_eq!(s.analysis.iterations, 5);
    assert_eq!(s.analysis.interval, "1m");
    assert_eq!(s.analysis.failure_limit, 2);
    assert_eq!(s.analysis.inconclusive_limit, None);
    assert_eq!(s.analysis.progress_deadline, "10m");
    assert!(s.analysis.templates.is_empty());
    assert_eq!(
        (
            s.service.name.as_deref(),
            s.service.port,
            s.service.target_port.as_deref()
        ),
        (None, 80, None)
    );
    assert_eq!(s.router, None);
    assert_eq!(s.gates, GatesSpec::default());
    assert!(!s.skip_analysis);
    // The documented defaults are the ones applied.
    let defaults: BTreeMap<&str, &str> = KEYS.iter().copied().collect();
    assert_eq!(defaults[STEPS], "10,25,50");
    assert_eq!(defaults[INTERVAL], s.analysis.interval);
    assert_eq!(defaults[PROGRESS_DEADLINE], s.analysis.progress_deadline);
    assert_eq!(
        defaults[FAILURE_LIMIT],
        s.analysis.failure_limit.to_string()
    );
    assert_eq!(defaults[ITERATIONS], s.analysis.iterations.to_string());
    assert_eq!(
        defaults[CHECKS_PER_STEP],
        s.analysis.checks_per_step.to_string()
    );
    assert_eq!(defaults[SERVICE_PORT], s.service.port.to_string());
}

#[test]
fn enabled_accepts_true_false_only() {
    assert!(!is_enabled(&ann(&[])).unwrap());
    assert!(!is_enabled(&ann(&[(ENABLED, "false")])).unwrap());
    assert!(is_enabled(&ann(&[(ENABLED, " TRUE ")])).unwrap());
    let e = is_enabled(&ann(&[(ENABLED, "yes")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "annotation serin.dev/enabled=\"yes\": expected \"true\" or \"false\""
    );
}

#[test]
fn every_key_parses() {
    let s = spec_from_annotations(
        "podinfo",
        &ann(&[
            (ENABLED, "true"),
            (STRATEGY, "blue-green"),
            (STEPS, "5, 20%, 60"),
            (ITERATIONS, "7"),
            (INTERVAL, "30s"),
            (
                ANALYSIS,
                "error-rate(max=0.01, window=5m), cluster/latency , app.latency(quantile=0.99)",
            ),
            (FAILURE_LIMIT, "4"),
            (CHECKS_PER_STEP, "3"),
            (INCONCLUSIVE_LIMIT, "3"),
            (PROGRESS_DEADLINE, "1h30m"),
            (SERVICE_NAME, "web"),
            (SERVICE_PORT, "8080"),
            (TARGET_PORT, "http"),
            (ROUTER, "linkerd"),
            (GATES, "before-rollout, before-promotion"),
            (SKIP_ANALYSIS, "true"),
        ]),
    )
    .unwrap();
    assert_eq!(s.strategy, Strategy::BlueGreen);
    assert_eq!(s.analysis.steps, vec![5, 20, 60]);
    assert_eq!(s.analysis.iterations, 7);
    assert_eq!(s.analysis.interval, "30s");
    assert_eq!(s.analysis.failure_limit, 4);
    assert_eq!(s.analysis.checks_per_step, 3);
    assert_eq!(s.analysis.inconclusive_limit, Some(3));
    assert_eq!(s.analysis.progress_deadline, "1h30m");
    assert_eq!(s.service.name.as_deref(), Some("web"));
    assert_eq!(s.service.port, 8080);
    assert_eq!(s.service.target_port.as_deref(), Some("http"));
    assert_eq!(s.router.as_deref(), Some("gateway-api"));
    assert!(s.gates.before_rollout && s.gates.before_promotion && !s.gates.before_traffic_increase);
    assert!(s.skip_analysis);
    let t = &s.analysis.templates;
    assert_eq!(t.len(), 3);
    assert_eq!(
        (t[0].name.as_str(), t[0].cluster_scope),
        ("error-rate", false)
    );
    assert_eq!(t[0].args["max"], "0.01");
    assert_eq!(t[0].args["window"], "5m");
    assert_eq!(
        (t[1].name.as_str(), t[1].cluster_scope, t[1].args.len()),
        ("latency", true, 0)
    );
    assert_eq!(t[2].args["quantile"], "0.99");
}

#[test]
fn each_bad_value_names_key_value_and_what_is_accepted() {
    let cases: &[(&str, &str, &str)] = &[
        (STRATEGY, "rolling", "\"canary\" or \"blue-green\""),
        (STEPS, "10,abc", "strictly increasing"),
        (STEPS, "50,25", "strictly increasing"),
        (STEPS, "0,50", "from 1 to 100"),
        (STEPS, "", "e.g. \"10,25,50\""),
        (ITERATIONS, "0", "from 1 to 100"),
        (INTERVAL, "1 minute-ish", "a duration such as"),
        (INTERVAL, "0s", "a duration such as"),
        (PROGRESS_DEADLINE, "-5m", "a duration such as"),
        (FAILURE_LIMIT, "two", "a whole number from 1 to 1000"),
        (CHECKS_PER_STEP, "101", "a whole number from 1 to 100"),
        (INCONCLUSIVE_LIMIT, "0", "a whole number from 1 to 1000"),
        (
            ANALYSIS,
            "error-rate(max=0.01",
            "comma-separated AnalysisTemplate names",
        ),
        (
            ANALYSIS,
            "Bad_Name",
            "comma-separated AnalysisTemplate names",
        ),
        (ANALYSIS, "x(max)", "(arg=value, ...)"),
        (SERVICE_NAME, "Web", "a DNS label"),
        (SERVICE_PORT, "70000", "from 1 to 65535"),
        (
            TARGET_PORT,
            "not a port!",
            "a port number 1-65535 or a container port name",
        ),
        (ROUTER, "traefik", "one of service, istio"),
        (
            GATES,
            "before-lunch",
            "before-rollout, before-traffic-increase, before-promotion",
        ),
        (SKIP_ANALYSIS, "yes", "\"true\" or \"false\""),
    ];
    for (key, value, accepted) in cases {
        let e = one_error(&[(ENABLED, "true"), (key, value)]);
        assert_eq!(&e.key, key);
        assert_eq!(&e.value, value);
        assert!(
            e.accepted.contains(accepted),
            "{key}={value}: {}",
            e.accepted
        );
        assert!(e.to_string().starts_with(&format!("annotation {key}=")));
    }
}

#[test]
fn unknown_serin_keys_are_reported_and_all_errors_come_together() {
    let errs = spec_from_annotations(
        "podinfo",
        &ann(&[
            (ENABLED, "true"),
            ("serin.dev/step", "10"),
            (STEPS, "x"),
            ("other.io/steps", "ignored"),
        ]),
    )
    .unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["serin.dev/step", STEPS]);
    assert!(errs[0].accepted.contains(STEPS));
}

#[test]
fn gates_all_and_aliases() {
    let s = spec_from_annotations("x", &ann(&[(GATES, "all")])).unwrap();
    assert!(s.gates.before_rollout && s.gates.before_traffic_increase && s.gates.before_promotion);
    let s = spec_from_annotations("x", &ann(&[(GATES, "before-step")])).unwrap();
    assert!(s.gates.before_traffic_increase && !s.gates.before_rollout);
}
