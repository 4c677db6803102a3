//! Fetching a Canary's AnalysisTemplates and resolving their metrics.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::workloads::deployments::scoped;
use crate::workloads::fresh_store::{listed, watched};

use crate::providers::{credentials::not_opted_in, opted_in, MetricError, MetricSources};

use crate::analysis::{resolve_metrics, AnalysisConfigError, ResolvedMetric};
use crate::crd::{AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate, TemplateRef};

/// Watch caches of the AnalysisTemplates and ClusterAnalysisTemplates, so a check
/// reads no template from the API. A template the cache lacks (one created a moment
/// ago, or before the first list) is read from the API before it is called missing.
#[derive(Clone)]
pub struct TemplateCaches {
    namespaced: Store<AnalysisTemplate>,
    cluster: Store<ClusterAnalysisTemplate>,
}

impl TemplateCaches {
    /// Watch the templates of `namespace` (`None`: all) and the cluster's, in background
    /// tasks that end with the runtime.
    pub fn start(client: &Client, namespace: Option<&str>) -> Self {
        Self {
            namespaced: watched(
                scoped(client, namespace),
                watcher::Config::default(),
                |t: &mut AnalysisTemplate| t.metadata.managed_fields = None,
            )
            .0,
            cluster: watched(
                Api::all(client.clone()),
                watcher::Config::default(),
                |t: &mut ClusterAnalysisTemplate| t.metadata.managed_fields = None,
            )
            .0,
        }
    }

    /// Caches over stores filled elsewhere (tests).
    pub fn from_stores(
        namespaced: Store<AnalysisTemplate>,
        cluster: Store<ClusterAnalysisTemplate>,
    ) -> Self {
        Self {
            namespaced,
            cluster,
        }
    }

    /// The spec of template `r` if the cache has it.
    fn spec(&self, ns: &str, r: &TemplateRef) -> Option<AnalysisTemplateSpec> {
        if r.cluster_scope {
            listed(&self.cluster).then_some(())?;
            let t = self.cluster.get(&ObjectRef::new(&r.name))?;
            Some(t.spec.template.clone())
        } else {
            listed(&self.namespaced).then_some(())?;
            let t = self.namespaced.get(&ObjectRef::new(&r.name).within(ns))?;
            Some(t.spec.clone())
        }
    }
}

/// Template `r`'s spec: from `caches` when they have it, else from the API.
async fn template_spec(
    client: &Client,
    caches: Option<&TemplateCaches>,
    ns: &str,
    r: &TemplateRef,
) -> Result<Option<AnalysisTemplateSpec>, kube::Error> {
    if let Some(spec) = caches.and_then(|c| c.spec(ns, r)) {
        return Ok(Some(spec));
    }
    Ok(if r.cluster_scope {
        let api: Api<ClusterAnalysisTemplate> = Api::all(client.clone());
        api.get_opt(&r.name).await?.map(|t| t.spec.template)
    } else {
        let api: Api<AnalysisTemplate> = Api::namespaced(client.clone(), ns);
        api.get_opt(&r.name).await?.map(|t| t.spec)
    })
}

/// The resolved metrics, or why the templates cannot be used (a config problem the
/// user fixes, as opposed to an API error that is retried).
pub async fn load_metrics(
    client: &Client,
    caches: Option<&TemplateCaches>,
    ns: &str,
    refs: &[TemplateRef],
    controller_ns: &str,
    sources: &dyn MetricSources,
) -> Result<Result<Vec<ResolvedMetric>, AnalysisConfigError>, kube::Error> {
    let mut specs = Vec::with_capacity(refs.len());
    for r in refs {
        let spec = template_spec(client, caches, ns, r).await?;
        match spec {
            Some(s) => specs.push((r.clone(), s)),
            None => {
                return Ok(Err(AnalysisConfigError::TemplateNotFound {
                    kind: kind(r.cluster_scope),
                    namespace: ns.to_string(),
                    name: r.name.clone(),
                    cluster: r.cluster_scope,
                }))
            }
        }
    }
    let mut metrics = match resolve_metrics(&specs) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    for m in &mut metrics {
        // The address first: a template naming one the controller does not allow gets
        // neither a query nor its Secret read.
        if let Err(e) = sources.check_provider(m.provider.as_ref()) {
            return Ok(Err(AnalysisConfigError::Provider {
                template: m.template.clone(),
                message: e.to_string(),
            }));
        }
        let Some(keys) = m.credential_keys() else {
            continue;
        };
        let secret_name = keys.name().to_string();
        let field = m
            .provider
            .as_ref()
            .and_then(|p| p.kind().ok())
            .map_or("prometheus", |k| k.as_str());
        // Provider credentials come from Secrets: the Canary's namespace for namespaced
        // templates, the controller's own for ClusterAnalysisTemplates.
        let cluster = refs.iter().any(|r| r.name == m.template && r.cluster_scope)
            && !refs
                .iter()
                .any(|r| r.name == m.template && !r.cluster_scope);
        let secret_ns = if cluster { controller_ns } else { ns };
        let secrets: Api<Secret> = Api::namespaced(client.clone(), secret_ns);
        let named_by = format!(
            "{} {:?} (provider.{field}.secretRef)",
            kind(cluster),
            m.template
        );
        let creds = match secrets.get_opt(&secret_name).await? {
            // Only a Secret that opted in is read: naming one is not enough.
            Some(secret) if !opted_in(secret.metadata.labels.as_ref()) => Err(MetricError::Config(
                not_opted_in(secret_ns, &secret_name, &named_by),
            )),
            Some(secret) => keys.read(&secret.data.unwrap_or_default()),
            None => Err(MetricError::Config(format!(
                "Secret {secret_ns}/{secret_name} named by {named_by} does not exist"
            ))),
        };
        match creds {
            Ok(c) => m.credentials = Some(Arc::new(c)),
            Err(e) => {
                return Ok(Err(AnalysisConfigError::Credentials {
                    template: m.template.clone(),
                    message: match e {
                        MetricError::Config(text) => text,
                        e => e.to_string(),
                    },
                }))
            }
        }
    }
    Ok(Ok(metrics))
}

fn kind(cluster: bool) -> &'static str {
    if cluster {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    }
}

/// The HMAC secrets of a Canary's webhooks, by hook name, from Secrets in its namespace.
pub async fn load_hook_secrets(
    client: &Client,
    ns: &str,
    hooks: &[crate::crd::WebhookSpec],
) -> Result<
    Result<std::collections::BTreeMap<String, crate::gates::SecretString>, String>,
    kube::Error,
> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out = std::collections::BTreeMap::new();
    for hook in hooks {
        let Some(r) = &hook.secret_ref else { continue };
        let Some(secret) = secrets.get_opt(&r.name).await? else {
            return Ok(Err(format!(
                "webhook {:?}: Secret {ns}/{} does not exist",
                hook.name, r.name
            )));
        };
        if !opted_in(secret.metadata.labels.as_ref()) {
            let named_by = format!("webhook {:?} (secretRef)", hook.name);
            return Ok(Err(not_opted_in(ns, &r.name, &named_by)));
        }
        let value = secret
            .data
            .unwrap_or_default()
            .remove(&r.key)
            .and_then(|b| String::from_utf8(b.0).ok());
        match value {
            Some(v) => {
                out.insert(
                    hook.name.clone(),
                    crate::gates::SecretString::new(v.trim_end().to_string()),
                );
            }
            None => {
                return Ok(Err(format!(
                    "webhook {:?}: Secret {ns}/{} has no UTF-8 key {:?}",
                    hook.name, r.name, r.key
                )))
            }
        }
    }
    Ok(Ok(out))
}
