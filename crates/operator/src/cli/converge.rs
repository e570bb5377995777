//! The CLI's front end to the shared pipeline: inputs from manifest files, the record in the state file, the
//! result on the terminal. `plan` observes Google and runs the planner's phases with predicted effects; `apply`
//! runs the same phases through the executor, then keeps passing (observe -> plan -> execute) until the revision
//! serves and the plan is empty, exactly as the controller would, retire and revoke included.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use litellm_operator_api::AppliedBinding;
use litellm_operator_gcp::{Gcp, SecretPayload};
use serde::Serialize;

use super::Problems;
use super::manifest::{Deployment, Manifests};
use super::state::{Entry, State};
use crate::execute::{self, Execution};
use crate::plan::{
    self, Action, Clock, DesiredSource, Inputs, PeerSet, Phase, Plan, Record, ServiceState, Source,
};
use crate::{observe, report};

/// What was (or would be) done, for every LiteLLMDeployment.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    /// `plan` or `apply`.
    mode: &'static str,
    /// Number of Google writes (made, or to make).
    changes: usize,
    /// One entry per LiteLLMDeployment, in file order.
    deployments: Vec<DeploymentReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentReport {
    name: String,
    file: String,
    /// Actions in order: `phase`, `kind`, `resource` and a line for people.
    actions: Vec<ActionReport>,
    /// The version each secret is pinned to.
    secrets: Vec<SecretReport>,
    service: ServiceReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ActionReport {
    phase: String,
    kind: String,
    resource: String,
    text: String,
    /// Whether it writes to Google (false: only the record changes).
    writes: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SecretReport {
    env: String,
    secret: String,
    version: String,
    /// A version is added for it.
    add_version: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceReport {
    resource: String,
    /// `create`, `update` or `unchanged`.
    action: &'static str,
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

    /// Readable lines: `+` created or added, `~` changed, `-` removed or disabled, `=` unchanged.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for d in &self.deployments {
            let _ = writeln!(out, "LiteLLMDeployment {} ({})", d.name, d.file);
            for a in &d.actions {
                let _ = writeln!(out, "  {}", a.text);
            }
            for s in d.secrets.iter().filter(|s| !s.add_version) {
                let _ = writeln!(out, "  = {} version {} ({})", s.secret, s.version, s.env);
            }
            if d.service.action == "unchanged" {
                let _ = writeln!(out, "  = service {} unchanged", d.service.resource);
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

/// How often `apply` looks while Google works: soon at first (most steps settle within a second), then less often,
/// so a slow revision start costs a few reads rather than five a second.
const POLL_FIRST: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(2);

/// How often `apply` says on stderr that it is still waiting, so a CI log shows it is alive and how long it took.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The next polling delay: doubled, at most [`POLL_MAX`].
fn backoff(delay: Duration) -> Duration {
    (delay * 2).min(POLL_MAX)
}

/// Where the service stands while `apply` waits, for the progress line.
fn phase(state: &ServiceState) -> &'static str {
    match state {
        ServiceState::WaitingForSecrets => "pinning secrets",
        ServiceState::Creating => "creating the service",
        ServiceState::Updating => "updating the service",
        ServiceState::Rolling { .. } => "rolling out",
        ServiceState::Propagating { .. } => "waiting for an IAM grant to propagate",
        ServiceState::Ready { .. } => "ready",
        ServiceState::Failed { .. } => "failed",
    }
}

/// A duration as people read it in a log: `45s`, `2m05s`, `1h00m00s`.
fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// IAM retry timing of the CLI (the controller's defaults).
const IAM_RETRY_DELAY: Duration = Duration::from_secs(30);
const IAM_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(600);

fn clock() -> Clock {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    Clock {
        now,
        iam_retry_delay: IAM_RETRY_DELAY,
        iam_propagation_timeout: IAM_PROPAGATION_TIMEOUT,
    }
}

/// One deployment's inputs.
struct Prepared<'a> {
    d: &'a Deployment,
    sources: BTreeMap<String, Source>,
    peers: PeerSet,
    record: Record,
}

impl Prepared<'_> {
    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            desired: &self.d.desired,
            sources: &self.sources,
            adopt: self.d.obj.adopts(),
            // Files have no generation: an update is a change unless the record shows the same pins.
            spec_changed: true,
            clock: clock(),
            peers: &self.peers,
        }
    }

    fn at(&self, message: impl std::fmt::Display) -> String {
        format!("{}: LiteLLMDeployment {}: {message}", self.d.file, self.d.id())
    }

    /// A failed Google call, with the command that grants a missing permission (as the controller's conditions
    /// and Events say it).
    fn failed(&self, error: &crate::error::Error) -> Problems {
        Problems::from(self.at(crate::permissions::explain(
            error,
            &self.d.desired.service_spec.service_account,
        )))
    }
}

fn prepare<'a>(manifests: &'a Manifests, d: &'a Deployment, state: &State) -> Prepared<'a> {
    let ns = d.obj.metadata.namespace.as_deref().unwrap_or("default");
    let sources = d
        .desired
        .secrets
        .iter()
        .filter_map(|s| {
            let given = &s.source;
            let source = match given {
                DesiredSource::FromSecret(selector) => match manifests.value(d, selector) {
                    Some(value) => Source::Value {
                        payload: SecretPayload::new(value.to_vec()),
                        revision: None,
                    },
                    None => Source::Missing {
                        message: given.missing(ns, manifests.holds(ns, given)),
                    },
                },
                DesiredSource::FromConfigMap(selector) => match manifests.config_value(d, selector) {
                    Some(value) => Source::Value {
                        payload: SecretPayload::new(value.as_bytes().to_vec()),
                        revision: None,
                    },
                    None => Source::Missing {
                        message: given.missing(ns, manifests.holds(ns, given)),
                    },
                },
                other => other.spec_value()?,
            };
            Some((s.key().to_owned(), source))
        })
        .collect();
    // The other deployments in these files are peers too, recorded or not.
    let others: Vec<AppliedBinding> = manifests
        .deployments
        .iter()
        .filter(|o| o.id() != d.id() && o.desired.project == d.desired.project)
        .flat_map(|o| o.desired.bindings.iter().cloned())
        .collect();
    Prepared {
        d,
        sources,
        peers: state.peers(&d.id(), &d.desired.project, &others),
        record: state
            .deployments
            .get(&d.id())
            .map(Entry::record)
            .unwrap_or_default(),
    }
}

/// A plan's problems (a conflict, a secret that cannot be pinned) as errors naming the deployment.
fn problems(p: &Prepared<'_>, plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = plan.conflict.iter().map(|c| p.at(&c.message)).collect();
    out.extend(
        plan.secrets
            .iter()
            .filter_map(|s| s.pin.as_ref().err())
            .map(|problem| p.at(&problem.message)),
    );
    out
}

/// Observes and predicts one deployment: the actions `apply` would perform and the plan after them.
async fn predict(gcp: &Gcp, p: &Prepared<'_>) -> Result<(Vec<Action>, Plan), Problems> {
    let model = observe::deployment(gcp, &p.d.desired, &p.sources, p.record.clone(), false)
        .await
        .map_err(|e| p.failed(&e))?;
    let inputs = p.inputs();
    let first = plan::plan(&inputs, &model);
    let problems = problems(p, &first);
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let (actions, after) = plan::predict(&inputs, model, &Phase::APPLY);
    Ok((actions, plan::plan(&inputs, &after)))
}

fn deployment_report(p: &Prepared<'_>, actions: &[(Action, String)], after: &Plan) -> DeploymentReport {
    let added: Vec<&str> = actions
        .iter()
        .filter_map(|(a, _)| match a {
            Action::AddVersion { env, .. } => Some(env.as_str()),
            _ => None,
        })
        .collect();
    let service = if actions
        .iter()
        .any(|(a, _)| matches!(a, Action::CreateService { .. }))
    {
        "create"
    } else if actions
        .iter()
        .any(|(a, _)| matches!(a, Action::UpdateService { .. }))
    {
        "update"
    } else {
        "unchanged"
    };
    DeploymentReport {
        name: p.d.id(),
        file: p.d.file.clone(),
        actions: actions
            .iter()
            .map(|(a, text)| ActionReport {
                phase: format!("{:?}", a.phase()),
                kind: a.kind().reason().to_owned(),
                resource: a.resource(),
                text: text.clone(),
                writes: a.writes_google(),
            })
            .collect(),
        secrets: after
            .secrets
            .iter()
            .filter_map(|s| {
                let pin = s.pin.as_ref().ok()?;
                Some(SecretReport {
                    env: s.env.clone(),
                    secret: s.resource.clone(),
                    version: pin.version.to_string(),
                    add_version: added.contains(&s.env.as_str()),
                })
            })
            .collect(),
        service: ServiceReport {
            resource: p.d.desired.service_resource.clone(),
            action: service,
        },
        status: None,
    }
}

/// `plan`: observe, predict, print. Writes nothing, neither to Google nor to the state file.
pub(crate) async fn plan(gcp: &Gcp, manifests: &Manifests, state: &State) -> Result<Report, Problems> {
    let mut report = Report {
        mode: "plan",
        changes: 0,
        deployments: Vec::new(),
    };
    for d in &manifests.deployments {
        let p = prepare(manifests, d, state);
        let (actions, after) = predict(gcp, &p).await?;
        report.changes += actions.iter().filter(|a| a.writes_google()).count();
        let lines: Vec<(Action, String)> = actions
            .into_iter()
            .map(|a| {
                let line = report::lines(std::slice::from_ref(&a)).trim().to_owned();
                (a, line)
            })
            .collect();
        report.deployments.push(deployment_report(&p, &lines, &after));
    }
    Ok(report)
}

/// `apply`: a read-only pass over every deployment first (a conflict or a missing value anywhere stops before the
/// first write), then, per deployment, passes of observe -> execute until the revision serves and the plan is
/// empty. The state file is rewritten after every pass; each action performed is a line on stderr.
pub(crate) async fn apply(
    gcp: &Gcp,
    manifests: &Manifests,
    state_path: &Path,
    timeout: Duration,
) -> Result<Report, Problems> {
    let mut state = State::load(state_path).map_err(Problems::from)?;
    for d in &manifests.deployments {
        predict(gcp, &prepare(manifests, d, &state)).await?;
    }
    let mut report = Report {
        mode: "apply",
        changes: 0,
        deployments: Vec::new(),
    };
    for d in &manifests.deployments {
        let mut p = prepare(manifests, d, &state);
        let start = Instant::now();
        let mut done: Vec<(Action, String)> = Vec::new();
        let mut waiting_for = None;
        let mut delay = POLL_FIRST;
        let mut said = Instant::now();
        let (after, model) = loop {
            let model = observe::deployment(gcp, &d.desired, &p.sources, p.record.clone(), false)
                .await
                .map_err(|e| p.failed(&e))?;
            let inputs = p.inputs();
            let first = plan::plan(&inputs, &model);
            let problems = problems(&p, &first);
            if !problems.is_empty() {
                return Err(Problems(problems));
            }
            let Execution {
                performed,
                model,
                error,
            } = execute::run(gcp, model, &Phase::APPLY, |m| plan::plan(&inputs, m).actions).await;
            if !performed.is_empty() {
                delay = POLL_FIRST; // Google has new work: look again soon.
            }
            for x in &performed {
                let line = report::done(&x.action, &x.effect);
                eprintln!("{line}");
                if x.effect.changed() {
                    done.push((
                        x.action.clone(),
                        report::lines(std::slice::from_ref(&x.action)).trim().to_owned(),
                    ));
                }
            }
            let after = plan::plan(&inputs, &model);
            p.record = model.record.clone();
            p.record.pins = after.pinned(&model);
            save(&mut state, state_path, &p)?;
            if let Some(e) = error {
                return Err(p.failed(&e));
            }
            match &after.service {
                ServiceState::Ready { .. } if after.is_empty() => break (after, model),
                ServiceState::Failed { message } => return Err(Problems::from(p.at(message))),
                ServiceState::Ready { .. } => continue,
                state => {
                    let revision = match state {
                        ServiceState::Rolling { revision } => revision.clone(),
                        _ => None,
                    };
                    if waiting_for.as_ref() != Some(&revision) {
                        eprintln!(
                            "Waiting for revision {} to become Ready",
                            revision.as_deref().unwrap_or("(new)")
                        );
                        waiting_for = Some(revision);
                        delay = POLL_FIRST;
                        said = Instant::now();
                    } else if said.elapsed() >= PROGRESS_EVERY {
                        eprintln!(
                            "Still waiting for revision {}: {}, {} elapsed (timeout {})",
                            revision.as_deref().unwrap_or("(new)"),
                            phase(state),
                            elapsed(start.elapsed()),
                            elapsed(timeout),
                        );
                        said = Instant::now();
                    }
                }
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Problems::from(p.at(format!(
                    "{}: the revision was not Ready after {}",
                    d.desired.service_resource,
                    elapsed(timeout)
                ))));
            }
            // Never past the timeout: its error comes on time.
            tokio::time::sleep(delay.min(left)).await;
            delay = backoff(delay);
        };
        report.changes += done.iter().filter(|(a, _)| a.writes_google()).count();
        let mut entry = deployment_report(&p, &done, &after);
        let live = model.service.as_ref();
        entry.status = Some(StatusReport {
            url: live
                .and_then(|l| l["uri"].as_str())
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            revision: match &after.service {
                ServiceState::Ready { revision } => Some(revision.clone()),
                _ => None,
            },
            ready: true,
        });
        report.deployments.push(entry);
    }
    Ok(report)
}

fn save(state: &mut State, path: &Path, p: &Prepared<'_>) -> Result<(), Problems> {
    state.deployments.insert(
        p.d.id(),
        Entry {
            project: p.d.desired.project.clone(),
            secrets: p.record.pins.clone(),
            applied_bindings: p.record.bindings.iter().cloned().collect(),
            needs: p.d.desired.bindings.clone(),
        },
    );
    state.save(path).map_err(Problems::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_backs_off_from_200_ms_to_2_s() {
        let delays: Vec<Duration> = std::iter::successors(Some(POLL_FIRST), |d| Some(backoff(*d)))
            .take(7)
            .collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn elapsed_time_reads_like_a_clock() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (60, "1m00s"),
            (125, "2m05s"),
            (3600, "1h00m00s"),
            (3725, "1h02m05s"),
        ];
        for (secs, text) in cases {
            assert_eq!(elapsed(Duration::from_secs(secs)), text);
        }
    }
}
