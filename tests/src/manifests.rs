//! Reading the repository's YAML and installing CRDs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use serde::Deserialize as _;

use crate::error::{Error, Result};

/// The field manager of every write the harness makes.
pub const FIELD_MANAGER: &str = "litellm-operator-tests";

/// The generated LiteLLMDeployment CRD, relative to the repository root.
pub const LITELLM_CRD: &str = "crds/litellmdeployments.yaml";

/// How long a new CRD may take to become Established.
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// `relative` resolved against the repository root (this crate lives in `tests/`).
pub fn repo_path(relative: impl AsRef<Path>) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// The text of a file of the repository (`relative` to its root).
pub fn read_repo_file(relative: impl AsRef<Path>) -> Result<String> {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })
}

/// Every non-empty document of a multi-document YAML text, as JSON values.
pub fn yaml_documents(text: &str, what: &str) -> Result<Vec<serde_json::Value>> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(document).map_err(|source| Error::Parse {
            what: what.to_owned(),
            source,
        })?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Applies a CRD (server-side apply) and waits until the API server reports it Established, so
/// its kind can be used right away.
pub async fn install_crd(client: &Client, yaml: &str) -> Result<CustomResourceDefinition> {
    let crd: CustomResourceDefinition = serde_yaml::from_str(yaml).map_err(|source| Error::Parse {
        what: "CustomResourceDefinition".to_owned(),
        source,
    })?;
    let name = crd.metadata.name.clone().unwrap_or_default();
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(|source| Error::Api {
        what: format!("apply CRD {name}"),
        source,
    })?;
    let established = await_condition(api, &name, conditions::is_crd_established());
    match tokio::time::timeout(ESTABLISHED_TIMEOUT, established).await {
        Ok(Ok(Some(crd))) => Ok(crd),
        _ => Err(Error::Timeout {
            what: format!("CRD {name} becoming Established"),
            waited: ESTABLISHED_TIMEOUT,
        }),
    }
}

/// Installs the generated LiteLLMDeployment CRD ([`LITELLM_CRD`]) and waits until it is Established.
pub async fn install_litellm_crd(client: &Client) -> Result<CustomResourceDefinition> {
    install_crd(client, &read_repo_file(LITELLM_CRD)?).await
}
