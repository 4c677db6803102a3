//! Custom resources owned by serin: `Canary`, `AnalysisTemplate`, `ClusterAnalysisTemplate`,
//! `Notifier`, `ClusterNotifier`, `ReleasePolicy`, `ClusterReleasePolicy`.

mod canary;
mod condition;
mod judge_spec;
mod metric_points;
mod notifier;
mod policy;
mod policy_status;
mod provider;
mod routing;
mod template;
mod webhook;

pub use canary::*;
pub use condition::*;
pub use judge_spec::*;
pub use metric_points::*;
pub use notifier::*;
pub use policy::*;
pub use policy_status::*;
pub use provider::*;
pub use routing::*;
pub use template::*;
pub use webhook::*;

use kube_core::CustomResourceExt;

/// The API group of every serin resource.
pub const GROUP: &str = "serin.dev";
/// The field manager of every server-side apply serin makes.
pub const FIELD_MANAGER: &str = "serin";
/// The field manager of the images a release registered by CI sets on a Deployment
/// (kept apart from [`FIELD_MANAGER`]: see `gates::register`).
pub const RELEASE_FIELD_MANAGER: &str = "serin-release";
/// Label on every object serin creates for a Canary, naming it: owned objects are
/// watched with a selector on this key, so a change wakes their Canary at once.
pub const CANARY_LABEL: &str = "serin.dev/canary";

/// All CRDs as one multi-document YAML stream, as `serin crdgen` prints it.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in [
        Canary::crd(),
        AnalysisTemplate::crd(),
        ClusterAnalysisTemplate::crd(),
        Notifier::crd(),
        ClusterNotifier::crd(),
        ReleasePolicy::crd(),
        ClusterReleasePolicy::crd(),
    ] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::Canary;

    /// The watch cache holds one Canary per Canary in an `Arc` (two counters, 16
    /// bytes): with them it fits jemalloc's 1,536-byte class (the next is 1,792).
    #[test]
    fn a_cached_canary_fits_its_allocation_class() {
        let size = std::mem::size_of::<Canary>() + 16;
        assert!(size <= 1536, "a Canary in an Arc is {size} bytes");
    }
}
