//! The HTTP front: parses paths by hand (custom verbs are `name:verb`), applies latency, faults and quotas,
//! dispatches to the emulated APIs, and records counters and the request log. Traffic for Cloud Run services
//! (`/_run/HOST/...`, or a `*.run.app` host) goes to `run::proxy` instead.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State as AxumState;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::App;
use crate::admin::{self, LogEntry};
use crate::error::{ApiError, ApiResult, Code, json_response};
use crate::model::{Policy, State};
use crate::quota::QuotaKind;
use crate::wire::{self, Request};
use crate::{auth, iam, knative};

/// What a request addresses, before the method decides the call.
#[derive(Debug)]
enum Target {
    KnativeRevisions {
        namespace: String,
        region: String,
    },
    KnativeRevision {
        namespace: String,
        region: String,
        name: String,
    },
    Secrets {
        project: String,
    },
    Secret {
        name: String,
    },
    Versions {
        secret: String,
    },
    Version {
        secret: String,
        version: String,
    },
    ServiceAccounts {
        project: String,
    },
    ServiceAccount {
        project: String,
        email: String,
    },
    Services {
        parent: String,
    },
    Service {
        name: String,
    },
    Revisions {
        service: String,
    },
    Revision {
        name: String,
    },
    Operations {
        parent: String,
    },
    Operation {
        name: String,
    },
    ServiceUsageServices {
        project: String,
    },
    ServiceUsage {
        project: String,
        service: String,
    },
    ServiceUsageOperation {
        name: String,
    },
    /// IAM's catalogue of permissions (`permissions:queryTestablePermissions`).
    TestablePermissions,
    KnativeServices {
        namespace: String,
        region: String,
    },
    /// Resource Manager's project (`api` is `v1` or `v3`).
    Project {
        project: String,
        api: String,
    },
    Roles {
        project: String,
    },
    Role {
        name: String,
    },
    KnativeService {
        namespace: String,
        region: String,
        name: String,
    },
}

/// One resolved API call.
#[derive(Debug)]
struct Call {
    rpc: &'static str,
    project: String,
    quota: Option<QuotaKind>,
    target: Target,
}

fn not_found_path(req: &Request) -> ApiError {
    ApiError::not_found(format!(
        "Method not found: {} /{}{}",
        req.method,
        req.segments.join("/"),
        req.verb.as_ref().map(|v| format!(":{v}")).unwrap_or_default()
    ))
}

fn resolve(req: &Request) -> ApiResult<Call> {
    let s: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let target = match s.as_slice() {
        ["v1", "projects", p, "secrets"] => Target::Secrets {
            project: p.to_string(),
        },
        ["v1", "projects", p, "secrets", x] => Target::Secret {
            name: format!("projects/{p}/secrets/{x}"),
        },
        ["v1", "projects", p, "secrets", x, "versions"] => Target::Versions {
            secret: format!("projects/{p}/secrets/{x}"),
        },
        ["v1", "projects", p, "secrets", x, "versions", v] => Target::Version {
            secret: format!("projects/{p}/secrets/{x}"),
            version: v.to_string(),
        },
        [api @ ("v1" | "v3"), "projects", p] => Target::Project {
            project: p.to_string(),
            api: api.to_string(),
        },
        ["v1", "projects", p, "roles"] => Target::Roles {
            project: p.to_string(),
        },
        ["v1", "projects", p, "roles", r] => Target::Role {
            name: format!("projects/{p}/roles/{r}"),
        },
        ["v1", "projects", p, "serviceAccounts"] => Target::ServiceAccounts {
            project: p.to_string(),
        },
        ["v1", "projects", p, "serviceAccounts", e] => Target::ServiceAccount {
            project: p.to_string(),
            email: e.to_string(),
        },
        ["v2", "projects", p, "locations", l, "services"] => Target::Services {
            parent: format!("projects/{p}/locations/{l}"),
        },
        ["v2", "projects", p, "locations", l, "services", x] => Target::Service {
            name: format!("projects/{p}/locations/{l}/services/{x}"),
        },
        ["v2", "projects", p, "locations", l, "services", x, "revisions"] => Target::Revisions {
            service: format!("projects/{p}/locations/{l}/services/{x}"),
        },
        ["v2", "projects", p, "locations", l, "services", x, "revisions", r] => Target::Revision {
            name: format!("projects/{p}/locations/{l}/services/{x}/revisions/{r}"),
        },
        ["v2", "projects", p, "locations", l, "operations"] => Target::Operations {
            parent: format!("projects/{p}/locations/{l}"),
        },
        ["v2", "projects", p, "locations", l, "operations", o] => Target::Operation {
            name: format!("projects/{p}/locations/{l}/operations/{o}"),
        },
        // Cloud Run v1 keeps IAM on the non-regional host; it is the same policy as v2's.
        ["v1", "projects", p, "locations", l, "services", x]
            if req
                .verb
                .as_deref()
                .is_some_and(|v| v.ends_with("IamPolicy") || v == "testIamPermissions") =>
        {
            Target::Service {
                name: format!("projects/{p}/locations/{l}/services/{x}"),
            }
        }
        // `gcloud run services list` without `--region` lists every region (`locations/-`) with Cloud Run v1.
        ["v1", "projects", p, "locations", l, "services"] if req.method == Method::GET => {
            Target::KnativeServices {
                namespace: p.to_string(),
                region: l.to_string(),
            }
        }
        ["v1", "projects", p, "services"] => Target::ServiceUsageServices {
            project: p.to_string(),
        },
        ["v1", "projects", p, "services", x] => Target::ServiceUsage {
            project: p.to_string(),
            service: x.to_string(),
        },
        ["v1", "permissions"] if req.verb.as_deref() == Some("queryTestablePermissions") => {
            Target::TestablePermissions
        }
        ["v1", "operations", o] => Target::ServiceUsageOperation {
            name: format!("operations/{o}"),
        },
        [
            "apis",
            "serving.knative.dev",
            "v1",
            "namespaces",
            ns,
            "services",
            rest @ ..,
        ] if rest.len() <= 1 => {
            let host = req.host.as_deref().unwrap_or("");
            let region = crate::knative::region_of_host(host).ok_or_else(|| {
                ApiError::invalid(format!(
                    "Cloud Run v1 calls must address a regional host (REGION-run.DOMAIN), not '{host}'"
                ))
            })?;
            match rest.first() {
                None => Target::KnativeServices {
                    namespace: ns.to_string(),
                    region,
                },
                Some(x) => Target::KnativeService {
                    namespace: ns.to_string(),
                    region,
                    name: x.to_string(),
                },
            }
        }
        [
            "apis",
            "serving.knative.dev",
            "v1",
            "namespaces",
            ns,
            "revisions",
            rest @ ..,
        ] if rest.len() <= 1 => {
            let host = req.host.as_deref().unwrap_or("");
            let region = crate::knative::region_of_host(host).ok_or_else(|| {
                ApiError::invalid(format!(
                    "Cloud Run v1 calls must address a regional host (REGION-run.DOMAIN), not '{host}'"
                ))
            })?;
            match rest.first() {
                None => Target::KnativeRevisions {
                    namespace: ns.to_string(),
                    region,
                },
                Some(x) => Target::KnativeRevision {
                    namespace: ns.to_string(),
                    region,
                    name: x.to_string(),
                },
            }
        }
        _ => return Err(not_found_path(req)),
    };
    let project = s.get(2).map(|p| p.to_string()).unwrap_or_default();
    let verb = req.verb.as_deref();
    let m = req.method.as_str();
    use QuotaKind::{Access, Read, Write};
    let (rpc, quota) = match (&target, m, verb) {
        (Target::Secrets { .. }, "GET", None) => ("SecretManagerService.ListSecrets", Some(Read)),
        (Target::Secrets { .. }, "POST", None) => ("SecretManagerService.CreateSecret", Some(Write)),
        (Target::Secret { .. }, "GET", None) => ("SecretManagerService.GetSecret", Some(Read)),
        (Target::Secret { .. }, "PATCH", None) => ("SecretManagerService.UpdateSecret", Some(Write)),
        (Target::Secret { .. }, "DELETE", None) => ("SecretManagerService.DeleteSecret", Some(Write)),
        (Target::Secret { .. }, "POST", Some("addVersion")) => {
            ("SecretManagerService.AddSecretVersion", Some(Write))
        }
        (Target::Secret { .. }, "GET" | "POST", Some("getIamPolicy")) => {
            ("SecretManagerService.GetIamPolicy", Some(Read))
        }
        (Target::Secret { .. }, "POST", Some("setIamPolicy")) => {
            ("SecretManagerService.SetIamPolicy", Some(Write))
        }
        (Target::Secret { .. }, "POST", Some("testIamPermissions")) => {
            ("SecretManagerService.TestIamPermissions", Some(Read))
        }
        (Target::Versions { .. }, "GET", None) => ("SecretManagerService.ListSecretVersions", Some(Read)),
        (Target::Version { .. }, "GET", None) => ("SecretManagerService.GetSecretVersion", Some(Read)),
        (Target::Version { .. }, "GET", Some("access")) => {
            ("SecretManagerService.AccessSecretVersion", Some(Access))
        }
        (Target::Version { .. }, "POST", Some("enable")) => {
            ("SecretManagerService.EnableSecretVersion", Some(Write))
        }
        (Target::Version { .. }, "POST", Some("disable")) => {
            ("SecretManagerService.DisableSecretVersion", Some(Write))
        }
        (Target::Version { .. }, "POST", Some("destroy")) => {
            ("SecretManagerService.DestroySecretVersion", Some(Write))
        }
        (Target::ServiceAccounts { .. }, "GET", None) => ("IAM.ListServiceAccounts", None),
        (Target::ServiceAccounts { .. }, "POST", None) => ("IAM.CreateServiceAccount", None),
        (Target::ServiceAccount { .. }, "GET", None) => ("IAM.GetServiceAccount", None),
        (Target::ServiceAccount { .. }, "DELETE", None) => ("IAM.DeleteServiceAccount", None),
        (Target::ServiceAccount { .. }, "GET" | "POST", Some("getIamPolicy")) => ("IAM.GetIamPolicy", None),
        (Target::ServiceAccount { .. }, "POST", Some("setIamPolicy")) => ("IAM.SetIamPolicy", None),
        (Target::ServiceAccount { .. }, "POST", Some("testIamPermissions")) => {
            ("IAM.TestIamPermissions", None)
        }
        (Target::ServiceAccount { .. }, "POST", Some("generateAccessToken")) => {
            ("IAMCredentials.GenerateAccessToken", None)
        }
        (Target::Project { .. }, "GET", None) => ("Projects.GetProject", None),
        (Target::Project { .. }, "POST", Some("getIamPolicy")) => ("Projects.GetIamPolicy", None),
        (Target::Project { .. }, "POST", Some("setIamPolicy")) => ("Projects.SetIamPolicy", None),
        (Target::Project { .. }, "POST", Some("testIamPermissions")) => ("Projects.TestIamPermissions", None),
        (Target::Roles { .. }, "GET", None) => ("IAM.ListRoles", None),
        (Target::Roles { .. }, "POST", None) => ("IAM.CreateRole", None),
        (Target::Role { .. }, "GET", None) => ("IAM.GetRole", None),
        (Target::Role { .. }, "PATCH", None) => ("IAM.UpdateRole", None),
        (Target::Role { .. }, "DELETE", None) => ("IAM.DeleteRole", None),
        (Target::Services { .. }, "GET", None) => ("Services.ListServices", None),
        (Target::Services { .. }, "POST", None) => ("Services.CreateService", None),
        (Target::Service { .. }, "GET", None) => ("Services.GetService", None),
        (Target::Service { .. }, "PATCH", None) => ("Services.UpdateService", None),
        (Target::Service { .. }, "DELETE", None) => ("Services.DeleteService", None),
        (Target::Service { .. }, "GET" | "POST", Some("getIamPolicy")) => ("Services.GetIamPolicy", None),
        (Target::Service { .. }, "POST", Some("setIamPolicy")) => ("Services.SetIamPolicy", None),
        (Target::Service { .. }, "POST", Some("testIamPermissions")) => ("Services.TestIamPermissions", None),
        (Target::Revisions { .. }, "GET", None) => ("Revisions.ListRevisions", None),
        (Target::Revision { .. }, "GET", None) => ("Revisions.GetRevision", None),
        (Target::Revision { .. }, "DELETE", None) => ("Revisions.DeleteRevision", None),
        (Target::Operations { .. }, "GET", None) => ("Operations.ListOperations", None),
        (Target::Operation { .. }, "GET", None) => ("Operations.GetOperation", None),
        (Target::Operation { .. }, "DELETE", None) => ("Operations.DeleteOperation", None),
        (Target::Operation { .. }, "POST", Some("wait")) => ("Operations.WaitOperation", None),
        (Target::ServiceUsage { .. }, "GET", None) => ("ServiceUsage.GetService", None),
        (Target::ServiceUsage { .. }, "POST", Some("enable")) => ("ServiceUsage.EnableService", None),
        (Target::ServiceUsageServices { .. }, "GET", None) => ("ServiceUsage.ListServices", None),
        (Target::ServiceUsageServices { .. }, "POST", Some("batchEnable")) => {
            ("ServiceUsage.BatchEnableServices", None)
        }
        (Target::ServiceUsageOperation { .. }, "GET", None) => ("ServiceUsage.GetOperation", None),
        (Target::TestablePermissions, "POST", Some("queryTestablePermissions")) => {
            ("IAM.QueryTestablePermissions", None)
        }
        (Target::KnativeServices { .. }, "GET", None) => ("KnativeServices.ListServices", None),
        (Target::KnativeServices { .. }, "POST", None) => ("KnativeServices.CreateService", None),
        (Target::KnativeService { .. }, "GET", None) => ("KnativeServices.GetService", None),
        (Target::KnativeService { .. }, "PUT", None) => ("KnativeServices.ReplaceService", None),
        (Target::KnativeService { .. }, "DELETE", None) => ("KnativeServices.DeleteService", None),
        (Target::KnativeRevisions { .. }, "GET", None) => ("KnativeRevisions.ListRevisions", None),
        (Target::KnativeRevision { .. }, "GET", None) => ("KnativeRevisions.GetRevision", None),
        _ => return Err(not_found_path(req)),
    };
    Ok(Call {
        rpc,
        project,
        quota,
        target,
    })
}

async fn execute(app: &App, call: &Call, req: &Request) -> ApiResult<Value> {
    // Waiting polls the state without holding its lock; every other call runs under it.
    if let Target::Operation { name } = &call.target
        && !matches!(req.method.as_str(), "GET" | "DELETE")
    {
        return crate::run::wait_operation(app, name, req).await;
    }
    let now = Utc::now();
    dispatch(&mut app.lock(), call, req, now)
}

/// Runs one call against the API its target belongs to. Each call changes its own API's store; what it reads of
/// the others is handed to it.
fn dispatch(st: &mut State, call: &Call, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
    let verb = req.verb.as_deref().unwrap_or("");
    let counter = &mut st.counter;
    match &call.target {
        Target::Secrets { project } => {
            if req.method == Method::GET {
                st.secretmanager.list_secrets(project, req)
            } else {
                st.secretmanager.create_secret(project, req, now, counter)
            }
        }
        Target::Secret { name } => {
            let secrets = &mut st.secretmanager;
            match (req.method.as_str(), verb) {
                ("GET", "") => secrets.get_secret(name),
                ("PATCH", _) => secrets.update_secret(name, req, now, counter),
                ("DELETE", _) => secrets.delete_secret(name, req),
                (_, "addVersion") => secrets.add_version(name, req, now, counter),
                (_, "getIamPolicy") => secrets.get_policy(name, req),
                (_, "setIamPolicy") => secrets.set_policy(name, req, now, counter, &st.iam),
                _ => {
                    secrets.get_secret(name)?;
                    crate::secretmanager::test_permissions(req)
                }
            }
        }
        Target::Versions { secret } => st.secretmanager.list_versions(secret, req),
        Target::Version { secret, version } => match verb {
            "" => st.secretmanager.get_version(secret, version),
            "access" => st.secretmanager.access_version(secret, version),
            other => st
                .secretmanager
                .set_version_state(secret, version, other, req, now, counter),
        },
        Target::ServiceAccounts { project } => {
            if req.method == Method::GET {
                st.iam.list_service_accounts(project, req, st.known_projects())
            } else {
                st.iam.create_service_account(project, req, counter)
            }
        }
        Target::ServiceAccount { project, email } => {
            let known = iam::KnownProjects {
                resourcemanager: &st.resourcemanager,
                run: &st.run,
            };
            match verb {
                "" if req.method == Method::DELETE => st.delete_service_account(project, email, now),
                "" => st.iam.get_service_account(project, email, known),
                "getIamPolicy" => st.iam.get_account_policy(project, email, req, known),
                "setIamPolicy" => st.iam.set_account_policy(project, email, req, counter, known),
                "generateAccessToken" => st.iam.generate_access_token(email, req, now, counter),
                _ => st.iam.test_account_permissions(project, email, req, known),
            }
        }
        Target::Project { project, api } => match verb {
            "" => Ok(st.resourcemanager.get_project(project, api)),
            "getIamPolicy" => st.resourcemanager.get_policy(project, req),
            "setIamPolicy" => st.resourcemanager.set_policy(project, req, counter, &st.iam),
            _ => crate::secretmanager::test_permissions(req),
        },
        Target::Roles { project } => {
            if req.method == Method::GET {
                Ok(st.iam.custom_roles.list_roles(project, req))
            } else {
                st.iam.custom_roles.create_role(project, req, counter)
            }
        }
        Target::Role { name } => match req.method.as_str() {
            "GET" => st.iam.custom_roles.get_role(name),
            "PATCH" => st.iam.custom_roles.update_role(name, req, counter),
            _ => st.iam.custom_roles.delete_role(name, counter),
        },
        Target::Services { parent } => {
            if req.method == Method::GET {
                st.cloud_run().list_services(parent, req, now)
            } else {
                st.cloud_run().create_service(parent, req, now)
            }
        }
        Target::Service { name } => match (req.method.as_str(), verb) {
            ("GET", "") => st.cloud_run().get_service(name, now),
            ("PATCH", _) => st.cloud_run().update_service(name, req, now),
            ("DELETE", _) => st.cloud_run().delete_service(name, req, now),
            (_, "getIamPolicy") => st.cloud_run().get_policy(name, req),
            (_, "setIamPolicy") => st.cloud_run().set_policy(name, req),
            // gcloud asks before the service exists; Google answers without checking existence.
            _ => crate::secretmanager::test_permissions(req),
        },
        Target::Revisions { service } => st.cloud_run().list_revisions(service, req, now),
        Target::Revision { name } => {
            if req.method == Method::GET {
                st.cloud_run().get_revision(name, now)
            } else {
                st.cloud_run().delete_revision(name, req, now)
            }
        }
        Target::Operations { parent } => st.cloud_run().list_operations(parent, req, now),
        Target::Operation { name } => {
            if req.method == Method::GET {
                st.cloud_run().get_operation(name, now)
            } else {
                st.cloud_run().delete_operation(name)
            }
        }
        // Every API is enabled in the emulator.
        Target::ServiceUsage { project, service } => {
            if verb == "enable" {
                st.serviceusage.enable(project, service, &st.resourcemanager)
            } else {
                st.serviceusage.get_service(project, service, &st.resourcemanager)
            }
        }
        Target::ServiceUsageServices { project } => {
            if req.method == Method::GET {
                st.serviceusage.list_services(project, req, &st.resourcemanager)
            } else {
                st.serviceusage.batch_enable(project, req, &st.resourcemanager)
            }
        }
        Target::ServiceUsageOperation { name } => crate::serviceusage::get_operation(name),
        Target::TestablePermissions => crate::auth::testable_permissions(req),
        Target::KnativeServices { namespace, region } => {
            let run = &mut st.cloud_run();
            if req.method == Method::GET {
                knative::list_services(run, namespace, region, req.param("labelSelector"), now)
            } else {
                let body = req.json()?;
                knative::put_service(run, namespace, region, None, &body, now)
            }
        }
        Target::KnativeService {
            namespace,
            region,
            name,
        } => {
            let run = &mut st.cloud_run();
            match req.method.as_str() {
                "GET" => knative::get_service(run, namespace, region, name, now),
                "PUT" => {
                    let body = req.json()?;
                    knative::put_service(run, namespace, region, Some(name), &body, now)
                }
                _ => knative::delete_service(run, namespace, region, name, now),
            }
        }
        Target::KnativeRevisions { namespace, region } => knative::list_revisions(
            &mut st.cloud_run(),
            namespace,
            region,
            req.param("labelSelector"),
            now,
        ),
        Target::KnativeRevision {
            namespace,
            region,
            name,
        } => knative::get_revision(&mut st.cloud_run(), namespace, region, name, now),
    }
}

/// The single axum handler behind every path.
pub async fn handle(
    AxumState(app): AxumState<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let started = Instant::now();
    // Traffic for a Cloud Run service, not an API call.
    if let Some(route) = crate::run::route(&uri, &headers) {
        return match body {
            Ok(body) => crate::run::proxy(&app, route, method, headers, body).await,
            Err(e) => axum::response::IntoResponse::into_response((e.status(), e.body_text())),
        };
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let err = ApiError::invalid(format!("Request body could not be read: {}", e.body_text()));
            return axum::response::IntoResponse::into_response(err);
        }
    };
    let mut req = Request::parse(method, uri.path(), uri.query(), body);
    req.host = uri.host().map(str::to_string).or_else(|| {
        headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.split(':').next().unwrap_or(h).to_string())
    });
    if req.segments.first().map(String::as_str) == Some(admin::PREFIX) {
        let rest = req.segments[1..].to_vec();
        let mut segments = rest;
        // Admin paths never carry verbs; put back a colon the parser split off.
        if let (Some(verb), Some(last)) = (&req.verb, segments.last_mut()) {
            last.push(':');
            last.push_str(verb);
        }
        return match admin::handle(&app, &req.method, &segments, &req) {
            Ok((status, v)) => json_response(status, &v),
            Err(e) => axum::response::IntoResponse::into_response(e),
        };
    }
    // Secret Manager names a project by its number, whichever form the caller used.
    if let [api, projects, project, secrets, ..] = req.segments.as_slice()
        && api == "v1"
        && projects == "projects"
        && secrets == "secrets"
    {
        let number = app.lock().resourcemanager.project_number(project);
        req.segments[2] = number.to_string();
    }
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    req.caller = app.lock().iam.tokens.caller(authorization, Utc::now());
    let resolved = resolve(&req);
    let rpc = resolved.as_ref().map(|c| c.rpc).unwrap_or("Unknown");
    if !app.config.latency.is_zero() {
        tokio::time::sleep(app.config.latency).await;
    }
    let result = match resolved {
        Err(e) => Err(e),
        Ok(call) => run_call(&app, &call, &req).await,
    };
    let code = result.as_ref().err().map(|e| e.code).unwrap_or(Code::Ok);
    let response = match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    let entry = LogEntry {
        time: wire::timestamp(Utc::now()),
        http_method: req.method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        method: rpc.to_string(),
        status: code.name().to_string(),
        http_status: code.http(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        caller: req.caller.principal().unwrap_or("").to_string(),
    };
    app.lock().runtime.record_call(rpc, code, entry);
    response
}

/// What a call acts on, for its permission check: the resource's name, the project whose policy applies, and the
/// resource's own policy (secret, service or service account), when it has one.
fn scope<'a>(st: &'a State, call: &Call) -> (String, String, Option<&'a Policy>) {
    let project = call.project.clone();
    let secret_policy = |name: &str| st.secretmanager.secrets.get(name).map(|s| &s.policy);
    let service_policy = |name: &str| st.run.services.get(name).map(|s| &s.policy);
    match &call.target {
        Target::Secrets { project } | Target::ServiceAccounts { project } | Target::Roles { project } => {
            (format!("projects/{project}"), project.clone(), None)
        }
        Target::ServiceUsageServices { project } | Target::Project { project, .. } => {
            (format!("projects/{project}"), project.clone(), None)
        }
        Target::Secret { name } | Target::Versions { secret: name } => {
            (name.clone(), project, secret_policy(name))
        }
        Target::Version { secret, version } => (
            format!("{secret}/versions/{version}"),
            project,
            secret_policy(secret),
        ),
        Target::ServiceAccount { project: p, email } => (
            format!("projects/{p}/serviceAccounts/{email}"),
            crate::iam::project_of_account(email),
            st.iam.service_account_policies.get(email),
        ),
        Target::Services { parent } | Target::Operations { parent } => (parent.clone(), project, None),
        Target::Service { name } | Target::Revisions { service: name } => {
            (name.clone(), project, service_policy(name))
        }
        Target::Revision { name } => {
            let service = name.split("/revisions/").next().unwrap_or("");
            (name.clone(), project, service_policy(service))
        }
        Target::Operation { name } | Target::Role { name } | Target::ServiceUsageOperation { name } => {
            (name.clone(), project, None)
        }
        Target::TestablePermissions => (String::new(), project, None),
        Target::ServiceUsage { project, service } => (
            format!("projects/{project}/services/{service}"),
            project.clone(),
            None,
        ),
        Target::KnativeServices { namespace, .. } | Target::KnativeRevisions { namespace, .. } => {
            (format!("namespaces/{namespace}"), namespace.clone(), None)
        }
        Target::KnativeService {
            namespace,
            region,
            name,
        } => (
            format!("namespaces/{namespace}/services/{name}"),
            namespace.clone(),
            service_policy(&format!(
                "projects/{namespace}/locations/{region}/services/{name}"
            )),
        ),
        Target::KnativeRevision { namespace, name, .. } => (
            format!("namespaces/{namespace}/revisions/{name}"),
            namespace.clone(),
            None,
        ),
    }
}

/// Google's checks before a call runs: a known token, then the call's permission on its resource.
fn authorize(st: &State, call: &Call, req: &Request) -> ApiResult<()> {
    let principal = match &req.caller {
        auth::Caller::Anonymous => return Err(auth::missing_credentials()),
        auth::Caller::Unknown => return Err(auth::invalid_credentials()),
        auth::Caller::Principal(p) => p,
    };
    let Some(permission) = auth::permission_of(call.rpc) else {
        return Ok(());
    };
    let (resource, project, policy) = scope(st, call);
    let condition_name = st.resourcemanager.condition_name(&resource);
    let facts = auth::Facts::of(&condition_name, Utc::now());
    if !st
        .policies()
        .grant(principal, permission, &project, policy, &facts)
    {
        return Err(auth::denied(permission, &resource));
    }
    match call.rpc {
        "Services.CreateService" | "Services.UpdateService" => {
            let body = req.json()?;
            let account = body.get("template").and_then(|t| t.get("serviceAccount"));
            act_as(st, principal, &project, account.and_then(Value::as_str))
        }
        "KnativeServices.CreateService" | "KnativeServices.ReplaceService" => {
            let body = req.json()?;
            let account = Value::Object(body);
            let account = account.pointer("/spec/template/spec/serviceAccountName");
            act_as(st, principal, &project, account.and_then(Value::as_str))
        }
        _ => Ok(()),
    }
}

/// Deploying a revision that runs as an account needs `iam.serviceAccounts.actAs` on it (the project's default
/// compute account when the template names none), granted on the project or on the account.
fn act_as(st: &State, principal: &str, project: &str, account: Option<&str>) -> ApiResult<()> {
    let default_account;
    let account = match account.filter(|a| !a.is_empty()) {
        Some(a) => a,
        None => {
            default_account = crate::iam::compute_account(st.resourcemanager.project_number(project));
            &default_account
        }
    };
    let account_project = if crate::iam::default_compute_account(account) {
        project.to_string()
    } else {
        crate::iam::project_of_account(account)
    };
    let policy = st.iam.service_account_policies.get(account);
    let name = format!("projects/{account_project}/serviceAccounts/{account}");
    let facts = auth::Facts::of(&name, Utc::now());
    if st.policies().grant(
        principal,
        "iam.serviceAccounts.actAs",
        &account_project,
        policy,
        &facts,
    ) {
        Ok(())
    } else {
        Err(auth::act_as_denied(account))
    }
}

/// `testIamPermissions` answers only the permissions the caller holds.
fn held_permissions(st: &State, call: &Call, req: &Request, mut answer: Value) -> Value {
    let principal = req.caller.principal().unwrap_or("");
    let (resource, project, policy) = scope(st, call);
    let condition_name = st.resourcemanager.condition_name(&resource);
    let facts = auth::Facts::of(&condition_name, Utc::now());
    let policies = st.policies();
    if let Some(Value::Array(list)) = answer.get_mut("permissions") {
        list.retain(|p| {
            p.as_str()
                .is_some_and(|p| policies.grant(principal, p, &project, policy, &facts))
        });
        // Google's JSON leaves an empty list out.
        if list.is_empty()
            && let Some(map) = answer.as_object_mut()
        {
            map.remove("permissions");
        }
    }
    answer
}

async fn run_call(app: &App, call: &Call, req: &Request) -> ApiResult<Value> {
    if app.config.enforce_auth {
        authorize(&app.lock(), call, req)?;
    }
    let decision = {
        let mut rng = rand::rng();
        let mut roll = || rand::Rng::random::<f64>(&mut rng);
        let mut st = app.lock();
        let decision = st.runtime.decide_faults(call.rpc, &mut roll);
        if decision.fail.is_none()
            && let Some(kind) = call.quota
        {
            st.runtime
                .quotas
                .take(&call.project, kind, app.config.quota_scale, Instant::now())?;
        }
        decision
    };
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(err) = decision.fail.as_ref()
        && !decision.after_commit
    {
        return Err(err.clone());
    }
    let mut result = execute(app, call, req).await;
    if app.config.enforce_auth && call.rpc.ends_with(".TestIamPermissions") {
        result = result.map(|answer| held_permissions(&app.lock(), call, req, answer));
    }
    if result.is_ok() && req.method != Method::GET {
        app.mark_dirty();
    }
    match decision.fail {
        Some(err) => Err(err),
        None => result,
    }
}
