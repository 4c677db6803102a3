//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their
//! corpora (`tests/fuzz_corpus.rs`): each takes bytes as a tenant or the network hands
//! them to serin and runs the same parsing and validation serin runs. None may panic,
//! any text that reaches a status, an Event or an HTTP answer from them is at most
//! [`TEXT_MAX_CHARS`], and the fuzzers also hold them to a memory bound
//! (`-malloc_limit_mb`).

mod answers;
mod approvals;

pub use answers::{prometheus_answer, webhook_results};
pub use approvals::{approval_request, slack_request};

use std::collections::BTreeMap;

use crate::analysis::{
    builtin_template, checks_from, render_query, resolve_metrics, RenderVars, Telemetry,
};
use crate::crd::TemplateRef;
use crate::rollout::ReleasePlan;
use crate::traffic::RouterKind;

/// Longest text any harness input may put into a message: fixed wording plus fields
/// read from the input, each bounded (200 characters where they come from the network).
pub const TEXT_MAX_CHARS: usize = 512;

/// Panics (a finding) when `text`, shown to people as `what`, passes [`TEXT_MAX_CHARS`].
fn bounded(what: &str, text: &str) {
    let n = text.chars().count();
    assert!(n <= TEXT_MAX_CHARS, "{what} of {n} characters: {text:.80}…");
}

/// A cursor over a fuzz input.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let (head, rest) = self.0.split_first_chunk::<2>()?;
        self.0 = rest;
        Some(u16::from_be_bytes(*head))
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// Up to the next newline (dropped).
    fn line(&mut self) -> &'a [u8] {
        let n = self.0.iter().position(|&b| b == b'\n');
        let line = self.take(n.unwrap_or(self.0.len()));
        self.take(1);
        line
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }
}

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
        if let Some(s) = m.sequential() {
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
        if let Some(c) = m.compare() {
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

    #[test]
    fn answer_harnesses_reach_values_verdicts_and_approvals() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}}"#;
        let answer = crate::providers::decode_body(200, body, std::time::Duration::ZERO).unwrap();
        assert_eq!(crate::providers::scalar_of(&answer), Ok(0.5));
        // A check due with every hook answering 200: the rollout hook's verdict is read.
        let (status, answers, plan) = answers::answered_plan(&[1; 64]).unwrap();
        assert!(!status.hooks.is_empty() && answers.len() == status.hooks.len());
        assert!(
            plan.runs.iter().any(|r| r.finished_at.is_some()),
            "{plan:?}"
        );
        // Waiting at a gate, the confirm hook's 2xx approves it.
        let (_, _, plan) = answers::answered_plan(&[2, 0, 200, 1, 0, 0, 200, 1, 0]).unwrap();
        assert!(!plan.approvals.is_empty(), "{plan:?}");
    }

    #[test]
    fn approval_harnesses_reach_a_decision_and_a_click() {
        let d = crate::gates::decision_of(
            crate::gates::Verb::Approve,
            br#"{"gate":"beforePromotion","revision":"rev2","step":2}"#,
        )
        .unwrap();
        assert!(d.expect.is_some());
        let value =
            r#"{"ns":"shop","name":"podinfo","gate":"beforePromotion","rev":"rev2","step":2}"#;
        let payload = serde_json::json!({"type": "block_actions", "user": {"id": "U1"},
            "actions": [{"action_id": crate::gates::ACTION_APPROVE, "value": value}]});
        let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let payload = crate::gates::parse_payload(form.as_bytes()).unwrap();
        let ids = crate::gates::SlackIdentities::parse("users: [{slackUserId: U1, username: a}]")
            .unwrap();
        let click = crate::gates::read_click(&payload, &ids).unwrap();
        assert_eq!(
            (click.ns.as_str(), click.user.username.as_str()),
            ("shop", "a")
        );
        // A revision no serin writes is refused before anything quotes it.
        let long = value.replace("rev2", &"r".repeat(129));
        assert!(crate::gates::parse_button_value(&long).is_err());
    }
}
