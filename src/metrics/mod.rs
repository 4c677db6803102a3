//! The controller's own Prometheus metrics, served as OpenMetrics text on `/metrics`.
//!
//! One [`ControllerMetrics`] per process owns the registry; each subsystem registers
//! its own series into it and is handed only its part (a cheap clone sharing the
//! series): the reconcilers [`ReconcileMetrics`] and [`CanaryMetrics`], the checks
//! [`JudgeMetrics`], the metric providers [`QueryMetrics`], the webhook caller
//! [`WebhookMetrics`], the notification queue [`NotificationMetrics`], the release
//! policies [`PolicyMetrics`]. The sans-IO
//! core never sees any of them. Per-Canary series are removed when the Canary goes
//! ([`CanaryMetrics::forget`]); every other label comes from a bounded set.

mod analysis;
mod canaries;
mod deliveries;
mod policies;
mod reconciles;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use analysis::{Judge, JudgeMetrics, QueryMetrics};
pub use canaries::CanaryMetrics;
pub use deliveries::{NotificationMetrics, WebhookMetrics};
pub use policies::PolicyMetrics;
pub use reconciles::{ControllerKind, ReconcileMetrics};

/// What `/metrics` answers with. Prometheus asks for OpenMetrics first in its scrape
/// `Accept` header, and OpenMetrics text is what the encoder writes (`# EOF` included).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Histograms<S> = Family<S, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// The registry and every subsystem's series. Cheap to create (the demo makes its
/// own); recording is a hash lookup and an atomic add.
pub struct ControllerMetrics {
    registry: Registry,
    pub canaries: CanaryMetrics,
    pub reconciles: ReconcileMetrics,
    pub judges: JudgeMetrics,
    pub queries: QueryMetrics,
    pub webhooks: WebhookMetrics,
    pub notifications: NotificationMetrics,
    pub policies: PolicyMetrics,
}

impl std::fmt::Debug for ControllerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerMetrics").finish_non_exhaustive()
    }
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let info = Family::<VersionLabels, Gauge>::default();
        info.get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        registry.register("serin_info", "serin's version (always 1)", info);
        let r = &mut registry;
        let canaries = CanaryMetrics::register(r);
        let judges = JudgeMetrics::register(r);
        let queries = QueryMetrics::register(r);
        let reconciles = ReconcileMetrics::register(r);
        let webhooks = WebhookMetrics::register(r);
        let notifications = NotificationMetrics::register(r);
        let policies = PolicyMetrics::register(r);
        Self {
            registry,
            canaries,
            reconciles,
            judges,
            queries,
            webhooks,
            notifications,
            policies,
        }
    }

    /// The OpenMetrics text exposition (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The value of one series (`name{labels}` exactly as encoded) in a scrape.
#[cfg(test)]
pub(crate) fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests;
