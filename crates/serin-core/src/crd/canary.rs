use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, RoutingSpec};

/// A progressive release of one Deployment.
///
/// Written by serin from the Deployment's `serin.dev/*` annotations, or by hand.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "serin.dev",
    version = "v1alpha1",
    kind = "Canary",
    namespaced,
    status = "CanaryStatus",
    shortname = "cny",
    category = "serin",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.canaryWeight"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.stepLabel"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.failedChecks"}"#,
    printcolumn = r#"{"name":"Waiting","type":"string","jsonPath":".status.policyWait.reason"}"#,
    printcolumn = r#"{"name":"Next","type":"string","jsonPath":".status.policyWait.until"}"#,
    printcolumn = r#"{"name":"Verdict","type":"string","jsonPath":".status.message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// The Deployment (same namespace) to release progressively.
    pub target_ref: TargetRef,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub service: ServiceSpec,
    /// Traffic router; empty means the controller's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// Router-specific settings.
    #[serde(default)]
    pub routing: RoutingSpec,
    #[serde(default)]
    pub analysis: AnalysisSpec,
    /// Manual approval gates.
    #[serde(default)]
    pub gates: GatesSpec,
    /// Skip metric analysis: every check passes. For emergencies.
    #[serde(default)]
    pub skip_analysis: bool,
    /// Pause the release where it is: no checks, no steps; the deadline clock stops.
    #[serde(default)]
    pub suspend: bool,
    /// Outgoing webhooks: checks, confirmations, rollback triggers, event feeds.
    #[serde(default)]
    pub webhooks: Vec<super::WebhookSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub name: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Shift traffic step by step, judging every step.
    #[default]
    Canary,
    /// Run the new version beside the old one without traffic, judge it, then switch.
    BlueGreen,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Apex Service name; defaults to the Deployment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port the Services expose.
    #[serde(default = "default_port")]
    pub port: i32,
    /// Container port (number or name); defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<String>,
    /// Port name on the Services.
    #[serde(default = "default_port_name")]
    pub port_name: String,
}

fn default_port() -> i32 {
    80
}
fn default_port_name() -> String {
    "http".into()
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            name: None,
            port: default_port(),
            target_port: None,
            port_name: default_port_name(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// Time between checks, and the time spent at each step (humantime, e.g. "1m").
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Canary traffic weights in percent, strictly increasing, each in 1..=99.
    #[serde(default = "default_steps")]
    pub steps: Vec<i32>,
    /// Blue/green: number of passing checks before the switch.
    #[serde(default = "default_iterations")]
    pub iterations: i32,
    /// Passing checks each step needs before it advances (default 1). With more than
    /// one, a sequential metric with `advanceEarly` may end a step sooner.
    #[serde(default = "default_checks_per_step")]
    pub checks_per_step: i32,
    /// Failed checks (cumulative within a release) that trigger a rollback.
    #[serde(default = "default_failure_limit")]
    pub failure_limit: i32,
    /// Inconclusive checks (no data) that trigger a rollback; unset means hold until the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<i32>,
    /// Longest time a release may go without progress before it is rolled back.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: String,
    /// Analysis templates whose metrics judge every check.
    #[serde(default)]
    pub templates: Vec<TemplateRef>,
    /// How long the canary keeps its pods after traffic left it (rollback, promotion),
    /// so proxies that still route to it while they converge reach running pods.
    #[serde(default = "default_scale_down_delay")]
    pub scale_down_delay: String,
    /// How often sequential metrics look between checks (humantime, default "15s"): a
    /// look whose evidence suffices rolls back at once; steps still advance only at
    /// `interval`. One query per variant and count per metric per look.
    #[serde(default = "default_look_interval")]
    pub look_interval: String,
    /// Without `templates`: `auto` judges with serin's built-in comparative checks for
    /// the router's telemetry (see `telemetry`); `none` releases without any checks,
    /// and says so.
    #[serde(default)]
    pub builtin: BuiltinAnalysis,
    /// The telemetry the built-in checks query; default the router's (istio, linkerd,
    /// ingress-nginx, gateway-api-envoy, app-http for plain Services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<String>,
}

/// Whether a Canary without templates is judged by the built-in checks.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum BuiltinAnalysis {
    /// The built-in comparative checks for the router's telemetry.
    #[default]
    Auto,
    /// No checks at all: every step passes on time alone (said in status and Events).
    None,
}

fn default_interval() -> String {
    "1m".into()
}
fn default_steps() -> Vec<i32> {
    vec![10, 25, 50]
}
fn default_iterations() -> i32 {
    5
}
fn default_checks_per_step() -> i32 {
    1
}
fn default_failure_limit() -> i32 {
    2
}
fn default_progress_deadline() -> String {
    "10m".into()
}
fn default_scale_down_delay() -> String {
    "30s".into()
}
fn default_look_interval() -> String {
    "15s".into()
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            steps: default_steps(),
            iterations: default_iterations(),
            checks_per_step: default_checks_per_step(),
            failure_limit: default_failure_limit(),
            inconclusive_limit: None,
            progress_deadline: default_progress_deadline(),
            templates: vec![],
            scale_down_delay: default_scale_down_delay(),
            look_interval: default_look_interval(),
            builtin: BuiltinAnalysis::Auto,
            telemetry: None,
        }
    }
}

/// A reference to an AnalysisTemplate (or ClusterAnalysisTemplate) with argument values.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    pub name: String,
    /// Look the name up as a ClusterAnalysisTemplate.
    #[serde(default)]
    pub cluster_scope: bool,
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

/// Where a release waits for a human.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatesSpec {
    #[serde(default)]
    pub before_rollout: bool,
    #[serde(default)]
    pub before_traffic_increase: bool,
    #[serde(default)]
    pub before_promotion: bool,
    /// Roll back when a gate has waited this long without a decision (humantime);
    /// unset waits for a human indefinitely (checks keep running meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout: Option<String>,
}

/// The phase of a Canary.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum CanaryPhase {
    /// Creating the primary and the Services.
    #[default]
    Initializing,
    /// The primary serves all traffic; no release in flight.
    Initialized,
    /// A new revision waits for its release policies (a window, a freeze, the queue,
    /// approvals, its upstream environment); the primary serves all traffic.
    Waiting,
    /// A gate holds the release until someone approves.
    WaitingApproval,
    /// The canary takes traffic step by step and is judged every interval.
    Progressing,
    /// The canary's spec is being copied onto the primary.
    Promoting,
    /// All traffic returns to the primary; the canary scales down.
    Finalising,
    /// The last release was promoted.
    Succeeded,
    /// The last release was rolled back.
    Failed,
}

impl CanaryPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryPhase::Initializing => "Initializing",
            CanaryPhase::Initialized => "Initialized",
            CanaryPhase::Waiting => "Waiting",
            CanaryPhase::WaitingApproval => "WaitingApproval",
            CanaryPhase::Progressing => "Progressing",
            CanaryPhase::Promoting => "Promoting",
            CanaryPhase::Finalising => "Finalising",
            CanaryPhase::Succeeded => "Succeeded",
            CanaryPhase::Failed => "Failed",
        }
    }

    /// No release is in flight.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed
        )
    }

    pub const ALL: [CanaryPhase; 9] = [
        CanaryPhase::Initializing,
        CanaryPhase::Initialized,
        CanaryPhase::Waiting,
        CanaryPhase::WaitingApproval,
        CanaryPhase::Progressing,
        CanaryPhase::Promoting,
        CanaryPhase::Finalising,
        CanaryPhase::Succeeded,
        CanaryPhase::Failed,
    ];
}

/// Which gate a release waits at.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum GateKind {
    BeforeRollout,
    BeforeTrafficIncrease,
    BeforePromotion,
}

impl GateKind {
    pub const ALL: [GateKind; 3] = [
        GateKind::BeforeRollout,
        GateKind::BeforeTrafficIncrease,
        GateKind::BeforePromotion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GateKind::BeforeRollout => "beforeRollout",
            GateKind::BeforeTrafficIncrease => "beforeTrafficIncrease",
            GateKind::BeforePromotion => "beforePromotion",
        }
    }
}

/// A verdict on one metric at one check.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum MetricVerdict {
    Pass,
    Fail,
    /// No usable evidence (no data, NaN): never a pass.
    Inconclusive,
    /// The provider could not be asked (unreachable, bad query).
    Error,
}

impl MetricVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricVerdict::Pass => "Pass",
            MetricVerdict::Fail => "Fail",
            MetricVerdict::Inconclusive => "Inconclusive",
            MetricVerdict::Error => "Error",
        }
    }
}

/// The latest judgement of one metric.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_high: Option<f64>,
    pub verdict: MetricVerdict,
    /// One line saying why, at most 300 characters.
    pub reason: String,
    /// Dry-run metrics are reported but never decide.
    #[serde(default)]
    pub dry_run: bool,
    /// Evidence of the sequential judge so far in this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<crate::stats::SequentialState>,
    pub checked_at: DateTime<Utc>,
    /// `Error` verdicts in a row for this metric, up to and including this one.
    #[serde(default)]
    pub consecutive_errors: i32,
    /// This release's measurements so far, for plots (at most
    /// [`super::MAX_METRIC_POINTS`], thinned evenly).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<super::MetricPoint>,
}

/// A recorded approval or rejection of a gate.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// `<gate>/<revision>/<step>`: one record per gate passage.
    pub id: String,
    pub gate: GateKind,
    pub revision: String,
    pub step: i32,
    pub approved: bool,
    pub by: String,
    /// cli, api or slack.
    pub via: String,
    pub at: DateTime<Utc>,
    /// The approver's groups as authenticated; release policies may require approvers
    /// from given groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Approval {
    pub fn key(gate: GateKind, revision: &str, step: i32) -> String {
        format!("{}/{}/{}", gate.as_str(), revision, step)
    }
}

/// A one-shot human command on a release.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum CommandKind {
    /// Roll the release of `revision` back now.
    Abort,
    /// Release `revision` again after it was rolled back.
    Retry,
}

/// A recorded command; it applies to the release of `revision` that was current at `at`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub id: String,
    pub kind: CommandKind,
    pub revision: String,
    pub by: String,
    pub via: String,
    pub at: DateTime<Utc>,
}

// The parts most Canaries lack at any time (a policy's wait, an emergency override,
// the last promotion's images) are boxed: the controller's watch cache keeps a Canary
// per Canary, and these inline would put each in a larger allocation class. (Not a doc
// comment: that would become the CRD's description of `status`.)
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    #[serde(default)]
    pub phase: CanaryPhase,
    /// Percent of live traffic on the canary.
    #[serde(default)]
    pub canary_weight: i32,
    /// 1-based index of the current step; 0 before the first step.
    #[serde(default)]
    pub current_step: i32,
    /// "2/3" for printing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_label: Option<String>,
    /// Passing checks at the current step (see `analysis.checksPerStep`).
    #[serde(default)]
    pub step_checks: i32,
    #[serde(default)]
    pub failed_checks: i32,
    #[serde(default)]
    pub inconclusive_checks: i32,
    /// Revision the primary serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Revision under release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// Last revision rolled back; it is not released again unless retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_started_at: Option<DateTime<Utc>>,
    /// When the current step (or wait) began; the progress deadline counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_gate: Option<GateKind>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub metrics: Vec<MetricStatus>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub approvals: Vec<Approval>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub commands: Vec<Command>,
    /// Set while `spec.suspend` holds the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
    /// Replicas of the primary when last seen: a deleted primary comes back at this scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_replicas: Option<i32>,
    /// When the sequential metrics last looked (between checks too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_look_at: Option<DateTime<Utc>>,
    /// The canary scales down at this time: traffic left it, and proxies get
    /// `analysis.scaleDownDelay` to converge before its pods go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_at: Option<DateTime<Utc>>,
    /// The last decision in one line, at most 512 characters.
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The latest call of each webhook that judges or gates the release, running or
    /// answered (calls run in the background, never inside a reconcile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub hooks: Vec<super::HookRun>,
    /// The last releases that ended (10 at most), oldest first.
    /// Written whole by the controller on every status apply, hence an atomic list.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "atomic", "maxItems" = 10))]
    pub history: Vec<ReleaseRecord>,
    /// Why a release policy keeps the release back, while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_wait: Option<Box<super::PolicyWait>>,
    /// An emergency override of the release windows and blackouts (approval API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_override: Option<Box<super::EmergencyOverrideRecord>>,
    /// `at` of the emergency override already announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_announced: Option<DateTime<Utc>>,
    /// Container images of the revision under release.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub release_images: BTreeMap<String, String>,
    /// The images of the revision last promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<Box<super::PromotedImages>>,
}

/// How many ended releases `status.history` keeps.
pub const RELEASE_HISTORY_LIMIT: usize = 10;

/// How a release ended.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ReleaseResult {
    /// The revision was promoted to the primary.
    Promoted,
    /// The analysis, a deadline or a rejected gate rolled the revision back.
    RolledBack,
    /// A newer revision replaced it before it ended.
    Superseded,
    /// Someone aborted it (`kubectl serin abort`, the API or Slack).
    Aborted,
}

impl ReleaseResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseResult::Promoted => "promoted",
            ReleaseResult::RolledBack => "rolledBack",
            ReleaseResult::Superseded => "superseded",
            ReleaseResult::Aborted => "aborted",
        }
    }
}

/// One release that ended.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub result: ReleaseResult,
    /// Why it ended, in one line, at most 200 characters.
    #[serde(default)]
    pub reason: String,
    /// The last step it reached (1-based; 0: before the first step).
    #[serde(default)]
    pub step: i32,
    /// Number of steps of the plan it ran under.
    #[serde(default)]
    pub steps: i32,
    /// Canary weight when it ended (100 when promoted).
    #[serde(default)]
    pub weight: i32,
}
