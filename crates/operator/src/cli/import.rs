//! `import`: a LiteLLMDeployment that adopts a Cloud Run service deployed by the gcloud runbook.
//!
//! Secret env references become `external` sources pinned as found, so adopting adds no secret version and
//! changes no pin. Plain env vars that look like credentials are left out (their values are never printed) and
//! listed in warnings with the manifest change that moves each into Secret Manager.

use std::collections::BTreeMap;

use litellm_operator_api::LiteLLMDeployment;
use litellm_operator_api::names::{self, ADOPT_ANNOTATION, ALL_USERS, RUN_INVOKER_ROLE};
use litellm_operator_gcp::{CloudRun, Gcp, IamPolicies, PolicyTarget, ServiceName};
use serde_json::{Map, Value, json};

use super::{ImportArgs, Problems};
use crate::plan::desired::service;
use crate::plan::service_diff::drift;
use crate::plan::{DesiredSecret, DesiredSource, DesiredState, desired_state};
use crate::service_json::to_json;

/// The manifest and what a person must know about it.
pub(crate) struct Imported {
    /// The service read.
    pub service: ServiceName,
    /// The LiteLLMDeployment.
    pub manifest: Value,
    /// One line per thing left out or needing attention.
    pub warnings: Vec<String>,
}

impl Imported {
    /// The manifest as YAML, headed by a comment saying where it came from and what to do next.
    pub fn yaml(&self) -> Result<String, Problems> {
        let body = serde_yaml::to_string(&self.manifest)
            .map_err(|e| Problems::from(format!("cannot write YAML: {e}")))?;
        Ok(format!(
            "# Imported from {} by litellm-operator import.\n# Secrets stay where they are (external, pinned as \
             found); review, then `litellm-operator plan -f` this file.\n{body}",
            self.service
        ))
    }

    /// The manifest as one JSON document (what `kubectl apply -f` and `plan -f` read as well as the YAML).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.manifest).unwrap_or_default()
    }
}

/// Label prefixes Google sets; not part of the spec.
const SYSTEM_LABEL_PREFIXES: [&str; 3] = ["goog-", "run.googleapis.com", "cloud.googleapis.com"];

/// Whether a plain env var name looks like it holds a credential.
pub(crate) fn looks_like_credential(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["_KEY", "_PASSWORD", "_SECRET", "_TOKEN"]
        .iter()
        .any(|s| upper.ends_with(s))
        || upper == "DATABASE_URL"
}

pub(crate) async fn import(gcp: &Gcp, args: &ImportArgs) -> Result<Imported, Problems> {
    let name = ServiceName::new(&args.project, &args.region, &args.service);
    let live = gcp
        .get_service(&name)
        .await
        .map_err(|e| Problems::from(e.to_string()))?
        .ok_or_else(|| Problems::from(format!("{name}: service not found")))?;
    let live = to_json(&live, &name).map_err(|e| Problems::from(e.to_string()))?;
    let policy = gcp
        .get_policy(&PolicyTarget::Service(name.clone()))
        .await
        .map_err(|e| Problems::from(e.to_string()))?;
    let public = policy.bindings.iter().any(|b| {
        b.role == RUN_INVOKER_ROLE && b.condition.is_none() && b.members.iter().any(|m| m == ALL_USERS)
    });

    let mut warnings = Vec::new();
    let template = &live["template"];
    let containers = template["containers"].as_array().cloned().unwrap_or_default();
    if containers.len() > 1 {
        warnings.push(format!(
            "{name} has {} containers; only the first is imported (sidecars are not part of a LiteLLMDeployment)",
            containers.len()
        ));
    }
    let container = containers.first().cloned().unwrap_or(Value::Null);

    let mut env = BTreeMap::new();
    let mut secrets = Vec::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(env_name) = var["name"].as_str() else {
            continue;
        };
        if let Some(reference) = var["valueSource"]["secretKeyRef"].as_object() {
            match secret_source(&args.project, env_name, reference) {
                Ok(item) => secrets.push(item),
                Err(w) => warnings.push(w),
            }
        } else if looks_like_credential(env_name) {
            let key = names::default_secret_id(env_name);
            warnings.push(format!(
                "plain env var {env_name} looks like a credential; it was left out of the manifest and its value is \
                 not shown. Move it into Secret Manager: put the value in a Kubernetes Secret (kubectl create \
                 secret generic {svc}-credentials -n {ns} --from-literal={key}=...) and add to spec.secrets: \
                 {{env: {env_name}, fromSecret: {{name: {svc}-credentials, key: {key}}}}}. Do that before the first \
                 apply: until then, apply rolls a revision without {env_name} (plan shows \
                 template.containers[0].env (removes {env_name}))",
                svc = args.service,
                ns = args.namespace,
            ));
        } else if !names::RESERVED_ENV.contains(&env_name) {
            env.insert(
                env_name.to_owned(),
                var["value"].as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    if template["volumes"]
        .as_array()
        .is_some_and(|v| v.iter().any(|v| v.get("secret").is_some()))
    {
        warnings.push(format!(
            "{name} mounts secrets as files; a LiteLLMDeployment passes secrets as env vars, and only LiteLLM's \
             configuration (spec.config, mounted at {}) as a file, so those mounts are not imported (put a LiteLLM \
             configuration file in spec.config)",
            names::CONFIG_PATH
        ));
    }
    let cloud_sql: Vec<Value> = template["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| {
            v["cloudSqlInstance"]["instances"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();

    let mut service = Map::new();
    service.insert("name".into(), json!(args.service));
    service.insert("image".into(), container["image"].clone());
    service.insert(
        "port".into(),
        json!(number(&container["ports"][0]["containerPort"]).unwrap_or(8080)),
    );
    let limits = &container["resources"]["limits"];
    let mut resources = Map::new();
    for key in ["cpu", "memory"] {
        if let Some(v) = limits[key].as_str() {
            resources.insert(key.into(), json!(v));
        }
    }
    service.insert("resources".into(), Value::Object(resources));
    service.insert(
        "scaling".into(),
        json!({
            "minInstances": number(&template["scaling"]["minInstanceCount"]).unwrap_or(0),
            // Cloud Run's own defaults when the service leaves them unset.
            "maxInstances": number(&template["scaling"]["maxInstanceCount"]).unwrap_or(100),
            "concurrency": number(&template["maxInstanceRequestConcurrency"]).unwrap_or(80),
        }),
    );
    match template["serviceAccount"].as_str().filter(|s| !s.is_empty()) {
        Some(sa) => {
            service.insert("serviceAccount".into(), json!(sa));
        }
        None => {
            warnings.push(format!(
                "{name} runs as the Compute Engine default service account; set spec.service.serviceAccount to a \
                 dedicated one (the placeholder written will not validate)"
            ));
            service.insert(
                "serviceAccount".into(),
                json!(format!("CHANGE-ME@{}.iam.gserviceaccount.com", args.project)),
            );
        }
    }
    service.insert("allowUnauthenticated".into(), json!(public));
    service.insert(
        "ingress".into(),
        json!(match live["ingress"].as_str().unwrap_or_default() {
            "INGRESS_TRAFFIC_INTERNAL_ONLY" => "Internal",
            "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" => "InternalAndCloudLoadBalancing",
            _ => "All",
        }),
    );
    if !env.is_empty() {
        service.insert("env".into(), json!(env));
    }
    if !cloud_sql.is_empty() {
        service.insert("cloudSqlInstances".into(), Value::Array(cloud_sql));
    }
    if let Some(vpc) = template["vpcAccess"].as_object().filter(|v| !v.is_empty()) {
        let mut access = Map::new();
        if let Some(c) = vpc
            .get("connector")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        {
            access.insert("connector".into(), json!(c));
        }
        if let Some(n) = vpc
            .get("networkInterfaces")
            .filter(|n| n.as_array().is_some_and(|a| !a.is_empty()))
        {
            access.insert("networkInterfaces".into(), n.clone());
        }
        access.insert(
            "egress".into(),
            json!(
                if vpc.get("egress").and_then(Value::as_str) == Some("ALL_TRAFFIC") {
                    "AllTraffic"
                } else {
                    "PrivateRangesOnly"
                }
            ),
        );
        service.insert("vpcAccess".into(), Value::Object(access));
    }
    let labels: BTreeMap<String, String> = live["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            !SYSTEM_LABEL_PREFIXES.iter().any(|p| k.starts_with(p))
                && k.as_str() != names::MANAGED_BY_LABEL
                && k.as_str() != names::OWNER_LABEL
        })
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    if !labels.is_empty() {
        service.insert("labels".into(), json!(labels));
    }
    if let Some(seconds) = template["timeout"]
        .as_str()
        .and_then(|t| t.strip_suffix('s'))
        .and_then(|t| t.parse::<f64>().ok())
    {
        // Whole seconds: Cloud Run takes no fraction here.
        service.insert("requestTimeoutSeconds".into(), json!(seconds.round() as i64));
    }
    // Probes are copied as the service has them: an HTTP liveness probe or none (`enabled: false`), an HTTP or TCP
    // startup probe (Cloud Run gives a service deployed without one a TCP probe). A gRPC probe cannot be expressed
    // (the restart warning below names it).
    let mut probes = Map::new();
    match http_probe(&container["livenessProbe"]) {
        Some(p) => probes.insert("liveness".into(), p),
        None if container["livenessProbe"].is_null() => {
            probes.insert("liveness".into(), json!({"enabled": false}))
        }
        None => None,
    };
    if let Some(p) = http_probe(&container["startupProbe"]).or_else(|| tcp_probe(&container["startupProbe"]))
    {
        probes.insert("startup".into(), p);
    }
    service.insert("probes".into(), Value::Object(probes));

    let manifest = json!({
        "apiVersion": "litellm.dev/v1alpha1",
        "kind": "LiteLLMDeployment",
        "metadata": {
            "name": args.service,
            "namespace": args.namespace,
            "annotations": {ADOPT_ANNOTATION: "true"},
        },
        "spec": {
            "project": args.project,
            "region": args.region,
            "service": service,
            "secrets": secrets,
            // Adopted resources stay when the LiteLLMDeployment is deleted, until someone decides otherwise.
            "deletionPolicy": {"service": "Abandon", "secrets": "Abandon"},
        },
    });
    match serde_json::from_value::<LiteLLMDeployment>(manifest.clone()) {
        Ok(obj) => match desired_state(&obj) {
            Ok(desired) => warnings.extend(restart_warning(&name, &desired, &live, &container)),
            Err(invalid) => warnings.extend(
                invalid
                    .0
                    .iter()
                    .map(|e| format!("the manifest needs a fix: {}: {}", e.field, e.message)),
            ),
        },
        Err(e) => warnings.push(format!("the manifest needs a fix: {e}")),
    }
    Ok(Imported {
        service: name,
        manifest,
        warnings,
    })
}

/// Stands for the number `latest` will be pinned to (unknown until `plan` reads the versions): never equal to
/// `latest`, so the comparison shows the pin.
const PINNED_LATEST: &str = "(newest enabled version)";

/// What the first apply of the manifest does to the running revision: the template the operator would write,
/// compared with the running one exactly as `plan` compares them. `None` when only the service's labels change
/// (the takeover then restarts nothing); otherwise one warning naming every differing field and why.
fn restart_warning(
    name: &ServiceName,
    desired: &DesiredState,
    live: &Value,
    container: &Value,
) -> Option<String> {
    let pins: BTreeMap<String, String> = desired
        .secrets
        .iter()
        .map(|s| {
            let version = match &s.source {
                DesiredSource::External { version } if version != "latest" => version.clone(),
                _ => PINNED_LATEST.to_owned(),
            };
            (s.key().to_owned(), version)
        })
        .collect();
    let want = service(desired, &pins);
    let mut fields: Vec<String> = Vec::new();
    for path in drift(&want, live)
        .into_iter()
        .filter(|p| p.starts_with("template"))
    {
        let field = summary(&path);
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    if fields.is_empty() {
        return None;
    }
    let mut why = Vec::new();
    let inexpressible: Vec<&str> = [("livenessProbe", false), ("startupProbe", true)]
        .into_iter()
        .filter(|(f, tcp_ok)| {
            let p = &container[*f];
            let expressible = !p["httpGet"].is_null() || (*tcp_ok && !p["tcpSocket"].is_null());
            !p.is_null() && !expressible
        })
        .map(|(f, _)| f)
        .collect();
    if !inexpressible.is_empty() {
        why.push(format!(
            "the service's {} is neither HTTP nor (for startup) TCP, which spec.service.probes cannot express",
            inexpressible.join(" and ")
        ));
    }
    let latest: Vec<&str> = desired
        .secrets
        .iter()
        .filter(|s| matches!(&s.source, DesiredSource::External { version } if version == "latest"))
        .map(DesiredSecret::key)
        .collect();
    if !latest.is_empty() {
        why.push(format!(
            "the service reads {} as `latest`, which the operator pins to the newest enabled version's number",
            latest.join(", ")
        ));
    }
    if fields.iter().any(|f| f.contains("(removes ")) {
        why.push(
            "the env vars left out of the manifest (see the warning above) are not in the new revision"
                .to_owned(),
        );
    }
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" Why: {}.", why.join("; "))
    };
    Some(format!(
        "the first apply rolls a new revision of {name}: new instances start and replace the running ones once \
         they are Ready (traffic stays on the current revision until then, and on it if the new one fails). The \
         manifest's revision template differs from the running one in: {}.{why} `plan` shows the same fields as \
         `~ update service ... (new revision)`",
        fields.join(", ")
    ))
}

/// A differing path as one field of the container (`template.containers[0].startupProbe.httpGet` ->
/// `template.containers[0].startupProbe`); env paths stay whole, they name the variable.
fn summary(path: &str) -> String {
    let Some(rest) = path.strip_prefix("template.containers[") else {
        return path.to_owned();
    };
    let Some((index, field)) = rest.split_once("].") else {
        return path.to_owned();
    };
    if field.starts_with("env") {
        return path.to_owned();
    }
    let field = field.split(['.', '[']).next().unwrap_or(field);
    format!("template.containers[{index}].{field}")
}

/// An `external` source for a secret env reference, pinned to the version the service uses.
fn secret_source(project: &str, env: &str, reference: &Map<String, Value>) -> Result<Value, String> {
    let secret = reference
        .get("secret")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = match secret.split('/').collect::<Vec<_>>().as_slice() {
        ["projects", p, "secrets", id] if *p == project => (*id).to_owned(),
        ["projects", p, "secrets", _] => {
            return Err(format!(
                "env var {env} reads {secret} from project {p}; a LiteLLMDeployment reads secrets of its own project \
                 only, so it was left out"
            ));
        }
        [id] if !id.is_empty() => (*id).to_owned(),
        _ => {
            return Err(format!(
                "env var {env} has an unreadable secret reference {secret:?}; left out"
            ));
        }
    };
    let version = reference
        .get("version")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .unwrap_or("latest");
    let mut item = json!({"env": env, "external": {"version": version}});
    if id != names::default_secret_id(env) {
        item["secretId"] = json!(id);
    }
    Ok(item)
}

fn http_probe(probe: &Value) -> Option<Value> {
    let path = probe["httpGet"]["path"].as_str()?;
    Some(timing(
        probe,
        json!({"path": if path.is_empty() { "/" } else { path }}),
    ))
}

fn tcp_probe(probe: &Value) -> Option<Value> {
    probe.get("tcpSocket")?;
    Some(timing(probe, json!({"type": "TCP"})))
}

/// `out` with the probe's timing fields, where the service sets them.
fn timing(probe: &Value, mut out: Value) -> Value {
    for key in [
        "initialDelaySeconds",
        "periodSeconds",
        "timeoutSeconds",
        "failureThreshold",
    ] {
        if let Some(n) = number(&probe[key]) {
            out[key] = json!(n);
        }
    }
    out
}

/// Google's JSON writes int64 as strings and int32 as numbers.
fn number(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn credential_names() {
        for name in [
            "OPENAI_API_KEY",
            "UI_PASSWORD",
            "LANGFUSE_SECRET",
            "GITHUB_TOKEN",
            "DATABASE_URL",
        ] {
            assert!(looks_like_credential(name), "{name}");
        }
        for name in ["LITELLM_LOG", "REDIS_PORT", "STORE_MODEL_IN_DB", "KEYCLOAK_URL"] {
            assert!(!looks_like_credential(name), "{name}");
        }
    }

    #[test]
    fn secret_references_become_external_sources() {
        let r = json!({"secret": "projects/p/secrets/db", "version": "3"});
        assert_eq!(
            secret_source("p", "DATABASE_URL", r.as_object().unwrap()).unwrap(),
            json!({"env": "DATABASE_URL", "secretId": "db", "external": {"version": "3"}})
        );
        let r = json!({"secret": "database-url"});
        assert_eq!(
            secret_source("p", "DATABASE_URL", r.as_object().unwrap()).unwrap(),
            json!({"env": "DATABASE_URL", "external": {"version": "latest"}})
        );
        let r = json!({"secret": "projects/other/secrets/x", "version": "1"});
        assert!(secret_source("p", "X", r.as_object().unwrap()).is_err());
    }
}
