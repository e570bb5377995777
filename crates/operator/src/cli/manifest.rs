//! Reading LiteLLMDeployments and the Kubernetes Secrets and ConfigMaps they reference from multi-document YAML
//! files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret as KubeSecret};
use litellm_operator_api::{ConfigMapKeySelector, ConfigSource, LiteLLMDeployment, SecretKeySelector};
use litellm_operator_gcp::SecretPayload;
use serde::Deserialize;
use serde_json::Value;

use super::Problems;
use crate::plan::{Delivery, DesiredState, Source, desired_state, secrets};

/// One LiteLLMDeployment, validated.
pub(crate) struct Deployment {
    /// The file it came from.
    pub file: String,
    /// The resource.
    pub obj: LiteLLMDeployment,
    /// Its desired Google state.
    pub desired: DesiredState,
}

impl Deployment {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}",
            namespace_of(&self.obj.metadata.namespace),
            self.obj.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

/// The values of a Kubernetes Secret (`data` merged with `stringData`, which wins as in the API server).
struct SourceSecret {
    values: BTreeMap<String, Vec<u8>>,
}

/// Everything read from the files.
pub(crate) struct Manifests {
    /// LiteLLMDeployments in file order.
    pub deployments: Vec<Deployment>,
    secrets: BTreeMap<(String, String), SourceSecret>,
    /// The `data` of each ConfigMap, by `(namespace, name)`.
    config_maps: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl Manifests {
    /// The value a `fromSecret` selector points at, in the deployment's namespace.
    pub fn value(&self, deployment: &Deployment, selector: &SecretKeySelector) -> Option<&[u8]> {
        let ns = namespace_of(&deployment.obj.metadata.namespace);
        self.secrets
            .get(&(ns, selector.name.clone()))
            .and_then(|s| s.values.get(&selector.key))
            .map(Vec::as_slice)
    }
}

impl Manifests {
    /// Whether the files hold the Kubernetes Secret or ConfigMap `name` of namespace `namespace`.
    pub fn holds(&self, namespace: &str, source: &crate::plan::DesiredSource) -> bool {
        let key = |name: &str| (namespace.to_owned(), name.to_owned());
        match source {
            crate::plan::DesiredSource::FromSecret(s) => self.secrets.contains_key(&key(&s.name)),
            crate::plan::DesiredSource::FromConfigMap(c) => self.config_maps.contains_key(&key(&c.name)),
            _ => true,
        }
    }

    /// The YAML a `spec.config.configMapKeyRef` points at, in the deployment's namespace.
    pub fn config_value(&self, deployment: &Deployment, selector: &ConfigMapKeySelector) -> Option<&str> {
        let ns = namespace_of(&deployment.obj.metadata.namespace);
        self.config_maps
            .get(&(ns, selector.name.clone()))
            .and_then(|data| data.get(&selector.key))
            .map(String::as_str)
    }
}

fn namespace_of(ns: &Option<String>) -> String {
    ns.clone().unwrap_or_else(|| "default".to_owned())
}

/// Reads every file; returns every problem found (unreadable file, invalid YAML, invalid spec, missing Secret or
/// ConfigMap).
pub(crate) fn load(files: &[PathBuf]) -> Result<Manifests, Problems> {
    let mut problems = Vec::new();
    let mut objects = Vec::new();
    let mut secrets = BTreeMap::new();
    let mut config_maps = BTreeMap::new();
    for path in files {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{file}: cannot read: {e}"));
                continue;
            }
        };
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let doc = index + 1;
            let value = match serde_yaml::Value::deserialize(document) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{file}: document {doc}: invalid YAML: {e}"));
                    // The parser cannot resynchronise after a syntax error.
                    break;
                }
            };
            if value.is_null() {
                continue;
            }
            let Ok(value) = serde_json::to_value(&value) else {
                problems.push(format!(
                    "{file}: document {doc}: invalid YAML: only string keys are supported"
                ));
                continue;
            };
            let kind = value["kind"].as_str().unwrap_or_default();
            let name = format!(
                "{}/{}",
                value["metadata"]["namespace"].as_str().unwrap_or("default"),
                value["metadata"]["name"].as_str().unwrap_or_default()
            );
            match kind {
                "LiteLLMDeployment" => match serde_json::from_value::<LiteLLMDeployment>(value) {
                    Ok(obj) => objects.push((file.clone(), obj)),
                    Err(e) => problems.push(format!("{file}: document {doc}: LiteLLMDeployment {name}: {e}")),
                },
                "Secret" => match kube_secret(value) {
                    Some((key, secret)) => {
                        secrets.insert(key, secret);
                    }
                    // serde's message could quote a value: say what is wrong without it.
                    None => problems.push(format!(
                        "{file}: document {doc}: Secret {name}: not a valid Kubernetes Secret (data values must be \
                         base64 strings, stringData values strings)"
                    )),
                },
                "ConfigMap" => match serde_json::from_value::<ConfigMap>(value) {
                    Ok(map) => {
                        let ns = namespace_of(&map.metadata.namespace);
                        let name = map.metadata.name.clone().unwrap_or_default();
                        config_maps.insert((ns, name), map.data.unwrap_or_default());
                    }
                    // Never serde's message: it could quote the configuration.
                    Err(_) => problems.push(format!(
                        "{file}: document {doc}: ConfigMap {name}: not a valid ConfigMap (data values must be \
                         strings)"
                    )),
                },
                "" => problems.push(format!("{file}: document {doc}: kind: missing")),
                _ => {}
            }
        }
    }
    let manifests = Manifests {
        deployments: Vec::new(),
        secrets,
        config_maps,
    };
    let mut deployments = Vec::new();
    for (file, obj) in objects {
        let id = format!(
            "{}/{}",
            namespace_of(&obj.metadata.namespace),
            obj.metadata.name.as_deref().unwrap_or_default()
        );
        match desired_state(&obj) {
            Ok(desired) => {
                let deployment = Deployment { file, obj, desired };
                problems.extend(missing_sources(&manifests, &deployment));
                deployments.push(deployment);
            }
            Err(invalid) => problems.extend(
                invalid
                    .0
                    .iter()
                    .map(|e| format!("{file}: LiteLLMDeployment {id}: {}: {}", e.field, e.message)),
            ),
        }
    }
    if problems.is_empty() && deployments.is_empty() {
        problems.push(format!(
            "{}: no LiteLLMDeployment found",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(Manifests {
            deployments,
            ..manifests
        })
    } else {
        Err(Problems(problems))
    }
}

fn kube_secret(value: Value) -> Option<((String, String), SourceSecret)> {
    let secret: KubeSecret = serde_json::from_value(value).ok()?;
    let ns = namespace_of(&secret.metadata.namespace);
    let name = secret.metadata.name.clone()?;
    let mut values: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    values.extend(
        secret
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    Some(((ns, name), SourceSecret { values }))
}

/// One problem per `fromSecret` whose Secret or key is not in the files, and one for a `spec.config` whose
/// ConfigMap or key is not, or whose YAML the planner would refuse (checked here, by the planner's own rule, so
/// nothing reaches Google).
fn missing_sources(manifests: &Manifests, deployment: &Deployment) -> Vec<String> {
    let ns = namespace_of(&deployment.obj.metadata.namespace);
    let config = deployment
        .obj
        .spec
        .config
        .as_ref()
        .and_then(|c| c.source())
        .and_then(|source| {
            let ConfigSource::ConfigMap(selector) = source else {
                return None;
            };
            let what = match manifests.config_value(deployment, selector) {
                Some(text) => {
                    let secret = deployment
                        .desired
                        .secrets
                        .iter()
                        .find(|s| s.delivery == Delivery::ConfigFile)?;
                    let value = Source::Value {
                        payload: SecretPayload::new(text.as_bytes().to_vec()),
                        revision: None,
                    };
                    secrets::source_problem(secret, Some(&value))?.message
                }
                None if manifests
                    .config_maps
                    .contains_key(&(ns.clone(), selector.name.clone())) =>
                {
                    format!(
                        "ConfigMap {ns}/{} has no key {:?} in its data",
                        selector.name, selector.key
                    )
                }
                None => format!("ConfigMap {ns}/{} is not in the given files", selector.name),
            };
            Some(format!(
                "{}: LiteLLMDeployment {}: spec.config.configMapKeyRef: {what}",
                deployment.file,
                deployment.id()
            ))
        });
    deployment
        .obj
        .spec
        .secrets
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let selector = s.from_secret.as_ref()?;
            if manifests.value(deployment, selector).is_some() {
                return None;
            }
            let what = if manifests
                .secrets
                .contains_key(&(ns.clone(), selector.name.clone()))
            {
                format!(
                    "Kubernetes Secret {ns}/{} has no key {:?}",
                    selector.name, selector.key
                )
            } else {
                format!(
                    "Kubernetes Secret {ns}/{} is not in the given files",
                    selector.name
                )
            };
            Some(format!(
                "{}: LiteLLMDeployment {}: spec.secrets[{i}].fromSecret: {what}",
                deployment.file,
                deployment.id()
            ))
        })
        .chain(config)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    #[test]
    fn secret_data_is_base64_and_string_data_wins() {
        let (key, secret) = kube_secret(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds"},
            "data": {"a": "YWxwaGE=", "b": "YmV0YQ=="},
            "stringData": {"b": "override"}
        }))
        .unwrap();
        assert_eq!(key, ("default".to_owned(), "creds".to_owned()));
        assert_eq!(secret.values["a"], b"alpha");
        assert_eq!(secret.values["b"], b"override");
        assert!(
            kube_secret(json!({"kind": "Secret", "metadata": {"name": "x"}, "data": {"a": "not base64!"}}))
                .is_none()
        );
    }
}
