//! One sequential pass over the desired state of each LiteLLMDeployment: secrets -> secret IAM -> service ->
//! service IAM, observing before writing. In [`Mode::Plan`] nothing is written and the report says what would be;
//! in [`Mode::Apply`] the same decisions are carried out, then the rollout is followed until it settles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use litellm_operator_api::names::{self, ADOPT_ANNOTATION};
use litellm_operator_gcp::{
    CloudRun, Error as GcpError, Gcp, IamPolicies, NewSecret, PolicyChange, PolicyTarget, Replication,
    SecretName, SecretPayload, SecretStore, SecretVersionStore, ServiceName, VersionRef, VersionState,
    with_member,
};
use serde::Serialize;

use super::Problems;
use super::manifest::{Deployment, Manifests};
use crate::desired::{self, DesiredReplication, DesiredSecret, DesiredSource};
use crate::service_diff;
use crate::service_json::{Rollout, from_json, rollout, to_json};

/// Read only, or read and write.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// Read Google and report what would change.
    Plan,
    /// Converge, then wait up to `timeout` for the revision.
    Apply {
        /// How long to follow the rollout.
        timeout: Duration,
    },
}

impl Mode {
    fn writes(self) -> bool {
        matches!(self, Mode::Apply { .. })
    }
}

/// What was (or would be) done, for every LiteLLMDeployment.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    /// `plan` or `apply`.
    mode: &'static str,
    /// Number of Google resources created or changed (or to be).
    changes: usize,
    /// One entry per LiteLLMDeployment, in file order.
    deployments: Vec<DeploymentReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentReport {
    name: String,
    file: String,
    secrets: Vec<SecretReport>,
    bindings: Vec<BindingReport>,
    service: ServiceReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SecretReport {
    env: String,
    secret: String,
    /// `fromSecret`, `generate` or `external`.
    source: &'static str,
    /// The secret does not exist and is created.
    create: bool,
    /// A version is added (the source value differs from the newest enabled version, or none is enabled).
    add_version: bool,
    /// The version the service pins (for an added version: the number it gets).
    version: String,
    /// Where the value comes from, for people.
    detail: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BindingReport {
    resource: String,
    role: String,
    member: String,
    /// False when the policy already holds it.
    add: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceReport {
    resource: String,
    action: ServiceAction,
    /// Owned fields that differ (for `update`).
    changed: Vec<String>,
    /// Whether a new revision is (or would be) created: creation and any change under `template`.
    new_revision: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
enum ServiceAction {
    Create,
    Update,
    Unchanged,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusReport {
    url: Option<String>,
    revision: Option<String>,
    ready: bool,
}

impl Report {
    /// Number of changes.
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// Pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Readable lines: `+` created or added, `~` changed, `=` unchanged.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for d in &self.deployments {
            let _ = writeln!(out, "LiteLLMDeployment {} ({})", d.name, d.file);
            for s in &d.secrets {
                if s.create {
                    let _ = writeln!(out, "  + create secret {}", s.secret);
                }
                if s.add_version {
                    let _ = writeln!(
                        out,
                        "  + add version {} to {} ({} {})",
                        s.version, s.secret, s.env, s.detail
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "  = {} version {} ({} {})",
                        s.secret, s.version, s.env, s.detail
                    );
                }
            }
            for b in &d.bindings {
                let mark = if b.add { "+ grant" } else { "= granted" };
                let _ = writeln!(out, "  {mark} {} to {} on {}", b.role, b.member, b.resource);
            }
            let s = &d.service;
            let revision = if s.new_revision {
                " (new revision)"
            } else {
                " (no new revision)"
            };
            match s.action {
                ServiceAction::Create => {
                    let _ = writeln!(out, "  + create service {}{revision}", s.resource);
                }
                ServiceAction::Update => {
                    let _ = writeln!(out, "  ~ update service {}{revision}", s.resource);
                    for path in &s.changed {
                        let _ = writeln!(out, "      ~ {path}");
                    }
                }
                ServiceAction::Unchanged => {
                    let _ = writeln!(out, "  = service {} unchanged", s.resource);
                }
            }
            if let Some(status) = &d.status {
                let _ = writeln!(
                    out,
                    "  status: revision {} {}, url {}",
                    status.revision.as_deref().unwrap_or("(none)"),
                    if status.ready { "Ready" } else { "not ready" },
                    status.url.as_deref().unwrap_or("(none)")
                );
            }
        }
        let verb = if self.mode == "plan" {
            "to apply"
        } else {
            "applied"
        };
        if self.changes == 0 {
            let _ = writeln!(out, "No changes.");
        } else {
            let _ = writeln!(out, "{} changes {verb}.", self.changes);
        }
        out
    }
}

/// Walks every deployment. Stops at the first failure; in apply mode, what was already done is on stderr.
pub(crate) async fn run(gcp: &Gcp, manifests: &Manifests, mode: Mode) -> Result<Report, Problems> {
    let mut report = Report {
        mode: if mode.writes() { "apply" } else { "plan" },
        changes: 0,
        deployments: Vec::new(),
    };
    for deployment in &manifests.deployments {
        let at = |e: String| {
            Problems::from(format!(
                "{}: LiteLLMDeployment {}: {e}",
                deployment.file,
                deployment.id()
            ))
        };
        let d = one(gcp, manifests, deployment, mode).await.map_err(at)?;
        report.changes += d
            .secrets
            .iter()
            .map(|s| usize::from(s.create) + usize::from(s.add_version))
            .sum::<usize>()
            + d.bindings.iter().filter(|b| b.add).count()
            + usize::from(d.service.action != ServiceAction::Unchanged);
        report.deployments.push(d);
    }
    Ok(report)
}

async fn one(
    gcp: &Gcp,
    manifests: &Manifests,
    d: &Deployment,
    mode: Mode,
) -> Result<DeploymentReport, String> {
    let desired = &d.desired;
    // A foreign service stops everything before the first write.
    let name = ServiceName::new(&desired.project, &desired.region, &desired.service_name);
    let live = match gcp.get_service(&name).await.map_err(|e| e.to_string())? {
        Some(live) => Some(to_json(&live, &name)?),
        None => None,
    };
    if let Some(live) = &live
        && !owned(d, &live["labels"])
    {
        return Err(format!(
            "{name} exists but is not managed by this LiteLLMDeployment; add the annotation {ADOPT_ANNOTATION}: \
             \"true\" to adopt it (litellm-operator import writes one)"
        ));
    }
    let mut secrets = Vec::new();
    for secret in &desired.secrets {
        secrets.push(secret_step(gcp, manifests, d, secret, mode).await?);
    }
    let created: BTreeSet<&str> = secrets
        .iter()
        .filter(|s| s.create)
        .map(|s| s.secret.as_str())
        .collect();

    let mut bindings = Vec::new();
    let (secret_bindings, service_bindings): (Vec<_>, Vec<_>) = desired
        .bindings
        .iter()
        .partition(|b| b.role == names::SECRET_ACCESSOR_ROLE);
    for b in secret_bindings {
        let Some(name) = SecretName::parse(&b.resource) else {
            continue;
        };
        let known_absent = created.contains(b.resource.as_str()) && !mode.writes();
        let add = grant(
            gcp,
            PolicyTarget::Secret(name),
            &b.role,
            &b.member,
            known_absent,
            mode,
        )
        .await?;
        bindings.push(BindingReport {
            resource: b.resource.clone(),
            role: b.role.clone(),
            member: b.member.clone(),
            add,
        });
    }

    let pinned: BTreeMap<String, String> = secrets
        .iter()
        .map(|s| (s.env.clone(), s.version.clone()))
        .collect();
    let want = desired::service(&d.obj, desired, &pinned);
    let service = match live {
        None => {
            if mode.writes() {
                gcp.create_service(&name, from_json(want, &name)?)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!("Created service {name}");
            }
            ServiceReport {
                resource: name.to_string(),
                action: ServiceAction::Create,
                changed: Vec::new(),
                new_revision: true,
            }
        }
        Some(live) => {
            let changed = service_diff::drift(&want, &live);
            let new_revision = changed.iter().any(|p| p.starts_with("template"));
            if changed.is_empty() {
                ServiceReport {
                    resource: name.to_string(),
                    action: ServiceAction::Unchanged,
                    changed,
                    new_revision,
                }
            } else {
                if mode.writes() {
                    let patch = from_json(service_diff::merge_owned(&live, &want), &name)?;
                    gcp.update_service(&name, patch)
                        .await
                        .map_err(|e| e.to_string())?;
                    eprintln!("Updated service {name}: {}", changed.join(", "));
                }
                ServiceReport {
                    resource: name.to_string(),
                    action: ServiceAction::Update,
                    changed,
                    new_revision,
                }
            }
        }
    };
    for b in service_bindings {
        let Some(target) = ServiceName::parse(&b.resource) else {
            continue;
        };
        let known_absent = service.action == ServiceAction::Create && !mode.writes();
        let add = grant(
            gcp,
            PolicyTarget::Service(target),
            &b.role,
            &b.member,
            known_absent,
            mode,
        )
        .await?;
        bindings.push(BindingReport {
            resource: b.resource.clone(),
            role: b.role.clone(),
            member: b.member.clone(),
            add,
        });
    }

    let status = match mode {
        Mode::Plan => None,
        Mode::Apply { timeout } => Some(follow_rollout(gcp, &name, timeout).await?),
    };
    Ok(DeploymentReport {
        name: d.id(),
        file: d.file.clone(),
        secrets,
        bindings,
        service,
        status,
    })
}

/// Whether `member` must be added; in apply mode, adds it (the client writes nothing when it is there).
async fn grant(
    gcp: &Gcp,
    target: PolicyTarget,
    role: &str,
    member: &str,
    known_absent: bool,
    mode: Mode,
) -> Result<bool, String> {
    if mode.writes() {
        let change = gcp
            .add_member(&target, role, member)
            .await
            .map_err(|e| e.to_string())?;
        if change == PolicyChange::Changed {
            eprintln!("Granted {role} to {member} on {target}");
        }
        return Ok(change == PolicyChange::Changed);
    }
    if known_absent {
        return Ok(true);
    }
    let policy = gcp.get_policy(&target).await.map_err(|e| e.to_string())?;
    Ok(with_member(&policy, role, member).is_some())
}

async fn secret_step(
    gcp: &Gcp,
    manifests: &Manifests,
    d: &Deployment,
    secret: &DesiredSecret,
    mode: Mode,
) -> Result<SecretReport, String> {
    let name = SecretName::new(&d.desired.project, &secret.secret_id);
    let report = |source, create, add_version, version: u64, detail: String| SecretReport {
        env: secret.env.clone(),
        secret: name.to_string(),
        source,
        create,
        add_version,
        version: version.to_string(),
        detail,
    };
    if let DesiredSource::External { version } = &secret.source {
        let number = external(gcp, &name, version).await?;
        return Ok(report(
            "external",
            false,
            false,
            number,
            format!("external, {version}"),
        ));
    }

    let found = gcp.find_secret(&name).await.map_err(|e| e.to_string())?;
    if let Some(found) = &found
        && !owned_labels(d, &found.labels)
    {
        return Err(format!(
            "secret {name} exists but was not created for this LiteLLMDeployment; set secretId to another id, or \
             annotate the LiteLLMDeployment with {ADOPT_ANNOTATION}: \"true\" to adopt it"
        ));
    }
    let create = found.is_none();
    let versions = if create {
        Vec::new()
    } else {
        gcp.list_versions(&name).await.map_err(|e| e.to_string())?
    };
    let newest = versions
        .iter()
        .find(|v| v.state == VersionState::Enabled)
        .map(|v| v.number);
    let next = versions.first().map_or(1, |v| v.number + 1);

    let (source, detail, payload, keep) = match &secret.source {
        DesiredSource::FromSecret(selector) => {
            let ns = d.obj.metadata.namespace.as_deref().unwrap_or("default");
            let detail = format!("from Secret {ns}/{} key {}", selector.name, selector.key);
            // Checked when loading; a missing value here is a bug, reported without a value.
            let value = manifests.value(d, selector).ok_or_else(|| {
                format!(
                    "Kubernetes Secret {ns}/{} has no key {:?}",
                    selector.name, selector.key
                )
            })?;
            let payload = SecretPayload::new(value.to_vec());
            let same = match newest {
                Some(n) => {
                    gcp.access_version(&name, VersionRef::Number(n))
                        .await
                        .map_err(|e| e.to_string())?
                        .payload
                        == payload
                }
                None => false,
            };
            if same {
                ("fromSecret", detail, None, newest)
            } else {
                ("fromSecret", detail, Some(payload), None)
            }
        }
        DesiredSource::Generate(generate) => {
            let detail = format!("generated, {} characters", generate.length);
            match newest {
                Some(n) => ("generate", detail, None, Some(n)),
                None => (
                    "generate",
                    detail,
                    Some(SecretPayload::new(crate::generate::value(generate))),
                    None,
                ),
            }
        }
        DesiredSource::External { .. } => return Err("external secrets are never written".to_owned()),
    };

    let mut version = keep.unwrap_or(next);
    if mode.writes() {
        if create {
            let spec = NewSecret {
                replication: match &d.desired.replication {
                    DesiredReplication::Automatic => Replication::Automatic,
                    DesiredReplication::UserManaged(l) => Replication::UserManaged(l.clone()),
                },
                labels: d.desired.secret_labels.clone(),
            };
            gcp.create_secret(&name, &spec).await.map_err(|e| e.to_string())?;
            eprintln!("Created secret {name}");
        }
        if let Some(payload) = &payload {
            version = gcp
                .add_version(&name, payload)
                .await
                .map_err(|e| e.to_string())?
                .number;
            eprintln!("Added version {version} to {name} ({detail})");
        }
    }
    Ok(report(source, create, payload.is_some(), version, detail))
}

/// `external`: never written. `latest` resolves to the newest enabled version; a number must be enabled.
async fn external(gcp: &Gcp, name: &SecretName, version: &str) -> Result<u64, String> {
    if version == "latest" {
        let versions = match gcp.list_versions(name).await {
            Ok(v) => v,
            Err(GcpError::NotFound { .. }) => {
                return Err(format!(
                    "external secret {name} does not exist; create it and add a version"
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        return versions
            .iter()
            .find(|v| v.state == VersionState::Enabled)
            .map(|v| v.number)
            .ok_or_else(|| format!("external secret {name} has no enabled version"));
    }
    let number: u64 = version
        .parse()
        .map_err(|_| format!("{version:?} is not a version"))?;
    match gcp
        .get_version(name, VersionRef::Number(number))
        .await
        .map_err(|e| e.to_string())?
    {
        Some(v) if v.state == VersionState::Enabled => Ok(number),
        Some(_) => Err(format!(
            "external secret {name} version {number} is disabled or destroyed"
        )),
        None => Err(format!("external secret {name} version {number} does not exist")),
    }
}

fn adopting(d: &Deployment) -> bool {
    d.obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ADOPT_ANNOTATION))
        .map(String::as_str)
        == Some("true")
}

/// Ours when it carries our labels for this LiteLLMDeployment, or when adoption is on.
fn owned_labels(d: &Deployment, labels: &BTreeMap<String, String>) -> bool {
    adopting(d)
        || (labels.get(names::MANAGED_BY_LABEL).map(String::as_str) == Some(names::MANAGED_BY_VALUE)
            && labels.get(names::OWNER_LABEL) == d.desired.secret_labels.get(names::OWNER_LABEL))
}

fn owned(d: &Deployment, labels: &serde_json::Value) -> bool {
    let labels: BTreeMap<String, String> = serde_json::from_value(labels.clone()).unwrap_or_default();
    owned_labels(d, &labels)
}

/// Polls the service until its latest revision is Ready (Ok) or failed (Err), printing progress on stderr.
async fn follow_rollout(gcp: &Gcp, name: &ServiceName, timeout: Duration) -> Result<StatusReport, String> {
    let start = Instant::now();
    let mut last = None;
    loop {
        let live = gcp
            .get_service(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{name} disappeared while rolling out"))?;
        let live = to_json(&live, name)?;
        let url = live["uri"].as_str().filter(|u| !u.is_empty()).map(str::to_owned);
        match rollout(&live) {
            Rollout::Ready { revision } => {
                return Ok(StatusReport {
                    url,
                    revision: Some(revision),
                    ready: true,
                });
            }
            Rollout::Failed { message } => return Err(message),
            Rollout::InProgress { revision } => {
                if last.as_ref() != Some(&revision) {
                    eprintln!(
                        "Waiting for revision {} to become Ready",
                        revision.as_deref().unwrap_or("(new)")
                    );
                    last = Some(revision);
                }
            }
        }
        if start.elapsed() >= timeout {
            return Err(format!("{name}: the revision was not Ready after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
