//! Fetching a Canary's AnalysisTemplates and resolving their metrics.

use kube::{Api, Client};

use crate::analysis::{resolve_metrics, AnalysisConfigError, ResolvedMetric};
use crate::crd::{AnalysisTemplate, ClusterAnalysisTemplate, TemplateRef};

/// The resolved metrics, or why the templates cannot be used (a config problem the
/// user fixes, as opposed to an API error that is retried).
pub async fn load_metrics(
    client: &Client,
    ns: &str,
    refs: &[TemplateRef],
) -> Result<Result<Vec<ResolvedMetric>, AnalysisConfigError>, kube::Error> {
    let mut specs = Vec::with_capacity(refs.len());
    for r in refs {
        let spec = if r.cluster_scope {
            let api: Api<ClusterAnalysisTemplate> = Api::all(client.clone());
            api.get_opt(&r.name).await?.map(|t| t.spec.template)
        } else {
            let api: Api<AnalysisTemplate> = Api::namespaced(client.clone(), ns);
            api.get_opt(&r.name).await?.map(|t| t.spec)
        };
        match spec {
            Some(s) => specs.push((r.clone(), s)),
            None => {
                return Ok(Err(AnalysisConfigError::TemplateNotFound {
                    kind: if r.cluster_scope {
                        "ClusterAnalysisTemplate"
                    } else {
                        "AnalysisTemplate"
                    },
                    namespace: ns.to_string(),
                    name: r.name.clone(),
                    cluster: r.cluster_scope,
                }))
            }
        }
    }
    Ok(resolve_metrics(&specs))
}
