//! Onboarding by annotation: `serin.dev/*` keys on a Deployment become a Canary spec.
//!
//! Every key has a default; a bad value is reported with the key, the value and what is
//! accepted, and nothing is applied until the annotations are fixed.

use std::collections::BTreeMap;

use crate::crd::{
    AnalysisSpec, CanarySpec, GatesSpec, ServiceSpec, Strategy, TargetRef, TemplateRef,
};
use crate::traffic::annotations as routing;
use crate::traffic::RouterKind;

pub const PREFIX: &str = "serin.dev/";
pub const ENABLED: &str = "serin.dev/enabled";
pub const STRATEGY: &str = "serin.dev/strategy";
pub const STEPS: &str = "serin.dev/steps";
pub const ITERATIONS: &str = "serin.dev/iterations";
pub const INTERVAL: &str = "serin.dev/interval";
pub const ANALYSIS: &str = "serin.dev/analysis";
pub const FAILURE_LIMIT: &str = "serin.dev/failure-limit";
pub const CHECKS_PER_STEP: &str = "serin.dev/checks-per-step";
pub const INCONCLUSIVE_LIMIT: &str = "serin.dev/inconclusive-limit";
pub const PROGRESS_DEADLINE: &str = "serin.dev/progress-deadline";
pub const SERVICE_NAME: &str = "serin.dev/service-name";
pub const SERVICE_PORT: &str = "serin.dev/service-port";
pub const TARGET_PORT: &str = "serin.dev/target-port";
pub const ROUTER: &str = "serin.dev/router";
pub const GATES: &str = "serin.dev/gates";
pub const SKIP_ANALYSIS: &str = "serin.dev/skip-analysis";
pub const SCALE_DOWN_DELAY: &str = "serin.dev/scale-down-delay";
pub const APPROVAL_TIMEOUT: &str = "serin.dev/approval-timeout";
pub const TELEMETRY: &str = "serin.dev/telemetry";
pub const LOOK_INTERVAL: &str = "serin.dev/look-interval";

/// Every key this module reads, with its default, for docs and unknown-key hints.
pub const KEYS: &[(&str, &str)] = &[
    (ENABLED, "unset (not managed)"),
    (STRATEGY, "canary"),
    (STEPS, "10,25,50"),
    (ITERATIONS, "5"),
    (INTERVAL, "1m"),
    (
        ANALYSIS,
        "built-in comparative checks for the router's telemetry (\"none\": no checks)",
    ),
    (CHECKS_PER_STEP, "1"),
    (FAILURE_LIMIT, "2"),
    (
        INCONCLUSIVE_LIMIT,
        "unset (hold until the progress deadline)",
    ),
    (PROGRESS_DEADLINE, "10m"),
    (SERVICE_NAME, "the Deployment's name"),
    (SERVICE_PORT, "80"),
    (TARGET_PORT, "the service port"),
    (ROUTER, "the controller's --default-router (service)"),
    (GATES, "none"),
    (SKIP_ANALYSIS, "false"),
    (SCALE_DOWN_DELAY, "30s"),
    (APPROVAL_TIMEOUT, "unset (wait for a human indefinitely)"),
    (TELEMETRY, "the router's (app-http for plain Services)"),
    (LOOK_INTERVAL, "15s"),
];

/// A bad annotation value.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("annotation {key}={value:?}: expected {accepted}")]
pub struct AnnotationError {
    pub key: String,
    pub value: String,
    pub accepted: String,
}

fn err(key: &str, value: &str, accepted: impl Into<String>) -> AnnotationError {
    AnnotationError {
        key: key.into(),
        value: value.into(),
        accepted: accepted.into(),
    }
}

/// Is the Deployment opted in? Only the exact value "true" (any case) opts in.
pub fn is_enabled(annotations: &BTreeMap<String, String>) -> Result<bool, AnnotationError> {
    match annotations
        .get(ENABLED)
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(_) => Err(err(ENABLED, &annotations[ENABLED], "\"true\" or \"false\"")),
    }
}

/// Build the Canary spec for Deployment `name` from its annotations. All bad keys are
/// reported together.
pub fn spec_from_annotations(
    name: &str,
    a: &BTreeMap<String, String>,
) -> Result<CanarySpec, Vec<AnnotationError>> {
    let mut errors = Vec::new();
    let mut spec = CanarySpec {
        target_ref: TargetRef { name: name.into() },
        strategy: Strategy::Canary,
        service: ServiceSpec::default(),
        router: None,
        routing: Default::default(),
        analysis: AnalysisSpec::default(),
        gates: GatesSpec::default(),
        skip_analysis: false,
        suspend: false,
        webhooks: vec![],
    };
    let mut take = |r: Result<(), AnnotationError>| {
        if let Err(e) = r {
            errors.push(e);
        }
    };
    for key in a.keys().filter(|k| k.starts_with(PREFIX)) {
        if !KEYS.iter().any(|(k, _)| k == key) && !routing::KEYS.contains(&key.as_str()) {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).chain(routing::KEYS).collect();
            take(Err(err(
                key,
                &a[key],
                format!("a known key; serin reads {}", known.join(", ")),
            )));
        }
    }
    if let Some(v) = a.get(STRATEGY) {
        take(match v.trim() {
            "canary" => Ok(()),
            "blue-green" | "bluegreen" => {
                spec.strategy = Strategy::BlueGreen;
                Ok(())
            }
            _ => Err(err(STRATEGY, v, "\"canary\" or \"blue-green\"")),
        });
    }
    if let Some(v) = a.get(STEPS) {
        take(parse_steps(v).map(|s| spec.analysis.steps = s));
    }
    if let Some(v) = a.get(ITERATIONS) {
        take(int(ITERATIONS, v, 1, 100).map(|n| spec.analysis.iterations = n));
    }
    if let Some(v) = a.get(INTERVAL) {
        take(duration(INTERVAL, v).map(|()| spec.analysis.interval = v.trim().into()));
    }
    if let Some(v) = a.get(PROGRESS_DEADLINE) {
        take(
            duration(PROGRESS_DEADLINE, v)
                .map(|()| spec.analysis.progress_deadline = v.trim().into()),
        );
    }
    if let Some(v) = a.get(CHECKS_PER_STEP) {
        take(int(CHECKS_PER_STEP, v, 1, 100).map(|n| spec.analysis.checks_per_step = n));
    }
    if let Some(v) = a.get(FAILURE_LIMIT) {
        take(int(FAILURE_LIMIT, v, 1, 1000).map(|n| spec.analysis.failure_limit = n));
    }
    if let Some(v) = a.get(INCONCLUSIVE_LIMIT) {
        take(
            int(INCONCLUSIVE_LIMIT, v, 1, 1000).map(|n| spec.analysis.inconclusive_limit = Some(n)),
        );
    }
    if let Some(v) = a.get(ANALYSIS) {
        if v.trim().eq_ignore_ascii_case("none") {
            // Explicit: released without checks, and every status and Event says so.
            spec.analysis.builtin = crate::crd::BuiltinAnalysis::None;
        } else {
            take(parse_analysis(v).map(|t| spec.analysis.templates = t));
        }
    }
    if let Some(v) = a.get(TELEMETRY) {
        take(match crate::analysis::builtin::Telemetry::parse(v) {
            Some(t) => {
                spec.analysis.telemetry = Some(t.as_str().into());
                Ok(())
            }
            None => Err(err(
                TELEMETRY,
                v,
                crate::analysis::builtin::Telemetry::accepted(),
            )),
        });
    }
    if let Some(v) = a.get(LOOK_INTERVAL) {
        take(duration(LOOK_INTERVAL, v).map(|()| spec.analysis.look_interval = v.trim().into()));
    }
    if let Some(v) = a.get(SERVICE_NAME) {
        take(dns_label(SERVICE_NAME, v).map(|()| spec.service.name = Some(v.trim().into())));
    }
    if let Some(v) = a.get(SERVICE_PORT) {
        take(int(SERVICE_PORT, v, 1, 65535).map(|n| spec.service.port = n));
    }
    if let Some(v) = a.get(TARGET_PORT) {
        let v = v.trim();
        let ok = v.parse::<u16>().is_ok_and(|p| p > 0) || is_dns_label(v, 15);
        take(if ok {
            spec.service.target_port = Some(v.into());
            Ok(())
        } else {
            Err(err(
                TARGET_PORT,
                v,
                "a port number 1-65535 or a container port name",
            ))
        });
    }
    if let Some(v) = a.get(ROUTER) {
        take(match RouterKind::parse(v) {
            Some(k) => {
                spec.router = Some(k.as_str().into());
                Ok(())
            }
            None => Err(err(ROUTER, v, RouterKind::accepted())),
        });
    }
    if let Some(v) = a.get(GATES) {
        take(parse_gates(v).map(|g| spec.gates = g));
    }
    if let Some(v) = a.get(APPROVAL_TIMEOUT) {
        take(
            duration(APPROVAL_TIMEOUT, v)
                .map(|()| spec.gates.approval_timeout = Some(v.trim().into())),
        );
    }
    if let Some(v) = a.get(SCALE_DOWN_DELAY) {
        take(match humantime::parse_duration(v.trim()) {
            Ok(d) if d <= std::time::Duration::from_secs(3600) => {
                spec.analysis.scale_down_delay = v.trim().into();
                Ok(())
            }
            _ => Err(err(
                SCALE_DOWN_DELAY,
                v,
                "a duration from \"0s\" to \"1h\", e.g. \"30s\"",
            )),
        });
    }
    if let Some(v) = a.get(SKIP_ANALYSIS) {
        take(match v.trim() {
            "true" => {
                spec.skip_analysis = true;
                Ok(())
            }
            "false" => Ok(()),
            _ => Err(err(SKIP_ANALYSIS, v, "\"true\" or \"false\"")),
        });
    }
    match routing::routing_from_annotations(a) {
        Ok(r) => spec.routing = r,
        Err(e) => errors.push(err(&e.key, &e.value, e.accepted)),
    }
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

fn int(key: &str, v: &str, lo: i32, hi: i32) -> Result<i32, AnnotationError> {
    match v.trim().parse::<i32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(err(key, v, format!("a whole number from {lo} to {hi}"))),
    }
}

fn duration(key: &str, v: &str) -> Result<(), AnnotationError> {
    match humantime::parse_duration(v.trim()) {
        Ok(d) if !d.is_zero() => Ok(()),
        _ => Err(err(
            key,
            v,
            "a duration such as \"30s\", \"1m\" or \"1h30m\"",
        )),
    }
}

fn parse_steps(v: &str) -> Result<Vec<i32>, AnnotationError> {
    let accepted =
        "comma-separated weights from 1 to 100 percent, strictly increasing, e.g. \"10,25,50\"";
    let steps: Result<Vec<i32>, _> = v
        .split(',')
        .map(|s| s.trim().trim_end_matches('%').parse::<i32>())
        .collect();
    let steps = steps.map_err(|_| err(STEPS, v, accepted))?;
    crate::rollout::validate_steps(&steps).map_err(|_| err(STEPS, v, accepted))?;
    Ok(steps)
}

fn parse_gates(v: &str) -> Result<GatesSpec, AnnotationError> {
    let mut g = GatesSpec::default();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "before-rollout" => g.before_rollout = true,
            "before-traffic-increase" | "before-step" => g.before_traffic_increase = true,
            "before-promotion" => g.before_promotion = true,
            "all" => {
                g = GatesSpec {
                    before_rollout: true,
                    before_traffic_increase: true,
                    before_promotion: true,
                    approval_timeout: None,
                }
            }
            _ => {
                return Err(err(
                    GATES,
                    v,
                    "a comma-separated list of before-rollout, before-traffic-increase, before-promotion (or all)",
                ))
            }
        }
    }
    Ok(g)
}

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns_label(key: &str, v: &str) -> Result<(), AnnotationError> {
    if is_dns_label(v.trim(), 63) {
        Ok(())
    } else {
        Err(err(
            key,
            v,
            "a DNS label: lowercase letters, digits and '-', at most 63 characters",
        ))
    }
}

/// `name`, `cluster/name`, `name(key=value, key2=value2)`, separated by commas.
fn parse_analysis(v: &str) -> Result<Vec<TemplateRef>, AnnotationError> {
    let accepted = "comma-separated AnalysisTemplate names, each optionally prefixed with \"cluster/\" for a ClusterAnalysisTemplate and followed by (arg=value, ...), e.g. \"error-rate(max=0.01), cluster/latency\"";
    let bad = || err(ANALYSIS, v, accepted);
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in v.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or_else(bad)?,
            ',' if depth == 0 => {
                items.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(bad());
    }
    items.push(&v[start..]);
    let mut refs = Vec::new();
    for item in items.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
        let (head, args) = match item.find('(') {
            Some(open) if item.ends_with(')') => {
                (&item[..open], Some(&item[open + 1..item.len() - 1]))
            }
            Some(_) => return Err(bad()),
            None => (item, None),
        };
        let head = head.trim();
        let (cluster_scope, name) = match head.strip_prefix("cluster/") {
            Some(n) => (true, n),
            None => (false, head),
        };
        if !is_dns_label(name, 253) && !name.split('.').all(|p| is_dns_label(p, 63)) {
            return Err(bad());
        }
        let mut map = BTreeMap::new();
        for pair in args
            .into_iter()
            .flat_map(|a| a.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (k, val) = pair.split_once('=').ok_or_else(bad)?;
            let k = k.trim();
            if k.is_empty() {
                return Err(bad());
            }
            map.insert(k.to_string(), val.trim().to_string());
        }
        refs.push(TemplateRef {
            name: name.into(),
            cluster_scope,
            args: map,
        });
    }
    Ok(refs)
}

#[cfg(test)]
mod tests;
