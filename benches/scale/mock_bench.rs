//! The mock API server's side of the bench: releases (and their re-releases in the
//! soak), the gated Canaries waiting for approval, the counters, and what is followed
//! of the controller's writes.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{json, Value};

use super::{base_name, parse_path, ApiPath, Mock, State};

impl State {
    /// Is there a Canary "ns/name" (an annotated Deployment of that name)?
    pub(super) fn known(&self, ns: &str, name: &str) -> bool {
        base_name(name) == name
            && self
                .objects
                .get("/apis/apps/v1/deployments")
                .is_some_and(|m| {
                    m.contains_key(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))
                })
    }

    /// A new revision of the Deployment at `item`: a new image.
    fn release_one(&mut self, item: &str) {
        let p = parse_path(item).unwrap();
        let mut d = self.get(&p).unwrap().clone();
        let g = d["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        d["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!(format!("registry.example.com/shop/app:2.0.{g}"));
        d["metadata"]["generation"] = json!(g);
        self.store(&p, d);
        self.finish_rollout(&p);
        let key = format!(
            "{}/{}",
            p.ns.unwrap_or_default(),
            p.name.unwrap_or_default()
        );
        self.track.released(key);
    }
}

impl Mock {
    /// Start a release on `count` Deployments (the gated ones first, then in path
    /// order): a new image.
    pub fn release(&self, count: usize) -> usize {
        let mut st = self.state.lock().unwrap();
        let mut keys: Vec<String> = st.gated.iter().take(count).cloned().collect();
        let rest: Vec<String> = st
            .objects
            .get("/apis/apps/v1/deployments")
            .into_iter()
            .flat_map(|m| m.keys())
            .filter(|k| base_name(k) == k.as_str() && !keys.contains(k))
            .take(count - keys.len())
            .cloned()
            .collect();
        keys.extend(rest);
        for k in &keys {
            st.release_one(k);
        }
        st.released = keys.clone();
        drop(st);
        self.notify();
        keys.len()
    }

    /// Release again every released Deployment whose last release succeeded.
    pub fn recycle(&self) -> usize {
        let mut st = self.state.lock().unwrap();
        let done: Vec<String> = st
            .released
            .iter()
            .filter(|k| {
                let p = parse_path(k).unwrap();
                let key = format!(
                    "{}/{}",
                    p.ns.unwrap_or_default(),
                    p.name.unwrap_or_default()
                );
                !st.track.in_flight(&key)
            })
            .cloned()
            .collect();
        for k in &done {
            st.release_one(k);
        }
        drop(st);
        self.notify();
        done.len()
    }

    /// The gated Canaries waiting for an approval ("ns/name").
    pub(super) fn waiting(&self) -> Value {
        let st = self.state.lock().unwrap();
        let canaries = st.objects.get("/apis/serin.dev/v1alpha1/canaries");
        let out: Vec<String> = canaries
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|c| c["status"]["phase"] == "WaitingApproval")
            .filter_map(|c| {
                let key = format!(
                    "{}/{}",
                    c["metadata"]["namespace"].as_str()?,
                    c["metadata"]["name"].as_str()?
                );
                st.track.gated.contains(&key).then_some(key)
            })
            .collect();
        json!(out)
    }

    /// Canaries by phase, and the API calls served so far.
    pub fn stats(&self) -> Value {
        let st = self.state.lock().unwrap();
        let mut phases: BTreeMap<String, u64> = BTreeMap::new();
        let mut steps: BTreeMap<String, u64> = BTreeMap::new();
        let canaries = st.objects.get("/apis/serin.dev/v1alpha1/canaries");
        let example = canaries
            .into_iter()
            .flat_map(|m| m.values())
            .find(|v| v["status"]["phase"] == "Progressing")
            .map(|v| v["status"].clone());
        for v in canaries.into_iter().flat_map(|m| m.values()) {
            {
                let phase = v["status"]["phase"].as_str().unwrap_or("None").to_string();
                *phases.entry(phase).or_default() += 1;
                if let Some(s) = v["status"]["currentStep"].as_i64() {
                    if s > 0 {
                        *steps.entry(s.to_string()).or_default() += 1;
                    }
                }
            }
        }
        json!({"phases": phases, "steps": steps, "example": example, "requests": st.counts, "open_watches": st.open_watches,
               "watches": st.watches, "pages": st.pages, "largest_page": st.snapshots.largest_page,
               "objects": st.objects.values().map(BTreeMap::len).sum::<usize>(), "rv": st.rv})
    }

    /// Follow releases: a Canary status written `Succeeded` ends its release; an apex
    /// Service written with a canary weight is a router write.
    pub(super) fn track_write(
        &self,
        st: &mut State,
        method: &Method,
        p: &ApiPath,
        plural: &str,
        body: &Value,
    ) {
        if *method != Method::PATCH {
            return;
        }
        let (Some(ns), Some(name)) = (&p.ns, &p.name) else {
            return;
        };
        let key = format!("{ns}/{name}");
        if plural == "canaries" && p.sub.as_deref() == Some("status") {
            let phase = st
                .get(p)
                .and_then(|c| c["status"]["phase"].as_str())
                .unwrap_or("")
                .to_string();
            st.track.status(&key, &phase);
        }
        if plural == "services"
            && !body["metadata"]["annotations"]["serin.dev/canary-weight"].is_null()
        {
            st.track.routed(&key);
        }
    }
}
