//! Observe: read what exists in Google for one deployment, nothing else, into the planner's [`Model`].
//!
//! A full pass reads, per secret, its metadata and version list (plus the newest value only when a given value's
//! source changed, as [`secrets::needs_payload`] decides) and the policy of every resource a binding sits on; per
//! deployment, the service and its policy. A light pass (shortly after a full one, same generation) trusts the
//! record for inputs that did not change and reads only the service.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use litellm_operator_gcp::{
    CloudRun, Error as GcpError, Gcp, IamPolicies, PolicyTarget, SecretName, SecretStore, SecretVersionStore,
    ServiceName, VersionRef,
};

use crate::error::Error;
use crate::plan::cleanup::Teardown;
use crate::plan::{
    DesiredSecret, DesiredSource, DesiredState, Model, PolicyView, Record, SecretState, SecretView, Source,
    VersionView, secrets,
};
use crate::service_json;

/// Reads in flight at once.
const PARALLEL: usize = 8;

/// Observes everything the apply phases of `desired` plan from.
pub async fn deployment(
    gcp: &Gcp,
    desired: &DesiredState,
    sources: &BTreeMap<String, Source>,
    record: Record,
    light: bool,
) -> Result<Model, Error> {
    let mut reads = Vec::with_capacity(desired.secrets.len());
    for secret in &desired.secrets {
        reads.push(observe_secret(
            gcp,
            desired,
            secret,
            sources.get(secret.key()),
            &record,
            light,
        ));
    }
    let secrets: Vec<Result<(String, SecretView), Error>> =
        futures::stream::iter(reads).buffered(PARALLEL).collect().await;
    let secrets: BTreeMap<String, SecretView> = secrets.into_iter().collect::<Result<_, _>>()?;

    let service_name = desired.service_name();
    let service = read_service(gcp, &service_name).await?;

    // Policies: of every existing resource a needed binding sits on; in a light pass only where the record does
    // not already vouch for the binding. Recorded bindings no longer needed are not read: a revoke reads the
    // policy it edits anyway.
    let exists = |resource: &str| {
        if resource == desired.service_resource {
            service.is_some()
        } else {
            matches!(
                secrets.get(resource),
                Some(SecretView::Present(_) | SecretView::Trusted)
            )
        }
    };
    let to_read: BTreeSet<&str> = desired
        .bindings
        .iter()
        .filter(|b| exists(&b.resource))
        .filter(|b| !(light && record.bindings.contains(*b)))
        .map(|b| b.resource.as_str())
        .collect();
    let mut policies = Vec::with_capacity(to_read.len());
    for resource in to_read {
        policies.push(read_policy(gcp, resource.to_owned()));
    }
    let policies: Vec<Result<Option<(String, PolicyView)>, Error>> =
        futures::stream::iter(policies).buffered(PARALLEL).collect().await;
    let mut model = Model {
        secrets,
        policies: BTreeMap::new(),
        service,
        record,
    };
    for p in policies {
        if let Some((resource, view)) = p? {
            model.policies.insert(resource, view);
        }
    }
    Ok(model)
}

async fn observe_secret(
    gcp: &Gcp,
    desired: &DesiredState,
    secret: &DesiredSecret,
    source: Option<&Source>,
    record: &Record,
    light: bool,
) -> Result<(String, SecretView), Error> {
    let name = SecretName::new(&desired.project, &secret.secret_id);
    if secrets::source_problem(secret, source).is_some() {
        // Refused before any call: nothing to read.
        return Ok((secret.resource.clone(), SecretView::Missing));
    }
    if light && secrets::trusted(secret, source, record) {
        return Ok((secret.resource.clone(), SecretView::Trusted));
    }
    let view = match &secret.source {
        DesiredSource::External { .. } => match versions(gcp, &name).await? {
            None => SecretView::Missing,
            Some(versions) => SecretView::Present(SecretState {
                versions,
                ..SecretState::default()
            }),
        },
        DesiredSource::FromSecret(_)
        | DesiredSource::FromConfigMap(_)
        | DesiredSource::Inline { .. }
        | DesiredSource::Generate(_) => match gcp.find_secret(&name).await.map_err(Error::observe(&name))? {
            None => SecretView::Missing,
            Some(found) => {
                let mut state = SecretState {
                    labels: found.labels,
                    etag: found.etag,
                    versions: versions(gcp, &name).await?.unwrap_or_default(),
                    newest_payload: None,
                };
                if secrets::needs_payload(secret, source, &state, record)
                    && let Some(newest) = state.newest_enabled()
                {
                    let accessed = gcp
                        .access_version(&name, VersionRef::Number(newest))
                        .await
                        .map_err(Error::observe(&name))?;
                    state.newest_payload = Some(accessed.payload);
                }
                SecretView::Present(state)
            }
        },
    };
    Ok((secret.resource.clone(), view))
}

async fn read_policy(gcp: &Gcp, resource: String) -> Result<Option<(String, PolicyView)>, Error> {
    let target = SecretName::parse(&resource)
        .map(PolicyTarget::Secret)
        .or_else(|| ServiceName::parse(&resource).map(PolicyTarget::Service));
    let Some(target) = target else {
        return Ok(None);
    };
    match gcp.get_policy(&target).await {
        Ok(policy) => Ok(Some((resource, policy_view(&policy)))),
        Err(GcpError::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::observe(&resource)(e)),
    }
}

/// Observes what a deletion plans from: the service and the secrets it may delete (metadata only).
pub async fn teardown(gcp: &Gcp, teardown: &Teardown, record: Record) -> Result<Model, Error> {
    let service = if teardown.delete_service {
        read_service(gcp, &teardown.service).await?
    } else {
        None
    };
    let mut secrets = BTreeMap::new();
    if teardown.delete_secrets {
        for name in &teardown.secrets {
            let view = match gcp.find_secret(name).await.map_err(Error::observe(name))? {
                None => SecretView::Missing,
                Some(found) => SecretView::Present(SecretState {
                    labels: found.labels,
                    etag: found.etag,
                    ..SecretState::default()
                }),
            };
            secrets.insert(name.to_string(), view);
        }
    }
    Ok(Model {
        secrets,
        policies: BTreeMap::new(),
        service,
        record,
    })
}

/// The service in REST JSON shape, `None` when it does not exist.
pub async fn read_service(gcp: &Gcp, name: &ServiceName) -> Result<Option<serde_json::Value>, Error> {
    match gcp.get_service(name).await.map_err(Error::observe(name))? {
        None => Ok(None),
        Some(live) => service_json::to_json(&live, name).map(Some),
    }
}

/// All versions, newest first; `None` when the secret does not exist.
async fn versions(gcp: &Gcp, name: &SecretName) -> Result<Option<Vec<VersionView>>, Error> {
    match gcp.list_versions(name).await {
        Ok(v) => Ok(Some(
            v.into_iter()
                .map(|v| VersionView {
                    number: v.number,
                    state: v.state,
                    created: v.created,
                })
                .collect(),
        )),
        Err(GcpError::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::observe(name)(e)),
    }
}

fn policy_view(policy: &litellm_operator_gcp::Policy) -> PolicyView {
    PolicyView(
        policy
            .bindings
            .iter()
            .filter(|b| b.condition.is_none())
            .flat_map(|b| b.members.iter().map(|m| (b.role.clone(), m.clone())))
            .collect(),
    )
}
