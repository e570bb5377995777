//! Cloud Run Admin v2: services with long-running operations, revisions and their start-up, service IAM.
//!
//! [`Store`] holds Cloud Run's data. Its calls go through [`CloudRun`], which lends the store together with what
//! Cloud Run reads of the other APIs: nearly every call first settles the revisions whose start-up is due, and
//! judging one reads Secret Manager (the secrets it references), IAM (its runtime account, custom roles) and
//! Resource Manager (project policies and numbers, which also name a service's hosts).
//!
//! This file holds the service and revision handlers and the write path they share; `spec` normalises and
//! validates specs and makes names and ids, `startup` creates and settles revisions, `render` renders the JSON
//! and `operations` keeps the long-running operations. The live runtime, which runs revisions of images given a
//! command as local processes and serves their traffic: `live` (what the state decides), `supervisor` (the
//! processes), `serve` (forwarding requests) and `leftovers` (what a killed emulator left).

mod leftovers;
mod live;
mod operations;
mod render;
mod serve;
mod spec;
mod startup;
mod supervisor;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use self::render::with_type;
use self::spec::{
    apply_defaults, normalize_spec, operation_id, service_not_found, split_service, uuid, valid_service_id,
};
use crate::error::{ApiError, ApiResult, Code};
use crate::model::{Operation, Policy, Revision, Service};
use crate::wire::{self, Request};
use crate::{auth, iam, resourcemanager, secretmanager};

pub use self::live::LiveLink;
pub use self::operations::wait_operation;
pub(crate) use self::serve::{proxy, route};
pub(crate) use self::spec::hashed_project_number;
pub use self::supervisor::{LOG_LINES, RevisionLogEntry};
pub(crate) use self::supervisor::{Supervisor, supervise};

const SERVICE_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Service";
const REVISION_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Revision";
const LATEST: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST";
const BY_REVISION: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION";
const MAX_PAGE_SIZE: i64 = 1000;

/// Start-up timing of revisions, from the emulator's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub revision_startup: Duration,
    pub iam_propagation: Duration,
    /// The code of a failed revision's operation error (Google has answered 9 and 13).
    pub failure_code: Code,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            revision_startup: Duration::default(),
            iam_propagation: Duration::default(),
            failure_code: Code::FailedPrecondition,
        }
    }
}

/// Cloud Run's data: services, their revisions and long-running operations, and the images whose revisions crash;
/// besides, from the configuration and not persisted, start-up timing and the link to the live runtime.
#[derive(Clone, Debug, Default)]
pub struct Store {
    /// Services by full name (`projects/p/locations/r/services/s`).
    pub services: BTreeMap<String, Service>,
    /// Revisions by full name.
    pub revisions: BTreeMap<String, Revision>,
    /// Long-running operations by full name.
    pub operations: BTreeMap<String, Operation>,
    /// Container images whose revisions fail to start.
    pub crashing_images: BTreeSet<String>,
    /// How long start-ups take and how failures are answered, from the configuration.
    pub timing: Timing,
    /// The live runtime, when some image has a command (`Config::run_images`).
    pub live: Option<LiveLink>,
}

impl Store {
    /// The revisions whose names start with `prefix` (one service's, or a region's), newest first as Cloud Run
    /// lists them; the name orders revisions created in the same instant.
    pub fn revisions_newest_first(&self, prefix: &str) -> Vec<&Revision> {
        let mut revisions: Vec<&Revision> = self
            .revisions
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, r)| r)
            .collect();
        revisions.sort_by(|a, b| b.create_time.cmp(&a.create_time).then(b.name.cmp(&a.name)));
        revisions
    }

    /// Names `replacement` instead of `member` in every service's policy (a deleted service account).
    pub fn replace_member(&mut self, member: &str, replacement: &str, counter: &mut u64) {
        for service in self.services.values_mut() {
            iam::replace_member(&mut service.policy, member, replacement, counter);
        }
    }
}

/// A Cloud Run call's hold on the state: the run store and the counter to change, and the stores of the other APIs
/// it reads (see the module's doc). Made by [`crate::model::State::cloud_run`].
pub struct CloudRun<'a> {
    pub store: &'a mut Store,
    pub counter: &'a mut u64,
    pub secretmanager: &'a secretmanager::Store,
    pub iam: &'a iam::Store,
    pub resourcemanager: &'a resourcemanager::Store,
}

impl CloudRun<'_> {
    /// What a permission check reads: project policies and custom roles.
    pub(crate) fn policies(&self) -> auth::Policies<'_> {
        auth::Policies {
            resourcemanager: self.resourcemanager,
            custom_roles: &self.iam.custom_roles,
        }
    }

    /// Creates or replaces a service; shared by create and update-with-allowMissing.
    fn put_service(
        &mut self,
        name: &str,
        body: &Map<String, Value>,
        mask: Option<&str>,
        validate_only: bool,
        now: DateTime<Utc>,
    ) -> ApiResult<Value> {
        let n = split_service(name)?;
        let (project, location, id) = (n.project.to_string(), n.location.to_string(), n.id.to_string());
        let parent = format!("projects/{project}/locations/{location}");
        let existing = self.store.services.get(name).cloned();
        if existing.as_ref().is_some_and(|s| s.delete_time.is_some()) {
            return Err(ApiError::precondition(format!(
                "Service {name} is being deleted and cannot be changed."
            )));
        }
        let mut spec = match (&existing, mask.filter(|m| !m.is_empty())) {
            (Some(old), Some(mask)) => {
                let incoming = normalize_spec(body);
                let mut spec = old.spec.clone();
                for path in mask.split(',').map(str::trim) {
                    let top = path.split('.').next().unwrap_or("");
                    match incoming.get(top) {
                        Some(v) => spec.insert(top.to_string(), v.clone()),
                        None => spec.remove(top),
                    };
                }
                spec
            }
            _ => normalize_spec(body),
        };
        apply_defaults(&mut spec, self.resourcemanager.project_number(&project));
        self.validate_spec(&spec, &id)?;
        if let Some(Value::Array(traffic)) = spec.get("traffic") {
            for t in traffic {
                if let Some(r) = t
                    .get("revision")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                {
                    let full = format!("{name}/revisions/{r}");
                    if !self.store.revisions.contains_key(&full) {
                        return Err(ApiError::invalid(format!(
                            "Revision {r} referenced in traffic does not exist."
                        )));
                    }
                }
            }
        }
        let etag = wire::b64(&wire::etag_bytes(self.counter));
        let mut service = match &existing {
            Some(old) => {
                let mut s = old.clone();
                if s.spec != spec {
                    s.generation += 1;
                    s.update_time = now;
                    s.etag = etag;
                }
                s
            }
            None => {
                *self.counter += 1;
                Service {
                    name: name.to_string(),
                    uid: uuid(*self.counter, hashed_project_number(name), 0xb),
                    generation: 1,
                    observed_generation: 0,
                    create_time: now,
                    update_time: now,
                    spec: Map::new(),
                    etag,
                    latest_created: None,
                    latest_ready: None,
                    failure: None,
                    last_transition: now,
                    policy: Policy::default(),
                    delete_time: None,
                }
            }
        };
        let template_changed =
            existing.as_ref().map(|o| o.spec.get("template")) != Some(spec.get("template"));
        service.spec = spec;
        if validate_only {
            let op = json!({"name": format!("{parent}/operations/{}", operation_id()), "done": true,
                "metadata": with_type(self.render_service(&service), SERVICE_TYPE),
                "response": with_type(self.render_service(&service), SERVICE_TYPE)});
            return Ok(op);
        }
        let mut awaits = None;
        if template_changed {
            let rev = self.new_revision(&service, now)?;
            service.latest_created = Some(rev.clone());
            service.failure = None;
            service.last_transition = now;
            awaits = Some(rev);
        } else {
            service.observed_generation = service.generation;
        }
        let metadata = self.render_service(&service);
        self.store.services.insert(name.to_string(), service);
        let op_name = self.new_operation(&parent, SERVICE_TYPE, name, metadata, now);
        if let Some(op) = self.store.operations.get_mut(&op_name) {
            op.awaits_revision = awaits.clone();
        }
        self.settle(now);
        if awaits.is_none()
            && let Some(s) = self.store.services.get(name)
        {
            let response = with_type(self.render_service(s), SERVICE_TYPE);
            if let Some(op) = self.store.operations.get_mut(&op_name) {
                op.done = true;
                op.response = Some(response);
            }
        }
        self.nudge_live();
        let op = self
            .store
            .operations
            .get(&op_name)
            .ok_or_else(|| ApiError::new(Code::Internal, "operation vanished"))?;
        Ok(self.render_operation(op))
    }

    /// The Knative (v1) write path: the same as a v2 create or full replace.
    pub(crate) fn put_service_v1(
        &mut self,
        name: &str,
        body: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> ApiResult<Value> {
        self.settle(now);
        self.put_service(name, body, None, false, now)
    }

    pub fn list_services(&mut self, parent: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let (prefix, any_location) = match parent.strip_suffix("/locations/-") {
            Some(p) => (format!("{p}/locations/"), true),
            None => (format!("{parent}/services/"), false),
        };
        let items: Vec<(String, Value)> = self
            .store
            .services
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !any_location || k.contains("/services/"))
            .map(|(k, s)| (k.clone(), self.render_service(s)))
            .collect();
        wire::page_by_name("services", items, req, MAX_PAGE_SIZE)
    }

    pub fn get_service(&mut self, name: &str, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let s = self
            .store
            .services
            .get(name)
            .ok_or_else(|| service_not_found(name))?;
        Ok(self.render_service(s))
    }

    pub fn delete_service(&mut self, name: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let s = self
            .store
            .services
            .get(name)
            .ok_or_else(|| service_not_found(name))?
            .clone();
        if let Some(etag) = req.param("etag").filter(|e| !e.is_empty())
            && etag != s.etag
        {
            return Err(ApiError::new(
                Code::Aborted,
                format!("The etag {etag} does not match the current etag of service {name}."),
            ));
        }
        let rendered = self.render_service(&s);
        let n = split_service(name)?;
        let parent = format!("projects/{}/locations/{}", n.project, n.location);
        if req.bool_param("validateOnly")? {
            return Ok(
                json!({"name": format!("{parent}/operations/{}", operation_id()), "done": true,
                "metadata": with_type(rendered.clone(), SERVICE_TYPE), "response": with_type(rendered, SERVICE_TYPE)}),
            );
        }
        // Deleting takes a while (as long as a revision start-up): until then the service is still there, with
        // `deleteTime` set and `reconciling`, and the operation is not done.
        let rendered = match self.store.services.get_mut(name) {
            Some(live) => {
                live.delete_time.get_or_insert(now);
                let live = live.clone();
                self.render_service(&live)
            }
            None => rendered,
        };
        let op_name = self.new_operation(&parent, SERVICE_TYPE, name, rendered, now);
        self.settle(now);
        // A service being deleted serves no more: its processes stop.
        self.nudge_live();
        let op = self
            .store
            .operations
            .get(&op_name)
            .ok_or_else(|| ApiError::new(Code::Internal, "operation vanished"))?;
        Ok(self.render_operation(op))
    }

    pub fn get_policy(&mut self, name: &str, req: &Request) -> ApiResult<Value> {
        let requested = iam::requested_version(req)?;
        let s = self
            .store
            .services
            .get(name)
            .ok_or_else(|| service_not_found(name))?;
        iam::render_policy(&s.policy, requested)
    }

    /// `:setIamPolicy` of a service; its members must be accounts that exist.
    pub fn set_policy(&mut self, name: &str, req: &Request) -> ApiResult<Value> {
        let body = req.json()?;
        let mut policy = self
            .store
            .services
            .get(name)
            .ok_or_else(|| service_not_found(name))?
            .policy
            .clone();
        let accounts = self.iam;
        iam::set_policy(&mut policy, &body, self.counter, &|e| accounts.account_exists(e))?;
        let s = self
            .store
            .services
            .get_mut(name)
            .ok_or_else(|| service_not_found(name))?;
        s.policy = policy;
        iam::render_policy(&s.policy, 3)
    }

    pub fn list_revisions(&mut self, service: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        if !self.store.services.contains_key(service) {
            return Err(service_not_found(service));
        }
        let revisions = self
            .store
            .revisions_newest_first(&format!("{service}/revisions/"));
        let items = revisions.iter().map(|r| self.render_revision(r)).collect();
        wire::page_in_order("revisions", items, req, MAX_PAGE_SIZE)
    }

    pub fn get_revision(&mut self, name: &str, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let r = self
            .store
            .revisions
            .get(name)
            .ok_or_else(|| revision_not_found(name))?;
        Ok(self.render_revision(r))
    }

    pub fn delete_revision(&mut self, name: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let r = self
            .store
            .revisions
            .get(name)
            .ok_or_else(|| revision_not_found(name))?
            .clone();
        let short = r.name.rsplit('/').next().unwrap_or("").to_string();
        if let Some(s) = self.store.services.get(&r.service) {
            let serving = s.latest_ready.as_deref() == Some(name)
                || s.latest_created.as_deref() == Some(name)
                || self
                    .traffic_statuses(s)
                    .iter()
                    .any(|t| t.get("revision").and_then(Value::as_str) == Some(short.as_str()));
            if serving {
                return Err(ApiError::precondition(format!(
                    "Revision {short} cannot be deleted because it is serving traffic or is the latest revision of its service."
                )));
            }
        }
        let rendered = self.render_revision(&r);
        let parent = name.split("/services/").next().unwrap_or("").to_string();
        if req.bool_param("validateOnly")? {
            return Ok(
                json!({"name": format!("{parent}/operations/{}", operation_id()), "done": true,
                "metadata": with_type(rendered.clone(), REVISION_TYPE), "response": with_type(rendered, REVISION_TYPE)}),
            );
        }
        self.store.revisions.remove(name);
        self.nudge_live();
        let op_name = self.new_operation(&parent, REVISION_TYPE, name, rendered.clone(), now);
        if let Some(op) = self.store.operations.get_mut(&op_name) {
            op.done = true;
            op.response = Some(with_type(rendered, REVISION_TYPE));
        }
        let op = self
            .store
            .operations
            .get(&op_name)
            .ok_or_else(|| ApiError::new(Code::Internal, "operation vanished"))?;
        Ok(self.render_operation(op))
    }

    /// `POST .../services?serviceId=ID`.
    pub fn create_service(&mut self, parent: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        let id = req.param("serviceId").unwrap_or("");
        if id.is_empty() {
            return Err(ApiError::field("service_id", "service_id must be set."));
        }
        if !valid_service_id(id) {
            return Err(ApiError::field(
                "service_id",
                format!(
                    "Invalid Service ID '{id}': it must use only lowercase alphanumeric characters and dashes, begin with a letter, not end with a dash, and be less than 50 characters."
                ),
            ));
        }
        if parent.ends_with("/locations/-") {
            return Err(ApiError::invalid(
                "A concrete location is required to create a service.",
            ));
        }
        let body = req.json()?;
        let validate_only = req.bool_param("validateOnly")?;
        let name = format!("{parent}/services/{id}");
        if self.store.services.contains_key(&name) {
            return Err(ApiError::new(
                Code::AlreadyExists,
                format!("Resource '{id}' already exists."),
            ));
        }
        self.put_service(&name, &body, None, validate_only, now)
    }

    /// `PATCH .../services/ID` (with `allowMissing`, a create).
    pub fn update_service(&mut self, name: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        let body = req.json()?;
        let allow_missing = req.bool_param("allowMissing")?;
        let validate_only = req.bool_param("validateOnly")?;
        let mask = req.param("updateMask").map(str::to_string);
        let n = split_service(name)?;
        if !valid_service_id(n.id) {
            return Err(ApiError::invalid(format!("Invalid Service ID '{}'.", n.id)));
        }
        self.settle(now);
        match self.store.services.get(name) {
            None if !allow_missing => return Err(service_not_found(name)),
            Some(s) => {
                if let Some(etag) = wire::str_field(&body, "etag").filter(|e| !e.is_empty())
                    && etag != s.etag
                {
                    return Err(ApiError::new(
                        Code::Aborted,
                        format!("The etag {etag} does not match the current etag of service {name}."),
                    ));
                }
            }
            None => {}
        }
        self.put_service(name, &body, mask.as_deref(), validate_only, now)
    }
}

fn revision_not_found(name: &str) -> ApiError {
    let short = name.rsplit('/').next().unwrap_or(name);
    ApiError::not_found(format!("Revision '{short}' does not exist."))
}
