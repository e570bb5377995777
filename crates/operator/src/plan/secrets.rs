//! Secrets and versions: which secret to create or adopt, which version to add, which version to pin.
//!
//! A version is added only when the value changed: a given value (`fromSecret`, LiteLLM's configuration from a
//! ConfigMap or the spec) whose recorded source revision is unchanged keeps its pin; otherwise its value is compared
//! with the newest enabled version before adding, so a crash between `addVersion` and the record's write never adds
//! the same value twice. A generated value is made
//! once: a secret that has ever had a version never gets a second generated value, unless `generate.rotation`
//! changes (then exactly one more).

use litellm_operator_api::names::reason;
use litellm_operator_api::{GeneratedValue, check_config};
use litellm_operator_gcp::{MAX_PAYLOAD_BYTES, SecretName};

use super::action::{Action, NewValue};
use super::desired::{DesiredSecret, DesiredSource, DesiredState};
use super::model::{Model, Record, SecretState, SecretView, Source};
use super::ownership::{Ownership, Write};

/// Why a secret cannot be pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The spec (or the value it points at) breaks a rule Google would refuse.
    InvalidSpec,
    /// The value's source is missing (Kubernetes Secret, key, external secret or version).
    SourceMissing,
    /// The secret exists and is not ours to write.
    Conflict,
}

impl ProblemKind {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            ProblemKind::InvalidSpec => reason::INVALID_SPEC,
            ProblemKind::SourceMissing => reason::SECRET_SOURCE_MISSING,
            ProblemKind::Conflict => reason::CONFLICT,
        }
    }
}

/// A per-secret (or per-deployment) problem: what a person must fix. Never holds a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Its kind.
    pub kind: ProblemKind,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The version a secret is pinned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// Version number (for a version still to be added, the number it is expected to get).
    pub version: u64,
    /// The source revision that produced it: a Kubernetes Secret's or ConfigMap's `resourceVersion`, the
    /// resource's `generation-N` for inline configuration, or `rotation:TEXT` for a generated value with a rotation.
    pub source_revision: Option<String>,
}

/// The decision for one secret.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretDecision {
    /// Writes, in phase order.
    pub actions: Vec<Action>,
    /// The pin, or why there is none.
    pub pin: Result<Pin, Problem>,
}

/// A problem with the source value itself, found before any Google call (so the secret is not even read). A
/// ConfigMap's YAML is checked here as `validate` checks inline YAML (never quoting it).
pub fn source_problem(secret: &DesiredSecret, source: Option<&Source>) -> Option<Problem> {
    let what = secret.source.describe()?;
    match source {
        None => Some(Problem::new(
            ProblemKind::SourceMissing,
            format!("no value for {what}"),
        )),
        Some(Source::Missing { message }) => Some(Problem::new(ProblemKind::SourceMissing, message.clone())),
        Some(Source::Value { payload, .. }) if payload.is_empty() => Some(Problem::new(
            ProblemKind::InvalidSpec,
            format!("{what} is empty; Secret Manager refuses an empty version"),
        )),
        Some(Source::Value { payload, .. }) if payload.len() > MAX_PAYLOAD_BYTES => Some(Problem::new(
            ProblemKind::InvalidSpec,
            format!(
                "{what} holds {} bytes; Secret Manager takes at most {MAX_PAYLOAD_BYTES} bytes per version",
                payload.len()
            ),
        )),
        Some(Source::Value { payload, .. }) if matches!(secret.source, DesiredSource::FromConfigMap(_)) => {
            let problems = match std::str::from_utf8(payload.expose()) {
                Ok(text) => check_config(text).err()?,
                Err(_) => vec!["is not UTF-8 text".to_owned()],
            };
            Some(Problem::new(
                ProblemKind::InvalidSpec,
                format!("{what}: {}", problems.join("; ")),
            ))
        }
        Some(Source::Value { .. }) => None,
    }
}

/// Whether the record alone pins this secret in a light pass (its input unchanged since the last full pass):
/// the source revision for given values, the spec itself for `generate` and `external`.
pub fn trusted(secret: &DesiredSecret, source: Option<&Source>, record: &Record) -> bool {
    let Some((version, revision)) = record.pin(secret.key(), &secret.resource) else {
        return false;
    };
    match &secret.source {
        DesiredSource::Generate(generate) => !rotated(generate, revision),
        DesiredSource::External { version: wanted } => wanted == "latest" || *wanted == version.to_string(),
        DesiredSource::FromSecret(_) | DesiredSource::FromConfigMap(_) | DesiredSource::Inline { .. } => {
            match source {
                Some(Source::Value {
                    revision: Some(now), ..
                }) => revision == Some(now.as_str()),
                _ => false,
            }
        }
    }
}

/// Whether the newest enabled version's value must be read to decide (a given value whose source changed or was
/// never recorded). The observer asks this after reading the versions, so payload reads happen only on changes.
pub fn needs_payload(
    secret: &DesiredSecret,
    source: Option<&Source>,
    state: &SecretState,
    record: &Record,
) -> bool {
    if !secret.source.given() {
        return false;
    }
    state.newest_enabled().is_some() && recorded_pin(secret, source, state, record).is_none()
}

/// The recorded pin when the source is unchanged since it was made and the version is still enabled.
fn recorded_pin(
    secret: &DesiredSecret,
    source: Option<&Source>,
    state: &SecretState,
    record: &Record,
) -> Option<Pin> {
    let (version, revision) = record.pin(secret.key(), &secret.resource)?;
    let Some(Source::Value {
        revision: Some(now), ..
    }) = source
    else {
        return None;
    };
    (revision == Some(now.as_str()) && state.enabled(version)).then(|| Pin {
        version,
        source_revision: Some(now.clone()),
    })
}

/// Decides one secret.
pub fn decide(
    desired: &DesiredState,
    secret: &DesiredSecret,
    source: Option<&Source>,
    model: &Model,
    adopt: bool,
) -> SecretDecision {
    let name = SecretName::new(&desired.project, &secret.secret_id);
    let view = model.secret(&secret.resource);
    let refuse = |problem| SecretDecision {
        actions: Vec::new(),
        pin: Err(problem),
    };
    if let Some(problem) = source_problem(secret, source) {
        return refuse(problem);
    }
    if let SecretView::Trusted = view
        && let Some((version, revision)) = model.record.pin(secret.key(), &secret.resource)
    {
        return SecretDecision {
            actions: Vec::new(),
            pin: Ok(Pin {
                version,
                source_revision: revision.map(str::to_owned),
            }),
        };
    }
    if let DesiredSource::External { version } = &secret.source {
        return refuse_or_pin(external(&name, version, view));
    }

    let mut actions = Vec::new();
    let state = match view {
        SecretView::Missing | SecretView::Trusted => {
            actions.push(Action::CreateSecret {
                secret: name.clone(),
                labels: desired.secret_labels.clone(),
                replication: desired.replication.clone(),
            });
            SecretState::default()
        }
        SecretView::Present(state) => {
            match Ownership::of(&state.labels, &desired.owner()).write(adopt) {
                Write::Allowed => {}
                Write::AdoptFirst => {
                    let mut labels = state.labels.clone();
                    labels.extend(desired.secret_labels.clone());
                    actions.push(Action::AdoptSecret {
                        secret: name.clone(),
                        labels,
                        etag: state.etag.clone(),
                    });
                }
                Write::Refused(refusal) => {
                    return refuse(Problem::new(
                        ProblemKind::Conflict,
                        refusal.message("secret", &name.to_string(), "set secretId to another id"),
                    ));
                }
            }
            state.clone()
        }
    };

    let expected = state.next_number();
    let add = |value| Action::AddVersion {
        secret: name.clone(),
        env: secret.key().to_owned(),
        value,
        expected,
    };
    let pin = match &secret.source {
        DesiredSource::FromSecret(_) | DesiredSource::FromConfigMap(_) | DesiredSource::Inline { .. } => {
            let Some(Source::Value { payload, revision }) = source else {
                // `source_problem` refused every other case above.
                return refuse(Problem::new(ProblemKind::SourceMissing, "no value"));
            };
            if let Some(pin) = recorded_pin(secret, source, &state, &model.record) {
                pin
            } else {
                match (state.newest_enabled(), &state.newest_payload) {
                    (Some(newest), Some(current)) if current == payload => Pin {
                        version: newest,
                        source_revision: revision.clone(),
                    },
                    (Some(_), None) => {
                        // The observer reads the value whenever `needs_payload` says so; without it, adding could
                        // duplicate a value, so wait for a full read.
                        return refuse(Problem::new(
                            ProblemKind::SourceMissing,
                            format!("the newest version of {name} was not read; retrying with a full read"),
                        ));
                    }
                    _ => {
                        actions.push(add(NewValue::Source(payload.clone())));
                        Pin {
                            version: expected,
                            source_revision: revision.clone(),
                        }
                    }
                }
            }
        }
        DesiredSource::Generate(generate) => {
            let recorded = model.record.pin(secret.key(), &secret.resource);
            let newest = state.newest_enabled();
            match recorded {
                // A rotation: a version newer than the recorded pin is the new value (a pass that added it stopped
                // before recording it); otherwise one is generated, even when every version is disabled (the
                // rotation asks for a new value).
                Some((version, mark)) if rotated(generate, mark) => Pin {
                    version: match newest {
                        Some(n) if n > version => n,
                        _ => {
                            actions.push(add(NewValue::Generate(generate.clone())));
                            expected
                        }
                    },
                    source_revision: rotation(generate),
                },
                // A rotated value that is no longer enabled: falling back would put an older key back in service.
                Some((version, Some(mark))) if mark.starts_with(ROTATION) && !state.enabled(version) => {
                    return refuse(Problem::new(
                        ProblemKind::SourceMissing,
                        format!(
                            "version {version} of generated secret {name}, pinned since its last rotation, is not \
                             enabled, and an older value is never put back; enable it (gcloud secrets versions \
                             enable {version} --secret={} --project={}) or set a new generate.rotation to generate \
                             a new value",
                            secret.secret_id, desired.project
                        ),
                    ));
                }
                _ => {
                    let source_revision = match recorded {
                        Some((_, mark)) => mark.map(str::to_owned),
                        None => rotation(generate),
                    };
                    match recorded.map(|(n, _)| n).filter(|n| state.enabled(*n)).or(newest) {
                        Some(version) => Pin {
                            version,
                            source_revision,
                        },
                        None if state.versions.is_empty() => {
                            actions.push(add(NewValue::Generate(generate.clone())));
                            Pin {
                                version: expected,
                                source_revision,
                            }
                        }
                        None => {
                            // Never a second value unasked: LiteLLM encrypts stored credentials with the salt key,
                            // and clients hold the master key. Someone disabled or destroyed every version; they
                            // decide.
                            return refuse(Problem::new(
                                ProblemKind::SourceMissing,
                                format!(
                                    "generated secret {name} has no enabled version and is never generated twice; \
                                     enable one (gcloud secrets versions enable N --secret={} --project={}) or \
                                     delete the secret to generate a new value",
                                    secret.secret_id, desired.project
                                ),
                            ));
                        }
                    }
                }
            }
        }
        DesiredSource::External { version } => return refuse_or_pin(external(&name, version, view)),
    };
    SecretDecision {
        actions,
        pin: Ok(pin),
    }
}

/// What a generated value's pin records: `rotation:TEXT` once `generate.rotation` is set, so changing the text
/// is seen as a change (and an unchanged one is not).
fn rotation(generate: &GeneratedValue) -> Option<String> {
    (!generate.rotation.is_empty()).then(|| format!("{ROTATION}{}", generate.rotation))
}

/// The prefix of a rotation's mark.
const ROTATION: &str = "rotation:";

/// Whether `generate` asks for a value other than the one its pin recorded with `mark`: its rotation is set and
/// differs. Emptying it rotates nothing (the pin keeps its mark).
fn rotated(generate: &GeneratedValue, mark: Option<&str>) -> bool {
    rotation(generate).is_some_and(|wanted| mark != Some(wanted.as_str()))
}

fn refuse_or_pin(pin: Result<Pin, Problem>) -> SecretDecision {
    SecretDecision {
        actions: Vec::new(),
        pin,
    }
}

/// `external`: never written. `latest` resolves to the newest enabled version; a number must be enabled.
fn external(name: &SecretName, version: &str, view: &SecretView) -> Result<Pin, Problem> {
    let missing = |m: String| Problem::new(ProblemKind::SourceMissing, m);
    let state = match view {
        SecretView::Present(s) => s,
        SecretView::Missing | SecretView::Trusted => {
            return Err(missing(format!(
                "external secret {name} does not exist; create it and add a version"
            )));
        }
    };
    let pin = |version| Pin {
        version,
        source_revision: None,
    };
    if version == "latest" {
        return state
            .newest_enabled()
            .map(pin)
            .ok_or_else(|| missing(format!("external secret {name} has no enabled version")));
    }
    let Ok(number) = version.parse::<u64>() else {
        return Err(Problem::new(
            ProblemKind::InvalidSpec,
            format!("{version:?} is not a version"),
        ));
    };
    if state.enabled(number) {
        Ok(pin(number))
    } else if state.versions.iter().any(|v| v.number == number) {
        Err(missing(format!(
            "external secret {name} version {number} is disabled or destroyed"
        )))
    } else {
        Err(missing(format!(
            "external secret {name} version {number} does not exist"
        )))
    }
}
