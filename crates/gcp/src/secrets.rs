//! Secret Manager: secrets (containers, labels, ownership) and their versions (values).

use std::collections::BTreeMap;
use std::future::Future;

use google_cloud_secretmanager_v1::model;

use crate::Gcp;
use crate::call::Call;
use crate::error::{Error, Result};
use crate::limits::QuotaClass;
use crate::names::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecretName, VersionRef, version_number};
use crate::payload::{MAX_PAYLOAD_BYTES, SecretPayload};

/// Where Secret Manager stores a secret's versions.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Replication {
    /// Google chooses (the default).
    #[default]
    Automatic,
    /// Only these locations, e.g. `["europe-west1", "europe-west4"]`.
    UserManaged(Vec<String>),
}

/// A secret as Secret Manager reports it (metadata only; values live in versions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    /// Its name.
    pub name: SecretName,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its replication policy (`None` when Google returned none we understand).
    pub replication: Option<Replication>,
    /// Etag of this state of the secret.
    pub etag: String,
}

impl Secret {
    /// True when the secret carries `managed-by: litellm-operator`, i.e. this operator created (or adopted)
    /// it and may update or delete it.
    pub fn is_managed(&self) -> bool {
        self.labels
            .get(MANAGED_BY_LABEL)
            .is_some_and(|v| v == MANAGED_BY_VALUE)
    }
}

/// What to create.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NewSecret {
    /// Replication policy (immutable once created).
    pub replication: Replication,
    /// Labels; `managed-by: litellm-operator` is always added.
    pub labels: BTreeMap<String, String>,
}

/// Lifecycle state of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionState {
    /// Can be accessed.
    Enabled,
    /// Cannot be accessed; can be re-enabled.
    Disabled,
    /// Value gone for good.
    Destroyed,
    /// A state this crate does not know.
    Unknown,
}

/// One version of a secret (metadata, no value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretVersion {
    /// The secret it belongs to.
    pub secret: SecretName,
    /// Its number (1, 2, ...).
    pub number: u64,
    /// Its state.
    pub state: VersionState,
    /// Etag of this state of the version.
    pub etag: String,
    /// When it was created, in seconds since the Unix epoch (`None` when Google does not say).
    pub created: Option<i64>,
}

/// A version's value, as read by [`SecretVersionStore::access_version`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessedVersion {
    /// The concrete version number (resolved when `latest` was asked for).
    pub number: u64,
    /// The value (redacted in `Debug`).
    pub payload: SecretPayload,
}

/// Secrets as containers: find, create, delete.
pub trait SecretStore {
    /// The secret, or `None` when it does not exist.
    fn find_secret(&self, name: &SecretName) -> impl Future<Output = Result<Option<Secret>>> + Send;

    /// Creates the secret with `managed-by: litellm-operator` added to its labels. Never retried: after a
    /// transient failure, [`SecretStore::find_secret`] tells whether it was created.
    fn create_secret(
        &self,
        name: &SecretName,
        spec: &NewSecret,
    ) -> impl Future<Output = Result<Secret>> + Send;

    /// Secrets of a project, optionally restricted by a Secret Manager filter (e.g.
    /// `labels.managed-by=litellm-operator`).
    /// Names are in `project`'s form (Google answers with the project number; this keeps the id the caller used).
    fn list_secrets(
        &self,
        project: &str,
        filter: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Secret>>> + Send;

    /// Replaces the secret's labels (e.g. to adopt an existing secret by adding `managed-by`). Guarded by
    /// `etag` from [`SecretStore::find_secret`]: a concurrent change fails with `FailedPrecondition`.
    fn update_labels(
        &self,
        name: &SecretName,
        labels: &BTreeMap<String, String>,
        etag: &str,
    ) -> impl Future<Output = Result<Secret>> + Send;

    /// Deletes the secret and all its versions. `Ok(false)` when it was already gone. Pass the etag from
    /// [`SecretStore::find_secret`] to delete only the state that was inspected (e.g. checked for ownership).
    fn delete_secret(
        &self,
        name: &SecretName,
        etag: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Versions of a secret: add, inspect, resolve, read, enable, disable, destroy.
pub trait SecretVersionStore {
    /// Adds a version holding `payload` (at most 64 KiB) and returns it. Never retried: `addVersion` is not
    /// idempotent, so after a failure the caller compares the latest version's value before adding again.
    fn add_version(
        &self,
        name: &SecretName,
        payload: &SecretPayload,
    ) -> impl Future<Output = Result<SecretVersion>> + Send;

    /// The version, or `None` when it (or the secret) does not exist.
    fn get_version(
        &self,
        name: &SecretName,
        version: VersionRef,
    ) -> impl Future<Output = Result<Option<SecretVersion>>> + Send;

    /// The concrete number `version` stands for (`latest` resolved); `NotFound` when there is none.
    fn resolve_version(
        &self,
        name: &SecretName,
        version: VersionRef,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Reads a version's value (checking its CRC32C when Google sends one).
    fn access_version(
        &self,
        name: &SecretName,
        version: VersionRef,
    ) -> impl Future<Output = Result<AccessedVersion>> + Send;

    /// All versions of the secret, newest first.
    fn list_versions(&self, name: &SecretName) -> impl Future<Output = Result<Vec<SecretVersion>>> + Send;

    /// Enables a version (no-op when enabled).
    fn enable_version(
        &self,
        name: &SecretName,
        number: u64,
    ) -> impl Future<Output = Result<SecretVersion>> + Send;

    /// Disables a version (no-op when disabled).
    fn disable_version(
        &self,
        name: &SecretName,
        number: u64,
    ) -> impl Future<Output = Result<SecretVersion>> + Send;

    /// Destroys a version's value irrevocably.
    fn destroy_version(
        &self,
        name: &SecretName,
        number: u64,
    ) -> impl Future<Output = Result<SecretVersion>> + Send;
}

fn secret_from(name: &SecretName, s: model::Secret) -> Secret {
    let replication = s.replication.and_then(|r| r.replication).map(|r| match r {
        model::replication::Replication::Automatic(_) => Replication::Automatic,
        model::replication::Replication::UserManaged(u) => {
            Replication::UserManaged(u.replicas.into_iter().map(|r| r.location).collect())
        }
        _ => Replication::Automatic,
    });
    Secret {
        name: name.clone(),
        labels: s.labels.into_iter().collect(),
        replication,
        etag: s.etag,
    }
}

fn version_from(name: &SecretName, v: model::SecretVersion) -> Result<SecretVersion> {
    let number = version_number(&v.name).ok_or_else(|| Error::UnexpectedResponse {
        resource: name.to_string(),
        message: format!("version name {:?} has no number", v.name),
    })?;
    let state = match v.state {
        model::secret_version::State::Enabled => VersionState::Enabled,
        model::secret_version::State::Disabled => VersionState::Disabled,
        model::secret_version::State::Destroyed => VersionState::Destroyed,
        _ => VersionState::Unknown,
    };
    Ok(SecretVersion {
        secret: name.clone(),
        number,
        state,
        etag: v.etag,
        created: v.create_time.map(|t| t.seconds()),
    })
}

fn replication_model(r: &Replication) -> model::Replication {
    match r {
        Replication::Automatic => {
            model::Replication::new().set_automatic(model::replication::Automatic::new())
        }
        Replication::UserManaged(locations) => model::Replication::new().set_user_managed(
            model::replication::UserManaged::new().set_replicas(
                locations
                    .iter()
                    .map(|l| model::replication::user_managed::Replica::new().set_location(l)),
            ),
        ),
    }
}

/// `Ok(None)` for NotFound.
fn found<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl SecretStore for Gcp {
    async fn find_secret(&self, name: &SecretName) -> Result<Option<Secret>> {
        let resource = name.to_string();
        let client = &self.inner.secret_manager;
        let r = self
            .inner
            .caller
            .call(
                Call::secrets("GetSecret", &resource, QuotaClass::SecretRead),
                || client.get_secret().set_name(&resource).send(),
            )
            .await;
        Ok(found(r)?.map(|s| secret_from(name, s)))
    }

    async fn create_secret(&self, name: &SecretName, spec: &NewSecret) -> Result<Secret> {
        let resource = name.to_string();
        let mut labels = spec.labels.clone();
        labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
        let secret = model::Secret::new()
            .set_replication(replication_model(&spec.replication))
            .set_labels(labels);
        let client = &self.inner.secret_manager;
        let call = Call::secrets("CreateSecret", &resource, QuotaClass::SecretWrite).never_repeat();
        let created = self
            .inner
            .caller
            .call(call, || {
                client
                    .create_secret()
                    .set_parent(name.parent())
                    .set_secret_id(&name.secret)
                    .set_secret(secret.clone())
                    .send()
            })
            .await?;
        tracing::info!(secret = %resource, "Created secret");
        Ok(secret_from(name, created))
    }

    async fn list_secrets(&self, project: &str, filter: Option<&str>) -> Result<Vec<Secret>> {
        let parent = format!("projects/{project}");
        let client = &self.inner.secret_manager;
        let mut secrets = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .inner
                .caller
                .call(
                    Call::secrets("ListSecrets", &parent, QuotaClass::SecretRead),
                    || {
                        client
                            .list_secrets()
                            .set_parent(&parent)
                            .set_filter(filter.unwrap_or_default())
                            .set_page_size(100)
                            .set_page_token(&page_token)
                            .send()
                    },
                )
                .await?;
            for s in page.secrets {
                let listed = SecretName::parse(&s.name).ok_or_else(|| Error::UnexpectedResponse {
                    resource: parent.clone(),
                    message: format!("secret name {:?} is not projects/*/secrets/*", s.name),
                })?;
                // Google names the project by number; keep the caller's form so names compare equal.
                let name = SecretName::new(project, &listed.secret);
                secrets.push(secret_from(&name, s));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(secrets)
    }

    async fn update_labels(
        &self,
        name: &SecretName,
        labels: &BTreeMap<String, String>,
        etag: &str,
    ) -> Result<Secret> {
        let resource = name.to_string();
        let secret = model::Secret::new()
            .set_name(&resource)
            .set_labels(labels.clone())
            .set_etag(etag);
        let mask = google_cloud_wkt::FieldMask::default().set_paths(["labels"]);
        let client = &self.inner.secret_manager;
        let call =
            Call::secrets("UpdateSecret", &resource, QuotaClass::SecretWrite).repeat_if(!etag.is_empty());
        let updated = self
            .inner
            .caller
            .call(call, || {
                client
                    .update_secret()
                    .set_secret(secret.clone())
                    .set_update_mask(mask.clone())
                    .send()
            })
            .await?;
        tracing::info!(secret = %resource, "Updated secret labels");
        Ok(secret_from(name, updated))
    }

    async fn delete_secret(&self, name: &SecretName, etag: Option<&str>) -> Result<bool> {
        let resource = name.to_string();
        let client = &self.inner.secret_manager;
        // Safe to repeat: a repeated delete finds the secret gone; with an etag it cannot hit a newer state.
        let r = self
            .inner
            .caller
            .call(
                Call::secrets("DeleteSecret", &resource, QuotaClass::SecretWrite),
                || {
                    client
                        .delete_secret()
                        .set_name(&resource)
                        .set_etag(etag.unwrap_or_default())
                        .send()
                },
            )
            .await;
        let existed = found(r)?.is_some();
        if existed {
            tracing::info!(secret = %resource, "Deleted secret");
        }
        Ok(existed)
    }
}

impl Gcp {
    async fn version_call(
        &self,
        method: &'static str,
        name: &SecretName,
        number: u64,
    ) -> Result<SecretVersion> {
        let resource = name.version(VersionRef::Number(number));
        let client = &self.inner.secret_manager;
        // State changes are idempotent (a disabled version can be disabled again), hence safe to repeat.
        let v = self
            .inner
            .caller
            .call(
                Call::secrets(method, &resource, QuotaClass::SecretWrite),
                || async {
                    match method {
                        "EnableSecretVersion" => {
                            client.enable_secret_version().set_name(&resource).send().await
                        }
                        "DisableSecretVersion" => {
                            client.disable_secret_version().set_name(&resource).send().await
                        }
                        _ => client.destroy_secret_version().set_name(&resource).send().await,
                    }
                },
            )
            .await?;
        let v = version_from(name, v)?;
        tracing::info!(secret = %name, version = v.number, state = ?v.state, "Changed secret version state");
        Ok(v)
    }
}

impl SecretVersionStore for Gcp {
    async fn add_version(&self, name: &SecretName, payload: &SecretPayload) -> Result<SecretVersion> {
        let resource = name.to_string();
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::InvalidArgument {
                resource,
                message: format!(
                    "payload is {} bytes; Secret Manager allows {MAX_PAYLOAD_BYTES}",
                    payload.len()
                ),
            });
        }
        let body = model::SecretPayload::new()
            .set_data(payload.bytes())
            .set_data_crc32c(i64::from(payload.crc32c()));
        let client = &self.inner.secret_manager;
        let call = Call::secrets("AddSecretVersion", &resource, QuotaClass::SecretWrite)
            .never_repeat()
            .carrying(payload);
        let v = self
            .inner
            .caller
            .call(call, || {
                client
                    .add_secret_version()
                    .set_parent(&resource)
                    .set_payload(body.clone())
                    .send()
            })
            .await?;
        let v = version_from(name, v)?;
        tracing::info!(secret = %resource, version = v.number, "Added secret version");
        Ok(v)
    }

    async fn get_version(&self, name: &SecretName, version: VersionRef) -> Result<Option<SecretVersion>> {
        let resource = name.version(version);
        let client = &self.inner.secret_manager;
        let r = self
            .inner
            .caller
            .call(
                Call::secrets("GetSecretVersion", &resource, QuotaClass::SecretRead),
                || client.get_secret_version().set_name(&resource).send(),
            )
            .await;
        found(r)?.map(|v| version_from(name, v)).transpose()
    }

    async fn resolve_version(&self, name: &SecretName, version: VersionRef) -> Result<u64> {
        if let VersionRef::Number(n) = version {
            return Ok(n);
        }
        self.get_version(name, version)
            .await?
            .map(|v| v.number)
            .ok_or_else(|| Error::NotFound {
                resource: name.version(version),
                message: "the secret has no enabled version".to_owned(),
            })
    }

    async fn access_version(&self, name: &SecretName, version: VersionRef) -> Result<AccessedVersion> {
        let resource = name.version(version);
        let client = &self.inner.secret_manager;
        let r = self
            .inner
            .caller
            .call(
                Call::secrets("AccessSecretVersion", &resource, QuotaClass::SecretAccess),
                || client.access_secret_version().set_name(&resource).send(),
            )
            .await?;
        let number = version_number(&r.name).ok_or_else(|| Error::UnexpectedResponse {
            resource: resource.clone(),
            message: format!("version name {:?} has no number", r.name),
        })?;
        let data = r.payload.map(|p| (p.data, p.data_crc32c)).unwrap_or_default();
        let payload = SecretPayload::new(data.0);
        if let Some(crc) = data.1
            && crc != i64::from(payload.crc32c())
        {
            return Err(Error::UnexpectedResponse {
                resource,
                message: "payload checksum mismatch".to_owned(),
            });
        }
        Ok(AccessedVersion { number, payload })
    }

    async fn list_versions(&self, name: &SecretName) -> Result<Vec<SecretVersion>> {
        let resource = name.to_string();
        let client = &self.inner.secret_manager;
        let mut versions = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .inner
                .caller
                .call(
                    Call::secrets("ListSecretVersions", &resource, QuotaClass::SecretRead),
                    || {
                        client
                            .list_secret_versions()
                            .set_parent(&resource)
                            .set_page_size(100)
                            .set_page_token(&page_token)
                            .send()
                    },
                )
                .await?;
            for v in page.versions {
                versions.push(version_from(name, v)?);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        versions.sort_by_key(|v| std::cmp::Reverse(v.number));
        Ok(versions)
    }

    async fn enable_version(&self, name: &SecretName, number: u64) -> Result<SecretVersion> {
        self.version_call("EnableSecretVersion", name, number).await
    }

    async fn disable_version(&self, name: &SecretName, number: u64) -> Result<SecretVersion> {
        self.version_call("DisableSecretVersion", name, number).await
    }

    async fn destroy_version(&self, name: &SecretName, number: u64) -> Result<SecretVersion> {
        self.version_call("DestroySecretVersion", name, number).await
    }
}
