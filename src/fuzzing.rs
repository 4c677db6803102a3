//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their
//! corpora (`tests/fuzz_corpus.rs`): each takes bytes as a tenant or the network hands
//! them to serin and runs the same parsing and validation serin runs. None may panic;
//! the fuzzers also hold them to a memory bound (`-malloc_limit_mb`).

use std::collections::BTreeMap;

use crate::analysis::{
    builtin_template, checks_from, render_query, resolve_metrics, RenderVars, Telemetry,
};
use crate::crd::TemplateRef;
use crate::rollout::ReleasePlan;
use crate::traffic::RouterKind;

/// `key=value` lines; a key without the `serin.dev/` prefix gets it, so the fuzzer
/// mostly reaches serin's own keys.
fn lines_to_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = if k.contains('/') {
                k.to_string()
            } else {
                format!("serin.dev/{k}")
            };
            (k, v.to_string())
        })
        .collect()
}

/// A Deployment's annotations: parsed into a Canary spec, then into a release plan and
/// the source of its checks, as onboarding does.
pub fn annotations(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let a = lines_to_map(text);
    let _ = crate::annotations::is_enabled(&a);
    if let Ok(spec) = crate::annotations::spec_from_annotations("podinfo", &a) {
        for weighting in [false, true] {
            let _ = ReleasePlan::from_spec(&spec, weighting);
        }
        for router in RouterKind::ALL {
            let _ = checks_from(&spec.analysis, router);
        }
    }
}

fn vars(workload: &str, args: &BTreeMap<String, String>) -> RenderVars {
    RenderVars {
        namespace: "shop".into(),
        target: "podinfo".into(),
        canary: "podinfo".into(),
        primary: "podinfo-primary".into(),
        workload: workload.into(),
        service: "podinfo".into(),
        interval: "1m".into(),
        args: args.clone(),
    }
}

/// Arguments as a Canary or an annotation passes them, against the shipped templates
/// (first byte picks one), or, after a line `---`, against a template the input brings
/// (YAML, as a template author writes it). Every query a resolved metric holds is
/// rendered for both versions.
pub fn template_args(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (args_text, template_text) = match text.split_once("\n---\n") {
        Some((a, t)) => (a, Some(t)),
        None => (text, None),
    };
    let args: BTreeMap<String, String> = args_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let spec = match template_text {
        Some(t) => match crate::analysis::history::parse_template(t, "fuzz") {
            Ok((_, spec)) => spec,
            Err(_) => return,
        },
        None => builtin_template(Telemetry::ALL[pick as usize % Telemetry::ALL.len()]),
    };
    let tref = TemplateRef {
        name: "fuzz".into(),
        cluster_scope: false,
        args,
    };
    let Ok(metrics) = resolve_metrics(&[(tref, spec)]) else {
        return;
    };
    for m in &metrics {
        let mut queries = vec![&m.query];
        if let Some(s) = &m.sequential {
            queries.extend(
                [
                    &s.requests_query,
                    &s.baseline_errors_query,
                    &s.baseline_requests_query,
                ]
                .into_iter()
                .flatten(),
            );
        }
        if let Some(c) = &m.compare {
            queries.extend([&c.baseline_query, &c.requests_query].into_iter().flatten());
        }
        for q in queries {
            for w in ["podinfo", "podinfo-primary"] {
                let _ = render_query(q, &vars(w, &m.args));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harnesses reach serin's code: a valid input gets through to a plan and to
    /// rendered queries (a harness that returned early on everything would fuzz nothing).
    #[test]
    fn harnesses_reach_the_parsers() {
        let a = lines_to_map("enabled=true\nsteps=10,50\nanalysis=istio(maxErrorRatio=2)");
        let spec = crate::annotations::spec_from_annotations("podinfo", &a).unwrap();
        assert!(ReleasePlan::from_spec(&spec, false).is_ok());
        annotations(b"enabled=true\nsteps=10,50\nanalysis=istio(maxErrorRatio=2)");
        template_args(b"\x00maxErrorRatio=2\nlatencyWindow=15s");
        template_args(b"\x04statusLabel=status\n---\nnot: [yaml");
    }
}
