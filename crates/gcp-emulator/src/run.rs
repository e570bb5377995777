//! Cloud Run Admin v2: services with long-running operations, revisions and their start-up, service IAM.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::App;
use crate::error::{ApiError, ApiResult, Code};
use crate::iam;
use crate::model::{Operation, Outcome, Policy, Revision, Service, State, VersionState};
use crate::wire::{self, Request};

const SERVICE_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Service";
const REVISION_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Revision";
const LATEST: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST";
const BY_REVISION: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION";
const MAX_PAGE_SIZE: i64 = 1000;
/// Fields of a Service the server owns; whatever a client sends for them is ignored.
const OUTPUT_ONLY: [&str; 20] = [
    "name",
    "uid",
    "generation",
    "createTime",
    "updateTime",
    "deleteTime",
    "expireTime",
    "creator",
    "lastModifier",
    "observedGeneration",
    "terminalCondition",
    "conditions",
    "latestReadyRevision",
    "latestCreatedRevision",
    "trafficStatuses",
    "uri",
    "urls",
    "reconciling",
    "etag",
    "satisfiesPzs",
];
const RESERVED_ENV: [&str; 4] = ["PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"];
const INGRESS: [&str; 5] = [
    "INGRESS_TRAFFIC_UNSPECIFIED",
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    "INGRESS_TRAFFIC_NONE",
];
const LAUNCH_STAGE: [&str; 8] = [
    "LAUNCH_STAGE_UNSPECIFIED",
    "EARLY_ACCESS",
    "ALPHA",
    "BETA",
    "GA",
    "DEPRECATED",
    "UNIMPLEMENTED",
    "PRELAUNCH",
];
const TRAFFIC_TYPE: [&str; 3] = ["TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED", LATEST, BY_REVISION];
const EXECUTION_ENVIRONMENT: [&str; 3] = [
    "EXECUTION_ENVIRONMENT_UNSPECIFIED",
    "EXECUTION_ENVIRONMENT_GEN1",
    "EXECUTION_ENVIRONMENT_GEN2",
];
const REVOCATION: [&str; 3] = [
    "ENCRYPTION_KEY_REVOCATION_ACTION_UNSPECIFIED",
    "PREVENT_NEW",
    "SHUTDOWN",
];
const EGRESS: [&str; 3] = ["VPC_EGRESS_UNSPECIFIED", "ALL_TRAFFIC", "PRIVATE_RANGES_ONLY"];

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

/// `projects/p/locations/l/services/s` split into its parts.
struct ServiceName<'a> {
    project: &'a str,
    location: &'a str,
    id: &'a str,
}

fn split_service(name: &str) -> ApiResult<ServiceName<'_>> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["projects", project, "locations", location, "services", id] => Ok(ServiceName {
            project,
            location,
            id,
        }),
        _ => Err(ApiError::invalid(format!("Invalid service name: {name}"))),
    }
}

fn service_not_found(name: &str) -> ApiError {
    match split_service(name) {
        Ok(n) => ApiError::not_found(format!(
            "Resource '{}' of kind 'SERVICE' in region '{}' in project '{}' does not exist.",
            n.id, n.location, n.project
        )),
        Err(e) => e,
    }
}

fn valid_service_id(id: &str) -> bool {
    id.len() < 50
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A stable pseudo project number for a project id no number was set for ([`State::project_number`]).
pub(crate) fn hashed_project_number(project: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in project.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    100_000_000_000 + h % 900_000_000_000
}

fn region_code(location: &str) -> String {
    location.split('-').filter_map(|p| p.chars().next()).collect()
}

/// Lower-case letters and digits, as Cloud Run's revision suffixes (`litellm-proxy-00004-x7k`).
fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn operation_id() -> String {
    let mut rng = rand::rng();
    let hex = |n: usize, rng: &mut rand::rngs::ThreadRng| -> String {
        (0..n)
            .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
            .collect()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(8, &mut rng),
        hex(4, &mut rng),
        hex(4, &mut rng),
        hex(4, &mut rng),
        hex(12, &mut rng)
    )
}

fn with_type(mut v: Value, type_url: &str) -> Value {
    if let Value::Object(map) = &mut v {
        let mut out = Map::new();
        out.insert("@type".into(), json!(type_url));
        out.append(map);
        return Value::Object(out);
    }
    v
}

/// Turns integer enums into names and drops output-only fields, so stored specs compare reliably.
fn normalize_spec(body: &Map<String, Value>) -> Map<String, Value> {
    let mut spec: Map<String, Value> = body
        .iter()
        .filter(|(k, v)| !OUTPUT_ONLY.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(v) = spec.get_mut("ingress") {
        wire::normalize_enum(v, &INGRESS);
    }
    if let Some(v) = spec.get_mut("launchStage") {
        wire::normalize_enum(v, &LAUNCH_STAGE);
    }
    if let Some(Value::Array(list)) = spec.get_mut("traffic") {
        for t in list.iter_mut() {
            if let Some(v) = t.get_mut("type") {
                wire::normalize_enum(v, &TRAFFIC_TYPE);
            }
        }
    }
    if let Some(Value::Object(t)) = spec.get_mut("template") {
        if let Some(v) = t.get_mut("executionEnvironment") {
            wire::normalize_enum(v, &EXECUTION_ENVIRONMENT);
        }
        if let Some(v) = t.get_mut("encryptionKeyRevocationAction") {
            wire::normalize_enum(v, &REVOCATION);
        }
        if let Some(v) = t.get_mut("vpcAccess").and_then(|a| a.get_mut("egress")) {
            wire::normalize_enum(v, &EGRESS);
        }
    }
    spec
}

/// Fills in the defaults the real API adds, so a get returns what Google would return.
fn apply_defaults(spec: &mut Map<String, Value>, project_number: u64) {
    let unset = |v: Option<&Value>, unspecified: &str| match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty() || s == unspecified,
        _ => false,
    };
    if unset(spec.get("ingress"), INGRESS[0]) {
        spec.insert("ingress".into(), json!(INGRESS[1]));
    }
    if unset(spec.get("launchStage"), LAUNCH_STAGE[0]) {
        spec.insert("launchStage".into(), json!("GA"));
    }
    let traffic_empty = spec
        .get("traffic")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if traffic_empty {
        spec.insert("traffic".into(), json!([{"type": LATEST, "percent": 100}]));
    }
    let Some(Value::Object(t)) = spec.get_mut("template") else {
        return;
    };
    let scaling = t.entry("scaling").or_insert_with(|| json!({}));
    if let Value::Object(s) = scaling
        && !s.contains_key("maxInstanceCount")
    {
        s.insert("maxInstanceCount".into(), json!(100));
    }
    t.entry("timeout").or_insert_with(|| json!("300s"));
    if t.get("serviceAccount")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        t.insert(
            "serviceAccount".into(),
            json!(format!("{project_number}-compute@developer.gserviceaccount.com")),
        );
    }
    t.entry("maxInstanceRequestConcurrency")
        .or_insert_with(|| json!(80));
    if let Some(Value::Array(containers)) = t.get_mut("containers") {
        for c in containers.iter_mut() {
            let Value::Object(c) = c else { continue };
            let resources = c
                .entry("resources")
                .or_insert_with(|| json!({"cpuIdle": true, "startupCpuBoost": true}));
            if let Value::Object(r) = resources {
                let limits = r.entry("limits").or_insert_with(|| json!({}));
                if let Value::Object(l) = limits {
                    l.entry("cpu").or_insert_with(|| json!("1000m"));
                    l.entry("memory").or_insert_with(|| json!("512Mi"));
                }
            }
            let ports_empty = c.get("ports").and_then(Value::as_array).is_none_or(Vec::is_empty);
            if ports_empty {
                c.insert("ports".into(), json!([{"name": "http1", "containerPort": 8080}]));
            }
            let port = c
                .get("ports")
                .and_then(|p| p.get(0))
                .and_then(|p| p.get("containerPort"))
                .and_then(Value::as_i64)
                .unwrap_or(8080);
            c.entry("startupProbe").or_insert_with(|| {
                json!({"timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1, "tcpSocket": {"port": port}})
            });
        }
    }
}

/// The secret references of a template: (field path, secret, version).
fn secret_refs(template: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let containers = template
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (ci, c) in containers.iter().enumerate() {
        let env = c
            .get("env")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (ei, e) in env.iter().enumerate() {
            if let Some(r) = e.get("valueSource").and_then(|s| s.get("secretKeyRef")) {
                let secret = r.get("secret").and_then(Value::as_str).unwrap_or("").to_string();
                let version = r
                    .get("version")
                    .and_then(Value::as_str)
                    .unwrap_or("latest")
                    .to_string();
                out.push((
                    format!("spec.template.spec.containers[{ci}].env[{ei}].value_from.secret_key_ref"),
                    secret,
                    version,
                ));
            }
        }
    }
    let volumes = template
        .get("volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (vi, v) in volumes.iter().enumerate() {
        let Some(s) = v.get("secret") else { continue };
        let secret = s.get("secret").and_then(Value::as_str).unwrap_or("").to_string();
        let items = s
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if items.is_empty() {
            out.push((
                format!("spec.template.spec.volumes[{vi}].secret"),
                secret.clone(),
                "latest".into(),
            ));
        }
        for (ii, item) in items.iter().enumerate() {
            let version = item
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or("latest")
                .to_string();
            out.push((
                format!("spec.template.spec.volumes[{vi}].secret.items[{ii}]"),
                secret.clone(),
                version,
            ));
        }
    }
    out
}

impl State {
    fn validate_spec(&self, spec: &Map<String, Value>, service_id: &str) -> ApiResult<()> {
        let template = match spec.get("template") {
            Some(Value::Object(t)) => t,
            _ => {
                return Err(ApiError::field(
                    "service.template",
                    "Violation in CreateServiceRequest.service.template: should be set",
                ));
            }
        };
        let containers = template
            .get("containers")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty());
        let Some(containers) = containers else {
            return Err(ApiError::field(
                "service.template.containers",
                "Violation in CreateServiceRequest.service.template.containers: should contain at least one container",
            ));
        };
        for (ci, c) in containers.iter().enumerate() {
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            if image.is_empty() {
                return Err(ApiError::field(
                    &format!("service.template.containers[{ci}].image"),
                    format!(
                        "Violation in CreateServiceRequest.service.template.containers[{ci}].image: should be non-empty"
                    ),
                ));
            }
            let env = c
                .get("env")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut seen = std::collections::BTreeSet::new();
            for (ei, e) in env.iter().enumerate() {
                let name = e.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    return Err(ApiError::field(
                        &format!("service.template.containers[{ci}].env[{ei}].name"),
                        format!(
                            "Violation in CreateServiceRequest.service.template.containers[{ci}].env[{ei}].name: should be non-empty"
                        ),
                    ));
                }
                if RESERVED_ENV.contains(&name) {
                    return Err(ApiError::invalid(format!(
                        "The following reserved env names were provided: {name}. These values are automatically set by the system."
                    )));
                }
                if !seen.insert(name.to_string()) {
                    return Err(ApiError::invalid(format!(
                        "spec.template.spec.containers[{ci}].env: duplicate environment variable name {name}"
                    )));
                }
                if e.get("value").is_some() && e.get("valueSource").is_some() {
                    return Err(ApiError::invalid(format!(
                        "spec.template.spec.containers[{ci}].env[{ei}]: value and value_source are mutually exclusive"
                    )));
                }
            }
        }
        for (path, secret, _) in secret_refs(&Value::Object(template.clone())) {
            if secret.is_empty() {
                return Err(ApiError::invalid(format!("{path}.name: secret must be set")));
            }
        }
        if let Some(sa) = template
            .get("serviceAccount")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && !self.account_exists(sa)
        {
            return Err(ApiError::invalid(format!("Service account {sa} does not exist.")));
        }
        if let Some(rev) = template
            .get("revision")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && !rev.starts_with(&format!("{service_id}-"))
        {
            return Err(ApiError::invalid(format!(
                "Revision name {rev} must be prefixed by the name of the enclosing Service: {service_id}-"
            )));
        }
        if let Some(Value::Array(traffic)) = spec.get("traffic") {
            let total: i64 = traffic
                .iter()
                .map(|t| t.get("percent").and_then(Value::as_i64).unwrap_or(0))
                .sum();
            if !traffic.is_empty() && total != 100 {
                return Err(ApiError::invalid(format!(
                    "Traffic percentages must sum to 100, got {total}."
                )));
            }
        }
        Ok(())
    }

    fn new_revision(&mut self, service: &Service, now: DateTime<Utc>) -> ApiResult<String> {
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
        if self.revisions.contains_key(&name) {
            return Err(ApiError::new(
                Code::AlreadyExists,
                format!("Revision named '{short}' with different configuration already exists."),
            ));
        }
        self.counter += 1;
        let startup = chrono::Duration::from_std(self.runtime.timing.revision_startup).unwrap_or_default();
        let revision = Revision {
            name: name.clone(),
            service: service.name.clone(),
            uid: uuid(self.counter, hashed_project_number(&name), 0xa),
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
        self.revisions.insert(name.clone(), revision);
        Ok(name)
    }

    /// Decides how a revision's start-up ends, judging secret access against the IAM policy as it stood
    /// `iam_propagation` before the start-up moment.
    fn judge(&self, revision: &Revision) -> Outcome {
        let short = revision.name.rsplit('/').next().unwrap_or("");
        let prefix = format!("Revision '{short}' is not ready and cannot serve traffic.");
        let fail = |reason: &str, detail: String| Outcome::Failed {
            reason: reason.to_string(),
            message: format!("{prefix} {detail}"),
        };
        let t = &revision.template;
        let containers = t
            .get("containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in &containers {
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            if self.crashing_images.contains(image) {
                let port = c
                    .get("ports")
                    .and_then(|p| p.get(0))
                    .and_then(|p| p.get("containerPort"))
                    .and_then(Value::as_i64)
                    .unwrap_or(8080);
                return fail(
                    "HEALTH_CHECK_CONTAINER_ERROR",
                    format!(
                        "The user-provided container failed to start and listen on the port defined provided by the PORT={port} environment variable within the allocated timeout. This can happen when the container port is misconfigured or if the timeout is too short. The health check timeout can be extended."
                    ),
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
        let propagation = chrono::Duration::from_std(self.runtime.timing.iam_propagation).unwrap_or_default();
        let judged_at = revision.ready_at - propagation;
        // Cloud Run checks every secret reference and names each one that fails, in one message.
        let problems: Vec<String> = secret_refs(t)
            .into_iter()
            .filter_map(|(path, secret, version)| {
                let full = if secret.starts_with("projects/") {
                    self.numbered(&secret)
                } else {
                    self.numbered(&format!("projects/{project}/secrets/{secret}"))
                };
                let Some(s) = self.secrets.get(&full) else {
                    return Some(format!("{path}.name: Secret {full}/versions/{version} was not found"));
                };
                let secret_policy = Policy {
                    bindings: iam::bindings_at(&s.policy_history, judged_at).to_vec(),
                    ..Policy::default()
                };
                if !self.holds(&member, "secretmanager.versions.access", &project, Some(&secret_policy)) {
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

    /// Settles every revision whose start-up time has passed, then the operations waiting on them.
    /// Services whose deletion is due are gone; their delete operations finish with the last view of them.
    fn settle_deletions(&mut self, now: DateTime<Utc>) {
        let delay = chrono::Duration::from_std(self.runtime.timing.revision_startup).unwrap_or_default();
        let due: Vec<String> = self
            .services
            .values()
            .filter(|s| s.delete_time.is_some_and(|t| t + delay <= now))
            .map(|s| s.name.clone())
            .collect();
        for name in due {
            let Some(service) = self.services.get(&name).cloned() else {
                continue;
            };
            let rendered = with_type(self.render_service(&service), SERVICE_TYPE);
            self.services.remove(&name);
            let prefix = format!("{name}/revisions/");
            self.revisions.retain(|k, _| !k.starts_with(&prefix));
            for op in self
                .operations
                .values_mut()
                .filter(|o| o.target == name && !o.done && o.awaits_revision.is_none())
            {
                op.done = true;
                op.response = Some(rendered.clone());
            }
        }
    }

    pub fn settle(&mut self, now: DateTime<Utc>) {
        self.settle_deletions(now);
        let due: Vec<String> = self
            .revisions
            .values()
            .filter(|r| r.outcome == Outcome::Pending && r.ready_at <= now)
            .map(|r| r.name.clone())
            .collect();
        for name in due {
            let Some(revision) = self.revisions.get(&name) else {
                continue;
            };
            let outcome = self.judge(revision);
            let at = revision.ready_at;
            let service_name = revision.service.clone();
            if let Some(r) = self.revisions.get_mut(&name) {
                r.outcome = outcome.clone();
                r.settled_at = Some(at);
            }
            if let Some(s) = self.services.get_mut(&service_name)
                && s.latest_created.as_deref() == Some(name.as_str())
            {
                s.last_transition = at;
                match &outcome {
                    Outcome::Ready => {
                        // Only a generation that serves counts as observed: a failed one leaves the last
                        // served generation (none, for a new service whose first revision failed).
                        s.observed_generation = s.generation;
                        s.latest_ready = Some(name.clone());
                        s.failure = None;
                    }
                    Outcome::Failed { message, .. } => s.failure = Some(message.clone()),
                    Outcome::Pending => {}
                }
            }
        }
        let waiting: Vec<String> = self
            .operations
            .values()
            .filter(|o| !o.done && o.awaits_revision.is_some())
            .map(|o| o.name.clone())
            .collect();
        for op_name in waiting {
            let Some(op) = self.operations.get(&op_name) else {
                continue;
            };
            let rev = op.awaits_revision.clone().unwrap_or_default();
            let target = op.target.clone();
            let outcome = self.revisions.get(&rev).map(|r| r.outcome.clone());
            let (response, error) = match outcome {
                Some(Outcome::Pending) => continue,
                Some(Outcome::Ready) => match self.services.get(&target) {
                    Some(s) => (Some(with_type(self.render_service(s), SERVICE_TYPE)), None),
                    None => (
                        None,
                        Some(ApiError::new(Code::Aborted, "The service was deleted.").rpc_status()),
                    ),
                },
                Some(Outcome::Failed { message, .. }) => (
                    None,
                    Some(ApiError::new(self.runtime.timing.failure_code, message).rpc_status()),
                ),
                None => (
                    None,
                    Some(ApiError::new(Code::Aborted, "The revision was deleted.").rpc_status()),
                ),
            };
            if let Some(op) = self.operations.get_mut(&op_name) {
                op.done = true;
                op.response = response;
                op.error = error;
            }
        }
    }

    fn render_service(&self, s: &Service) -> Value {
        let n = split_service(&s.name).ok();
        let (project, location, id) = n.map(|n| (n.project, n.location, n.id)).unwrap_or(("", "", ""));
        let pending = s
            .latest_created
            .as_ref()
            .and_then(|r| self.revisions.get(r))
            .is_some_and(|r| r.outcome == Outcome::Pending);
        let mut out = Map::new();
        out.insert("name".into(), json!(s.name));
        out.insert("uid".into(), json!(s.uid));
        out.insert("generation".into(), json!(s.generation.to_string()));
        for (k, v) in &s.spec {
            out.insert(k.clone(), v.clone());
        }
        out.insert("createTime".into(), json!(wire::timestamp(s.create_time)));
        out.insert("updateTime".into(), json!(wire::timestamp(s.update_time)));
        out.insert("creator".into(), json!("emulator@example.com"));
        out.insert("lastModifier".into(), json!("emulator@example.com"));
        if s.observed_generation > 0 {
            out.insert(
                "observedGeneration".into(),
                json!(s.observed_generation.to_string()),
            );
        }
        let ts = wire::timestamp(s.last_transition);
        let terminal = if pending {
            json!({"type": "Ready", "state": "CONDITION_RECONCILING", "lastTransitionTime": ts})
        } else if let Some(message) = &s.failure {
            json!({"type": "Ready", "state": "CONDITION_FAILED", "message": message, "lastTransitionTime": ts, "severity": "ERROR"})
        } else {
            json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": ts})
        };
        let routes_state = if pending && s.latest_ready.is_none() {
            "CONDITION_RECONCILING"
        } else if s.latest_ready.is_some() {
            "CONDITION_SUCCEEDED"
        } else {
            "CONDITION_FAILED"
        };
        let config_state = terminal.get("state").cloned().unwrap_or(Value::Null);
        out.insert("terminalCondition".into(), terminal);
        let mut configurations =
            json!({"type": "ConfigurationsReady", "state": config_state, "lastTransitionTime": ts});
        if let Some(message) = &s.failure {
            configurations["message"] = json!(message);
        }
        let mut routes = json!({"type": "RoutesReady", "state": routes_state, "lastTransitionTime": ts});
        if let (Some(message), "CONDITION_FAILED") = (&s.failure, routes_state) {
            routes["message"] = json!(message);
        }
        out.insert("conditions".into(), json!([routes, configurations]));
        if let Some(r) = &s.latest_ready {
            out.insert("latestReadyRevision".into(), json!(r));
        }
        if let Some(r) = &s.latest_created {
            out.insert("latestCreatedRevision".into(), json!(r));
        }
        out.insert("trafficStatuses".into(), Value::Array(self.traffic_statuses(s)));
        let number = self.project_number(project);
        let hash = format!("{:010x}", number % 0xff_ffff_ffff);
        let uri = format!("https://{id}-{hash}-{}.a.run.app", region_code(location));
        out.insert(
            "urls".into(),
            json!([format!("https://{id}-{number}.{location}.run.app"), uri]),
        );
        out.insert("uri".into(), json!(uri));
        out.insert("reconciling".into(), json!(pending || s.delete_time.is_some()));
        if let Some(t) = s.delete_time {
            out.insert("deleteTime".into(), json!(wire::timestamp(t)));
        }
        out.insert("etag".into(), json!(s.etag));
        Value::Object(out)
    }

    /// Where traffic actually goes: a LATEST target stays on the last ready revision when the newest failed.
    fn traffic_statuses(&self, s: &Service) -> Vec<Value> {
        let traffic = s
            .spec
            .get("traffic")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let latest_is_ready = s.latest_ready.is_some() && s.latest_ready == s.latest_created;
        traffic
            .iter()
            .filter_map(|t| {
                let percent = t.get("percent").cloned().unwrap_or(json!(0));
                let kind = t.get("type").and_then(Value::as_str).unwrap_or(LATEST);
                if kind == BY_REVISION {
                    let mut v = json!({"type": BY_REVISION, "revision": t.get("revision").cloned().unwrap_or(Value::Null), "percent": percent});
                    if let Some(tag) = t.get("tag") {
                        v["tag"] = tag.clone();
                    }
                    return Some(v);
                }
                if latest_is_ready {
                    Some(json!({"type": LATEST, "percent": percent}))
                } else {
                    s.latest_ready.as_ref().map(|r| {
                        json!({"type": BY_REVISION, "revision": r.rsplit('/').next().unwrap_or(""), "percent": percent})
                    })
                }
            })
            .collect()
    }

    pub(crate) fn render_revision_json(&self, r: &Revision) -> Value {
        self.render_revision(r)
    }

    /// Full names of the revisions that receive traffic.
    pub(crate) fn serving_revisions(&self, s: &Service) -> Vec<String> {
        self.traffic_statuses(s)
            .iter()
            .filter_map(|t| match t.get("revision").and_then(Value::as_str) {
                Some(r) => Some(format!("{}/revisions/{r}", s.name)),
                None => s.latest_ready.clone(),
            })
            .collect()
    }

    fn render_revision(&self, r: &Revision) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), json!(r.name));
        out.insert("uid".into(), json!(r.uid));
        out.insert("generation".into(), json!(r.generation.to_string()));
        if !r.labels.is_null() {
            out.insert("labels".into(), r.labels.clone());
        }
        if !r.annotations.is_null() {
            out.insert("annotations".into(), r.annotations.clone());
        }
        out.insert("createTime".into(), json!(wire::timestamp(r.create_time)));
        out.insert(
            "updateTime".into(),
            json!(wire::timestamp(r.settled_at.unwrap_or(r.create_time))),
        );
        if !r.launch_stage.is_null() {
            out.insert("launchStage".into(), r.launch_stage.clone());
        }
        out.insert("service".into(), json!(r.service));
        if let Value::Object(t) = &r.template {
            for (k, v) in t {
                if !matches!(k.as_str(), "revision" | "labels" | "annotations") {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        let ts = wire::timestamp(r.settled_at.unwrap_or(r.create_time));
        let ready = match &r.outcome {
            Outcome::Pending => {
                json!({"type": "Ready", "state": "CONDITION_RECONCILING", "lastTransitionTime": ts})
            }
            Outcome::Ready => {
                json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": ts})
            }
            Outcome::Failed { reason, message } => {
                let mut c = json!({"type": "Ready", "state": "CONDITION_FAILED", "message": message, "lastTransitionTime": ts, "severity": "ERROR"});
                if reason == "HEALTH_CHECK_CONTAINER_ERROR" {
                    c["revisionReason"] = json!(reason);
                } else {
                    c["reason"] = json!(reason);
                }
                c
            }
        };
        let healthy = match &r.outcome {
            Outcome::Pending => "CONDITION_RECONCILING",
            Outcome::Ready => "CONDITION_SUCCEEDED",
            Outcome::Failed { .. } => "CONDITION_FAILED",
        };
        out.insert(
            "conditions".into(),
            json!([ready, {"type": "ContainerHealthy", "state": healthy, "lastTransitionTime": ts}]),
        );
        out.insert("observedGeneration".into(), json!(r.generation.to_string()));
        out.insert("reconciling".into(), json!(r.outcome == Outcome::Pending));
        out.insert(
            "logUri".into(),
            json!(format!(
                "https://console.cloud.google.com/logs/viewer?resource={}",
                r.name
            )),
        );
        out.insert("etag".into(), json!(format!("\"{}\"", r.uid)));
        Value::Object(out)
    }

    fn new_operation(
        &mut self,
        location_parent: &str,
        type_url: &str,
        target: &str,
        metadata: Value,
        now: DateTime<Utc>,
    ) -> String {
        let name = format!("{location_parent}/operations/{}", operation_id());
        self.operations.insert(
            name.clone(),
            Operation {
                name: name.clone(),
                create_time: now,
                type_url: type_url.to_string(),
                metadata: with_type(metadata, type_url),
                awaits_revision: None,
                target: target.to_string(),
                done: false,
                response: None,
                error: None,
            },
        );
        name
    }

    fn render_operation(&self, op: &Operation) -> Value {
        let mut out = json!({"name": op.name, "metadata": op.metadata, "done": op.done});
        if let Some(r) = &op.response {
            out["response"] = r.clone();
        }
        if let Some(e) = &op.error {
            out["error"] = e.clone();
        }
        out
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
        let existing = self.services.get(name).cloned();
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
        apply_defaults(&mut spec, self.project_number(&project));
        self.validate_spec(&spec, &id)?;
        if let Some(Value::Array(traffic)) = spec.get("traffic") {
            for t in traffic {
                if let Some(r) = t
                    .get("revision")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                {
                    let full = format!("{name}/revisions/{r}");
                    if !self.revisions.contains_key(&full) {
                        return Err(ApiError::invalid(format!(
                            "Revision {r} referenced in traffic does not exist."
                        )));
                    }
                }
            }
        }
        let etag = wire::b64(&wire::etag_bytes(&mut self.counter));
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
                self.counter += 1;
                Service {
                    name: name.to_string(),
                    uid: uuid(self.counter, hashed_project_number(name), 0xb),
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
        self.services.insert(name.to_string(), service);
        let op_name = self.new_operation(&parent, SERVICE_TYPE, name, metadata, now);
        if let Some(op) = self.operations.get_mut(&op_name) {
            op.awaits_revision = awaits.clone();
        }
        self.settle(now);
        if awaits.is_none()
            && let Some(s) = self.services.get(name)
        {
            let response = with_type(self.render_service(s), SERVICE_TYPE);
            if let Some(op) = self.operations.get_mut(&op_name) {
                op.done = true;
                op.response = Some(response);
            }
        }
        let op = self
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

    pub fn run_list_services(&mut self, parent: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let (prefix, any_location) = match parent.strip_suffix("/locations/-") {
            Some(p) => (format!("{p}/locations/"), true),
            None => (format!("{parent}/services/"), false),
        };
        let items: Vec<(String, Value)> = self
            .services
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !any_location || k.contains("/services/"))
            .map(|(k, s)| (k.clone(), self.render_service(s)))
            .collect();
        let (page, next) = wire::paginate(
            items,
            req.int_param("pageSize")?,
            req.param("pageToken"),
            MAX_PAGE_SIZE,
            |k| k.clone(),
            |t| Some(t.to_string()),
            true,
        )?;
        let out = wire::list_response("services", page, next);
        Ok(Value::Object(out))
    }

    pub fn run_get_service(&mut self, name: &str, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let s = self.services.get(name).ok_or_else(|| service_not_found(name))?;
        Ok(self.render_service(s))
    }

    pub fn run_delete_service(&mut self, name: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let s = self
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
        let rendered = match self.services.get_mut(name) {
            Some(live) => {
                live.delete_time.get_or_insert(now);
                let live = live.clone();
                self.render_service(&live)
            }
            None => rendered,
        };
        let op_name = self.new_operation(&parent, SERVICE_TYPE, name, rendered, now);
        self.settle(now);
        let op = self
            .operations
            .get(&op_name)
            .ok_or_else(|| ApiError::new(Code::Internal, "operation vanished"))?;
        Ok(self.render_operation(op))
    }

    pub fn run_get_policy(&mut self, name: &str, req: &Request) -> ApiResult<Value> {
        let requested = iam::requested_version(req)?;
        let s = self.services.get(name).ok_or_else(|| service_not_found(name))?;
        iam::render_policy(&s.policy, requested)
    }

    pub fn run_set_policy(&mut self, name: &str, req: &Request) -> ApiResult<Value> {
        let body = req.json()?;
        let mut counter = self.counter;
        let mut policy = self
            .services
            .get(name)
            .ok_or_else(|| service_not_found(name))?
            .policy
            .clone();
        iam::set_policy(&mut policy, &body, &mut counter, &|e| self.account_exists(e))?;
        let s = self
            .services
            .get_mut(name)
            .ok_or_else(|| service_not_found(name))?;
        s.policy = policy;
        let out = iam::render_policy(&s.policy, 3)?;
        self.counter = counter;
        Ok(out)
    }

    pub fn run_list_revisions(
        &mut self,
        service: &str,
        req: &Request,
        now: DateTime<Utc>,
    ) -> ApiResult<Value> {
        self.settle(now);
        if !self.services.contains_key(service) {
            return Err(service_not_found(service));
        }
        let prefix = format!("{service}/revisions/");
        let mut revs: Vec<&Revision> = self
            .revisions
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, r)| r)
            .collect();
        revs.sort_by(|a, b| b.create_time.cmp(&a.create_time).then(b.name.cmp(&a.name)));
        let items: Vec<(usize, Value)> = revs
            .iter()
            .enumerate()
            .map(|(i, r)| (i, self.render_revision(r)))
            .collect();
        let (page, next) = wire::paginate(
            items,
            req.int_param("pageSize")?,
            req.param("pageToken"),
            MAX_PAGE_SIZE,
            usize::to_string,
            |t| t.parse().ok(),
            true,
        )?;
        let out = wire::list_response("revisions", page, next);
        Ok(Value::Object(out))
    }

    pub fn run_get_revision(&mut self, name: &str, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let r = self.revisions.get(name).ok_or_else(|| revision_not_found(name))?;
        Ok(self.render_revision(r))
    }

    pub fn run_delete_revision(&mut self, name: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let r = self
            .revisions
            .get(name)
            .ok_or_else(|| revision_not_found(name))?
            .clone();
        let short = r.name.rsplit('/').next().unwrap_or("").to_string();
        if let Some(s) = self.services.get(&r.service) {
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
        self.revisions.remove(name);
        let op_name = self.new_operation(&parent, REVISION_TYPE, name, rendered.clone(), now);
        if let Some(op) = self.operations.get_mut(&op_name) {
            op.done = true;
            op.response = Some(with_type(rendered, REVISION_TYPE));
        }
        let op = self
            .operations
            .get(&op_name)
            .ok_or_else(|| ApiError::new(Code::Internal, "operation vanished"))?;
        Ok(self.render_operation(op))
    }

    pub fn run_list_operations(
        &mut self,
        parent: &str,
        req: &Request,
        now: DateTime<Utc>,
    ) -> ApiResult<Value> {
        self.settle(now);
        let prefix = format!("{parent}/operations/");
        let mut ops: Vec<&Operation> = self
            .operations
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, o)| o)
            .collect();
        ops.sort_by(|a, b| a.create_time.cmp(&b.create_time).then(a.name.cmp(&b.name)));
        let items: Vec<(usize, Value)> = ops
            .iter()
            .enumerate()
            .map(|(i, o)| (i, self.render_operation(o)))
            .collect();
        let (page, next) = wire::paginate(
            items,
            req.int_param("pageSize")?,
            req.param("pageToken"),
            MAX_PAGE_SIZE,
            usize::to_string,
            |t| t.parse().ok(),
            true,
        )?;
        let out = wire::list_response("operations", page, next);
        Ok(Value::Object(out))
    }

    pub fn run_get_operation(&mut self, name: &str, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let op = self
            .operations
            .get(name)
            .ok_or_else(|| operation_not_found(name))?;
        Ok(self.render_operation(op))
    }

    pub fn run_delete_operation(&mut self, name: &str) -> ApiResult<Value> {
        self.operations
            .remove(name)
            .ok_or_else(|| operation_not_found(name))?;
        Ok(json!({}))
    }
}

fn revision_not_found(name: &str) -> ApiError {
    let short = name.rsplit('/').next().unwrap_or(name);
    ApiError::not_found(format!("Revision '{short}' does not exist."))
}

fn operation_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Operation {name} not found."))
}

impl App {
    pub fn run_create_service(&self, parent: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
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
        let mut st = self.lock();
        if st.services.contains_key(&name) {
            return Err(ApiError::new(
                Code::AlreadyExists,
                format!("Resource '{id}' already exists."),
            ));
        }
        st.put_service(&name, &body, None, validate_only, now)
    }

    pub fn run_update_service(&self, name: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        let body = req.json()?;
        let allow_missing = req.bool_param("allowMissing")?;
        let validate_only = req.bool_param("validateOnly")?;
        let mask = req.param("updateMask").map(str::to_string);
        let n = split_service(name)?;
        if !valid_service_id(n.id) {
            return Err(ApiError::invalid(format!("Invalid Service ID '{}'.", n.id)));
        }
        let mut st = self.lock();
        st.settle(now);
        match st.services.get(name) {
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
        st.put_service(name, &body, mask.as_deref(), validate_only, now)
    }

    /// `operations:wait`: polls without holding the lock until the operation is done or the timeout passes.
    pub async fn run_wait_operation(&self, name: &str, req: &Request) -> ApiResult<Value> {
        let body = req.json()?;
        let timeout = wire::str_field(&body, "timeout")
            .and_then(wire::parse_duration)
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(600));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (op, next_due) = {
                let mut st = self.lock();
                let op = st.run_get_operation(name, Utc::now())?;
                let next_due = st
                    .revisions
                    .values()
                    .filter(|r| r.outcome == Outcome::Pending)
                    .map(|r| r.ready_at)
                    .min();
                (op, next_due)
            };
            let done = op.get("done").and_then(Value::as_bool).unwrap_or(false);
            let now = tokio::time::Instant::now();
            if done || now >= deadline {
                return Ok(op);
            }
            let until_due = next_due
                .and_then(|t| (t - Utc::now()).to_std().ok())
                .unwrap_or(Duration::from_millis(10));
            let pause = until_due
                .max(Duration::from_millis(1))
                .min(deadline - now)
                .min(Duration::from_millis(50));
            tokio::time::sleep(pause).await;
        }
    }
}

/// A version-4-shaped UUID, as Cloud Run gives services and revisions (`uid`), unique per `counter` and stable for
/// a given state: the counter, the project number and a kind nibble, not randomness.
fn uuid(counter: u64, project_number: u64, kind: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        counter & 0xffff_ffff,
        (counter >> 32) & 0xffff,
        project_number & 0xfff,
        0x8 | (kind & 0x3),
        (project_number >> 12) & 0xfff,
        project_number & 0xffff_ffff_ffff,
    )
}
