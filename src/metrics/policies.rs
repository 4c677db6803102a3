//! Release policies: how often they kept a release waiting or holding, by reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::crd::{PolicyStage, PolicyWait, PolicyWaitReason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    reason: &'static str,
    /// `start` (a new revision waits) or `in_flight` (a release holds).
    stage: &'static str,
}

/// Waits imposed by release policies. Cloning shares the series.
#[derive(Clone, Debug)]
pub struct PolicyMetrics {
    waits: Family<WaitLabels, Counter>,
}

fn stage_label(s: PolicyStage) -> &'static str {
    match s {
        PolicyStage::Start => "start",
        PolicyStage::NextStep | PolicyStage::Promote => "in_flight",
    }
}

impl PolicyMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let m = Self {
            waits: Family::default(),
        };
        for reason in PolicyWaitReason::ALL {
            for stage in ["start", "in_flight"] {
                m.waits
                    .get_or_create(&WaitLabels {
                        reason: reason.as_str(),
                        stage,
                    })
                    .inc_by(0);
            }
        }
        r.register(
            "serin_policy_waits",
            "Releases a release policy began to keep waiting (start) or holding (in_flight), by reason",
            m.waits.clone(),
        );
        m
    }

    /// Count a wait that began (or changed its reason, policy or revision) between
    /// the status `before` and the status written.
    pub fn observe(&self, before: Option<&PolicyWait>, after: Option<&PolicyWait>) {
        let Some(w) = after else { return };
        let same = before.is_some_and(|b| {
            (b.reason, &b.policy, &b.revision, b.stage)
                == (w.reason, &w.policy, &w.revision, w.stage)
        });
        if !same {
            self.waits
                .get_or_create(&WaitLabels {
                    reason: w.reason.as_str(),
                    stage: stage_label(w.stage),
                })
                .inc();
        }
    }
}
