//! The simulated cluster: the real controller (two replicas behind a lease) against the
//! stateful fake API server, a scripted Prometheus, and the faults of a schedule
//! injected before API requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::faults::{hook, strip, Shared};
use super::schedule::{Schedule, Setup, UserEvent};
use crate::controller::events::MemoryEvents;
use crate::controller::{reconcile_canary, Context, Fence, Routers};
use crate::crd::{Canary, ProviderSpec};
use crate::providers::{MetricError, MetricSource, MetricSources};
use crate::testing::apiserver::{FakeApiServer, Rbac, Rollouts};
use crate::traffic::registry::build;
use crate::traffic::{RouterKind, RouterOptions, TrafficRouter};
use crate::workloads::deployments::KubeWorkloads;

pub const NS: &str = "shop";
pub const FIRST_IMAGE: &str = "podinfo:1";

/// Prometheus as the sim scripts it: the canary's error rate follows the behaviour of
/// the image the user's Deployment runs; every passing answer is counted per image.
pub struct SimPrometheus {
    pub server: FakeApiServer,
    pub shared: Arc<Mutex<Shared>>,
}

#[async_trait]
impl MetricSource for SimPrometheus {
    async fn query_scalar(&self, query: &str, _at: DateTime<Utc>) -> Result<f64, MetricError> {
        if self.shared.lock().unwrap().prometheus_down {
            return Err(MetricError::Unreachable("connection refused".into()));
        }
        let image = self
            .server
            .get("apps/v1", "deployments", Some(NS), "podinfo")
            .map(|d| d["spec"]["template"]["spec"]["containers"][0]["image"].clone())
            .and_then(|i| i.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut s = self.shared.lock().unwrap();
        let good = s.quality.get(&image).copied().unwrap_or(true);
        let value = if good { 0.001 } else { 0.2 };
        if good && query.contains("podinfo-.*") {
            *s.passes.entry(image).or_default() += 1;
        }
        Ok(value)
    }
    async fn query_vector(&self, q: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        self.query_scalar(q, at).await.map(|v| vec![v])
    }
}

struct Source(Arc<SimPrometheus>);
impl MetricSources for Source {
    fn source(
        &self,
        _p: Option<&ProviderSpec>,
        _c: Option<&crate::providers::ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        Ok(self.0.clone())
    }
}

pub fn template() -> Value {
    json!({"apiVersion": "serin.dev/v1alpha1", "kind": "AnalysisTemplate",
           "metadata": {"name": "error-rate", "namespace": NS},
           "spec": {"metrics": [{"name": "error-rate",
                                 "query": "errors{pod=~\"{{workload}}-.*\"}",
                                 "threshold": {"max": 0.01}}]}})
}

fn canary_spec(setup: &Setup) -> Value {
    let mut spec = json!({
        "targetRef": {"name": "podinfo"},
        "analysis": {"interval": "30s", "steps": [20, 50], "progressDeadline": "5m",
                     "scaleDownDelay": "20s", "templates": [{"name": "error-rate"}]},
    });
    if setup.blue_green {
        spec["strategy"] = json!("blue-green");
        spec["analysis"]["iterations"] = json!(2);
    }
    if setup.gate {
        spec["gates"] = json!({"beforePromotion": true});
    }
    if setup.istio {
        spec["router"] = json!("istio");
    }
    spec
}

/// One replica of the controller.
pub struct Replica {
    pub ctx: Arc<Context>,
}

pub struct World {
    pub server: FakeApiServer,
    pub now: Arc<Mutex<DateTime<Utc>>>,
    pub shared: Arc<Mutex<Shared>>,
    pub setup: Setup,
    pub replicas: Vec<Replica>,
    pub leader: usize,
    sources: Arc<SimPrometheus>,
    /// Steps a release needs to pass (checks with passing evidence).
    pub needed_passes: u32,
    /// The image the primary ran when last seen.
    pub last_primary_image: Option<String>,
    pub trace: Vec<String>,
    pub reconciles: u32,
}

impl World {
    pub fn new(schedule: &Schedule) -> Self {
        let setup = schedule.setup;
        let server = FakeApiServer::new();
        server.set_recording(false);
        let start = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        server.set_time(start);
        let mut target = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "podinfo", "namespace": NS, "labels": {"app.kubernetes.io/name": "podinfo"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "podinfo"}},
                     "template": {"metadata": {"labels": {"app": "podinfo", "app.kubernetes.io/name": "podinfo"}},
                                  "spec": {"containers": [{"name": "podinfo", "image": FIRST_IMAGE}]}}}});
        strip(&mut target);
        server.insert(target);
        server.insert(json!({"apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
                             "metadata": {"name": "podinfo", "namespace": NS, "finalizers": ["serin.dev/finalizer"]},
                             "spec": canary_spec(&setup)}));
        server.insert(template());
        server.settle();
        if setup.manual_rollouts {
            server.set_deployment_rollouts(Rollouts::Manual);
        }
        let mut shared = Shared {
            faults: schedule
                .ops
                .iter()
                .filter_map(|o| match o {
                    super::schedule::Op::Fault {
                        step,
                        request,
                        fault,
                    } => Some(((*step, *request), *fault)),
                    _ => None,
                })
                .collect(),
            active: true,
            ..Default::default()
        };
        shared.quality.insert(FIRST_IMAGE.into(), true);
        shared.onboarding_images.insert(FIRST_IMAGE.into());
        let shared = Arc::new(Mutex::new(shared));
        server.set_hook(hook(shared.clone()));
        let sources = Arc::new(SimPrometheus {
            server: server.clone(),
            shared: shared.clone(),
        });
        let mut w = World {
            server,
            now: Arc::new(Mutex::new(start)),
            shared,
            setup,
            replicas: Vec::new(),
            leader: 0,
            sources,
            needed_passes: 2,
            last_primary_image: None,
            trace: Vec::new(),
            reconciles: 0,
        };
        for _ in 0..2 {
            let fence = Fence::new(Duration::from_secs(3600));
            let r = w.replica(&fence);
            w.replicas.push(r);
            w.shared.lock().unwrap().fences.push(fence);
        }
        w.lead(0);
        w
    }

    /// A fresh controller process that leads under `fence`: new context, new caches,
    /// a client whose writes stop when the fence closes (as `serin controller` builds it).
    fn replica(&self, fence: &Fence) -> Replica {
        let client = self.server.fenced_client(fence);
        // Built as `serin controller` builds them.
        let by_kind: HashMap<RouterKind, Arc<dyn TrafficRouter>> =
            [RouterKind::Service, RouterKind::Istio]
                .into_iter()
                .map(|k| (k, build(k, &client, &RouterOptions::default())))
                .collect();
        let now = self.now.clone();
        Replica {
            ctx: Arc::new(Context {
                written: Default::default(),
                templates: None,
                policies: None,
                client: client.clone(),
                workloads: Arc::new(KubeWorkloads::new(client.clone())),
                routers: Routers {
                    by_kind,
                    default: RouterKind::Service,
                },
                sources: Arc::new(Source(self.sources.clone())),
                events: Arc::new(MemoryEvents::default()),
                clock: Arc::new(move || *now.lock().unwrap()),
                check_timeout: Duration::from_secs(5),
                reconcile_deadline: Duration::from_secs(20),
                queries: None,
                controller_namespace: "serin-system".into(),
                webhooks: None,
                notify: None,
                metrics: Arc::new(crate::metrics::ControllerMetrics::new()),
                fence: fence.clone(),
            }),
        }
    }

    /// Replica `i` takes the lease: a new term with a fresh fence; the other's closes.
    fn lead(&mut self, i: usize) {
        let fence = Fence::new(Duration::from_secs(3600));
        fence.renewed(tokio::time::Instant::now());
        self.replicas[i] = self.replica(&fence);
        let mut s = self.shared.lock().unwrap();
        for (j, f) in s.fences.iter().enumerate() {
            if j != i {
                f.revoke();
            }
        }
        s.fences[i] = fence;
        self.leader = i;
    }

    pub fn advance(&self, secs: i64) {
        let mut now = self.now.lock().unwrap();
        *now += chrono::Duration::seconds(secs);
        self.server.set_time(*now);
    }

    pub fn get(&self, plural: &str, name: &str) -> Option<Value> {
        let av = match plural {
            "deployments" | "controllerrevisions" => "apps/v1",
            "canaries" | "analysistemplates" => "serin.dev/v1alpha1",
            "virtualservices" | "destinationrules" => "networking.istio.io/v1",
            _ => "v1",
        };
        self.server.get(av, plural, Some(NS), name)
    }

    pub fn canary(&self) -> Option<Value> {
        self.get("canaries", "podinfo")
    }

    /// Edit an object as a user would.
    pub fn edit(&self, plural: &str, name: &str, f: impl FnOnce(&mut Value)) {
        if let Some(mut o) = self.get(plural, name) {
            f(&mut o);
            strip(&mut o);
            self.server.insert(o);
        }
    }

    pub fn set_image(&self, good: bool) {
        let image = self.shared.lock().unwrap().new_image(good);
        self.edit("deployments", "podinfo", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        });
    }

    /// A record the CLI would write, under its own field manager.
    async fn record(&self, list: &str, item: Value) {
        let api: kube::Api<Canary> = kube::Api::namespaced(self.server.client(), NS);
        let manager = format!(
            "serin-cli-{}",
            item["id"].as_str().unwrap_or("x").replace('/', "-")
        );
        let body = json!({"apiVersion": "serin.dev/v1alpha1", "kind": "Canary",
                          "metadata": {"name": "podinfo", "namespace": NS},
                          "status": {list: [item]}});
        let (was, caller) = {
            let mut s = self.shared.lock().unwrap();
            let before = (s.active, s.caller);
            // The user's own write: no fault, no replica.
            s.active = false;
            s.caller = usize::MAX;
            before
        };
        let r = api
            .patch_status(
                "podinfo",
                &kube::api::PatchParams::apply(&manager).force(),
                &kube::api::Patch::Apply(&body),
            )
            .await;
        {
            let mut s = self.shared.lock().unwrap();
            s.active = was;
            s.caller = caller;
        }
        if let Err(e) = r {
            self.shared
                .lock()
                .unwrap()
                .log
                .push(format!("  record refused: {e}"));
        }
    }

    fn status(&self) -> Value {
        self.canary()
            .map(|c| c["status"].clone())
            .unwrap_or(Value::Null)
    }

    pub async fn user(&mut self, event: UserEvent) {
        let now = *self.now.lock().unwrap();
        let st = self.status();
        let rev = st["canaryRevision"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match event {
            UserEvent::NewRevision { good } => self.set_image(good),
            UserEvent::Abort => {
                let item = json!({"id": format!("abort/{rev}/{}", now.timestamp()), "kind": "abort",
                                  "revision": rev, "by": "sim", "via": "cli", "at": now});
                self.record("commands", item).await;
            }
            UserEvent::Retry => {
                let failed = st["failedRevision"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let item = json!({"id": format!("retry/{failed}/{}", now.timestamp()), "kind": "retry",
                                  "revision": failed, "by": "sim", "via": "cli", "at": now});
                self.record("commands", item).await;
            }
            UserEvent::Approve => self.approve().await,
            UserEvent::TogglePause => self.edit("canaries", "podinfo", |c| {
                let on = c["spec"]["suspend"].as_bool().unwrap_or(false);
                c["spec"]["suspend"] = json!(!on);
            }),
            UserEvent::DeleteCanary => {
                let phase = st["phase"].as_str().unwrap_or("Initializing").to_string();
                let mut sh = self.shared.lock().unwrap();
                if !sh.canary_deleted {
                    sh.deleted_in_phase = Some(phase);
                }
                sh.canary_deleted = true;
                drop(sh);
                self.server
                    .delete_object("serin.dev/v1alpha1", "canaries", Some(NS), "podinfo");
            }
            UserEvent::DeletePrimary => {
                if self
                    .server
                    .delete_object("apps/v1", "deployments", Some(NS), "podinfo-primary")
                {
                    self.shared.lock().unwrap().primary_deleted = true;
                }
            }
            UserEvent::DeletePrimaryService => {
                self.server
                    .delete_object("v1", "services", Some(NS), "podinfo-primary");
            }
            UserEvent::DeleteTemplate => {
                self.server.delete_object(
                    "serin.dev/v1alpha1",
                    "analysistemplates",
                    Some(NS),
                    "error-rate",
                );
            }
            UserEvent::RestoreTemplate => {
                if self.get("analysistemplates", "error-rate").is_none() {
                    self.server.insert(template());
                }
            }
            UserEvent::PrometheusDown => self.shared.lock().unwrap().prometheus_down = true,
            UserEvent::PrometheusUp => self.shared.lock().unwrap().prometheus_down = false,
            UserEvent::RouterCrdGone => {
                self.server.set_resource_available("virtualservices", false);
                self.server
                    .set_resource_available("destinationrules", false);
            }
            UserEvent::RouterCrdBack => {
                self.server.set_resource_available("virtualservices", true);
                self.server.set_resource_available("destinationrules", true);
            }
            UserEvent::RbacDenyPatchDeployments => {
                let rules: Value = serde_json::from_str(include_str!(
                    "../../../../charts/serin/tests/rendered-rbac.json"
                ))
                .expect("rendered-rbac.json");
                // The chart's rules minus patch on Deployments: every other rule stays.
                let denied = Rbac::from_rules(&json!(rules
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let mut r = r.clone();
                        let deployments = r["resources"]
                            .as_array()
                            .is_some_and(|x| x.iter().any(|v| v == "deployments"));
                        if deployments {
                            let verbs: Vec<Value> = r["verbs"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .filter(|v| *v != "patch")
                                .cloned()
                                .collect();
                            r["verbs"] = json!(verbs);
                        }
                        r
                    })
                    .collect::<Vec<_>>()));
                self.server.set_rbac(Some(denied));
            }
            UserEvent::RbacBack => self.server.set_rbac(None),
            UserEvent::Settle => self.server.settle(),
            UserEvent::TimeJump => self.advance(180),
        }
    }

    pub async fn approve(&self) {
        let st = self.status();
        let Some(gate) = st["pendingGate"].as_str() else {
            return;
        };
        let rev = st["canaryRevision"].as_str().unwrap_or_default();
        let step = st["currentStep"].as_i64().unwrap_or(0);
        let now = *self.now.lock().unwrap();
        let item = json!({"id": format!("{gate}/{rev}/{step}"), "gate": gate, "revision": rev,
                          "step": step, "approved": true, "by": "sim", "via": "cli", "at": now});
        self.record("approvals", item).await;
    }

    /// One reconcile by the leader, with the schedule's faults for `step`.
    pub async fn reconcile(&mut self, step: u32) {
        {
            let mut s = self.shared.lock().unwrap();
            s.step = step;
            s.request = 0;
            s.crashed = false;
            s.takeover = false;
            s.caller = self.leader;
        }
        let obj: Canary = self
            .canary()
            .and_then(|c| serde_json::from_value(c).ok())
            .unwrap_or_else(|| {
                let mut c = Canary::new(
                    "podinfo",
                    serde_json::from_value(json!({"targetRef": {"name": "podinfo"}})).unwrap(),
                );
                c.metadata.namespace = Some(NS.into());
                c
            });
        let result = reconcile_canary(Arc::new(obj), self.replicas[self.leader].ctx.clone()).await;
        self.reconciles += 1;
        let (crashed, takeover) = {
            let s = self.shared.lock().unwrap();
            (s.crashed, s.takeover)
        };
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!(
                "error: {}",
                crate::rollout::text::one_line(&e.to_string(), 160)
            ),
        };
        let phase = self.status()["phase"].as_str().unwrap_or("-").to_string();
        let mut log = std::mem::take(&mut self.shared.lock().unwrap().log);
        self.trace.append(&mut log);
        self.trace.push(format!(
            "step {step:>2}: replica {} reconciled: {outcome} -> {phase}",
            self.leader
        ));
        if crashed {
            let i = self.leader;
            self.lead(i);
            self.trace.push(format!("  replica {i} restarted"));
        }
        if takeover {
            let next = 1 - self.leader;
            self.lead(next);
            self.trace.push(format!("  replica {next} took the lease"));
        }
        let phase = self.status()["phase"]
            .as_str()
            .unwrap_or("Initializing")
            .to_string();
        if phase != "Initializing" {
            self.shared.lock().unwrap().initialized_once = true;
        }
        if let Some(p) = self.get("deployments", "podinfo-primary") {
            let image = p["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .map(str::to_string);
            if p["status"]["readyReplicas"].as_i64().unwrap_or(0) > 0 {
                self.shared.lock().unwrap().primary_deleted = false;
            }
            self.last_primary_image = image;
        }
    }
}
