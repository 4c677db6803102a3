//! Every shipped template in analysis-templates/ is a built-in check family,
//! deserializes, resolves with its default args, renders every query of every judge
//! for the canary and the primary to PromQL that parses, and selects exactly the
//! measured variant's series (checked with the parser's own anchored label matchers).

use std::collections::BTreeMap;
use std::path::PathBuf;

use promql_parser::label::Matcher;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, VectorSelector};
use serin::analysis::{
    builtin_template, render_query, resolve_metrics, RenderVars, ResolvedMetric, Telemetry,
};
use serin::crd::{AnalysisTemplate, TemplateRef};

/// How each template tells the canary's series from the primary's: the label, and a
/// value each variant's series carry in a real cluster.
struct Identity {
    file: &'static str,
    label: &'static str,
    canary: &'static str,
    primary: &'static str,
}

const IDENTITIES: &[Identity] = &[
    Identity {
        file: "istio.yaml",
        label: "destination_workload",
        canary: "podinfo",
        primary: "podinfo-primary",
    },
    Identity {
        file: "linkerd.yaml",
        label: "deployment",
        canary: "podinfo",
        primary: "podinfo-primary",
    },
    // Requests to the primary carry no upstream name (its own baseline queries).
    Identity {
        file: "ingress-nginx.yaml",
        label: "canary",
        canary: "shop-podinfo-canary-80",
        primary: "",
    },
    Identity {
        file: "gateway-api-envoy.yaml",
        label: "envoy_cluster_name",
        canary: "shop_podinfo-canary_9898",
        primary: "shop_podinfo-primary_9898",
    },
    Identity {
        file: "app-http.yaml",
        label: "pod",
        canary: "podinfo-7d9f8b6c5-x2x4z",
        primary: "podinfo-primary-5c6b7d8f9-abcde",
    },
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("analysis-templates")
}

fn vars(workload: &str, args: BTreeMap<String, String>) -> RenderVars {
    RenderVars {
        namespace: "shop".into(),
        target: "podinfo".into(),
        primary: "podinfo-primary".into(),
        canary: "podinfo".into(),
        workload: workload.into(),
        service: "podinfo".into(),
        interval: "1m".into(),
        args,
    }
}

fn selectors<'a>(e: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
    match e {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        _ => {}
    }
}

fn matcher<'a>(vs: &'a VectorSelector, label: &str) -> Option<&'a Matcher> {
    vs.matchers.matchers.iter().find(|m| m.name == label)
}

/// Which variant a rendered query measures.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Variant {
    Canary,
    Primary,
}

/// Every query a metric asks, rendered as a check renders it: (what it is, variant,
/// PromQL). The baseline uses the judge's baseline query when it has one, else the
/// metric's query with `{{workload}}` = primary; guards measure the canary only.
fn rendered(m: &ResolvedMetric) -> Vec<(String, Variant, String)> {
    let canary = vars("podinfo", m.args.clone());
    let primary = vars("podinfo-primary", m.args.clone());
    let r = |q: &str, v: &RenderVars| {
        render_query(q, v).unwrap_or_else(|e| panic!("{}: {e}\n{q}", m.name))
    };
    let mut out = vec![("query".to_string(), Variant::Canary, r(&m.query, &canary))];
    if let Some(s) = m.sequential() {
        let errors = s.errors_query.as_deref().unwrap_or(&m.query);
        let requests = s
            .requests_query
            .as_deref()
            .unwrap_or_else(|| panic!("{}: sequential.requestsQuery is required", m.name));
        out.push((
            "requestsQuery".into(),
            Variant::Canary,
            r(requests, &canary),
        ));
        let be = s.baseline_errors_query.as_deref();
        let br = s.baseline_requests_query.as_deref();
        out.push((
            "baseline errors".into(),
            Variant::Primary,
            r(be.unwrap_or(errors), &primary),
        ));
        out.push((
            "baseline requests".into(),
            Variant::Primary,
            r(br.unwrap_or(requests), &primary),
        ));
    }
    if let Some(c) = m.compare() {
        let b = c.baseline_query.as_deref().unwrap_or(&m.query);
        out.push(("baseline".into(), Variant::Primary, r(b, &primary)));
    }
    out
}

fn shipped_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The shipped files are exactly the built-in checks, one per telemetry family.
#[test]
fn shipped_templates_are_the_builtin_checks() {
    let names: Vec<String> = shipped_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected: Vec<String> = Telemetry::ALL
        .iter()
        .map(|t| format!("{}.yaml", t.as_str()))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    for t in Telemetry::ALL {
        let text = std::fs::read_to_string(dir().join(format!("{}.yaml", t.as_str()))).unwrap();
        let file: AnalysisTemplate = serde_yaml::from_str(&text).unwrap();
        assert_eq!(file.spec, builtin_template(t), "{t}");
    }
}

#[test]
fn every_shipped_template_resolves_renders_and_parses() {
    let files = shipped_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected: Vec<String> = IDENTITIES.iter().map(|i| i.file.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "every template needs an identity fixture");

    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let header = text.lines().take_while(|l| l.starts_with('#')).count();
        assert!(header >= 5, "{file}: needs a header comment explaining it");

        let raw: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(raw["apiVersion"], "serin.dev/v1alpha1", "{file}");
        assert_eq!(raw["kind"], "AnalysisTemplate", "{file}");
        let t: AnalysisTemplate = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            t.metadata.name.as_deref(),
            Some(file.trim_end_matches(".yaml")),
            "{file}: metadata.name is the file name"
        );
        for a in &t.spec.args {
            assert!(
                a.default.is_some(),
                "{file}: arg {} needs a default",
                a.name
            );
            assert!(
                text.matches(&format!("{{{{args.{}}}}}", a.name)).count() > 0,
                "{file}: arg {} is never used",
                a.name
            );
        }
        let metric_names: Vec<&str> = t.spec.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            metric_names,
            ["errors", "latency", "error-rate-guard", "latency-guard"],
            "{file}"
        );

        let tref = TemplateRef {
            name: t.metadata.name.clone().unwrap(),
            cluster_scope: false,
            args: BTreeMap::new(),
        };
        let resolved =
            resolve_metrics(&[(tref, t.spec.clone())]).unwrap_or_else(|e| panic!("{file}: {e}"));
        let id = IDENTITIES.iter().find(|i| i.file == file).unwrap();

        for m in &resolved {
            let what = format!("{file} {}", m.name);
            match m.name.as_str() {
                "errors" => {
                    let s = m.sequential().expect(&what);
                    assert_eq!(s.alpha, 0.01, "{what}");
                    assert_eq!(s.allowed_increase.number(), 1.5, "{what}");
                }
                "latency" => {
                    let c = m.compare().expect(&what);
                    assert_eq!(c.allowed_increase.as_ref().map(|v| v.number()), Some(1.2));
                }
                "error-rate-guard" => {
                    assert!(m.critical, "{what}");
                    assert_eq!(m.threshold().and_then(|b| b.max), Some(0.2), "{what}");
                }
                _ => {
                    assert!(m.critical, "{what}");
                    assert_eq!(m.threshold().and_then(|b| b.max), Some(5.0), "{what}");
                }
            }
            for (part, variant, q) in rendered(m) {
                let what = format!("{file} {} {part} ({variant:?})", m.name);
                assert!(!q.contains("{{"), "{what}: unrendered variable in {q}");
                let ast = parser::parse(&q).unwrap_or_else(|e| panic!("{what}: {e}\n{q}"));
                if m.sequential().is_some() {
                    // Counter totals: serin takes the increments between looks itself.
                    for banned in ["rate(", "increase(", "[1m]", "{{interval}}"] {
                        assert!(!q.contains(banned), "{what}: {banned} in {q}");
                    }
                    assert!(q.starts_with("sum("), "{what}: {q}");
                }
                if m.compare().is_some() {
                    // One p99 (seconds) per 30 s window of the last 5 minutes.
                    assert!(
                        matches!(ast.value_type(), ValueType::Matrix),
                        "{what}: samples from a subquery"
                    );
                    assert!(q.trim_end().ends_with(")[5m:30s]"), "{what}: {q}");
                    assert!(q.contains("histogram_quantile(0.99, "), "{what}: {q}");
                    assert!(q.contains("[30s]"), "{what}: {q}");
                } else {
                    assert!(
                        matches!(ast.value_type(), ValueType::Vector | ValueType::Scalar),
                        "{what}: must yield an instant value"
                    );
                }
                if m.name.starts_with("latency") {
                    // Bucket metrics in milliseconds are converted to seconds.
                    let ms =
                        q.contains("milliseconds") || q.contains("_ms_") || q.contains("rq_time");
                    assert_eq!(ms, q.contains(") / 1000"), "{what}: {q}");
                }
                if m.critical {
                    assert!(q.contains("[1m]"), "{what}: over the check interval");
                }

                let (own, other) = match variant {
                    Variant::Canary => (id.canary, id.primary),
                    Variant::Primary => (id.primary, id.canary),
                };
                let mut sels = Vec::new();
                selectors(&ast, &mut sels);
                assert!(!sels.is_empty(), "{what}");
                for vs in sels {
                    let name = vs.name.as_deref().unwrap_or("?");
                    // Scoped to the Canary's namespace.
                    let scoped = vs.matchers.matchers.iter().any(|mt| {
                        (mt.name == "namespace" || mt.name == "destination_workload_namespace")
                            && mt.is_match("shop")
                            && !mt.is_match("other")
                    }) || matcher(vs, id.label)
                        .is_some_and(|mt| !mt.is_match(&id.canary.replace("shop", "other")));
                    assert!(scoped, "{what} {name}: not scoped to the namespace");
                    let mt = matcher(vs, id.label)
                        .unwrap_or_else(|| panic!("{what} {name}: no {} matcher", id.label));
                    assert!(
                        mt.is_match(own),
                        "{what} {name}: {} must select {own:?}",
                        id.label
                    );
                    assert!(
                        !mt.is_match(other),
                        "{what} {name}: {} must not select {other:?}",
                        id.label
                    );
                }
            }
        }
    }
}

#[test]
fn app_template_status_label_is_an_argument() {
    let text = std::fs::read_to_string(dir().join("app-http.yaml")).unwrap();
    let t: AnalysisTemplate = serde_yaml::from_str(&text).unwrap();
    let tref = TemplateRef {
        name: "app-http".into(),
        cluster_scope: false,
        args: BTreeMap::from([("statusLabel".to_string(), "status".to_string())]),
    };
    let m = &resolve_metrics(&[(tref, t.spec)]).unwrap()[0];
    let q = render_query(&m.query, &vars("podinfo", m.args.clone())).unwrap();
    let ast = parser::parse(&q).unwrap();
    let mut sels = Vec::new();
    selectors(&ast, &mut sels);
    let errors = sels
        .iter()
        .find(|vs| matcher(vs, "status").is_some())
        .expect("an error selector on the status label");
    let st = matcher(errors, "status").unwrap();
    assert!(st.is_match("503") && st.is_match("5xx") && !st.is_match("404"));
}

/// Issue 13: arguments from the `serin.dev/analysis` annotation cannot add PromQL to a
/// shipped template (run with a ClusterAnalysisTemplate's credentials, read back from
/// the status). Each is refused when the Canary is resolved, naming the argument, the
/// template, the value and what is accepted; a legitimate value still works.
#[test]
fn annotation_arguments_cannot_inject_promql_into_a_shipped_template() {
    let text = std::fs::read_to_string(dir().join("app-http.yaml")).unwrap();
    let t: AnalysisTemplate = serde_yaml::from_str(&text).unwrap();
    let resolve = |args: &str| {
        let annotations = BTreeMap::from([
            ("serin.dev/enabled".to_string(), "true".to_string()),
            (
                "serin.dev/analysis".to_string(),
                format!("cluster/app-http({args})"),
            ),
        ]);
        let spec = serin::annotations::spec_from_annotations("podinfo", &annotations)
            .unwrap_or_else(|e| panic!("{args}: {e:?}"));
        let tref = spec.analysis.templates[0].clone();
        resolve_metrics(&[(tref, t.spec.clone())])
    };
    for (arg, value, accepted) in [
        (
            "statusLabel",
            r#"code=~".*"} or vector(1) or up{a"#,
            "a label name matching",
        ),
        (
            "latencyWindow",
            "1m]) or vector(1) or (up[1m",
            "a Prometheus duration",
        ),
        (
            "latencyLookback",
            "5m:1m] or vector(1) #",
            "a Prometheus duration",
        ),
    ] {
        let e = resolve(&format!("{arg}={value}")).unwrap_err().to_string();
        assert!(e.starts_with("template \"app-http\" metric "), "{e}");
        assert!(e.contains(&format!("argument {arg:?} = {value:?}")), "{e}");
        assert!(e.contains(accepted), "{e}");
    }
    let ok = resolve("statusLabel=status, latencyWindow=1m, latencyLookback=10m").unwrap();
    let q = render_query(&ok[1].query, &vars("podinfo", ok[1].args.clone())).unwrap();
    assert!(q.contains("[1m]))))[10m:1m]"), "{q}");
    parser::parse(&q).unwrap();
}

/// The templates shipped per provider (`analysis-templates/providers/`): each parses,
/// resolves with its defaults, names its provider, and renders a query per variant that
/// names that variant's Deployment and keeps no placeholder.
#[test]
fn provider_templates_resolve_and_render_for_canary_and_primary() {
    let dir = dir().join("providers");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let (name, spec) = serin::analysis::history::load_template(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tref = TemplateRef {
            name: name.clone(),
            cluster_scope: false,
            args: BTreeMap::new(),
        };
        let metrics =
            resolve_metrics(&[(tref, spec.clone())]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind = spec
            .provider
            .as_ref()
            .and_then(|p| p.kind().ok())
            .unwrap_or_else(|| panic!("{name} names no provider"));
        assert!(name.starts_with(kind.as_str()), "{name} is for {kind:?}");
        for m in &metrics {
            let canary = render_query(&m.query, &vars("podinfo", m.args.clone()))
                .unwrap_or_else(|e| panic!("{name}/{}: {e}", m.name));
            let primary = render_query(&m.query, &vars("podinfo-primary", m.args.clone()))
                .unwrap_or_else(|e| panic!("{name}/{}: {e}", m.name));
            for q in [&canary, &primary] {
                assert!(!q.contains("{{"), "{name}/{}: {q}", m.name);
            }
            assert!(
                canary.contains("podinfo") && !canary.contains("podinfo-primary"),
                "{name}/{}: {canary}",
                m.name
            );
            assert!(
                primary.contains("podinfo-primary"),
                "{name}/{}: {primary}",
                m.name
            );
        }
        seen.push(kind.as_str().to_string());
    }
    seen.sort();
    assert_eq!(seen, ["datadog", "graphite", "influxdb"]);
}
