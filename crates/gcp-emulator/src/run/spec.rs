//! A Cloud Run service's spec: normalising, Google's defaults and validation; service names and the ids the
//! emulator gives services, revisions and operations.

use rand::Rng;
use serde_json::{Map, Value, json};

use super::{BY_REVISION, CloudRun, LATEST};
use crate::error::{ApiError, ApiResult};
use crate::wire;

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

/// `projects/p/locations/l/services/s` split into its parts.
pub(super) struct ServiceName<'a> {
    pub(super) project: &'a str,
    pub(super) location: &'a str,
    pub(super) id: &'a str,
}

pub(super) fn split_service(name: &str) -> ApiResult<ServiceName<'_>> {
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

pub(super) fn service_not_found(name: &str) -> ApiError {
    match split_service(name) {
        Ok(n) => ApiError::not_found(format!(
            "Resource '{}' of kind 'SERVICE' in region '{}' in project '{}' does not exist.",
            n.id, n.location, n.project
        )),
        Err(e) => e,
    }
}

pub(super) fn valid_service_id(id: &str) -> bool {
    id.len() < 50
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The port a container listens on, from its `ports` (Cloud Run serves the first): 8080 when none is declared.
pub(crate) fn container_port(ports: Option<&Value>) -> i64 {
    ports
        .and_then(|p| p.get(0))
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_i64)
        .unwrap_or(8080)
}

/// A stable pseudo project number for a project id no number was set for ([`crate::resourcemanager::Store::project_number`]).
pub(crate) fn hashed_project_number(project: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in project.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    100_000_000_000 + h % 900_000_000_000
}

/// Lower-case letters and digits, as Cloud Run's revision suffixes (`litellm-proxy-00004-x7k`).
pub(super) fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

pub(super) fn operation_id() -> String {
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

/// A version-4-shaped UUID, as Cloud Run gives services and revisions (`uid`), unique per `counter` and stable for
/// a given state: the counter, the project number and a kind nibble, not randomness.
pub(super) fn uuid(counter: u64, project_number: u64, kind: u64) -> String {
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

/// Turns integer enums into names and drops output-only fields, so stored specs compare reliably.
pub(super) fn normalize_spec(body: &Map<String, Value>) -> Map<String, Value> {
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
pub(super) fn apply_defaults(spec: &mut Map<String, Value>, project_number: u64) {
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
            json!(crate::iam::compute_account(project_number)),
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
            let port = container_port(c.get("ports"));
            c.entry("startupProbe").or_insert_with(|| {
                json!({"timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1, "tcpSocket": {"port": port}})
            });
        }
    }
}

/// The secret references of a template: (field path, secret, version).
pub(super) fn secret_refs(template: &Value) -> Vec<(String, String, String)> {
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

impl CloudRun<'_> {
    pub(super) fn validate_spec(&self, spec: &Map<String, Value>, service_id: &str) -> ApiResult<()> {
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
            && !self.iam.account_exists(sa)
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
}
