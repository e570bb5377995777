//! Step 1 of the pipeline: the desired Google state of one LiteLLMDeployment. Pure: no client, no clock.
//!
//! Validates the spec, derives names, labels and IAM bindings, and builds the full Cloud Run v2 service in
//! Google's REST (JSON) shape with every secret pinned to a concrete version.

use std::collections::BTreeMap;

use litellm_operator_api::names::{
    self, ALL_USERS, CONFIG_FILE, CONFIG_MOUNT_PATH, CONFIG_PATH, CONFIG_VOLUME, RUN_INVOKER_ROLE,
    SECRET_ACCESSOR_ROLE,
};
use litellm_operator_api::{
    AppliedBinding, ConfigMapKeySelector, ConfigSource, Deletion, GeneratedValue, Ingress, InvalidSpec,
    LiteLLMDeployment, LivenessProbe, ProbeType, Replication, SecretKeySelector, SecretSource, ServiceSpec,
    StartupProbe, VpcEgress, validate,
};
use litellm_operator_gcp::SecretPayload;
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
    /// One entry per `spec.secrets` item, in spec order, then LiteLLM's configuration (`spec.config`) if set.
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
    /// Where the service reads it.
    pub delivery: Delivery,
    /// Secret id.
    pub secret_id: String,
    /// `projects/P/secrets/ID`.
    pub resource: String,
    /// Where the value comes from.
    pub source: DesiredSource,
}

impl DesiredSecret {
    /// The key of its value in [`super::Inputs::sources`] and of its pin in the record (`status.secrets[].env`):
    /// the env var name, or for the configuration the path of its file, which no env var name can be.
    pub fn key(&self) -> &str {
        self.delivery.key()
    }
}

/// Where the service reads a secret: the one place that differs between a credential and LiteLLM's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// An environment variable of this name.
    Env(String),
    /// LiteLLM's configuration: a file at [`CONFIG_PATH`] (a secret volume), passed to LiteLLM with `--config`.
    ConfigFile,
}

impl Delivery {
    /// See [`DesiredSecret::key`].
    pub fn key(&self) -> &str {
        match self {
            Delivery::Env(name) => name,
            Delivery::ConfigFile => CONFIG_PATH,
        }
    }
}

/// The source of a secret's value, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum DesiredSource {
    /// A key of a Kubernetes Secret in the resource's namespace.
    FromSecret(SecretKeySelector),
    /// A key of a ConfigMap in the resource's namespace (LiteLLM's configuration).
    FromConfigMap(ConfigMapKeySelector),
    /// Written in the spec (LiteLLM's configuration, `spec.config.inline`).
    Inline {
        /// The text (redacted in `Debug`).
        payload: SecretPayload,
        /// `generation-N` of the resource that holds it: a generation whose value is recorded needs no read.
        revision: Option<String>,
    },
    /// Generated once, and again for each new `rotation`.
    Generate(GeneratedValue),
    /// Managed elsewhere; pin this version (`latest` is resolved by the secrets step).
    External {
        /// `latest` or a number.
        version: String,
    },
}

impl DesiredSource {
    /// Whether the value is given (by a Kubernetes Secret, a ConfigMap or the spec) rather than generated or managed
    /// elsewhere: it is compared with the newest version and added only when it changed.
    pub fn given(&self) -> bool {
        matches!(
            self,
            DesiredSource::FromSecret(_) | DesiredSource::FromConfigMap(_) | DesiredSource::Inline { .. }
        )
    }

    /// The value the spec itself holds (inline configuration), as the front ends hand values to the planner.
    pub fn spec_value(&self) -> Option<super::Source> {
        match self {
            DesiredSource::Inline { payload, revision } => Some(super::Source::Value {
                payload: payload.clone(),
                revision: revision.clone(),
            }),
            _ => None,
        }
    }

    /// What identifies a given value without reading it: the `resourceVersion` of the Kubernetes object that holds
    /// it, with the object and the key, so pointing at another key of an unchanged object is a change too. The
    /// controller records it; `None` (the CLI, which has no versions) always compares values.
    pub fn revision(&self, resource_version: Option<&str>) -> Option<String> {
        let rv = resource_version?;
        Some(match self {
            DesiredSource::FromSecret(s) => format!("Secret/{}/{}@{rv}", s.name, s.key),
            DesiredSource::FromConfigMap(c) => format!("ConfigMap/{}/{}@{rv}", c.name, c.key),
            _ => rv.to_owned(),
        })
    }

    /// Why a given value cannot be read in `namespace`: its object is missing (`object_found` false), or its key.
    /// One wording for the controller and the CLI.
    pub fn missing(&self, namespace: &str, object_found: bool) -> String {
        match (self, object_found) {
            (DesiredSource::FromSecret(s), false) => {
                format!("Kubernetes Secret {namespace}/{} not found", s.name)
            }
            (DesiredSource::FromSecret(s), true) => {
                format!("Kubernetes Secret {namespace}/{} has no key {:?}", s.name, s.key)
            }
            (DesiredSource::FromConfigMap(c), false) => {
                format!(
                    "ConfigMap {namespace}/{} (spec.config.configMapKeyRef) not found",
                    c.name
                )
            }
            (DesiredSource::FromConfigMap(c), true) => format!(
                "ConfigMap {namespace}/{} (spec.config.configMapKeyRef) has no key {:?} in its data",
                c.name, c.key
            ),
            _ => format!("{} has no value", self.describe().unwrap_or_default()),
        }
    }

    /// What the value comes from, for messages (never the value): `Secret NAME key "KEY"`, ...
    pub fn describe(&self) -> Option<String> {
        match self {
            DesiredSource::FromSecret(s) => Some(format!("Secret {} key {:?}", s.name, s.key)),
            DesiredSource::FromConfigMap(c) => Some(format!("ConfigMap {} key {:?}", c.name, c.key)),
            DesiredSource::Inline { .. } => Some("spec.config.inline".to_owned()),
            DesiredSource::Generate(_) | DesiredSource::External { .. } => None,
        }
    }
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
    let mut secrets: Vec<DesiredSecret> = spec
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
                delivery: Delivery::Env(s.env.clone()),
                secret_id,
                resource,
                source,
            })
        })
        .collect();
    // LiteLLM's configuration: one more owned secret, delivered as a file.
    if let Some(config) = &spec.config
        && let Some(source) = config.source()
    {
        let secret_id = config.effective_secret_id(&service_name);
        let resource = names::secret_resource(&spec.project, &secret_id);
        bindings.push(AppliedBinding {
            resource: resource.clone(),
            role: SECRET_ACCESSOR_ROLE.to_owned(),
            member: member.clone(),
        });
        secrets.push(DesiredSecret {
            delivery: Delivery::ConfigFile,
            secret_id,
            resource,
            source: match source {
                ConfigSource::Inline(text) => DesiredSource::Inline {
                    payload: SecretPayload::new(text.as_bytes().to_vec()),
                    revision: obj.metadata.generation.map(|g| format!("generation-{g}")),
                },
                ConfigSource::ConfigMap(r) => DesiredSource::FromConfigMap(r.clone()),
            },
        });
    }
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

/// The Cloud Run v2 service (REST JSON shape) with each secret pinned to `pinned[key]` (see
/// [`DesiredSecret::key`]).
///
/// Secrets without a pinned version yet are left out: the service step waits until every secret is pinned, so this
/// only matters for plans. Without `spec.config` the service has no arguments and no configuration volume.
pub fn service(desired: &DesiredState, pinned: &BTreeMap<String, String>) -> Value {
    let s = &desired.service_spec;
    let mut env: Vec<Value> = s
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let mut config = None;
    for secret in &desired.secrets {
        let Some(version) = pinned.get(secret.key()) else {
            continue;
        };
        match &secret.delivery {
            Delivery::Env(name) => env.push(json!({
                "name": name,
                "valueSource": {"secretKeyRef": {"secret": secret.resource, "version": version}}
            })),
            Delivery::ConfigFile => config = Some((&secret.resource, version)),
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
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if !s.cloud_sql_instances.is_empty() {
        volumes.push(
            json!({"name": CLOUD_SQL_VOLUME, "cloudSqlInstance": {"instances": s.cloud_sql_instances}}),
        );
        mounts.push(json!({"name": CLOUD_SQL_VOLUME, "mountPath": "/cloudsql"}));
    }
    if let Some((secret, version)) = config {
        volumes.push(json!({
            "name": CONFIG_VOLUME,
            "secret": {"secret": secret, "items": [{"version": version, "path": CONFIG_FILE}]}
        }));
        mounts.push(json!({"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT_PATH}));
        // LiteLLM takes its port from `PORT`, which Cloud Run sets: `--config` is the only argument.
        container["args"] = json!(["--config", CONFIG_PATH]);
    }
    if !volumes.is_empty() {
        template["volumes"] = Value::Array(volumes);
        container["volumeMounts"] = Value::Array(mounts);
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
    fn a_given_values_revision_names_its_object_and_key() {
        let secret = |name: &str, key: &str| {
            DesiredSource::FromSecret(SecretKeySelector {
                name: name.into(),
                key: key.into(),
            })
        };
        let config = |key: &str| {
            DesiredSource::FromConfigMap(ConfigMapKeySelector {
                name: "c".into(),
                key: key.into(),
            })
        };
        // Another key of an unchanged object (same resourceVersion) is another value.
        assert_ne!(
            config("a.yaml").revision(Some("7")),
            config("b.yaml").revision(Some("7"))
        );
        assert_ne!(
            secret("s", "k").revision(Some("7")),
            secret("t", "k").revision(Some("7"))
        );
        assert_ne!(
            secret("c", "a.yaml").revision(Some("7")),
            config("a.yaml").revision(Some("7"))
        );
        assert_eq!(
            secret("s", "k").revision(Some("7")),
            secret("s", "k").revision(Some("7"))
        );
        assert_ne!(
            secret("s", "k").revision(Some("7")),
            secret("s", "k").revision(Some("8"))
        );
        // Without versions (the CLI), values are compared.
        assert_eq!(secret("s", "k").revision(None), None);
        assert_eq!(
            config("a.yaml").missing("ns", true),
            "ConfigMap ns/c (spec.config.configMapKeyRef) has no key \"a.yaml\" in its data"
        );
        assert_eq!(
            secret("s", "k").missing("ns", false),
            "Kubernetes Secret ns/s not found"
        );
    }

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
            .map(|(i, s)| (s.key().to_owned(), (i + 1).to_string()))
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

    const CONFIG_YAML: &str =
        "model_list:\n  - model_name: demo\n    litellm_params:\n      model: openai/gpt-4o-mini\n";

    fn with_config(config: Value) -> LiteLLMDeployment {
        let mut obj = example();
        obj.metadata.generation = Some(7);
        obj.spec.config = Some(serde_json::from_value(config).unwrap());
        obj
    }

    /// Pins every secret of `d` to version `n`.
    fn all_pinned(d: &DesiredState, n: &str) -> BTreeMap<String, String> {
        d.secrets
            .iter()
            .map(|s| (s.key().to_owned(), n.to_owned()))
            .collect()
    }

    #[test]
    fn without_config_the_service_has_no_arguments_and_no_volume() {
        let d = desired_state(&example()).unwrap();
        assert!(d.secrets.iter().all(|s| matches!(s.delivery, Delivery::Env(_))));
        let svc = service(&d, &all_pinned(&d, "1"));
        assert!(svc["template"].get("volumes").is_none(), "{svc}");
        let container = &svc["template"]["containers"][0];
        assert!(container.get("args").is_none(), "{container}");
        assert!(container.get("volumeMounts").is_none(), "{container}");
    }

    #[test]
    fn an_inline_config_is_an_owned_secret_mounted_as_a_file_pinned_to_its_version() {
        let d = desired_state(&with_config(json!({"inline": CONFIG_YAML}))).unwrap();
        let config = d.secrets.last().unwrap();
        assert_eq!(config.delivery, Delivery::ConfigFile);
        assert_eq!(config.key(), "/etc/litellm/config.yaml");
        assert_eq!(config.secret_id, "litellm-proxy-config");
        assert_eq!(
            config.resource,
            "projects/my-project/secrets/litellm-proxy-config"
        );
        assert_eq!(
            config.source,
            DesiredSource::Inline {
                payload: SecretPayload::new(CONFIG_YAML.as_bytes().to_vec()),
                revision: Some("generation-7".into()),
            }
        );
        assert!(
            d.bindings
                .iter()
                .any(|b| b.resource == config.resource && b.role == SECRET_ACCESSOR_ROLE)
        );
        // Neither the text nor a part of it shows in Debug (logs, errors).
        assert!(!format!("{d:?}").contains("openai/gpt-4o-mini"));

        let mut pins = all_pinned(&d, "1");
        pins.insert(config.key().to_owned(), "3".into());
        let svc = service(&d, &pins);
        assert_eq!(
            svc["template"]["volumes"],
            json!([{"name": "litellm-config", "secret": {
                "secret": "projects/my-project/secrets/litellm-proxy-config",
                "items": [{"version": "3", "path": "config.yaml"}]
            }}])
        );
        let container = &svc["template"]["containers"][0];
        assert_eq!(
            container["volumeMounts"],
            json!([{"name": "litellm-config", "mountPath": "/etc/litellm"}])
        );
        assert_eq!(container["args"], json!(["--config", "/etc/litellm/config.yaml"]));
        // Not an env var.
        let env = container["env"].as_array().unwrap();
        assert_eq!(env.len(), 11 + 4);
        assert!(env.iter().all(|e| !e["name"].as_str().unwrap().contains('/')));
    }

    #[test]
    fn a_config_map_config_and_cloud_sql_share_the_volumes_and_a_secret_id_can_be_chosen() {
        let mut obj = with_config(json!({
            "configMapKeyRef": {"name": "litellm", "key": "config.yaml"}, "secretId": "proxy-config"
        }));
        obj.spec.service.cloud_sql_instances = vec!["my-project:us-central1:litellm-db".into()];
        let d = desired_state(&obj).unwrap();
        let config = d.secrets.last().unwrap();
        assert_eq!(config.resource, "projects/my-project/secrets/proxy-config");
        assert!(matches!(&config.source, DesiredSource::FromConfigMap(r) if r.name == "litellm"));
        assert_eq!(
            config.source.spec_value(),
            None,
            "a ConfigMap's value comes from the front end"
        );
        let svc = service(&d, &all_pinned(&d, "1"));
        let names: Vec<&str> = svc["template"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["cloudsql", "litellm-config"]);
        assert_eq!(
            svc["template"]["containers"][0]["volumeMounts"][1]["mountPath"],
            "/etc/litellm"
        );
        // Not pinned yet: neither mounted nor passed.
        let unpinned: BTreeMap<String, String> = all_pinned(&d, "1")
            .into_iter()
            .filter(|(k, _)| !k.starts_with('/'))
            .collect();
        let svc = service(&d, &unpinned);
        assert_eq!(svc["template"]["volumes"].as_array().unwrap().len(), 1);
        assert!(svc["template"]["containers"][0].get("args").is_none());
    }

    #[test]
    fn invalid_config_yaml_is_refused_before_anything_else_without_its_text() {
        let err = desired_state(&with_config(
            json!({"inline": "general_settings:\n  master_key: sk-secret-1\n bad: [\n"}),
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("spec.config.inline: not valid YAML at line 3 column 2"),
            "{text}"
        );
        assert!(!text.contains("sk-secret-1"), "{text}");
        let err = desired_state(&with_config(json!({"inline": "- sk-secret-1\n"}))).unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.config.inline: is a list, not a mapping"),
            "{err}"
        );
        assert!(!err.to_string().contains("sk-secret-1"));
    }

    proptest::proptest! {
        /// `spec.config` adds exactly one secret, one accessor binding and the volume, mount and `--config`: with
        /// those taken out, the desired state and service are what the spec without it gives, whatever else the
        /// spec holds. So a spec without `config` plans as it did before `config` existed.
        #[test]
        fn a_config_adds_only_its_secret_binding_volume_mount_and_args(
            cloud_sql in proptest::bool::ANY,
            public in proptest::bool::ANY,
            from_map in proptest::bool::ANY,
            drop in proptest::collection::vec(proptest::bool::ANY, 11),
        ) {
            let mut obj = example();
            obj.spec.service.allow_unauthenticated = public;
            if cloud_sql {
                obj.spec.service.cloud_sql_instances = vec!["my-project:us-central1:litellm-db".into()];
            }
            let mut keep = drop.iter().map(|d| !d);
            obj.spec.secrets.retain(|_| keep.next().unwrap_or(true));
            let without = desired_state(&obj).unwrap();
            obj.spec.config = Some(serde_json::from_value(if from_map {
                json!({"configMapKeyRef": {"name": "litellm", "key": "config.yaml"}})
            } else {
                json!({"inline": CONFIG_YAML})
            }).unwrap());
            let with = desired_state(&obj).unwrap();

            let (config, rest) = with.secrets.split_last().unwrap();
            proptest::prop_assert_eq!(&config.delivery, &Delivery::ConfigFile);
            proptest::prop_assert_eq!(rest, without.secrets.as_slice());
            let mut bindings = with.bindings.clone();
            bindings.retain(|b| b.resource != config.resource);
            proptest::prop_assert_eq!(&bindings, &without.bindings);
            proptest::prop_assert_eq!(with.bindings.len(), without.bindings.len() + 1);

            let plain = service(&without, &all_pinned(&without, "1"));
            proptest::prop_assert!(plain["template"]["containers"][0].get("args").is_none());
            proptest::prop_assert_eq!(plain["template"].get("volumes").is_some(), cloud_sql);
            let mut mounted = service(&with, &all_pinned(&with, "1"));
            let template = mounted["template"].as_object_mut().unwrap();
            let volumes = template["volumes"].as_array_mut().unwrap();
            proptest::prop_assert_eq!(volumes.pop().unwrap()["name"].clone(), json!(CONFIG_VOLUME));
            if volumes.is_empty() {
                template.remove("volumes");
            }
            let container = template["containers"][0].as_object_mut().unwrap();
            proptest::prop_assert!(container.remove("args").is_some());
            let mounts = container["volumeMounts"].as_array_mut().unwrap();
            mounts.pop();
            if mounts.is_empty() {
                container.remove("volumeMounts");
            }
            proptest::prop_assert_eq!(mounted, plain);
        }
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
