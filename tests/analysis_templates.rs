//! Every shipped template in analysis-templates/ deserializes, resolves with its
//! default args, renders to PromQL that parses, and selects exactly the measured
//! workload's series (checked with the parser's own anchored label matchers).

use std::collections::BTreeMap;
use std::path::PathBuf;

use promql_parser::label::Matcher;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, VectorSelector};
use serin::analysis::{render_query, resolve_metrics, RenderVars};
use serin::crd::{AnalysisTemplate, TemplateRef};

/// How each template tells the canary's series from the primary's: the label, and a
/// value each variant's series carry in a real cluster.
struct Identity {
    file: &'static str,
    label: &'static str,
    canary: &'static str,
    primary: &'static str,
    /// The primary cannot be selected from this telemetry (documented in the file).
    primary_measurable: bool,
}

const IDENTITIES: &[Identity] = &[
    Identity {
        file: "istio.yaml",
        label: "destination_workload",
        canary: "podinfo",
        primary: "podinfo-primary",
        primary_measurable: true,
    },
    Identity {
        file: "linkerd.yaml",
        label: "deployment",
        canary: "podinfo",
        primary: "podinfo-primary",
        primary_measurable: true,
    },
    Identity {
        file: "ingress-nginx.yaml",
        label: "canary",
        canary: "shop-podinfo-canary-80",
        primary: "",
        primary_measurable: false,
    },
    Identity {
        file: "gateway-api-envoy.yaml",
        label: "envoy_cluster_name",
        canary: "shop_podinfo-canary_9898",
        primary: "shop_podinfo-primary_9898",
        primary_measurable: true,
    },
    Identity {
        file: "app-http-histogram.yaml",
        label: "pod",
        canary: "podinfo-7d9f8b6c5-x2x4z",
        primary: "podinfo-primary-5c6b7d8f9-abcde",
        primary_measurable: true,
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

#[test]
fn every_shipped_template_resolves_renders_and_parses() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
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
        }
        let metric_names: Vec<&str> = t.spec.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            metric_names,
            ["error-rate", "latency-p50", "latency-p95", "latency-p99"],
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
            let default_of = |arg: &str| -> f64 {
                t.spec
                    .args
                    .iter()
                    .find(|a| a.name == arg)
                    .and_then(|a| a.default.as_deref())
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let max_arg = match m.name.as_str() {
                "error-rate" => "maxErrorRate",
                "latency-p50" => "maxLatencyP50",
                "latency-p95" => "maxLatencyP95",
                _ => "maxLatencyP99",
            };
            assert_eq!(
                m.threshold.max,
                Some(default_of(max_arg)),
                "{file} {}",
                m.name
            );
            assert_eq!(m.threshold.min, None);

            for (workload, own, other) in [
                ("podinfo", id.canary, id.primary),
                ("podinfo-primary", id.primary, id.canary),
            ] {
                let measuring_primary = workload == "podinfo-primary";
                let q = render_query(&m.query, &vars(workload, m.args.clone()))
                    .unwrap_or_else(|e| panic!("{file} {}: {e}", m.name));
                assert!(!q.contains("{{"), "{file}: unrendered variable in {q}");
                let ast =
                    parser::parse(&q).unwrap_or_else(|e| panic!("{file} {}: {e}\n{q}", m.name));
                assert!(
                    matches!(ast.value_type(), ValueType::Vector | ValueType::Scalar),
                    "{file} {}: must yield an instant value",
                    m.name
                );
                if let Some(quantile) = m.name.strip_prefix("latency-p") {
                    let want = format!("histogram_quantile(0.{quantile}, ");
                    assert!(q.contains(&want), "{file} {}: {q}", m.name);
                    // Bucket metrics in milliseconds are converted to seconds.
                    let ms =
                        q.contains("milliseconds") || q.contains("_ms_") || q.contains("rq_time");
                    assert_eq!(
                        ms,
                        q.trim_end().ends_with("/ 1000"),
                        "{file} {}: {q}",
                        m.name
                    );
                }

                let mut sels = Vec::new();
                selectors(&ast, &mut sels);
                assert!(!sels.is_empty(), "{file}");
                for vs in sels {
                    let name = vs.name.as_deref().unwrap_or("?");
                    // Scoped to the Canary's namespace.
                    let scoped = vs.matchers.matchers.iter().any(|mt| {
                        (mt.name == "namespace" || mt.name == "destination_workload_namespace")
                            && mt.is_match("shop")
                            && !mt.is_match("other")
                    }) || matcher(vs, id.label)
                        .is_some_and(|mt| !mt.is_match(&id.canary.replace("shop", "other")));
                    assert!(scoped, "{file} {name}: not scoped to the namespace");
                    let mt = matcher(vs, id.label)
                        .unwrap_or_else(|| panic!("{file} {name}: no {} matcher", id.label));
                    if measuring_primary && !id.primary_measurable {
                        assert!(
                            !mt.is_match(id.canary),
                            "{file}: baseline must not read the canary"
                        );
                        continue;
                    }
                    assert!(
                        mt.is_match(own),
                        "{file} {name}: {} must select {own:?}",
                        id.label
                    );
                    assert!(
                        !mt.is_match(other),
                        "{file} {name}: {} must not select {other:?}",
                        id.label
                    );
                }
            }
        }
    }
}

#[test]
fn app_template_status_label_is_an_argument() {
    let text = std::fs::read_to_string(dir().join("app-http-histogram.yaml")).unwrap();
    let t: AnalysisTemplate = serde_yaml::from_str(&text).unwrap();
    let tref = TemplateRef {
        name: "app-http-histogram".into(),
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
