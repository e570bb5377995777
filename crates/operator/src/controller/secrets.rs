//! Step 2: every secret exists, is ours (or external), and has the version the service should pin.
//!
//! A version is added only when the value changed: the Kubernetes Secret's `resourceVersion` that produced the
//! pinned version is kept in status, and when that record is missing or stale the newest enabled version's value
//! is compared before adding, so a crash between `addVersion` and the status write never adds the same value twice.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;
use litellm_operator_api::names::{self, ADOPT_ANNOTATION, reason};
use litellm_operator_api::{
    GeneratedValue, LiteLLMDeployment, LiteLLMDeploymentStatus, PinnedSecret, SecretKeySelector,
};
use litellm_operator_gcp::{
    Error as GcpError, Gcp, NewSecret, Replication, SecretName, SecretPayload, SecretStore,
    SecretVersionStore, VersionRef, VersionState,
};

use super::Context;
use crate::conditions::Outcome;
use crate::desired::{DesiredReplication, DesiredSecret, DesiredSource, DesiredState};
use crate::error::{Error, Result};

/// Secrets of one resource converged at once; the client-side quota buckets still pace the calls.
const PARALLEL_SECRETS: usize = 8;

/// What the secrets step found and did.
pub(super) struct SecretsOutcome {
    /// Condition `SecretsReady`.
    pub outcome: Outcome,
    /// Version number to pin, by env name (only secrets that are ready).
    pub pinned: BTreeMap<String, String>,
    /// `status.secrets`.
    pub statuses: Vec<PinnedSecret>,
}

/// A problem with one secret that does not stop the others.
struct Problem {
    reason: &'static str,
    message: String,
}

pub(super) async fn converge(
    obj: &LiteLLMDeployment,
    desired: &DesiredState,
    old: &LiteLLMDeploymentStatus,
    light: bool,
    ctx: &Context,
) -> Result<SecretsOutcome> {
    let mut pinned = BTreeMap::new();
    let mut statuses = Vec::new();
    let mut problems = Vec::new();
    // Secrets are independent: converge them side by side (bounded), then report in spec order.
    let mut work = Vec::with_capacity(desired.secrets.len());
    for secret in &desired.secrets {
        let previous = old
            .secrets
            .iter()
            .find(|p| p.env == secret.env && p.secret == secret.resource);
        work.push(async move {
            (
                secret,
                previous,
                converge_one(obj, desired, secret, previous, light, ctx).await,
            )
        });
    }
    let results: Vec<_> = futures::stream::iter(work)
        .buffered(PARALLEL_SECRETS)
        .collect()
        .await;
    for (secret, previous, result) in results {
        match result? {
            Ok((version, source_resource_version)) => {
                pinned.insert(secret.env.clone(), version.to_string());
                statuses.push(PinnedSecret {
                    env: secret.env.clone(),
                    secret: secret.resource.clone(),
                    version: Some(version.to_string()),
                    source_resource_version,
                });
            }
            Err(problem) => {
                // Keep what was pinned before so the running revision's record is not lost.
                if let Some(p) = previous {
                    statuses.push(p.clone());
                }
                problems.push(problem);
            }
        }
    }
    let outcome = match problems.first() {
        None => Outcome::ready(format!("{} secrets pinned to concrete versions", pinned.len())),
        Some(first) => Outcome::not_ready(
            first.reason,
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    Ok(SecretsOutcome {
        outcome,
        pinned,
        statuses,
    })
}

/// `Ok(Ok((version, source resourceVersion)))` when pinned, `Ok(Err(problem))` for a per-secret problem, `Err` for
/// a Google or Kubernetes failure that stops the step.
async fn converge_one(
    obj: &LiteLLMDeployment,
    desired: &DesiredState,
    secret: &DesiredSecret,
    previous: Option<&PinnedSecret>,
    light: bool,
    ctx: &Context,
) -> Result<std::result::Result<(u64, Option<String>), Problem>> {
    let name = SecretName::new(&desired.project, &secret.secret_id);
    if light && let Some(pinned) = unchanged_since_full_pass(obj, secret, previous, ctx).await? {
        return Ok(Ok(pinned));
    }
    match &secret.source {
        DesiredSource::External { version } => external(&ctx.gcp, &name, version)
            .await
            .map(|r| r.map(|n| (n, None))),
        DesiredSource::FromSecret(selector) => match ensure_secret(obj, desired, &name, ctx).await? {
            Some(problem) => Ok(Err(problem)),
            None => from_secret(obj, &name, selector, previous, ctx).await,
        },
        DesiredSource::Generate(generate) => match ensure_secret(obj, desired, &name, ctx).await? {
            Some(problem) => Ok(Err(problem)),
            None => generated(obj, &name, generate, previous, ctx)
                .await
                .map(|r| r.map(|n| (n, None))),
        },
    }
}

/// A light pass (shortly after a full one, same generation) trusts the recorded pin while its input is unchanged:
/// the Kubernetes Secret's resourceVersion for `fromSecret`, the spec itself for `generate` and `external`. The
/// periodic resync's full pass finds anything changed on Google's side (a disabled version, a newer external one).
async fn unchanged_since_full_pass(
    obj: &LiteLLMDeployment,
    secret: &DesiredSecret,
    previous: Option<&PinnedSecret>,
    ctx: &Context,
) -> Result<Option<(u64, Option<String>)>> {
    let Some(previous) = previous else { return Ok(None) };
    let Some(version) = previous.version.as_deref().and_then(|v| v.parse::<u64>().ok()) else {
        return Ok(None);
    };
    Ok(match &secret.source {
        DesiredSource::Generate(_) => Some((version, None)),
        DesiredSource::External { version: wanted } => {
            (wanted == "latest" || *wanted == version.to_string()).then_some((version, None))
        }
        DesiredSource::FromSecret(selector) => {
            let secrets: Api<KubeSecret> =
                Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
            let current = secrets
                .get_metadata_opt(&selector.name)
                .await
                .map_err(Error::Kubernetes)?;
            let resource_version = current.and_then(|s| s.metadata.resource_version);
            (resource_version.is_some() && resource_version == previous.source_resource_version)
                .then_some((version, resource_version))
        }
    })
}

/// Creates the secret when missing; a secret we write must be ours (created by us for this LiteLLMDeployment)
/// or explicitly adopted.
async fn ensure_secret(
    obj: &LiteLLMDeployment,
    desired: &DesiredState,
    name: &SecretName,
    ctx: &Context,
) -> Result<Option<Problem>> {
    if let Some(found) = ctx
        .gcp
        .find_secret(name)
        .await
        .map_err(Error::google("secrets"))?
    {
        if !owned(obj, desired, &found.labels) {
            return Ok(Some(not_owned(name)));
        }
        if !labelled_ours(desired, &found.labels) {
            // Adopted: put our labels on it (keeping its own), so it stays ours once the annotation is gone and
            // cleanup recognises it. Guarded by the etag we just read.
            let mut labels = found.labels.clone();
            labels.extend(desired.secret_labels.clone());
            ctx.gcp
                .update_labels(name, &labels, &found.etag)
                .await
                .map_err(Error::google("secrets"))?;
            ctx.event(
                obj,
                EventType::Normal,
                "SecretAdopted",
                format!("Adopted secret {name}: added the operator's labels"),
            )
            .await;
        }
        return Ok(None);
    }
    let spec = NewSecret {
        replication: match &desired.replication {
            DesiredReplication::Automatic => Replication::Automatic,
            DesiredReplication::UserManaged(l) => Replication::UserManaged(l.clone()),
        },
        labels: desired.secret_labels.clone(),
    };
    match ctx.gcp.create_secret(name, &spec).await {
        Ok(_) => {
            ctx.event(
                obj,
                EventType::Normal,
                "SecretCreated",
                format!("Created secret {name}"),
            )
            .await;
            Ok(None)
        }
        // A retried reconcile that created it before: check it like any other.
        Err(GcpError::AlreadyExists { .. }) => ownership_problem(obj, desired, name, ctx).await,
        Err(e) => Err(Error::google("secrets")(e)),
    }
}

async fn ownership_problem(
    obj: &LiteLLMDeployment,
    desired: &DesiredState,
    name: &SecretName,
    ctx: &Context,
) -> Result<Option<Problem>> {
    let found = ctx
        .gcp
        .find_secret(name)
        .await
        .map_err(Error::google("secrets"))?;
    Ok(match found {
        Some(s) if owned(obj, desired, &s.labels) => None,
        _ => Some(not_owned(name)),
    })
}

/// Ours when it carries our labels for this very LiteLLMDeployment, or when adoption is switched on and no other
/// LiteLLMDeployment owns it.
fn owned(obj: &LiteLLMDeployment, desired: &DesiredState, labels: &BTreeMap<String, String>) -> bool {
    let adopting = obj.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true");
    let someone_elses = labels
        .get(names::OWNER_LABEL)
        .is_some_and(|o| Some(o) != desired.secret_labels.get(names::OWNER_LABEL));
    labelled_ours(desired, labels) || (adopting && !someone_elses)
}

fn labelled_ours(desired: &DesiredState, labels: &BTreeMap<String, String>) -> bool {
    labels.get(names::MANAGED_BY_LABEL).map(String::as_str) == Some(names::MANAGED_BY_VALUE)
        && labels.get(names::OWNER_LABEL) == desired.secret_labels.get(names::OWNER_LABEL)
}

fn not_owned(name: &SecretName) -> Problem {
    Problem {
        reason: reason::CONFLICT,
        message: format!(
            "secret {name} exists but was not created for this LiteLLMDeployment; set secretId to another id, or \
             annotate the LiteLLMDeployment with {ADOPT_ANNOTATION}: \"true\" to adopt it"
        ),
    }
}

/// `external`: never written. `latest` resolves to the newest enabled version; a number must be enabled.
async fn external(gcp: &Gcp, name: &SecretName, version: &str) -> Result<std::result::Result<u64, Problem>> {
    let missing = |message: String| Problem {
        reason: reason::SECRET_SOURCE_MISSING,
        message,
    };
    if version == "latest" {
        return Ok(match list(gcp, name).await? {
            None => Err(missing(format!(
                "external secret {name} does not exist; create it and add a version"
            ))),
            Some(versions) => versions
                .into_iter()
                .find(|v| v.state == VersionState::Enabled)
                .map(|v| v.number)
                .ok_or_else(|| missing(format!("external secret {name} has no enabled version"))),
        });
    }
    let Ok(number) = version.parse::<u64>() else {
        return Ok(Err(Problem {
            reason: reason::INVALID_SPEC,
            message: format!("{version:?} is not a version"),
        }));
    };
    Ok(
        match gcp
            .get_version(name, VersionRef::Number(number))
            .await
            .map_err(Error::google("secrets"))?
        {
            Some(v) if v.state == VersionState::Enabled => Ok(number),
            Some(_) => Err(missing(format!(
                "external secret {name} version {number} is disabled or destroyed"
            ))),
            None => Err(missing(format!(
                "external secret {name} version {number} does not exist"
            ))),
        },
    )
}

/// All versions, newest first; `None` when the secret does not exist.
async fn list(gcp: &Gcp, name: &SecretName) -> Result<Option<Vec<litellm_operator_gcp::SecretVersion>>> {
    match gcp.list_versions(name).await {
        Ok(v) => Ok(Some(v)),
        Err(GcpError::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::google("secrets")(e)),
    }
}

/// Whether the version we pinned before is still there and enabled (one read per secret per resync).
async fn still_enabled(gcp: &Gcp, name: &SecretName, previous: Option<&PinnedSecret>) -> Result<Option<u64>> {
    let Some(number) = previous
        .and_then(|p| p.version.as_deref())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Ok(None);
    };
    let version = gcp
        .get_version(name, VersionRef::Number(number))
        .await
        .map_err(Error::google("secrets"))?;
    Ok(version
        .filter(|v| v.state == VersionState::Enabled)
        .map(|v| v.number))
}

/// `fromSecret`: add a version only when the Kubernetes Secret's value differs from the newest enabled one.
async fn from_secret(
    obj: &LiteLLMDeployment,
    name: &SecretName,
    selector: &SecretKeySelector,
    previous: Option<&PinnedSecret>,
    ctx: &Context,
) -> Result<std::result::Result<(u64, Option<String>), Problem>> {
    let ns = obj.namespace().unwrap_or_default();
    let secrets: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), &ns);
    let missing = |message: String| Problem {
        reason: reason::SECRET_SOURCE_MISSING,
        message,
    };
    let Some(source) = secrets.get_opt(&selector.name).await.map_err(Error::Kubernetes)? else {
        return Ok(Err(missing(format!(
            "Kubernetes Secret {ns}/{} not found",
            selector.name
        ))));
    };
    let resource_version = source.resource_version();
    let Some(value) = source.data.as_ref().and_then(|d| d.get(&selector.key)) else {
        return Ok(Err(missing(format!(
            "Kubernetes Secret {ns}/{} has no key {:?}",
            selector.name, selector.key
        ))));
    };
    let payload = SecretPayload::new(value.0.clone());

    let unchanged_source = previous.is_some_and(|p| {
        p.source_resource_version.is_some() && p.source_resource_version == resource_version
    });
    if unchanged_source && let Some(number) = still_enabled(&ctx.gcp, name, previous).await? {
        return Ok(Ok((number, resource_version)));
    }
    // The record is missing or stale: compare with the newest enabled version before adding one.
    let versions = list(&ctx.gcp, name).await?.unwrap_or_default();
    if let Some(newest) = versions.iter().find(|v| v.state == VersionState::Enabled) {
        let current = ctx
            .gcp
            .access_version(name, VersionRef::Number(newest.number))
            .await
            .map_err(Error::google("secrets"))?;
        if current.payload == payload {
            return Ok(Ok((newest.number, resource_version)));
        }
    }
    let added = match ctx.gcp.add_version(name, &payload).await {
        Ok(v) => v,
        Err(e @ GcpError::InvalidArgument { .. }) => {
            return Ok(Err(Problem {
                reason: reason::INVALID_SPEC,
                message: format!("{e}"),
            }));
        }
        Err(e) => return Err(Error::google("secrets")(e)),
    };
    ctx.event(
        obj,
        EventType::Normal,
        "SecretVersionAdded",
        format!(
            "Added version {} of {name} from Secret {ns}/{} key {}",
            added.number, selector.name, selector.key
        ),
    )
    .await;
    Ok(Ok((added.number, resource_version)))
}

/// `generate`: create a value once; never regenerate while an enabled version exists.
async fn generated(
    obj: &LiteLLMDeployment,
    name: &SecretName,
    generate: &GeneratedValue,
    previous: Option<&PinnedSecret>,
    ctx: &Context,
) -> Result<std::result::Result<u64, Problem>> {
    if let Some(number) = still_enabled(&ctx.gcp, name, previous).await? {
        return Ok(Ok(number));
    }
    let versions = list(&ctx.gcp, name).await?.unwrap_or_default();
    if let Some(newest) = versions.iter().find(|v| v.state == VersionState::Enabled) {
        return Ok(Ok(newest.number));
    }
    let payload = SecretPayload::new(crate::generate::value(generate));
    let added = ctx
        .gcp
        .add_version(name, &payload)
        .await
        .map_err(Error::google("secrets"))?;
    ctx.event(
        obj,
        EventType::Normal,
        "SecretGenerated",
        format!(
            "Generated version {} of {name} ({} random characters)",
            added.number, generate.length
        ),
    )
    .await;
    Ok(Ok(added.number))
}
