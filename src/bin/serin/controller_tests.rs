//! Flag parsing and the checks `serin controller` makes at startup.

use super::*;
use crate::{Cli, Command};
use clap::Parser as _;

fn controller_args(extra: &[&str]) -> Result<ControllerArgs, clap::Error> {
    let mut argv = vec!["serin", "controller"];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).map(|cli| match cli.command {
        Command::Controller(a) => *a,
        _ => unreachable!(),
    })
}

#[test]
fn a_bad_selector_is_refused_at_startup_with_the_reason() {
    let err = controller_args(&["--label-selector", "team in (a,b"]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("--label-selector")
            && msg.contains(r#"label selector "team in (a,b": expected "," or ")" in the set of "team", found the end"#),
        "{msg}"
    );
    let err = controller_args(&["--namespace-selector", "Shard/x=a"]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("--namespace-selector") && msg.contains("must be a DNS subdomain"),
        "{msg}"
    );
}

#[test]
fn lease_timings_are_checked_at_startup() {
    let a = controller_args(&[]).unwrap();
    assert_eq!(
        (
            a.lease_duration,
            a.lease_renew_deadline,
            a.lease_retry_period
        ),
        (
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(2)
        )
    );
    check_lease_timings(&a).unwrap();
    let a = controller_args(&["--lease-duration", "10s", "--lease-renew-deadline", "12s"]).unwrap();
    let msg = check_lease_timings(&a).unwrap_err().to_string();
    assert!(
        msg.starts_with("lease renew deadline 12s must be less than the lease duration 10s"),
        "{msg}"
    );
    let a = controller_args(&["--lease-retry-period", "10s"]).unwrap();
    let msg = check_lease_timings(&a).unwrap_err().to_string();
    assert!(
        msg.contains("--lease-retry-period < --lease-renew-deadline"),
        "{msg}"
    );
    // Without leader election the timings are not used.
    let a = controller_args(&["--leader-election=false", "--lease-retry-period", "1m"]).unwrap();
    check_lease_timings(&a).unwrap();
}

#[test]
fn selector_flags_parse_and_an_empty_one_means_unsharded() {
    let a = controller_args(&[
        "--namespace-selector",
        "serin.dev/shard=a",
        "--label-selector",
        "tier in (web, api)",
    ])
    .unwrap();
    assert_eq!(
        a.namespace_selector.unwrap().to_string(),
        "serin.dev/shard=a"
    );
    assert_eq!(a.label_selector.unwrap().to_string(), "tier in (api,web)");
    assert!(a.lease_name.is_none(), "derived from the selectors");
    let a = controller_args(&["--label-selector", ""]).unwrap();
    assert!(a.label_selector.unwrap().is_empty());
}

#[test]
fn reconcile_bounds_have_defaults_and_must_fit_together() {
    let a = controller_args(&[]).unwrap();
    assert_eq!(
        (
            a.check_timeout,
            a.reconcile_deadline,
            a.reconcile_concurrency,
            a.max_reconciles_per_namespace,
            a.prometheus_max_body,
            a.max_queries_in_flight
        ),
        (
            Duration::from_secs(15),
            Duration::from_secs(20),
            16,
            4,
            1 << 20,
            8
        )
    );
    check_bounds(&a).unwrap();
    let a = controller_args(&["--check-timeout", "30s"]).unwrap();
    assert_eq!(
        check_bounds(&a).unwrap_err().to_string(),
        "--check-timeout 30s must be less than --reconcile-deadline 20s: a check runs inside the reconcile"
    );
    let a = controller_args(&["--max-reconciles-per-namespace", "17"]).unwrap();
    assert_eq!(
        check_bounds(&a).unwrap_err().to_string(),
        "--max-reconciles-per-namespace 17 is out of range; accepted: 1 to 16 (--reconcile-concurrency)"
    );
    // The share is of the concurrency the flag sets.
    let a = controller_args(&[
        "--reconcile-concurrency",
        "64",
        "--max-reconciles-per-namespace",
        "17",
    ])
    .unwrap();
    assert_eq!(
        (a.reconcile_concurrency, a.max_reconciles_per_namespace),
        (64, 17)
    );
    check_bounds(&a).unwrap();
    let a = controller_args(&["--reconcile-concurrency", "2"]).unwrap();
    assert_eq!(
        check_bounds(&a).unwrap_err().to_string(),
        "--max-reconciles-per-namespace 4 is out of range; accepted: 1 to 2 (--reconcile-concurrency)"
    );
    let a = controller_args(&["--reconcile-concurrency", "0"]).unwrap();
    assert_eq!(
        check_bounds(&a).unwrap_err().to_string(),
        "--reconcile-concurrency must be at least 1"
    );
    assert!(controller_args(&["--reconcile-concurrency", "70000"]).is_err());
    let a = controller_args(&["--prometheus-max-body", "100"]).unwrap();
    assert!(check_bounds(&a)
        .unwrap_err()
        .to_string()
        .starts_with("--prometheus-max-body 100 is too small"));
    let a = controller_args(&[
        "--reconcile-deadline",
        "1m",
        "--check-timeout",
        "45s",
        "--max-queries-in-flight",
        "2",
    ])
    .unwrap();
    check_bounds(&a).unwrap();
}

#[test]
fn api_flags_parse_and_pairs_are_enforced() {
    let a = controller_args(&[]).unwrap();
    assert_eq!(a.api_audience, vec!["serin".to_string()]);
    assert!(!a.api_insecure_http && a.api_tls_cert.is_none());
    // Half a pair, or TLS and plain at once, is refused while parsing.
    assert!(controller_args(&["--api-tls-cert", "/t/tls.crt"]).is_err());
    assert!(controller_args(&[
        "--api-tls-cert",
        "/t/tls.crt",
        "--api-tls-key",
        "/t/tls.key",
        "--api-insecure-http=true"
    ])
    .is_err());
    // Slack needs the identity mapping.
    assert!(controller_args(&["--slack-signing-secret-file", "/s"]).is_err());
    let a = controller_args(&["--api-audience", "serin,https://kubernetes.default.svc"]).unwrap();
    assert_eq!(a.api_audience.len(), 2);
}
