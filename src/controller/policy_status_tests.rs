//! `next_status`: the `Valid` condition from a compiled (or not) spec.

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::crd::ReleasePolicySpec;
use crate::policy::compile;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
}

fn compiled(spec: serde_json::Value) -> Result<(), PolicyError> {
    let spec: ReleasePolicySpec = serde_json::from_value(spec).unwrap();
    compile(&spec).map(|_| ())
}

fn valid() -> Result<(), PolicyError> {
    compiled(
        json!({"windows": [{"days": ["Mon-Fri"], "start": "09:00", "end": "17:00",
                                 "timeZone": "Europe/Berlin"}]}),
    )
}

fn bad_zone() -> Result<(), PolicyError> {
    compiled(
        json!({"windows": [{"days": ["Mon"], "start": "09:00", "end": "17:00",
                                 "timeZone": "Europe/Berlinn"}]}),
    )
}

fn valid_condition(s: &ReleasePolicyStatus) -> &Condition {
    find_condition(&s.conditions, VALID).expect("a Valid condition")
}

#[test]
fn a_valid_spec_is_valid_true_compiled() {
    let s = next_status(None, &valid(), Some(1), t(0)).expect("a first status");
    let c = valid_condition(&s);
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Compiled"));
    assert_eq!(c.message, "");
    assert_eq!(c.last_transition_time, t(0));
    assert_eq!(c.observed_generation, Some(1));
    assert_eq!(s.observed_generation, Some(1));
}

#[test]
fn an_invalid_spec_is_valid_false_and_names_the_field() {
    let s = next_status(None, &bad_zone(), Some(3), t(0)).unwrap();
    let c = valid_condition(&s);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "InvalidPolicy")
    );
    assert!(
        c.message.contains("spec.windows[0].timeZone") && c.message.contains("Europe/Berlinn"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("held until it is fixed"),
        "{}",
        c.message
    );
}

#[test]
fn nothing_changed_writes_nothing() {
    let s = next_status(None, &valid(), Some(1), t(0)).unwrap();
    assert_eq!(next_status(Some(&s), &valid(), Some(1), t(60)), None);
    let bad = next_status(None, &bad_zone(), Some(1), t(0)).unwrap();
    assert_eq!(next_status(Some(&bad), &bad_zone(), Some(1), t(60)), None);
}

#[test]
fn the_transition_time_stays_while_the_status_stays_and_moves_when_it_flips() {
    let first = next_status(None, &bad_zone(), Some(1), t(0)).unwrap();
    // Another mistake in a new generation: still False, since t(0).
    let other = compiled(json!({"maxInFlight": 0}));
    let second = next_status(Some(&first), &other, Some(2), t(60)).expect("message changed");
    let c = valid_condition(&second);
    assert_eq!(c.status, "False");
    assert!(c.message.contains("spec.maxInFlight"), "{}", c.message);
    assert_eq!(c.last_transition_time, t(0));
    assert_eq!(second.observed_generation, Some(2));

    let fixed = next_status(Some(&second), &valid(), Some(3), t(120)).unwrap();
    let c = valid_condition(&fixed);
    assert_eq!(
        (c.status.as_str(), c.last_transition_time),
        ("True", t(120))
    );
}

#[test]
fn a_new_generation_alone_is_written() {
    let s = next_status(None, &valid(), Some(1), t(0)).unwrap();
    let next = next_status(Some(&s), &valid(), Some(2), t(60)).expect("generation seen");
    assert_eq!(next.observed_generation, Some(2));
    let c = valid_condition(&next);
    assert_eq!(c.observed_generation, Some(2));
    assert_eq!(c.last_transition_time, t(0), "still True since t(0)");
    assert_eq!(next.conditions.len(), 1);
}

#[test]
fn a_policy_that_became_invalid_is_announced_once() {
    let ok = next_status(None, &valid(), Some(1), t(0)).unwrap();
    let bad = next_status(Some(&ok), &bad_zone(), Some(2), t(60)).unwrap();
    assert!(became_invalid(Some(&ok), &bad));
    assert!(became_invalid(None, &bad));
    let again = next_status(
        Some(&bad),
        &compiled(json!({"maxInFlight": 0})),
        Some(3),
        t(90),
    )
    .unwrap();
    assert!(!became_invalid(Some(&bad), &again), "it already was");
}
