//! Service Usage v1: every API counts as enabled in every project (`gcloud run` checks before deploying).
//! `services.get`, `services.list`, `services.enable` and `services.batchEnable` answer as Google does for APIs
//! that are already enabled: enabling finishes at once, with Google's `operations/noop.DONE_OPERATION`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Code};
use crate::resourcemanager;
use crate::wire::{self, Request};

/// Service Usage's data: the APIs enabled by name. Every API counts as enabled anyway; these are listed too.
#[derive(Clone, Debug, Default)]
pub struct Store {
    /// APIs enabled by name, by project number.
    pub enabled_services: BTreeMap<String, BTreeSet<String>>,
}

/// APIs listed by `services.list`, with their titles as Google reports them. Any other API is enabled too, and
/// is listed once a `services.enable` or `services.batchEnable` named it.
pub const CATALOGUE: [(&str, &str); 14] = [
    ("artifactregistry.googleapis.com", "Artifact Registry API"),
    (
        "cloudresourcemanager.googleapis.com",
        "Cloud Resource Manager API",
    ),
    ("compute.googleapis.com", "Compute Engine API"),
    ("iam.googleapis.com", "Identity and Access Management (IAM) API"),
    (
        "iamcredentials.googleapis.com",
        "IAM Service Account Credentials API",
    ),
    ("logging.googleapis.com", "Cloud Logging API"),
    ("monitoring.googleapis.com", "Cloud Monitoring API"),
    ("redis.googleapis.com", "Google Cloud Memorystore for Redis API"),
    ("run.googleapis.com", "Cloud Run Admin API"),
    ("secretmanager.googleapis.com", "Secret Manager API"),
    ("servicemanagement.googleapis.com", "Service Management API"),
    ("serviceusage.googleapis.com", "Service Usage API"),
    ("sqladmin.googleapis.com", "Cloud SQL Admin API"),
    ("storage.googleapis.com", "Cloud Storage API"),
];

/// Google answers enabling an API that is already enabled with this finished, unpollable operation.
const DONE_OPERATION: &str = "operations/noop.DONE_OPERATION";
/// `services.batchEnable` takes at most this many ids.
const MAX_BATCH: usize = 20;
const MAX_PAGE_SIZE: i64 = 200;

fn title_of(service: &str) -> Option<&'static str> {
    CATALOGUE.iter().find(|(n, _)| *n == service).map(|(_, t)| *t)
}

/// A `google.api.serviceusage.v1.Service`, always `ENABLED`.
fn render(number: u64, service: &str) -> Value {
    let mut config = json!({"name": service});
    if let Some(title) = title_of(service) {
        config["title"] = json!(title);
    }
    json!({
        "name": format!("projects/{number}/services/{service}"),
        "parent": format!("projects/{number}"),
        "config": config,
        "state": "ENABLED",
    })
}

fn valid_service_name(name: &str) -> bool {
    name.contains('.')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

fn check_name(name: &str) -> ApiResult<()> {
    if valid_service_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::PermissionDenied,
            format!("Not found or permission denied for service(s): {name}."),
        ))
    }
}

/// Service Usage names projects by number; Resource Manager knows them (`projects` in every call below).
impl Store {
    /// `GET /v1/projects/{p}/services/{name}`.
    pub fn get_service(
        &self,
        project: &str,
        name: &str,
        projects: &resourcemanager::Store,
    ) -> ApiResult<Value> {
        Ok(render(projects.project_number(project), name))
    }

    /// `GET /v1/projects/{p}/services`: the catalogue and every API enabled by name, sorted. The only filters
    /// Google accepts are `state:ENABLED` and `state:DISABLED`; the latter lists nothing here.
    pub fn list_services(
        &self,
        project: &str,
        req: &Request,
        projects: &resourcemanager::Store,
    ) -> ApiResult<Value> {
        let filter = req.param("filter").unwrap_or("").trim();
        let wanted = match filter.replace(' ', "").as_str() {
            "" | "state:ENABLED" | "state=ENABLED" => true,
            "state:DISABLED" | "state=DISABLED" => false,
            _ => {
                return Err(ApiError::invalid(format!(
                    "Invalid filter '{filter}': only 'state:ENABLED' and 'state:DISABLED' are supported."
                )));
            }
        };
        let mut names: BTreeSet<&str> = CATALOGUE.iter().map(|(n, _)| *n).collect();
        if let Some(enabled) = self
            .enabled_services
            .get(&projects.project_number(project).to_string())
        {
            names.extend(enabled.iter().map(String::as_str));
        }
        let items: Vec<(String, Value)> = if wanted {
            names
                .into_iter()
                .map(|n| (n.to_string(), render(projects.project_number(project), n)))
                .collect()
        } else {
            Vec::new()
        };
        wire::page_by_name("services", items, req, MAX_PAGE_SIZE)
    }

    fn remember_enabled(&mut self, number: u64, names: &[String]) {
        self.enabled_services
            .entry(number.to_string())
            .or_default()
            .extend(names.iter().cloned());
    }

    /// `POST /v1/projects/{p}/services/{name}:enable`.
    pub fn enable(
        &mut self,
        project: &str,
        name: &str,
        projects: &resourcemanager::Store,
    ) -> ApiResult<Value> {
        check_name(name)?;
        self.remember_enabled(projects.project_number(project), &[name.to_string()]);
        Ok(json!({
            "name": DONE_OPERATION,
            "done": true,
            "response": {
                "@type": "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse",
                "service": render(projects.project_number(project), name),
            },
        }))
    }

    /// `POST /v1/projects/{p}/services:batchEnable` with `{"serviceIds": [...]}`.
    pub fn batch_enable(
        &mut self,
        project: &str,
        req: &Request,
        projects: &resourcemanager::Store,
    ) -> ApiResult<Value> {
        let body = req.json()?;
        let ids: Vec<String> = match body.get("serviceIds") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        ApiError::invalid("Invalid value at 'service_ids', expected a list of strings")
                    })
                })
                .collect::<ApiResult<_>>()?,
            Some(_) => {
                return Err(ApiError::invalid(
                    "Invalid value at 'service_ids', expected a list",
                ));
            }
        };
        if ids.is_empty() {
            return Err(ApiError::invalid("No service IDs provided."));
        }
        if ids.len() > MAX_BATCH {
            return Err(ApiError::invalid(format!(
                "A single request can enable a maximum of {MAX_BATCH} services at a time, {} were given.",
                ids.len()
            )));
        }
        let bad: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|n| !valid_service_name(n))
            .collect();
        if !bad.is_empty() {
            return Err(ApiError::new(
                Code::PermissionDenied,
                format!(
                    "Not found or permission denied for service(s): {}.",
                    bad.join(", ")
                ),
            ));
        }
        self.remember_enabled(projects.project_number(project), &ids);
        let services: Vec<Value> = ids
            .iter()
            .map(|n| render(projects.project_number(project), n))
            .collect();
        Ok(json!({
            "name": DONE_OPERATION,
            "done": true,
            "response": {
                "@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse",
                "services": services,
            },
        }))
    }
}

/// `GET /v1/operations/{id}`: the emulator never leaves a Service Usage operation running, and Google does not
/// serve its `noop.DONE_OPERATION` either, so every name is unknown.
pub fn get_operation(name: &str) -> ApiResult<Value> {
    Err(ApiError::not_found(format!("Operation '{name}' not found.")))
}
