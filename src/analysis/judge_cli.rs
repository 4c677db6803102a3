//! The library side of `serin judge`: judge canary and baseline data given as JSON
//! with a judge config (YAML or JSON), and print the verdict with its statistics.
//!
//! Input, one of:
//! - samples: `{"canary": [1.2, 3.4, null], "baseline": [...]}` (`null` = missing,
//!   dropped and counted like NaN);
//! - counts: `{"canary": {"errors": 12, "requests": 1000}, "baseline": {...}}`;
//! - sequential looks: `{"looks": [{"canaryErrors": 3, "baselineErrors": 5,
//!   "canaryRequests": 120, "baselineRequests": 1080}, ...]}`: each look's measured
//!   increments.
//!
//! Config: `{compare: {...}}` or `{sequential: {...}}`; a whole metric of an
//! AnalysisTemplate works too (other keys are ignored).

use serde::Deserialize;
use serde_json::{json, Value};

use super::judges::{
    judge_mann_whitney, judge_proportions, judge_sequential, Counts, JudgeVerdict,
    SequentialObservation,
};
use crate::crd::{CompareKind, CompareSpec, SequentialSpec};

/// How `serin judge` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JudgeCliError {
    #[error("input is not valid: {0}")]
    Input(String),
    #[error("judge config is not valid: {0}")]
    Config(String),
    #[error("{0}")]
    Mismatch(String),
}

impl JudgeCliError {
    pub fn category(&self) -> &'static str {
        match self {
            JudgeCliError::Input(_) => "input_invalid",
            JudgeCliError::Config(_) => "config_invalid",
            JudgeCliError::Mismatch(_) => "input_config_mismatch",
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Samples {
        canary: Vec<Option<f64>>,
        baseline: Vec<Option<f64>>,
    },
    Counts {
        canary: Counts,
        baseline: Counts,
    },
    Looks {
        looks: Vec<Look>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Look {
    canary_errors: f64,
    baseline_errors: f64,
    /// Measured, never derived from a weight: no traffic is never a pass.
    canary_requests: f64,
    baseline_requests: f64,
}

#[derive(Deserialize)]
struct JudgeConfig {
    #[serde(default)]
    compare: Option<CompareSpec>,
    #[serde(default)]
    sequential: Option<SequentialSpec>,
}

/// Judge `input_json` under `config` (YAML or JSON) and render the result.
pub fn run_judge(
    input_json: &str,
    config: &str,
    output: OutputFormat,
) -> Result<String, JudgeCliError> {
    let input: Input = serde_json::from_str(input_json).map_err(|e| {
        JudgeCliError::Input(format!(
            "{e}; expected {{canary: [..], baseline: [..]}}, {{canary: {{errors, requests}}, baseline: {{..}}}} or {{looks: [..]}}"
        ))
    })?;
    let cfg: JudgeConfig =
        serde_yaml::from_str(config).map_err(|e| JudgeCliError::Config(e.to_string()))?;
    match (input, cfg.compare, cfg.sequential) {
        (_, Some(_), Some(_)) => Err(JudgeCliError::Config(
            "set either compare or sequential, not both".into(),
        )),
        (_, None, None) => Err(JudgeCliError::Config(
            "no judge: expected a compare or sequential section".into(),
        )),
        (Input::Samples { canary, baseline }, Some(c), None) => {
            if c.kind != CompareKind::Samples {
                return Err(mismatch("samples", "compare.kind: counts"));
            }
            let f = |v: Vec<Option<f64>>| -> Vec<f64> {
                v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect()
            };
            Ok(render(
                &judge_mann_whitney(&f(canary), &f(baseline), &c),
                &[],
                output,
            ))
        }
        (Input::Counts { canary, baseline }, Some(c), None) => {
            if c.kind != CompareKind::Counts {
                return Err(mismatch("counts", "compare.kind: samples (the default)"));
            }
            Ok(render(
                &judge_proportions(canary, baseline, &c),
                &[],
                output,
            ))
        }
        (Input::Looks { looks }, None, Some(s)) => {
            if looks.is_empty() {
                return Err(JudgeCliError::Input("looks is empty".into()));
            }
            let mut state = None;
            let mut rows = Vec::new();
            let mut last = None;
            for l in looks {
                let obs = SequentialObservation {
                    canary_errors: l.canary_errors,
                    canary_requests: l.canary_requests,
                    baseline_errors: l.baseline_errors,
                    baseline_requests: l.baseline_requests,
                };
                let (st, v) = judge_sequential(state.as_ref(), obs, &s);
                rows.push((obs, v.clone()));
                state = Some(st);
                last = Some(v);
            }
            let Some(last) = last else {
                return Err(JudgeCliError::Input("looks is empty".into()));
            };
            Ok(render(&last, &rows, output))
        }
        (Input::Looks { .. }, Some(_), None) => {
            Err(mismatch("sequential looks", "a compare judge"))
        }
        (_, None, Some(_)) => Err(mismatch("samples or counts", "a sequential judge")),
    }
}

fn mismatch(input: &str, config: &str) -> JudgeCliError {
    JudgeCliError::Mismatch(format!(
        "the input holds {input} but the config has {config}"
    ))
}

fn verdict_json(v: &JudgeVerdict) -> Value {
    json!({
        "verdict": v.outcome.as_str(),
        "reason": v.reason,
        "value": v.value,
        "baseline": v.baseline,
        "effect": v.effect,
        "ratio": v.ratio,
        "intervalLow": v.interval.map(|i| i.0),
        "intervalHigh": v.interval.map(|i| i.1),
        "pValue": v.p_value,
        "dropped": v.dropped,
        "advanceEarly": v.advance_early,
    })
}

fn render(
    v: &JudgeVerdict,
    looks: &[(SequentialObservation, JudgeVerdict)],
    out: OutputFormat,
) -> String {
    let opt = |x: Option<f64>| x.map_or("-".to_string(), super::judges::fmt);
    match out {
        OutputFormat::Json => {
            let mut j = verdict_json(v);
            if !looks.is_empty() {
                j["looks"] = looks.iter().map(|(_, lv)| verdict_json(lv)).collect();
            }
            let mut s = j.to_string();
            s.push('\n');
            s
        }
        OutputFormat::Table => {
            let mut s = String::new();
            if !looks.is_empty() {
                s.push_str(&format!(
                    "{:>4}  {:>14}  {:>14}  {:>10}  {}\n",
                    "look", "canary err/req", "base err/req", "p-value", "verdict"
                ));
                for (i, (o, lv)) in looks.iter().enumerate() {
                    let f = super::judges::fmt;
                    s.push_str(&format!(
                        "{:>4}  {:>14}  {:>14}  {:>10}  {}\n",
                        i + 1,
                        format!("{}/{}", f(o.canary_errors), f(o.canary_requests)),
                        format!("{}/{}", f(o.baseline_errors), f(o.baseline_requests)),
                        opt(lv.p_value),
                        lv.outcome.as_str()
                    ));
                }
                s.push('\n');
            }
            let interval = v.interval.map_or("-".to_string(), |(a, b)| {
                format!("[{}, {}]", opt(Some(a)), opt(Some(b)))
            });
            for (k, val) in [
                ("verdict", v.outcome.as_str().to_string()),
                ("canary", opt(v.value)),
                ("baseline", opt(v.baseline)),
                ("effect", opt(v.effect)),
                ("ratio", opt(v.ratio)),
                ("interval", interval),
                ("p-value", opt(v.p_value)),
                ("dropped", v.dropped.to_string()),
                ("reason", v.reason.clone()),
            ] {
                s.push_str(&format!("{k:<9} {val}\n"));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_table_and_json() {
        let input = r#"{"canary": [10, 20, 30, 40, null], "baseline": [1, 2, 3, 4]}"#;
        let cfg = "compare:\n  minSamples: 4\n";
        let t = run_judge(input, cfg, OutputFormat::Table).unwrap();
        assert!(
            t.starts_with("verdict   Fail\ncanary    25\nbaseline  2.5\neffect    22.5\n"),
            "{t}"
        );
        assert!(t.contains("interval  [6, 39]\n"), "{t}");
        assert!(t.contains("dropped   1\n"), "{t}");
        let j: Value =
            serde_json::from_str(&run_judge(input, cfg, OutputFormat::Json).unwrap()).unwrap();
        assert_eq!(j["verdict"], "Fail");
        assert_eq!(j["intervalLow"], 6.0);
        assert_eq!(j["effect"], 22.5);
    }

    #[test]
    fn counts_and_sequential() {
        let input = r#"{"canary": {"errors": 30, "requests": 1000}, "baseline": {"errors": 5, "requests": 1000}}"#;
        let t = run_judge(
            input,
            r#"{"compare": {"kind": "counts"}}"#,
            OutputFormat::Table,
        )
        .unwrap();
        assert!(t.starts_with("verdict   Fail\n"), "{t}");
        let looks = r#"{"looks": [
            {"canaryErrors": 1, "baselineErrors": 5, "canaryRequests": 120, "baselineRequests": 1080},
            {"canaryErrors": 9, "baselineErrors": 4, "canaryRequests": 118, "baselineRequests": 1075}]}"#;
        let t = run_judge(looks, "sequential: {}\n", OutputFormat::Table).unwrap();
        assert!(
            t.contains("\n   2           9/118          4/1075    6.519e-5  Fail\n"),
            "{t}"
        );
        let j: Value =
            serde_json::from_str(&run_judge(looks, "sequential: {}", OutputFormat::Json).unwrap())
                .unwrap();
        assert_eq!(j["looks"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let samples = r#"{"canary": [1], "baseline": [2]}"#;
        assert_eq!(
            run_judge(samples, "compare: {kind: counts}", OutputFormat::Table)
                .unwrap_err()
                .category(),
            "input_config_mismatch"
        );
        assert_eq!(
            run_judge(samples, "{}", OutputFormat::Table)
                .unwrap_err()
                .category(),
            "config_invalid"
        );
        assert_eq!(
            run_judge("[1,2]", "compare: {}", OutputFormat::Table)
                .unwrap_err()
                .category(),
            "input_invalid"
        );
        assert_eq!(
            run_judge(samples, "sequential: {}", OutputFormat::Table)
                .unwrap_err()
                .category(),
            "input_config_mismatch"
        );
    }
}
