//! The one executor: performs a plan's actions through `crates/gcp`, phase by phase, and feeds each effect back
//! into the model so the next phase is planned from what really happened (a version's real number, a grant that
//! was already there). Each write is guarded: etags on labels and deletes, ownership re-checked when a create
//! finds the resource already there, not-found treated as done on deletes and revokes.
//!
//! The controller reports what was performed as Events, the CLI as lines on stderr.

use futures::StreamExt;
use litellm_operator_gcp::{
    CloudRun, Error as GcpError, Gcp, IamPolicies, NewSecret, PolicyChange, PolicyTarget, Replication,
    SecretName, SecretPayload, SecretStore, SecretVersionStore, ServiceName,
};
use serde_json::Value;

use crate::error::Error;
use crate::plan::ownership::Ownership;
use crate::plan::{Action, DesiredReplication, Effect, Model, NewValue, Phase};
use crate::service_json;

/// Actions of one phase in flight at once (each touches its own resource).
const PARALLEL: usize = 8;

/// One action carried out.
#[derive(Clone, Debug)]
pub struct Performed {
    /// What.
    pub action: Action,
    /// What it produced.
    pub effect: Effect,
}

/// The result of executing the phases: what was done, the model after it, and the first failure.
#[derive(Debug)]
pub struct Execution {
    /// Actions performed, in order.
    pub performed: Vec<Performed>,
    /// The model with every effect absorbed.
    pub model: Model,
    /// The failure that stopped it (the phases after it did not run).
    pub error: Option<Error>,
}

/// Runs `phases` in order: each is planned by `planner` from the current model, its actions performed side by
/// side, their effects absorbed. A failure stops after the phase it happened in.
pub async fn run(
    gcp: &Gcp,
    mut model: Model,
    phases: &[Phase],
    planner: impl Fn(&Model) -> Vec<Action>,
) -> Execution {
    let mut performed = Vec::new();
    for phase in phases {
        let actions: Vec<Action> = planner(&model)
            .into_iter()
            .filter(|a| a.phase() == *phase)
            .collect();
        if actions.is_empty() {
            continue;
        }
        let results: Vec<(Action, Result<Effect, Error>)> =
            futures::stream::iter(actions.into_iter().map(|a| async {
                let result = perform(gcp, &a).await;
                (a, result)
            }))
            .buffered(PARALLEL)
            .collect()
            .await;
        let mut error = None;
        for (action, result) in results {
            match result {
                Ok(effect) => {
                    model.absorb(&action, &effect);
                    performed.push(Performed { action, effect });
                }
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        if error.is_some() {
            return Execution {
                performed,
                model,
                error,
            };
        }
    }
    Execution {
        performed,
        model,
        error: None,
    }
}

/// Performs one action.
pub async fn perform(gcp: &Gcp, action: &Action) -> Result<Effect, Error> {
    let failed = |source: GcpError| Error::Act {
        kind: action.kind(),
        action: action.to_string(),
        source,
    };
    match action {
        Action::CreateSecret {
            secret,
            labels,
            replication,
        } => {
            let spec = NewSecret {
                replication: match replication {
                    DesiredReplication::Automatic => Replication::Automatic,
                    DesiredReplication::UserManaged(l) => Replication::UserManaged(l.clone()),
                },
                labels: labels.clone(),
            };
            match gcp.create_secret(secret, &spec).await {
                Ok(_) => Ok(Effect::Done),
                // A retried pass that created it before: fine when it is ours, never written otherwise.
                Err(GcpError::AlreadyExists { .. }) => {
                    let owner = labels
                        .get(litellm_operator_api::names::OWNER_LABEL)
                        .cloned()
                        .unwrap_or_default();
                    match gcp.find_secret(secret).await.map_err(failed)? {
                        Some(found) if Ownership::of(&found.labels, &owner) == Ownership::Ours => {
                            Ok(Effect::Done)
                        }
                        _ => Err(Error::NotOwned {
                            resource: secret.to_string(),
                        }),
                    }
                }
                Err(e) => Err(failed(e)),
            }
        }
        Action::AdoptSecret { secret, labels, etag } => {
            gcp.update_labels(secret, labels, etag).await.map_err(failed)?;
            Ok(Effect::Done)
        }
        Action::AddVersion { secret, value, .. } => {
            let payload = match value {
                NewValue::Source(p) => p.clone(),
                NewValue::Generate(g) => SecretPayload::new(crate::generate::value(g)),
            };
            let added = gcp.add_version(secret, &payload).await.map_err(failed)?;
            Ok(Effect::VersionAdded(added.number))
        }
        Action::Grant(b) => {
            let target = target(&b.resource)?;
            let change = gcp
                .add_member(&target, &b.role, &b.member)
                .await
                .map_err(failed)?;
            Ok(Effect::Granted {
                changed: change == PolicyChange::Changed,
            })
        }
        Action::Revoke(b) => {
            let target = target(&b.resource)?;
            match gcp.remove_member(&target, &b.role, &b.member).await {
                Ok(change) => Ok(Effect::Revoked {
                    changed: change == PolicyChange::Changed,
                }),
                Err(GcpError::NotFound { .. }) => Ok(Effect::Revoked { changed: false }),
                Err(e) => Err(failed(e)),
            }
        }
        Action::RecordBinding(_) | Action::ForgetBinding(_) => Ok(Effect::Done),
        Action::CreateService { service, body } => {
            gcp.create_service(service, service_body(body.clone(), service)?)
                .await
                .map_err(failed)?;
            Ok(Effect::Done)
        }
        Action::UpdateService { service, body, .. } => {
            gcp.update_service(service, service_body(body.clone(), service)?)
                .await
                .map_err(failed)?;
            Ok(Effect::Done)
        }
        Action::DisableVersion { secret, number, .. } => {
            gcp.disable_version(secret, *number).await.map_err(failed)?;
            Ok(Effect::Done)
        }
        Action::DeleteService { service } => {
            let operation = gcp.delete_service(service).await.map_err(failed)?;
            Ok(Effect::Deleting {
                done: operation.is_none_or(|op| op.done),
            })
        }
        Action::DeleteSecret { secret, etag } => {
            gcp.delete_secret(secret, Some(etag)).await.map_err(failed)?;
            Ok(Effect::Done)
        }
    }
}

fn service_body(body: Value, name: &ServiceName) -> Result<litellm_operator_gcp::Service, Error> {
    service_json::from_json(body, name)
}

/// The IAM resource a binding sits on.
fn target(resource: &str) -> Result<PolicyTarget, Error> {
    SecretName::parse(resource)
        .map(PolicyTarget::Secret)
        .or_else(|| ServiceName::parse(resource).map(PolicyTarget::Service))
        .ok_or_else(|| Error::Serialization {
            resource: resource.to_owned(),
            message: "not a secret or service name".to_owned(),
        })
}
