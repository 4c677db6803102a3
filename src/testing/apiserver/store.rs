//! The cluster state and every write path: create, update (PUT and non-apply patches),
//! server-side apply, delete with finalizers, and what the control plane does on its
//! own (Deployment rollouts, garbage collection).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::errors::{self, Result};
use super::resources::{apply_defaults, zero_object, ResourceType, RESOURCES};
use super::ssa::{self, Entry, Scope};
use super::validate::{check_generate_name, finalizers_on_delete, validate};

/// (group, plural, namespace or "", name): one stored object, whatever version wrote it.
pub type Key = (String, String, String, String);

/// How Deployments' status follows their spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollouts {
    /// The status catches up right after each spec write (as a separate status write
    /// by `kube-controller-manager`, so the write's own answer still shows the old status).
    Instant,
    /// The status stays until the test calls `settle()`.
    Manual,
}

/// Which object a request names.
#[derive(Clone, Debug)]
pub struct Target {
    pub rt: &'static ResourceType,
    pub version: String,
    pub namespace: Option<String>,
    pub name: String,
    /// Only `status` is served.
    pub status: bool,
}

impl Target {
    pub fn key(&self) -> Key {
        (
            self.rt.group.into(),
            self.rt.plural.into(),
            self.namespace.clone().unwrap_or_default(),
            self.name.clone(),
        )
    }

    fn scope(&self) -> Scope<'static> {
        Scope {
            rt: self.rt,
            status_only: self.status,
        }
    }

    fn api_version(&self) -> String {
        self.rt.api_version(&self.version)
    }
}

pub struct Store {
    pub objects: BTreeMap<Key, Value>,
    rv: u64,
    uids: u64,
    names: u64,
    pub now: DateTime<Utc>,
    pub rollouts: Rollouts,
    /// Plural names whose type is not installed (a CRD removed).
    pub unavailable: BTreeSet<String>,
}

const SERVER_META: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

pub(super) fn meta_str<'a>(o: &'a Value, f: &str) -> Option<&'a str> {
    o["metadata"][f].as_str().filter(|s| !s.is_empty())
}

/// Everything but metadata and status: what `metadata.generation` counts changes of.
fn spec_part(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    o
}

impl Default for Store {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            rv: 1000,
            uids: 0,
            names: 0,
            now: DateTime::parse_from_rfc3339("2026-11-22T14:23:08Z")
                .expect("valid time")
                .with_timezone(&Utc),
            rollouts: Rollouts::Instant,
            unavailable: BTreeSet::new(),
        }
    }
}

impl Store {
    pub fn now_str(&self) -> String {
        self.now.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    pub fn resource_version(&self) -> String {
        self.rv.to_string()
    }

    pub(super) fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// Sequential UIDs, so their order is creation order.
    fn next_uid(&mut self) -> String {
        self.uids += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uids)
    }

    /// Five characters from the alphabet the real server's name generator uses.
    fn next_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.names += 1;
        let mut x = self.names.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
        (0..5)
            .map(|_| {
                let c = ALPHABET[(x % 27) as usize] as char;
                x /= 27;
                c
            })
            .collect()
    }

    pub fn available(&self, rt: &ResourceType) -> bool {
        !self.unavailable.contains(rt.plural)
    }

    /// The stored object as `version` of its type shows it.
    pub fn get(&self, t: &Target) -> Result<Value> {
        let mut o = self
            .objects
            .get(&t.key())
            .cloned()
            .ok_or_else(|| errors::not_found(t.rt, &t.name))?;
        o["apiVersion"] = json!(t.api_version());
        Ok(o)
    }

    /// POST. `manager` owns what it set; `keep_status` is for test fixtures (`insert`).
    pub fn create(
        &mut self,
        t: &Target,
        mut obj: Value,
        manager: &str,
        keep_status: bool,
    ) -> Result<Value> {
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        check_namespace(t, &obj)?;
        let mut name = meta_str(&obj, "name").unwrap_or_default().to_string();
        if name.is_empty() {
            if let Some(prefix) = meta_str(&obj, "generateName").map(str::to_string) {
                name = loop {
                    let n = format!("{prefix}{}", self.next_suffix());
                    if !self.objects.contains_key(
                        &Target {
                            name: n.clone(),
                            ..t.clone()
                        }
                        .key(),
                    ) {
                        break n;
                    }
                };
                if let Some(c) = check_generate_name(&prefix) {
                    return Err(errors::invalid(t.rt, &name, &[c]));
                }
            }
        }
        let t = &Target {
            name: name.clone(),
            ..t.clone()
        };
        if !name.is_empty() && self.objects.contains_key(&t.key()) {
            return Err(errors::already_exists(t.rt, &name));
        }
        let meta = obj["metadata"].as_object_mut().expect("metadata is a map");
        for f in SERVER_META {
            meta.remove(*f);
        }
        meta.insert("name".into(), json!(name));
        if !keep_status {
            initial_status(t.rt, &mut obj);
        }
        apply_defaults(t.rt, &mut obj);
        let base = explicit_managed_fields(&obj).unwrap_or_default();
        let main = Target {
            status: false,
            ..t.clone()
        };
        let managers = ssa::update(
            main.scope(),
            &zero_object(t.rt),
            &obj,
            base,
            manager,
            &t.api_version(),
            &self.now_str(),
        );
        self.commit(&main, None, obj, managers)
    }

    /// PUT, or a non-apply PATCH once the patch is applied to the live object.
    pub fn update(&mut self, t: &Target, new: Value, manager: &str) -> Result<Value> {
        if let Some(n) = meta_str(&new, "name").filter(|n| *n != t.name) {
            return Err(errors::bad_request(&format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                t.name
            )));
        }
        check_namespace(t, &new)?;
        let live = self.get(t)?;
        check_preconditions(
            t,
            &live,
            meta_str(&new, "resourceVersion"),
            meta_str(&new, "uid"),
        )?;
        let explicit = if t.status {
            None
        } else {
            explicit_managed_fields(&new)
        };
        let base = explicit.unwrap_or_else(|| managed_of(&live));
        let mut candidate = if t.status {
            let mut c = live.clone();
            set_or_remove(&mut c, "status", new.get("status").cloned());
            c
        } else {
            let mut c = new;
            if t.rt.status {
                set_or_remove(&mut c, "status", live.get("status").cloned());
            }
            c
        };
        if !candidate["metadata"].is_object() {
            candidate["metadata"] = json!({});
        }
        apply_defaults(t.rt, &mut candidate);
        let managers = ssa::update(
            t.scope(),
            &live,
            &candidate,
            base,
            manager,
            &t.api_version(),
            &self.now_str(),
        );
        self.commit(t, Some(live), candidate, managers)
    }

    /// Server-side apply; `Ok((201, obj))` when it created the object.
    pub fn apply(
        &mut self,
        t: &Target,
        mut config: Value,
        manager: &str,
        force: bool,
    ) -> Result<(u16, Value)> {
        super::patch::drop_nulls(&mut config);
        if config.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(errors::bad_request("metadata must be an object"));
        }
        if config["metadata"].get("managedFields").is_some() {
            return Err(errors::bad_request("metadata.managedFields must be nil"));
        }
        if config["apiVersion"].as_str().is_none() || config["kind"].as_str().is_none() {
            return Err(errors::bad_request(
                "Object 'Kind' is missing in the applied configuration",
            ));
        }
        if config["kind"] != t.rt.kind {
            return Err(errors::bad_request(&format!(
                "the kind of the applied configuration ({}) does not match the resource ({})",
                config["kind"].as_str().unwrap_or_default(),
                t.rt.kind
            )));
        }
        if let Some(n) = meta_str(&config, "name").filter(|n| *n != t.name) {
            return Err(errors::bad_request(&format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                t.name
            )));
        }
        check_namespace(t, &config)?;
        let live = self.get(t).ok();
        if live.is_none() && t.status {
            return Err(errors::not_found(t.rt, &t.name));
        }
        if let Some(rv) = meta_str(&config, "resourceVersion") {
            match &live {
                Some(l) => check_preconditions(t, l, Some(rv), None)?,
                None => return Err(errors::modified(t.rt, &t.name)),
            }
        }
        if let Some(m) = config["metadata"].as_object_mut() {
            for f in SERVER_META {
                m.remove(*f);
            }
        }
        let config = restrict_content(t, config);
        let created = live.is_none();
        let base = live.clone().unwrap_or_else(|| {
            let mut meta = json!({"name": t.name});
            if let Some(ns) = &t.namespace {
                meta["namespace"] = json!(ns);
            }
            let mut o = json!({"apiVersion": t.api_version(), "kind": t.rt.kind, "metadata": meta});
            initial_status(t.rt, &mut o);
            o
        });
        let managers = live.as_ref().map(managed_of).unwrap_or_default();
        let (mut merged, managers) = ssa::apply(
            t.scope(),
            &base,
            managers,
            &config,
            manager,
            &t.api_version(),
            force,
            &self.now_str(),
        )
        .map_err(|c| errors::apply_conflict(c.message(), &c.0))?;
        apply_defaults(t.rt, &mut merged);
        let obj = self.commit(t, live, merged, managers)?;
        Ok((if created { 201 } else { 200 }, obj))
    }

    /// DELETE: with finalizers only marks the object; `Ok(None)` when it is gone
    /// (the caller answers with a success `Status`).
    pub fn delete(&mut self, t: &Target, options: Option<&Value>) -> Result<Option<Value>> {
        let live = self.get(t)?;
        if let Some(p) = options.map(|o| &o["preconditions"]) {
            check_preconditions(t, &live, p["resourceVersion"].as_str(), p["uid"].as_str())?;
        }
        let has_finalizers = live["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if !has_finalizers {
            self.objects.remove(&t.key());
            return Ok(None);
        }
        if live["metadata"].get("deletionTimestamp").is_some() {
            return Ok(Some(live));
        }
        let mut o = live;
        o["metadata"]["deletionTimestamp"] = json!(self.now_str());
        o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        o["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.objects.insert(t.key(), o.clone());
        Ok(Some(o))
    }

    /// Store a write: validation, generation, resourceVersion (only when something
    /// changed), finalizer-pending deletion, and the Deployment controller's reaction.
    fn commit(
        &mut self,
        t: &Target,
        live: Option<Value>,
        mut new: Value,
        managers: Vec<Entry>,
    ) -> Result<Value> {
        new["apiVersion"] = json!(t.api_version());
        new["kind"] = json!(t.rt.kind);
        let meta = new["metadata"].as_object_mut().expect("metadata is a map");
        meta.insert("name".into(), json!(t.name));
        match &t.namespace {
            Some(ns) => meta.insert("namespace".into(), json!(ns)),
            None => meta.remove("namespace"),
        };
        let fields = ssa::encode(&managers);
        if fields.as_array().is_some_and(|a| a.is_empty()) {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), fields);
        }
        match &live {
            Some(l) => {
                for f in SERVER_META {
                    match l["metadata"].get(*f) {
                        Some(v) => new["metadata"][*f] = v.clone(),
                        None => {
                            new["metadata"].as_object_mut().expect("map").remove(*f);
                        }
                    }
                }
            }
            None => {
                new["metadata"]["uid"] = json!(self.next_uid());
                new["metadata"]["creationTimestamp"] = json!(self.now_str());
                if t.rt.generation {
                    new["metadata"]["generation"] = json!(1);
                }
            }
        }
        let mut causes = validate(t.rt, &new);
        if let Some(l) = &live {
            causes.extend(finalizers_on_delete(l, &new));
        }
        if !causes.is_empty() {
            return Err(errors::invalid(t.rt, &t.name, &causes));
        }
        if let Some(l) = &live {
            if *l == new {
                return Ok(new);
            }
            if t.rt.generation && spec_part(l) != spec_part(&new) {
                let g = l["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                new["metadata"]["generation"] = json!(g);
            }
        }
        new["metadata"]["resourceVersion"] = json!(self.next_rv());
        let terminating = new["metadata"].get("deletionTimestamp").is_some();
        let finalizers_left = new["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if terminating && !finalizers_left {
            self.objects.remove(&t.key());
            return Ok(new);
        }
        let spec_changed = live
            .as_ref()
            .map(|l| l["metadata"]["generation"] != new["metadata"]["generation"]);
        self.objects.insert(t.key(), new.clone());
        if t.rt.kind == "Deployment"
            && !t.status
            && self.rollouts == Rollouts::Instant
            && spec_changed != Some(false)
        {
            self.roll_out(&t.key());
        }
        Ok(new)
    }

    /// A new resourceVersion without a change (another writer's no-op is invisible on
    /// a real server; this is for making a client's cached version stale).
    pub fn bump(&mut self, key: &Key) -> bool {
        if !self.objects.contains_key(key) {
            return false;
        }
        let rv = self.next_rv();
        self.objects.get_mut(key).expect("checked")["metadata"]["resourceVersion"] = json!(rv);
        true
    }
}

pub fn rt_by(group: &str, plural: &str) -> &'static ResourceType {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .expect("stored objects have known types")
}

/// A created object's status: the built-in types reset it to their zero value, CRDs
/// with a status subresource drop it.
fn initial_status(rt: &ResourceType, obj: &mut Value) {
    if !rt.status {
        return;
    }
    match (rt.builtin, rt.kind) {
        (false, _) => set_or_remove(obj, "status", None),
        (true, "Service" | "Ingress") => obj["status"] = json!({"loadBalancer": {}}),
        (true, _) => obj["status"] = json!({}),
    }
}

fn set_or_remove(o: &mut Value, k: &str, v: Option<Value>) {
    match v {
        Some(v) => o[k] = v,
        None => {
            if let Some(m) = o.as_object_mut() {
                m.remove(k);
            }
        }
    }
}

fn managed_of(o: &Value) -> Vec<Entry> {
    ssa::decode(&o["metadata"]["managedFields"]).unwrap_or_default()
}

/// managedFields a non-apply write sets itself: `[{}]` clears them, a valid list
/// replaces them, anything else (absent, empty, undecodable) keeps the live ones.
fn explicit_managed_fields(o: &Value) -> Option<Vec<Entry>> {
    let mf = o["metadata"].get("managedFields")?;
    if ssa::is_reset(mf) {
        return Some(Vec::new());
    }
    ssa::decode(mf).filter(|e| !e.is_empty())
}

/// A body naming another namespace than the URL (400, as the real server answers).
fn check_namespace(t: &Target, body: &Value) -> Result<()> {
    match (&t.namespace, meta_str(body, "namespace")) {
        (Some(ns), Some(body_ns)) if ns != body_ns => Err(errors::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}

fn check_preconditions(
    t: &Target,
    live: &Value,
    rv: Option<&str>,
    uid: Option<&str>,
) -> Result<()> {
    if let Some(rv) = rv.filter(|s| !s.is_empty()) {
        if Some(rv) != meta_str(live, "resourceVersion") {
            return Err(errors::modified(t.rt, &t.name));
        }
    }
    if let Some(uid) = uid.filter(|s| !s.is_empty()) {
        let have = meta_str(live, "uid").unwrap_or_default();
        if uid != have {
            return Err(errors::conflict(
                t.rt,
                &t.name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            ));
        }
    }
    Ok(())
}

/// The part of an applied config a write to this (sub)resource may set.
fn restrict_content(t: &Target, mut config: Value) -> Value {
    let Some(m) = config.as_object_mut() else {
        return config;
    };
    if t.status {
        m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| k == "name" || k == "namespace");
        }
    } else if t.rt.status {
        m.remove("status");
    }
    config
}
