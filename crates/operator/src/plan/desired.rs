//! Step 1 of the pipeline: the desired Google state of one LiteLLMDeployment. Pure: no client, no clock.
//!
//! Validates the spec, derives names, labels and IAM bindings, and builds the full Cloud Run v2 service in
//! Google's REST (JSON) shape with every secret pinned to a concrete version.

use std::collections::BTreeMap;

use litellm_operator_api::names::{self, ALL_USERS, RUN_INVOKER_ROLE, SECRET_ACCESSOR_ROLE};
use litellm_operator_api::{
    AppliedBinding, Deletion, GeneratedValue, Ingress, InvalidSpec, LiteLLMDeployment, LivenessProbe,
    ProbeType, Replication, SecretKeySelector, SecretSource, ServiceSpec, StartupProbe, VpcEgress, validate,
};
use serde_json::{Value, json};

/// Everything the later steps need, derived from the spec alone.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredState {
    /// Google Cloud project id.
    pub project: String,
    /// Cloud Run region.
    pub region: String,
    /// Cloud Run service id.
    pub service_name: String,
    /// `projects/P/locations/R/services/S`.
    pub service_resource: String,
    /// Labels the operator puts on every Google resource it creates (user labels plus ownership).
    pub secret_labels: BTreeMap<String, String>,
    /// Labels of the Cloud Run service (user labels plus ownership).
    pub service_labels: BTreeMap<String, String>,
    /// One entry per `spec.secrets` item, in spec order.
    pub secrets: Vec<DesiredSecret>,
    /// Replication of secrets created from now on.
    pub replication: DesiredReplication,
    /// Every IAM binding the operator must hold, sorted.
    pub bindings: Vec<AppliedBinding>,
    /// Versions left enabled after a rollout.
    pub keep_enabled_versions: usize,
    /// What deletion does to the service.
    pub delete_service: bool,
    /// What deletion does to the secrets.
    pub delete_secrets: bool,
    /// The service part of the spec, from which the Cloud Run service is built.
    pub service_spec: ServiceSpec,
}

impl DesiredState {
    /// The owner label value of this deployment.
    pub fn owner(&self) -> String {
        self.secret_labels
            .get(names::OWNER_LABEL)
            .cloned()
            .unwrap_or_default()
    }

    /// `projects/P/locations/R/services/S` as a typed name.
    pub fn service_name(&self) -> litellm_operator_gcp::ServiceName {
        litellm_operator_gcp::ServiceName::new(&self.project, &self.region, &self.service_name)
    }
}

/// One Secret Manager secret the service reads.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredSecret {
    /// Environment variable name.
    pub env: String,
    /// Secret id.
    pub secret_id: String,
    /// `projects/P/secrets/ID`.
    pub resource: String,
    /// Where the value comes from.
    pub source: DesiredSource,
}

/// The source of a secret's value, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum DesiredSource {
    /// A key of a Kubernetes Secret in the resource's namespace.
    FromSecret(SecretKeySelector),
    /// Generated once.
    Generate(GeneratedValue),
    /// Managed elsewhere; pin this version (`latest` is resolved by the secrets step).
    External {
        /// `latest` or a number.
        version: String,
    },
}

/// Replication for new secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DesiredReplication {
    /// Google-managed.
    Automatic,
    /// Replicas in these regions.
    UserManaged(Vec<String>),
}

/// Derives the desired state, or every reason the spec is invalid.
pub fn desired_state(obj: &LiteLLMDeployment) -> Result<DesiredState, InvalidSpec> {
    validate(obj)?;
    let spec = &obj.spec;
    let namespace = obj.metadata.namespace.as_deref().unwrap_or("default");
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    let service_name = obj.service_name();
    let service_resource = names::service_resource(&spec.project, &spec.region, &service_name);

    let ownership = [
        (
            names::MANAGED_BY_LABEL.to_owned(),
            names::MANAGED_BY_VALUE.to_owned(),
        ),
        (
            names::OWNER_LABEL.to_owned(),
            names::owner_label_value(namespace, name),
        ),
    ];
    let mut secret_labels = spec.secret_policy.labels.clone();
    secret_labels.extend(ownership.clone());
    let mut service_labels = spec.service.labels.clone();
    service_labels.extend(ownership);

    let member = names::service_account_member(&spec.service.service_account);
    let mut bindings = Vec::new();
    let secrets: Vec<DesiredSecret> = spec
        .secrets
        .iter()
        .filter_map(|s| {
            let secret_id = s.effective_secret_id(&service_name);
            let resource = names::secret_resource(&spec.project, &secret_id);
            let source = match s.source()? {
                SecretSource::FromSecret(r) => DesiredSource::FromSecret(r.clone()),
                SecretSource::Generate(g) => DesiredSource::Generate(g.clone()),
                SecretSource::External(e) => DesiredSource::External {
                    version: e.version.clone(),
                },
            };
            bindings.push(AppliedBinding {
                resource: resource.clone(),
                role: SECRET_ACCESSOR_ROLE.to_owned(),
                member: member.clone(),
            });
            Some(DesiredSecret {
                env: s.env.clone(),
                secret_id,
                resource,
                source,
            })
        })
        .collect();
    if spec.service.allow_unauthenticated {
        bindings.push(AppliedBinding {
            resource: service_resource.clone(),
            role: RUN_INVOKER_ROLE.to_owned(),
            member: ALL_USERS.to_owned(),
        });
    }
    bindings.sort();

    let replication = match spec.secret_policy.replication {
        Replication::Automatic => DesiredReplication::Automatic,
        Replication::UserManaged => {
            DesiredReplication::UserManaged(spec.secret_policy.replica_locations.clone().unwrap_or_default())
        }
    };

    Ok(DesiredState {
        project: spec.project.clone(),
        region: spec.region.clone(),
        service_name,
        service_resource,
        secret_labels,
        service_labels,
        secrets,
        replication,
        bindings,
        keep_enabled_versions: usize::try_from(spec.secret_policy.keep_enabled_versions)
            .unwrap_or(1)
            .max(1),
        delete_service: spec.deletion_policy.service == Deletion::Delete,
        delete_secrets: spec.deletion_policy.secrets == Deletion::Delete,
        service_spec: spec.service.clone(),
    })
}

/// Name of the volume that mounts the Cloud SQL connector's sockets.
const CLOUD_SQL_VOLUME: &str = "cloudsql";

/// The Cloud Run v2 service (REST JSON shape) with each secret pinned to `pinned[env]`.
///
/// Secrets without a pinned version yet are left out: the service step waits until every secret is pinned, so this
/// only matters for plans.
pub fn service(desired: &DesiredState, pinned: &BTreeMap<String, String>) -> Value {
    let s = &desired.service_spec;
    let mut env: Vec<Value> = s
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    for secret in &desired.secrets {
        if let Some(version) = pinned.get(&secret.env) {
            env.push(json!({
                "name": secret.env,
                "valueSource": {"secretKeyRef": {"secret": secret.resource, "version": version}}
            }));
        }
    }
    env.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));

    let mut container = json!({
        "image": s.image,
        "ports": [{"containerPort": s.port}],
        "resources": {"limits": {"cpu": s.resources.cpu, "memory": s.resources.memory}},
        "env": env,
        "startupProbe": startup_probe(&s.probes.startup, s.port),
    });
    // No liveness probe is no `livenessProbe` (service_diff counts one left on the service as drift).
    if s.probes.liveness.enabled {
        container["livenessProbe"] = liveness_probe(&s.probes.liveness, s.port);
    }
    let mut template = json!({
        "serviceAccount": s.service_account,
        "scaling": {"minInstanceCount": s.scaling.min_instances, "maxInstanceCount": s.scaling.max_instances},
        "maxInstanceRequestConcurrency": s.scaling.concurrency,
        "timeout": format!("{}s", s.request_timeout_seconds),
    });
    if !s.cloud_sql_instances.is_empty() {
        template["volumes"] =
            json!([{"name": CLOUD_SQL_VOLUME, "cloudSqlInstance": {"instances": s.cloud_sql_instances}}]);
        container["volumeMounts"] = json!([{"name": CLOUD_SQL_VOLUME, "mountPath": "/cloudsql"}]);
    }
    if let Some(vpc) = &s.vpc_access {
        let mut access = json!({"egress": match vpc.egress {
            VpcEgress::AllTraffic => "ALL_TRAFFIC",
            VpcEgress::PrivateRangesOnly => "PRIVATE_RANGES_ONLY",
        }});
        if let Some(connector) = &vpc.connector {
            access["connector"] = json!(connector);
        }
        if let Some(interfaces) = &vpc.network_interfaces {
            access["networkInterfaces"] = interfaces
                .iter()
                .map(|i| {
                    let mut n = json!({});
                    if let Some(network) = &i.network {
                        n["network"] = json!(network);
                    }
                    if let Some(subnetwork) = &i.subnetwork {
                        n["subnetwork"] = json!(subnetwork);
                    }
                    if !i.tags.is_empty() {
                        n["tags"] = json!(i.tags);
                    }
                    n
                })
                .collect();
        }
        template["vpcAccess"] = access;
    }
    template["containers"] = json!([container]);

    json!({
        "labels": desired.service_labels,
        "ingress": match s.ingress {
            Ingress::All => "INGRESS_TRAFFIC_ALL",
            Ingress::Internal => "INGRESS_TRAFFIC_INTERNAL_ONLY",
            Ingress::InternalAndCloudLoadBalancing => "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        },
        "template": template,
    })
}

fn liveness_probe(p: &LivenessProbe, port: i32) -> Value {
    json!({
        "httpGet": {"path": p.path, "port": port},
        "initialDelaySeconds": p.initial_delay_seconds,
        "periodSeconds": p.period_seconds,
        "timeoutSeconds": p.timeout_seconds,
        "failureThreshold": p.failure_threshold,
    })
}

fn startup_probe(p: &StartupProbe, port: i32) -> Value {
    let mut probe = json!({
        "initialDelaySeconds": p.initial_delay_seconds,
        "periodSeconds": p.period_seconds,
        "timeoutSeconds": p.timeout_seconds,
        "failureThreshold": p.failure_threshold,
    });
    match p.kind {
        ProbeType::Http => probe["httpGet"] = json!({"path": p.path, "port": port}),
        ProbeType::Tcp => probe["tcpSocket"] = json!({"port": port}),
    }
    probe
}

/// The runbook example (`examples/litellm-deployment.yaml`), for tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn example() -> LiteLLMDeployment {
    let text = include_str!("../../../../examples/litellm-deployment.yaml");
    serde_yaml::Deserializer::from_str(text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|v| v["kind"] == "LiteLLMDeployment")
        .map(|v| serde_json::from_value(v).unwrap())
        .unwrap()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn derives_names_labels_and_one_accessor_binding_per_secret() {
        let obj = example();
        let d = desired_state(&obj).unwrap();
        assert_eq!(
            d.service_resource,
            "projects/my-project/locations/us-central1/services/litellm-proxy"
        );
        assert_eq!(d.secrets.len(), 11);
        assert_eq!(d.secrets[0].resource, "projects/my-project/secrets/database-url");
        assert_eq!(d.secret_labels["managed-by"], "litellm-operator");
        assert_eq!(d.secret_labels["litellm-deployment"], "llm_litellm-proxy");
        assert_eq!(d.secret_labels["team"], "platform");
        let accessors = d
            .bindings
            .iter()
            .filter(|b| {
                b.role == SECRET_ACCESSOR_ROLE
                    && b.member
                        .ends_with("litellm-run@my-project.iam.gserviceaccount.com")
            })
            .count();
        assert_eq!(accessors, 11);
        assert!(
            d.bindings
                .iter()
                .any(|b| b.role == RUN_INVOKER_ROLE && b.member == ALL_USERS)
        );
        assert!(d.delete_service && !d.delete_secrets);
    }

    #[test]
    fn invalid_spec_is_refused_before_anything_else() {
        let mut obj = example();
        obj.spec.service.env.insert("DATABASE_URL".into(), "x".into());
        let err = desired_state(&obj).unwrap_err();
        assert!(err.to_string().contains("spec.service.env.DATABASE_URL"), "{err}");
    }

    #[test]
    fn service_pins_every_secret_and_parses_as_a_cloud_run_service() {
        let obj = example();
        let d = desired_state(&obj).unwrap();
        let pinned: BTreeMap<String, String> = d
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.env.clone(), (i + 1).to_string()))
            .collect();
        let svc = service(&d, &pinned);
        let env = svc["template"]["containers"][0]["env"].as_array().unwrap();
        assert_eq!(env.len(), 11 + 4);
        let db = env.iter().find(|e| e["name"] == "DATABASE_URL").unwrap();
        assert_eq!(
            db["valueSource"]["secretKeyRef"]["secret"],
            "projects/my-project/secrets/database-url"
        );
        assert_eq!(db["valueSource"]["secretKeyRef"]["version"], "1");
        assert!(
            env.iter()
                .all(|e| e["valueSource"]["secretKeyRef"]["version"] != "latest")
        );
        assert_eq!(
            svc["template"]["containers"][0]["resources"]["limits"]["memory"],
            "4Gi"
        );
        assert_eq!(
            svc["template"]["containers"][0]["startupProbe"]["httpGet"]["path"],
            "/health/readiness"
        );
        assert_eq!(svc["ingress"], "INGRESS_TRAFFIC_ALL");
    }

    #[test]
    fn probes_off_and_tcp_are_what_cloud_run_runs_without_any() {
        let mut obj = example();
        obj.spec.service.probes = serde_json::from_value(json!({
            "liveness": {"enabled": false},
            "startup": {"type": "TCP", "periodSeconds": 240, "timeoutSeconds": 240, "failureThreshold": 1},
        }))
        .unwrap();
        let d = desired_state(&obj).unwrap();
        let container = &service(&d, &BTreeMap::new())["template"]["containers"][0];
        assert!(container.get("livenessProbe").is_none(), "{container}");
        assert_eq!(
            container["startupProbe"],
            json!({"tcpSocket": {"port": 4000}, "initialDelaySeconds": 0, "periodSeconds": 240,
                   "timeoutSeconds": 240, "failureThreshold": 1})
        );
    }

    #[test]
    fn cloud_sql_and_vpc_access_become_volumes_and_vpc_settings() {
        let mut obj = example();
        obj.spec.service.cloud_sql_instances = vec!["my-project:us-central1:litellm-db".into()];
        obj.spec.service.vpc_access = serde_json::from_value(json!({"connector": "projects/my-project/locations/us-central1/connectors/c", "egress": "AllTraffic"})).unwrap();
        let d = desired_state(&obj).unwrap();
        let svc = service(&d, &BTreeMap::new());
        assert_eq!(
            svc["template"]["volumes"][0]["cloudSqlInstance"]["instances"][0],
            "my-project:us-central1:litellm-db"
        );
        assert_eq!(
            svc["template"]["containers"][0]["volumeMounts"][0]["mountPath"],
            "/cloudsql"
        );
        assert_eq!(svc["template"]["vpcAccess"]["egress"], "ALL_TRAFFIC");
    }
}
