//! Revision start-up: creating a revision, judging how its start-up ends (crashing images, secrets and the IAM
//! policy as it stood), and settling due revisions, deletions and the operations waiting on them. The outcome of
//! a start-up is applied in one place, [`CloudRun::apply_outcome`], whether the timer decided it or a live process
//! (see `live`).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::render::with_type;
use super::spec::{container_port, hashed_project_number, random_suffix, secret_refs, split_service, uuid};
use super::{CloudRun, SERVICE_TYPE};
use crate::error::{ApiError, ApiResult, Code};
use crate::iam;
use crate::model::{Outcome, Policy, Revision, Service, VersionState};

impl CloudRun<'_> {
    pub(super) fn new_revision(&mut self, service: &Service, now: DateTime<Utc>) -> ApiResult<String> {
        let n = split_service(&service.name)?;
        let template = service.spec.get("template").cloned().unwrap_or_else(|| json!({}));
        let short = match template
            .get("revision")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(r) => r.to_string(),
            None => format!("{}-{:05}-{}", n.id, service.generation, random_suffix(3)),
        };
        let name = format!("{}/revisions/{short}", service.name);
        if self.store.revisions.contains_key(&name) {
            return Err(ApiError::new(
                Code::AlreadyExists,
                format!("Revision named '{short}' with different configuration already exists."),
            ));
        }
        *self.counter += 1;
        let startup = chrono::Duration::from_std(self.store.timing.revision_startup).unwrap_or_default();
        let revision = Revision {
            name: name.clone(),
            service: service.name.clone(),
            uid: uuid(*self.counter, hashed_project_number(&name), 0xa),
            generation: 1,
            create_time: now,
            labels: template.get("labels").cloned().unwrap_or(Value::Null),
            annotations: template.get("annotations").cloned().unwrap_or(Value::Null),
            launch_stage: service.spec.get("launchStage").cloned().unwrap_or(Value::Null),
            template,
            ready_at: now + startup,
            outcome: Outcome::Pending,
            settled_at: None,
        };
        self.store.revisions.insert(name.clone(), revision);
        Ok(name)
    }

    /// Decides how a revision's start-up ends, judging secret access against the IAM policy as it stood
    /// `iam_propagation` before the start-up moment.
    fn judge(&self, revision: &Revision) -> Outcome {
        let fail = |reason: &str, detail: String| failure(&revision.name, reason, &detail);
        let t = &revision.template;
        let containers = t
            .get("containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in &containers {
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            if self.store.crashing_images.contains(image) {
                return fail(
                    HEALTH_CHECK_FAILED,
                    health_check_detail(container_port(c.get("ports"))),
                );
            }
        }
        let project = split_service(&revision.service)
            .map(|n| n.project.to_string())
            .unwrap_or_default();
        let sa = t
            .get("serviceAccount")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let member = format!("serviceAccount:{sa}");
        let propagation = chrono::Duration::from_std(self.store.timing.iam_propagation).unwrap_or_default();
        let judged_at = revision.ready_at - propagation;
        // Cloud Run checks every secret reference and names each one that fails, in one message.
        let problems: Vec<String> = secret_refs(t)
            .into_iter()
            .filter_map(|(path, secret, version)| {
                let full = if secret.starts_with("projects/") {
                    self.resourcemanager.numbered(&secret)
                } else {
                    self.resourcemanager.numbered(&format!("projects/{project}/secrets/{secret}"))
                };
                let Some(s) = self.secretmanager.secrets.get(&full) else {
                    return Some(format!("{path}.name: Secret {full}/versions/{version} was not found"));
                };
                let secret_policy = Policy {
                    bindings: iam::bindings_at(&s.policy_history, judged_at).to_vec(),
                    ..Policy::default()
                };
                let version_name = format!("{full}/versions/{version}");
                let facts = crate::auth::Facts::of(&version_name, judged_at);
                let granted = self.policies().grant(
                    &member,
                    "secretmanager.versions.access",
                    &project,
                    Some(&secret_policy),
                    &facts,
                );
                if !granted {
                    return Some(format!(
                        "{path}.name: Permission denied on secret: {full}/versions/{version} for Revision service account {sa}. The service account used must be granted the 'Secret Manager Secret Accessor' role (roles/secretmanager.secretAccessor) at the secret, project or higher level."
                    ));
                }
                let Ok(id) = s.resolve_version(&version) else {
                    return Some(format!("{path}.name: Secret {full}/versions/{version} was not found"));
                };
                let state = s
                    .versions
                    .get(&id)
                    .map(|v| v.state)
                    .unwrap_or(VersionState::Destroyed);
                (state != VersionState::Enabled).then(|| {
                    format!(
                        "{path}.name: Secret Version {full}/versions/{id} is in {} state.",
                        state.name()
                    )
                })
            })
            .collect();
        if !problems.is_empty() {
            return fail("SECRETS_ACCESS_CHECK_FAILED", problems.join(" "));
        }
        Outcome::Ready
    }

    /// Services whose deletion is due are gone; their delete operations finish with the last view of them.
    fn settle_deletions(&mut self, now: DateTime<Utc>) {
        let delay = chrono::Duration::from_std(self.store.timing.revision_startup).unwrap_or_default();
        let due: Vec<String> = self
            .store
            .services
            .values()
            .filter(|s| s.delete_time.is_some_and(|t| t + delay <= now))
            .map(|s| s.name.clone())
            .collect();
        for name in due {
            let Some(service) = self.store.services.get(&name).cloned() else {
                continue;
            };
            let rendered = with_type(self.render_service(&service), SERVICE_TYPE);
            self.store.services.remove(&name);
            let prefix = format!("{name}/revisions/");
            self.store.revisions.retain(|k, _| !k.starts_with(&prefix));
            for op in self
                .store
                .operations
                .values_mut()
                .filter(|o| o.target == name && !o.done && o.awaits_revision.is_none())
            {
                op.done = true;
                op.response = Some(rendered.clone());
            }
        }
    }

    /// Settles every revision whose start-up time has passed, then the operations waiting on them. A revision
    /// whose image the live runtime runs, and that passes judging, is handed to the runtime instead: it stays
    /// pending until its process passes (or fails) its start-up probe, and `live_settled` applies that.
    pub fn settle(&mut self, now: DateTime<Utc>) {
        self.settle_deletions(now);
        let due: Vec<String> = self
            .store
            .revisions
            .values()
            .filter(|r| r.outcome == Outcome::Pending && r.ready_at <= now && !self.live_starting(&r.name))
            .map(|r| r.name.clone())
            .collect();
        for name in due {
            let Some(revision) = self.store.revisions.get(&name) else {
                continue;
            };
            let outcome = self.judge(revision);
            let at = revision.ready_at;
            if outcome == Outcome::Ready && self.live_command(revision).is_some() {
                self.start_live(&name, now);
                continue;
            }
            self.apply_outcome(&name, outcome, at);
        }
        self.complete_operations();
    }

    /// Records how a revision's start-up ended, whichever runtime decided it (the timer or a live process), and
    /// what follows for its service when it is the latest created revision.
    pub(super) fn apply_outcome(&mut self, name: &str, outcome: Outcome, at: DateTime<Utc>) {
        let Some(r) = self.store.revisions.get_mut(name) else {
            return;
        };
        r.outcome = outcome.clone();
        r.settled_at = Some(at);
        let service_name = r.service.clone();
        if let Some(s) = self.store.services.get_mut(&service_name)
            && s.latest_created.as_deref() == Some(name)
        {
            s.last_transition = at;
            match &outcome {
                Outcome::Ready => {
                    // Only a generation that serves counts as observed: a failed one leaves the last served
                    // generation (none, for a new service whose first revision failed).
                    s.observed_generation = s.generation;
                    s.latest_ready = Some(name.to_string());
                    s.failure = None;
                }
                Outcome::Failed { message, .. } => s.failure = Some(message.clone()),
                Outcome::Pending => {}
            }
        }
    }

    /// Finishes the operations waiting on revisions that settled.
    pub(super) fn complete_operations(&mut self) {
        let waiting: Vec<String> = self
            .store
            .operations
            .values()
            .filter(|o| !o.done && o.awaits_revision.is_some())
            .map(|o| o.name.clone())
            .collect();
        for op_name in waiting {
            let Some(op) = self.store.operations.get(&op_name) else {
                continue;
            };
            let rev = op.awaits_revision.clone().unwrap_or_default();
            let target = op.target.clone();
            let outcome = self.store.revisions.get(&rev).map(|r| r.outcome.clone());
            let (response, error) = match outcome {
                Some(Outcome::Pending) => continue,
                Some(Outcome::Ready) => match self.store.services.get(&target) {
                    Some(s) => (Some(with_type(self.render_service(s), SERVICE_TYPE)), None),
                    None => (
                        None,
                        Some(ApiError::new(Code::Aborted, "The service was deleted.").rpc_status()),
                    ),
                },
                Some(Outcome::Failed { message, .. }) => (
                    None,
                    Some(ApiError::new(self.store.timing.failure_code, message).rpc_status()),
                ),
                None => (
                    None,
                    Some(ApiError::new(Code::Aborted, "The revision was deleted.").rpc_status()),
                ),
            };
            if let Some(op) = self.store.operations.get_mut(&op_name) {
                op.done = true;
                op.response = response;
                op.error = error;
            }
        }
    }
}

/// The revision reason of a container that did not start listening in time.
pub(super) const HEALTH_CHECK_FAILED: &str = "HEALTH_CHECK_CONTAINER_ERROR";

/// Cloud Run's words for a container that did not start listening on `PORT` in time.
pub(super) fn health_check_detail(port: impl std::fmt::Display) -> String {
    format!(
        "The user-provided container failed to start and listen on the port defined provided by the PORT={port} environment variable within the allocated timeout. This can happen when the container port is misconfigured or if the timeout is too short. The health check timeout can be extended."
    )
}

/// A failed start-up of revision `name` (its full name), with Cloud Run's message shape.
pub(super) fn failure(name: &str, reason: &str, detail: &str) -> Outcome {
    let short = name.rsplit('/').next().unwrap_or("");
    Outcome::Failed {
        reason: reason.to_string(),
        message: format!("Revision '{short}' is not ready and cannot serve traffic. {detail}"),
    }
}
