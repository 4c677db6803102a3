//! The faults of a schedule, injected before the fake API server's requests, and the
//! state they share with the driver and the scripted Prometheus.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::schedule::Fault;
use super::world::NS;
use crate::controller::Fence;
use crate::testing::apiserver::{status, Hook, RequestInfo, ServerControl};

/// State the fault hook and the scripted Prometheus share with the driver.
#[derive(Default)]
pub struct Shared {
    pub faults: HashMap<(u32, u32), Fault>,
    pub step: u32,
    pub request: u32,
    /// Faults are injected (off during quiescence).
    pub active: bool,
    /// The controller making requests now.
    pub caller: usize,
    /// The caller died in this reconcile.
    pub crashed: bool,
    /// Another replica took the lease during this reconcile.
    pub takeover: bool,
    pub fences: Vec<Fence>,
    /// Writes that reached the API server from a fenced replica.
    pub fenced_writes: Vec<String>,
    /// Image -> behaves well.
    pub quality: BTreeMap<String, bool>,
    /// Image -> passing answers Prometheus gave while it was the canary.
    pub passes: BTreeMap<String, u32>,
    pub prometheus_down: bool,
    /// Set when the primary was deleted, cleared once a ready primary is back.
    pub primary_deleted: bool,
    /// The Canary was deleted: the hand-back is under way.
    pub canary_deleted: bool,
    /// The phase the Canary was in when it was deleted.
    pub deleted_in_phase: Option<String>,
    /// The user changed the image during the hand-back: theirs wins, no stable image
    /// to expect afterwards.
    pub image_changed_during_hand_back: bool,
    /// The Canary left `Initializing` at least once (traffic moved to the primary).
    pub initialized_once: bool,
    /// Images the user's Deployment ran before that: onboarding takes whatever it runs
    /// then, without a release (the user's Deployment still serves everything).
    pub onboarding_images: std::collections::BTreeSet<String>,
    pub log: Vec<String>,
}

impl Shared {
    /// The next image, with its behaviour recorded.
    pub fn new_image(&mut self, good: bool) -> String {
        let image = format!("podinfo:{}", self.quality.len() + 1);
        self.quality.insert(image.clone(), good);
        if !self.initialized_once {
            self.onboarding_images.insert(image.clone());
        }
        if self.canary_deleted {
            self.image_changed_during_hand_back = true;
        }
        image
    }
}

fn is_write(r: &RequestInfo) -> bool {
    !matches!(r.method.as_str(), "GET" | "HEAD")
}

fn target_with_image(ctl: &ServerControl<'_>, image: &str) -> Option<Value> {
    let mut d = ctl.get("apps/v1", "deployments", Some(NS), "podinfo")?;
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    strip(&mut d);
    Some(d)
}

/// What a user's `kubectl apply` sends: no server-owned metadata.
pub fn strip(o: &mut Value) {
    if let Some(m) = o["metadata"].as_object_mut() {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
}

/// The hook: before each request, the fault the schedule has for it.
pub(super) fn hook(shared: Arc<Mutex<Shared>>) -> Hook {
    Box::new(move |r: &RequestInfo, ctl: &mut ServerControl| {
        let mut s = shared.lock().unwrap();
        let n = s.request;
        s.request += 1;
        if is_write(r) && s.fences.get(s.caller).is_some_and(|f| f.check().is_err()) {
            let line = format!("{} {} by fenced replica {}", r.method, r.path, s.caller);
            s.fenced_writes.push(line);
        }
        if s.crashed {
            // A dead process sends nothing more; what it would have sent fails.
            return Some((
                503,
                status(503, "ServiceUnavailable", "the controller died"),
            ));
        }
        if !s.active {
            return None;
        }
        let fault = *s.faults.get(&(s.step, n))?;
        let what = format!("{} {}", r.method, r.path);
        let line = format!("  step {} request {n}: {fault:?} on {what}", s.step);
        s.log.push(line);
        match fault {
            Fault::Crash => {
                s.crashed = true;
                Some((503, status(503, "ServiceUnavailable", "the controller died")))
            }
            Fault::Conflict if is_write(r) => Some((
                409,
                status(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again"),
            )),
            Fault::ServerError => Some((500, status(500, "InternalError", "etcdserver: request timed out"))),
            Fault::Timeout => Some((504, status(504, "Timeout", "the request timed out"))),
            Fault::Forbidden => Some((
                403,
                status(403, "Forbidden", &format!("{} is forbidden: User \"system:serviceaccount:serin-system:serin\" cannot {} resource \"{}\" in API group \"{}\" in the namespace \"{NS}\"", r.resource, r.verb, r.resource, r.group)),
            )),
            Fault::LostResponse if is_write(r) => {
                ctl.answer_after_serving(504, status(504, "Timeout", "the request timed out"));
                None
            }
            Fault::Takeover => {
                let c = s.caller;
                s.fences[c].revoke();
                s.takeover = true;
                None
            }
            Fault::DeletePrimaryNow => {
                if ctl.delete_object("apps/v1", "deployments", Some(NS), "podinfo-primary") {
                    s.primary_deleted = true;
                }
                None
            }
            Fault::NewRevisionNow => {
                let image = s.new_image(true);
                if let Some(d) = target_with_image(ctl, &image) {
                    ctl.insert(d);
                }
                None
            }
            _ => None,
        }
    })
}
