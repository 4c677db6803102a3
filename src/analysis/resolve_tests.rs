use super::*;
use crate::crd::{MetricTemplate, TemplateArg, ThresholdTemplate, ThresholdValue};

fn metric(name: &str, query: &str) -> MetricTemplate {
    MetricTemplate {
        name: name.into(),
        query: query.into(),
        threshold: Some(ThresholdTemplate {
            min: None,
            max: Some(ThresholdValue::Number(1.0)),
        }),
        ..MetricTemplate::default()
    }
}

fn arg(name: &str, default: Option<&str>) -> TemplateArg {
    TemplateArg {
        name: name.into(),
        default: default.map(Into::into),
    }
}

fn tref(name: &str, args: &[(&str, &str)]) -> TemplateRef {
    TemplateRef {
        name: name.into(),
        cluster_scope: false,
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn spec(args: Vec<TemplateArg>, metrics: Vec<MetricTemplate>) -> AnalysisTemplateSpec {
    AnalysisTemplateSpec {
        args,
        metrics,
        ..AnalysisTemplateSpec::default()
    }
}

#[test]
fn canary_values_override_defaults_and_limits_are_carried() {
    let mut s = spec(
        vec![arg("max", Some("0.01")), arg("q", Some("0.99"))],
        vec![metric("errors", "x > {{args.max}} and {{args.q}}")],
    );
    s.failure_limit = Some(3);
    s.consecutive_error_limit = Some(0);
    let out = resolve_metrics(&[(tref("t", &[("max", "0.05")]), s)]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].args["max"], "0.05");
    assert_eq!(out[0].args["q"], "0.99");
    assert_eq!(out[0].failure_limit, Some(3));
    assert_eq!(out[0].inconclusive_limit, None);
    assert_eq!(out[0].consecutive_error_limit, Some(0));
    assert_eq!(out[0].template, "t");
    assert!(out[0].credentials.is_none());
}

#[test]
fn missing_required_arg_names_template_arg_and_where_to_set_it() {
    let s = spec(
        vec![arg("max", None), arg("q", Some("0.9"))],
        vec![metric("errors", "x > {{args.max}}")],
    );
    let err = resolve_metrics(&[(tref("istio-errors", &[]), s)]).unwrap_err();
    assert_eq!(
        err,
        AnalysisConfigError::MissingArg {
            template: "istio-errors".into(),
            arg: "max".into(),
            declared: "max, q".into(),
        }
    );
    let text = err.to_string();
    assert!(text.contains("\"istio-errors\""), "{text}");
    assert!(text.contains("analysis.templates[].args.max"), "{text}");
    assert!(
        text.contains("(annotation: istio-errors(max=VALUE))"),
        "{text}"
    );
    assert!(text.contains("declared: max, q"), "{text}");
    assert_eq!(err.category(), "template_invalid");
}

#[test]
fn undeclared_arg_used_by_a_query_but_not_given_is_missing() {
    let s = spec(vec![], vec![metric("m", "x > {{ args.limit }}")]);
    let err = resolve_metrics(&[(tref("t", &[]), s.clone())]).unwrap_err();
    assert!(
        matches!(err, AnalysisConfigError::MissingArg { ref arg, ref declared, .. } if arg == "limit" && declared == "none")
    );
    // Given by the Canary, it is accepted.
    let ok = resolve_metrics(&[(tref("t", &[("limit", "5")]), s)]).unwrap();
    assert_eq!(ok[0].args["limit"], "5");
}

#[test]
fn misspelt_arg_is_rejected_instead_of_silently_using_the_default() {
    let s = spec(
        vec![arg("maxErrorRate", Some("0.01"))],
        vec![metric("m", "x > {{args.maxErrorRate}}")],
    );
    let err = resolve_metrics(&[(tref("t", &[("maxErorRate", "0.5")]), s)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template \"t\" has no argument \"maxErorRate\" and no query uses it; declared arguments: maxErrorRate"
    );
}

#[test]
fn unknown_variable_and_unclosed_braces_name_the_metric_and_the_accepted_set() {
    let s = spec(vec![], vec![metric("lat", "x{pod=\"{{pod}}\"}")]);
    let text = resolve_metrics(&[(tref("t", &[]), s)])
        .unwrap_err()
        .to_string();
    assert!(text.starts_with("template \"t\" metric \"lat\": unknown variable {{pod}}"));
    assert!(text.contains(
        "accepted: namespace, target, primary, canary, workload, variant, service, interval, args.NAME"
    ));

    let s = spec(vec![], vec![metric("lat", "x{pod=\"{{workload\"}")]);
    let err = resolve_metrics(&[(tref("t", &[]), s)]).unwrap_err();
    assert!(matches!(
        err,
        AnalysisConfigError::Query {
            source: RenderError::Unclosed(7),
            ..
        }
    ));
}

#[test]
fn empty_query_and_empty_template_are_rejected() {
    let s = spec(vec![], vec![metric("m", "  ")]);
    let text = resolve_metrics(&[(tref("t", &[]), s)])
        .unwrap_err()
        .to_string();
    assert!(text.contains("metric \"m\": the query is empty"), "{text}");
    let text = resolve_metrics(&[(tref("t", &[]), spec(vec![], vec![]))])
        .unwrap_err()
        .to_string();
    assert!(text.contains("defines no metrics"), "{text}");
}

#[test]
fn intervals_must_be_positive_durations() {
    let mut m = metric("m", "up");
    m.interval = Some("5m".into());
    let out = resolve_metrics(&[(tref("t", &[]), spec(vec![], vec![m.clone()]))]).unwrap();
    assert_eq!(out[0].interval, Some(Duration::from_secs(300)));
    for bad in ["5 minutes please", "0s", "", "500ms"] {
        m.interval = Some(bad.into());
        let err = resolve_metrics(&[(tref("t", &[]), spec(vec![], vec![m.clone()]))]).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, AnalysisConfigError::Interval { ref value, .. } if value == bad),
            "{bad}: {text}"
        );
        assert!(text.contains("accepted: a duration such as"), "{text}");
    }
}

#[test]
fn threshold_with_min_above_max_is_rejected() {
    let mut m = metric("m", "up");
    m.threshold = Some(ThresholdTemplate {
        min: Some(ThresholdValue::Number(2.0)),
        max: Some(ThresholdValue::Number(1.0)),
    });
    let text = resolve_metrics(&[(tref("t", &[]), spec(vec![], vec![m]))])
        .unwrap_err()
        .to_string();
    assert!(text.contains("min 2 is greater than max 1"), "{text}");
}

#[test]
fn limits_must_be_in_range() {
    type Set = fn(&mut AnalysisTemplateSpec);
    let cases: [(Set, &str); 3] = [
        (
            |s| s.failure_limit = Some(0),
            "failureLimit is 0; accepted: an integer >= 1",
        ),
        (
            |s| s.inconclusive_limit = Some(-1),
            "inconclusiveLimit is -1; accepted: an integer >= 1",
        ),
        (
            |s| s.consecutive_error_limit = Some(-2),
            "consecutiveErrorLimit is -2; accepted: an integer >= 0",
        ),
    ];
    for (set, want) in cases {
        let mut s = spec(vec![], vec![metric("m", "up")]);
        set(&mut s);
        let text = resolve_metrics(&[(tref("t", &[]), s)])
            .unwrap_err()
            .to_string();
        assert_eq!(text, format!("template \"t\": {want}"));
    }
}

#[test]
fn duplicate_metric_names_name_both_templates() {
    let a = spec(vec![], vec![metric("errors", "up")]);
    let b = spec(vec![], vec![metric("errors", "up")]);
    let err = resolve_metrics(&[(tref("a", &[]), a), (tref("b", &[]), b)]).unwrap_err();
    assert_eq!(
        err,
        AnalysisConfigError::DuplicateMetric {
            metric: "errors".into(),
            first: "a".into(),
            second: "b".into()
        }
    );
}

#[test]
fn template_not_found_says_where() {
    let e = AnalysisConfigError::TemplateNotFound {
        kind: "AnalysisTemplate",
        namespace: "shop".into(),
        name: "x".into(),
        cluster: false,
    };
    assert_eq!(
        e.to_string(),
        "AnalysisTemplate \"x\" not found in namespace \"shop\""
    );
    assert_eq!(e.category(), "template_not_found");
    let e = AnalysisConfigError::TemplateNotFound {
        kind: "ClusterAnalysisTemplate",
        namespace: String::new(),
        name: "x".into(),
        cluster: true,
    };
    assert_eq!(e.to_string(), "ClusterAnalysisTemplate \"x\" not found");
}

#[test]
fn effective_limits_take_the_strictest() {
    let mut a = spec(vec![], vec![metric("a", "up")]);
    a.failure_limit = Some(5);
    a.inconclusive_limit = Some(4);
    let mut b = spec(vec![], vec![metric("b", "up")]);
    b.failure_limit = Some(1);
    let metrics = resolve_metrics(&[(tref("a", &[]), a), (tref("b", &[]), b)]).unwrap();
    let canary = AnalysisSpec {
        failure_limit: 2,
        inconclusive_limit: None,
        ..AnalysisSpec::default()
    };
    assert_eq!(
        effective_limits(&canary, &metrics),
        AnalysisLimits {
            failure_limit: 1,
            inconclusive_limit: Some(4)
        }
    );
    let canary = AnalysisSpec {
        failure_limit: 2,
        inconclusive_limit: Some(3),
        ..AnalysisSpec::default()
    };
    assert_eq!(effective_limits(&canary, &metrics[..1]).failure_limit, 2);
    assert_eq!(
        effective_limits(&canary, &metrics).inconclusive_limit,
        Some(3)
    );
    assert_eq!(
        effective_limits(&canary, &[]),
        AnalysisLimits {
            failure_limit: 2,
            inconclusive_limit: Some(3)
        }
    );
}

#[test]
fn secret_name_comes_from_the_provider() {
    let mut s = spec(vec![], vec![metric("m", "up")]);
    s.provider = Some(ProviderSpec {
        prometheus: Some(crate::crd::PrometheusProviderSpec {
            address: "http://p:9090".into(),
            secret_ref: Some(crate::crd::PrometheusSecretRef {
                name: "prom-creds".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let out = resolve_metrics(&[(tref("t", &[]), s)]).unwrap();
    assert_eq!(out[0].secret_name(), Some("prom-creds"));
}

#[test]
fn threshold_bounds_may_name_args_and_must_read_as_numbers() {
    let mut m = metric("lat", "up");
    m.threshold = Some(ThresholdTemplate {
        min: Some(ThresholdValue::Template("{{args.low}}".into())),
        max: Some(ThresholdValue::Template(" {{ args.high }} ".into())),
    });
    let s = spec(
        vec![arg("low", Some("0.5")), arg("high", Some("2.5"))],
        vec![m],
    );
    let out = resolve_metrics(&[(tref("t", &[("high", "3")]), s.clone())]).unwrap();
    assert_eq!(
        out[0].threshold(),
        Some(&ThresholdSpec {
            min: Some(0.5),
            max: Some(3.0)
        })
    );
    let err = resolve_metrics(&[(tref("t", &[("high", "fast")]), s.clone())]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template \"t\" metric \"lat\": threshold.max \" {{ args.high }} \" reads \" fast \", not a number; accepted: a number, or \"{{args.NAME}}\" naming an argument whose value is a number"
    );
    let err = resolve_metrics(&[(tref("t", &[("high", "NaN")]), s.clone())]).unwrap_err();
    assert!(matches!(
        err,
        AnalysisConfigError::ThresholdValue { bound: "max", .. }
    ));
    // An arg used only by a threshold and given nowhere is a missing arg.
    let mut m = metric("lat", "up");
    m.threshold = Some(ThresholdTemplate {
        min: None,
        max: Some(ThresholdValue::Template("{{args.ceiling}}".into())),
    });
    let err =
        resolve_metrics(&[(tref("t", &[]), spec(vec![arg("x", Some("1"))], vec![m]))]).unwrap_err();
    assert_eq!(
        err,
        AnalysisConfigError::MissingArg {
            template: "t".into(),
            arg: "ceiling".into(),
            declared: "x".into()
        }
    );
}

#[test]
fn thresholds_deserialize_from_numbers_and_strings() {
    let t: ThresholdTemplate = serde_yaml::from_str("min: 1\nmax: \"{{args.m}}\"").unwrap();
    assert_eq!(t.min, Some(ThresholdValue::Number(1.0)));
    assert_eq!(t.max, Some(ThresholdValue::Template("{{args.m}}".into())));
}

#[test]
fn crd_schema_accepts_numbers_or_strings_for_threshold_bounds() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(crate::crd::AnalysisTemplate::crd()).unwrap();
    let threshold = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["metrics"]["items"]["properties"]["threshold"]["properties"];
    for bound in ["min", "max"] {
        assert_eq!(
            threshold[bound]["x-kubernetes-preserve-unknown-fields"],
            serde_json::json!(true),
            "{threshold}"
        );
        assert!(threshold[bound].get("type").is_none(), "{threshold}");
    }
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"];
    for (field, min) in [
        ("failureLimit", 1),
        ("inconclusiveLimit", 1),
        ("consecutiveErrorLimit", 0),
    ] {
        assert_eq!(spec[field]["type"], "integer", "{field}");
        assert_eq!(
            spec[field]["minimum"].as_f64(),
            Some(f64::from(min)),
            "{field}"
        );
    }
}
