use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A status condition, kept as a list-map keyed by `type`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// Moves only when `status` flips.
    pub last_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition types serin sets on a Canary.
pub mod condition_type {
    /// The spec (or the annotations it came from) is valid and every referenced object exists.
    pub const CONFIG_VALID: &str = "ConfigValid";
    /// A release is in flight and progressing within its deadline.
    pub const PROGRESSING: &str = "Progressing";
    /// The primary serves the last promoted revision and is ready.
    pub const READY: &str = "Ready";
    /// The analysis could not produce evidence (no data, provider down).
    pub const ANALYSIS_HEALTHY: &str = "AnalysisHealthy";
    /// The release waits for a human approval.
    pub const WAITING_APPROVAL: &str = "WaitingApproval";
}

/// Set `cond` into `conditions`, keeping `lastTransitionTime` unless the status flips.
/// Returns true when anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut cond: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            if existing.status == cond.status {
                cond.last_transition_time = existing.last_transition_time;
            }
            let changed = *existing != cond;
            *existing = cond;
            changed
        }
        None => {
            conditions.push(cond);
            true
        }
    }
}

/// Look a condition up by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cond(status: &str, reason: &str, secs: i64) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Utc.timestamp_opt(secs, 0).unwrap(),
            observed_generation: None,
        }
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let mut list = vec![];
        assert!(set_condition(&mut list, cond("True", "A", 10)));
        // Same status, new reason: time stays.
        assert!(set_condition(&mut list, cond("True", "B", 20)));
        assert_eq!(list[0].last_transition_time.timestamp(), 10);
        assert_eq!(list[0].reason, "B");
        // Identical: nothing changes.
        assert!(!set_condition(&mut list, cond("True", "B", 30)));
        // Flip: time moves.
        assert!(set_condition(&mut list, cond("False", "C", 40)));
        assert_eq!(list[0].last_transition_time.timestamp(), 40);
        assert_eq!(list.len(), 1);
    }
}
