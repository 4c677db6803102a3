//! `{{variable}}` substitution in PromQL.

use std::collections::BTreeMap;

use super::positions::{parse, Piece, Position};

/// Values for the variables a query may use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderVars {
    pub namespace: String,
    /// The user's Deployment.
    pub target: String,
    pub primary: String,
    pub canary: String,
    /// The variant being measured (canary, or primary as the baseline).
    /// `{{variant}}` reads "primary" when this equals `primary`, else "canary".
    pub workload: String,
    pub service: String,
    /// Prometheus duration of the check interval, e.g. "1m".
    pub interval: String,
    pub args: BTreeMap<String, String>,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum RenderError {
    #[error("unknown variable {{{{{0}}}}}; accepted: namespace, target, primary, canary, workload, variant, service, interval, args.NAME")]
    UnknownVariable(String),
    #[error("argument {0:?} is used but has no value and no default")]
    MissingArg(String),
    #[error("unclosed '{{{{' at byte {0}; every '{{{{' needs a matching '}}}}'")]
    Unclosed(usize),
    #[error("the query is empty; accepted: a PromQL expression returning one value")]
    Empty,
    /// A value that cannot stand where its variable sits (see [`Position`]).
    #[error("{} = {value:?} cannot stand in {}; accepted: {}", subject(.variable), .position.describe(), .position.accepted())]
    Value {
        variable: String,
        /// The value, cut to [`VALUE_MAX_CHARS`].
        value: String,
        position: Position,
    },
    #[error("{{{{{variable}}}}} follows a backslash inside a string, which would escape the value's first character; remove the backslash or put it after the variable")]
    Escaped { variable: String },
}

/// Longest value quoted in a [`RenderError::Value`].
pub const VALUE_MAX_CHARS: usize = 80;

fn subject(variable: &str) -> String {
    match variable.strip_prefix("args.") {
        Some(arg) => format!("argument {arg:?}"),
        None => format!("{{{{{variable}}}}}"),
    }
}

/// Replace every `{{ name }}` in `query`, each value escaped or checked for the place
/// it stands in (see [`Position`]).
pub fn render_query(query: &str, vars: &RenderVars) -> Result<String, RenderError> {
    let mut out = String::with_capacity(query.len() + 32);
    for piece in parse(query)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var { name, position } => {
                out.push_str(&place(name, lookup(name, vars)?, position)?);
            }
        }
    }
    Ok(out)
}

/// `text` with every `{{ name }}` replaced as it is: for texts that are not PromQL,
/// such as a threshold, which must then read as a number.
pub fn substitute(text: &str, vars: &RenderVars) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len() + 16);
    for piece in parse(text)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var { name, .. } => out.push_str(lookup(name, vars)?),
        }
    }
    Ok(out)
}

/// What template validation checks of `query` without a Canary's names at hand: it
/// parses, names only known variables, and every argument has a value in `args` that
/// fits where it stands.
pub fn check_args(query: &str, args: &BTreeMap<String, String>) -> Result<(), RenderError> {
    let names = RenderVars::default();
    for piece in parse(query)? {
        let Piece::Var { name, position } = piece else {
            continue;
        };
        match name.strip_prefix("args.") {
            Some(arg) => {
                let value = args
                    .get(arg)
                    .ok_or_else(|| RenderError::MissingArg(arg.to_string()))?;
                place(name, value, position)?;
            }
            None => {
                lookup(name, &names)?;
            }
        }
    }
    Ok(())
}

fn place<'v>(
    name: &str,
    value: &'v str,
    position: Position,
) -> Result<std::borrow::Cow<'v, str>, RenderError> {
    let literal = !name.starts_with("args.");
    position
        .place(value, literal)
        .ok_or_else(|| RenderError::Value {
            variable: name.to_string(),
            value: value.chars().take(VALUE_MAX_CHARS).collect(),
            position,
        })
}

fn lookup<'a>(name: &str, v: &'a RenderVars) -> Result<&'a str, RenderError> {
    Ok(match name {
        "namespace" => &v.namespace,
        "target" => &v.target,
        "primary" => &v.primary,
        "canary" => &v.canary,
        "workload" => &v.workload,
        "service" => &v.service,
        // "primary" when measuring the baseline, so `{{service}}-{{variant}}` names the
        // Service in front of the measured pods.
        "variant" => {
            if !v.primary.is_empty() && v.workload == v.primary {
                "primary"
            } else {
                "canary"
            }
        }
        "interval" => &v.interval,
        _ => match name.strip_prefix("args.") {
            Some(arg) => v
                .args
                .get(arg)
                .ok_or_else(|| RenderError::MissingArg(arg.to_string()))?,
            None => return Err(RenderError::UnknownVariable(name.to_string())),
        },
    })
}

/// Prometheus duration syntax for an interval ("90s", "1m", "1h").
pub fn prometheus_duration(d: std::time::Duration) -> String {
    let s = d.as_secs().max(1);
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> RenderVars {
        RenderVars {
            namespace: "shop".into(),
            target: "podinfo".into(),
            primary: "podinfo-primary".into(),
            canary: "podinfo".into(),
            workload: "podinfo".into(),
            service: "podinfo".into(),
            interval: "1m".into(),
            args: BTreeMap::from([("quantile".into(), "0.99".into())]),
        }
    }

    #[test]
    fn renders_every_variable() {
        let q = "histogram_quantile({{args.quantile}}, rate(x{namespace=\"{{ namespace }}\",pod=~\"{{workload}}-.*\"}[{{interval}}])) # {{target}} {{primary}} {{canary}} {{service}}";
        assert_eq!(
            render_query(q, &vars()).unwrap(),
            "histogram_quantile(0.99, rate(x{namespace=\"shop\",pod=~\"podinfo-.*\"}[1m])) # podinfo podinfo-primary podinfo podinfo"
        );
    }

    #[test]
    fn rejects_unknown_missing_and_unclosed() {
        assert_eq!(
            render_query("{{nope}}", &vars()),
            Err(RenderError::UnknownVariable("nope".into()))
        );
        assert_eq!(
            render_query("{{args.max}}", &vars()),
            Err(RenderError::MissingArg("max".into()))
        );
        assert_eq!(
            render_query("ab {{namespace", &vars()),
            Err(RenderError::Unclosed(3))
        );
        assert!(RenderError::UnknownVariable("x".into())
            .to_string()
            .contains("{{x}}"));
    }

    #[test]
    fn variant_follows_the_measured_workload() {
        let mut v = vars();
        assert_eq!(
            render_query("x{s=\"{{service}}-{{variant}}\"}", &v).unwrap(),
            "x{s=\"podinfo-canary\"}"
        );
        v.workload = v.primary.clone();
        assert_eq!(
            render_query("x{s=\"{{service}}-{{variant}}\"}", &v).unwrap(),
            "x{s=\"podinfo-primary\"}"
        );
    }

    #[test]
    fn durations_in_prometheus_syntax() {
        use std::time::Duration;
        assert_eq!(prometheus_duration(Duration::from_secs(60)), "1m");
        assert_eq!(prometheus_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prometheus_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(prometheus_duration(Duration::from_millis(10)), "1s");
    }
}
