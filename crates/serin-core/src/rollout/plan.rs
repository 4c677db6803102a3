use chrono::Duration;

use crate::crd::{CanarySpec, GatesSpec, Strategy};

/// The release plan of a Canary, validated from its spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleasePlan {
    pub strategy: Strategy,
    /// Canary weight at each step; blue/green: `iterations` steps at weight 0.
    pub steps: Vec<i32>,
    pub interval: Duration,
    /// Passing checks a step needs before it advances.
    pub checks_per_step: i32,
    pub failure_limit: i32,
    pub inconclusive_limit: Option<i32>,
    pub progress_deadline: Duration,
    pub gates: GatesSpec,
    pub skip_analysis: bool,
    pub suspend: bool,
    /// Pre-rollout checks (webhooks) must pass before the first traffic step.
    pub pre_rollout: bool,
    /// The router approximates weights by the canary's replica count.
    pub replica_weighting: bool,
    /// Time the canary keeps its pods after traffic left it.
    pub scale_down_delay: Duration,
    /// A gate that waited this long without a decision rolls the release back.
    pub approval_timeout: Option<Duration>,
    /// How often sequential metrics look between checks.
    pub look_interval: Duration,
    /// Some metric is sequential (the controller sets it from the resolved metrics):
    /// only then are there looks between checks.
    pub sequential_looks: bool,
    /// Released without any checks (`analysis.builtin: none` and no templates).
    pub no_analysis: bool,
}

/// A spec field that cannot be used, with what is accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {value:?} is not valid: {expected}")]
pub struct PlanError {
    pub field: &'static str,
    pub value: String,
    pub expected: String,
}

fn duration(field: &'static str, value: &str) -> Result<Duration, PlanError> {
    let bad = |expected: &str| PlanError {
        field,
        value: value.to_string(),
        expected: expected.to_string(),
    };
    let std = humantime::parse_duration(value.trim()).map_err(|e| {
        bad(&format!(
            "a duration such as \"30s\", \"1m\" or \"1h30m\" ({e})"
        ))
    })?;
    if std.is_zero() {
        return Err(bad("a duration greater than zero"));
    }
    Duration::from_std(std).map_err(|_| bad("a duration shorter than 100 years"))
}

impl ReleasePlan {
    pub fn from_spec(spec: &CanarySpec, replica_weighting: bool) -> Result<Self, PlanError> {
        let a = &spec.analysis;
        let interval = duration("analysis.interval", &a.interval)?;
        let progress_deadline = duration("analysis.progressDeadline", &a.progress_deadline)?;
        if progress_deadline <= interval {
            return Err(PlanError {
                field: "analysis.progressDeadline",
                value: a.progress_deadline.clone(),
                expected: format!("a duration longer than the interval ({})", a.interval),
            });
        }
        let steps = match spec.strategy {
            Strategy::Canary => {
                validate_steps(&a.steps)?;
                a.steps.clone()
            }
            Strategy::BlueGreen => {
                if !(1..=100).contains(&a.iterations) {
                    return Err(PlanError {
                        field: "analysis.iterations",
                        value: a.iterations.to_string(),
                        expected: "a whole number from 1 to 100".into(),
                    });
                }
                vec![0; a.iterations as usize]
            }
        };
        if !(1..=100).contains(&a.checks_per_step) {
            return Err(PlanError {
                field: "analysis.checksPerStep",
                value: a.checks_per_step.to_string(),
                expected: "a whole number from 1 to 100".into(),
            });
        }
        if !(1..=1000).contains(&a.failure_limit) {
            return Err(PlanError {
                field: "analysis.failureLimit",
                value: a.failure_limit.to_string(),
                expected: "a whole number from 1 to 1000".into(),
            });
        }
        if let Some(l) = a.inconclusive_limit {
            if !(1..=1000).contains(&l) {
                return Err(PlanError {
                    field: "analysis.inconclusiveLimit",
                    value: l.to_string(),
                    expected: "a whole number from 1 to 1000".into(),
                });
            }
        }
        let scale_down_delay = humantime::parse_duration(a.scale_down_delay.trim())
            .ok()
            .filter(|d| *d <= std::time::Duration::from_secs(3600))
            .and_then(|d| Duration::from_std(d).ok())
            .ok_or_else(|| PlanError {
                field: "analysis.scaleDownDelay",
                value: a.scale_down_delay.clone(),
                expected: "a duration from \"0s\" to \"1h\", e.g. \"30s\"".into(),
            })?;
        let look_interval = duration("analysis.lookInterval", &a.look_interval)?;
        let approval_timeout = match &spec.gates.approval_timeout {
            Some(t) => Some(duration("gates.approvalTimeout", t)?),
            None => None,
        };
        if spec.target_ref.name.is_empty() {
            return Err(PlanError {
                field: "targetRef.name",
                value: String::new(),
                expected: "the name of a Deployment in the Canary's namespace".into(),
            });
        }
        Ok(Self {
            strategy: spec.strategy,
            steps,
            interval,
            checks_per_step: a.checks_per_step,
            failure_limit: a.failure_limit,
            inconclusive_limit: a.inconclusive_limit,
            progress_deadline,
            gates: spec.gates.clone(),
            skip_analysis: spec.skip_analysis,
            suspend: spec.suspend,
            pre_rollout: false,
            replica_weighting,
            scale_down_delay,
            approval_timeout,
            look_interval,
            sequential_looks: false,
            no_analysis: a.templates.is_empty() && a.builtin == crate::crd::BuiltinAnalysis::None,
        })
    }

    /// The plan that keeps a release safe once its spec became invalid mid-release
    /// (steps edited into nonsense, a bad duration): default analysis settings in place
    /// of the Canary's, its strategy and gates kept. Checks then fail on the config
    /// problem and the progress deadline applies, so traffic never freezes where it is.
    pub fn fallback(spec: &CanarySpec, replica_weighting: bool) -> Option<Self> {
        let mut safe = spec.clone();
        safe.analysis = crate::crd::AnalysisSpec {
            templates: spec.analysis.templates.clone(),
            ..Default::default()
        };
        if spec.strategy == Strategy::Canary && validate_steps(&spec.analysis.steps).is_ok() {
            safe.analysis.steps = spec.analysis.steps.clone();
        }
        safe.gates.approval_timeout = None;
        Self::from_spec(&safe, replica_weighting).ok()
    }

    pub fn step_count(&self) -> i32 {
        self.steps.len() as i32
    }

    /// Weight at a 1-based step; 0 before the first.
    pub fn weight_at(&self, step: i32) -> i32 {
        if step <= 0 {
            return 0;
        }
        self.steps
            .get(step as usize - 1)
            .copied()
            .unwrap_or_else(|| self.steps.last().copied().unwrap_or(0))
    }

    /// Canary replicas for a weight, given the primary's replicas.
    pub fn canary_replicas(&self, weight: i32, primary_replicas: i32) -> i32 {
        let primary = primary_replicas.max(1);
        if !self.replica_weighting || weight >= 100 {
            return primary;
        }
        if weight <= 0 {
            // One pod so readiness can be judged before traffic reaches it.
            return 1;
        }
        // canary / (primary + canary) = weight / 100
        let exact = f64::from(primary) * f64::from(weight) / f64::from(100 - weight);
        (exact.round() as i32).clamp(1, primary * 99)
    }
}

/// 1 to 100 weights, each 1..=100 percent, strictly increasing (public: the
/// annotation parser checks steps the same way).
pub fn validate_steps(steps: &[i32]) -> Result<(), PlanError> {
    let bad = |expected: &str| PlanError {
        field: "analysis.steps",
        value: steps
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(","),
        expected: expected.into(),
    };
    if steps.is_empty() {
        return Err(bad("at least one weight, e.g. \"10,25,50\""));
    }
    if steps.len() > 100 {
        return Err(bad("at most 100 steps"));
    }
    if steps.iter().any(|w| !(1..=100).contains(w)) {
        return Err(bad("weights from 1 to 100 percent"));
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("strictly increasing weights"));
    }
    Ok(())
}
