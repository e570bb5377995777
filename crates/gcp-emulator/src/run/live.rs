//! The live runtime, as the state sees it: which images run as local processes, what a revision's process gets
//! (its environment, secret files and start-up probe, resolved from the pinned secret versions under the state
//! lock), which processes are still wanted, and which revision a request to a service's URL reaches. The
//! processes themselves are the supervisor's (`supervisor`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::CloudRun;
use super::spec::split_service;
use super::startup::failure;
use crate::model::{Outcome, Revision, Service, VersionState};
use crate::wire;

/// How the state reaches the live runtime; present only when some image has a command.
#[derive(Clone)]
pub struct LiveLink {
    /// Image -> shell command line.
    pub images: BTreeMap<String, String>,
    /// `http://ADDR` of the emulator: revision and logs URLs start with it.
    pub base_url: String,
    commands: UnboundedSender<Command>,
    /// Revisions judged fit and handed to the supervisor whose start-up has not settled yet.
    starting: BTreeSet<String>,
}

impl std::fmt::Debug for LiveLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveLink")
            .field("images", &self.images)
            .field("base_url", &self.base_url)
            .field("starting", &self.starting)
            .finish_non_exhaustive()
    }
}

impl LiveLink {
    pub(crate) fn new(
        images: BTreeMap<String, String>,
        base_url: String,
        commands: UnboundedSender<Command>,
    ) -> Self {
        LiveLink {
            images,
            base_url,
            commands,
            starting: BTreeSet::new(),
        }
    }

    /// The same link for a fresh state (after a reset): nothing is starting.
    pub(crate) fn renewed(&self) -> Self {
        LiveLink {
            starting: BTreeSet::new(),
            ..self.clone()
        }
    }

    /// The admin URL of a revision's logs.
    pub(crate) fn logs_url(&self, revision: &str) -> String {
        logs_url(&self.base_url, revision)
    }
}

/// The admin URL of a revision's logs, on the emulator at `base_url`.
pub(crate) fn logs_url(base_url: &str, revision: &str) -> String {
    format!("{base_url}/_emulator/logs?revision={revision}")
}

/// What the state asks of the supervisor.
pub(crate) enum Command {
    /// Start a revision's process and report how its start-up probe ends.
    Start(Box<Launch>),
    /// Traffic or revisions changed: stop the processes no longer wanted.
    Sweep,
}

/// Everything a revision's process is started with. Holds secret payloads: no `Debug`, never logged.
pub(crate) struct Launch {
    /// Full revision name.
    pub revision: String,
    /// `K_SERVICE` and `K_CONFIGURATION`.
    pub service_id: String,
    /// `K_REVISION`.
    pub short: String,
    /// Name of the revision's directory under the run directory.
    pub dir_name: String,
    /// Shell command line, from the image.
    pub command: String,
    pub container: String,
    pub args: Vec<String>,
    pub env: Vec<(String, EnvValue)>,
    /// Declared mount paths, longest first: arguments and plain env values under them are mapped.
    pub mounts: Vec<String>,
    pub files: Vec<SecretFile>,
    pub probe: Probe,
    /// Whether the probe's end settles the revision's start-up (false for a cold start of a Ready revision).
    pub settles: bool,
}

pub(crate) enum EnvValue {
    Plain(String),
    Secret(Vec<u8>),
}

/// A secret volume's file, at its path inside the container.
pub(crate) struct SecretFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A container's start-up probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    /// `httpGet.path`; `None` probes TCP (`tcpSocket`, and `grpc`, which is not emulated).
    pub http_path: Option<String>,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
}

impl Probe {
    /// The container's `startupProbe`, with Cloud Run's defaults: without one, TCP every 240 s with a 240 s
    /// timeout and one failure allowed; a declared one defaults to period 10 s, timeout 1 s, 3 failures.
    fn of(container: &Value) -> Probe {
        let Some(p) = container.get("startupProbe").filter(|p| p.is_object()) else {
            return Probe {
                http_path: None,
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(240),
                timeout: Duration::from_secs(240),
                failure_threshold: 1,
            };
        };
        let secs = |field: &str, default: u64| {
            p.get(field)
                .and_then(wire::int64_value)
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(default)
        };
        let http_path = p.get("httpGet").filter(|h| h.is_object()).map(|h| {
            let path = h.get("path").and_then(Value::as_str).unwrap_or("/");
            if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            }
        });
        Probe {
            http_path,
            initial_delay: Duration::from_secs(secs("initialDelaySeconds", 0)),
            period: Duration::from_secs(secs("periodSeconds", 10).max(1)),
            timeout: Duration::from_secs(secs("timeoutSeconds", 1).max(1)),
            failure_threshold: u32::try_from(secs("failureThreshold", 3).max(1)).unwrap_or(u32::MAX),
        }
    }
}

/// The container that serves requests: the one declaring ports (Cloud Run's ingress container), else the first.
fn ingress_container(template: &Value) -> Option<&Value> {
    let containers = template.get("containers")?.as_array()?;
    containers
        .iter()
        .find(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .is_some_and(|p| !p.is_empty())
        })
        .or_else(|| containers.first())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn percent_of(t: &Value) -> i64 {
    t.get("percent").and_then(wire::int64_value).unwrap_or(0)
}

fn tag_of(t: &Value) -> Option<&str> {
    t.get("tag").and_then(Value::as_str).filter(|t| !t.is_empty())
}

impl CloudRun<'_> {
    /// The command line of a revision's image, when the live runtime runs it.
    pub(super) fn live_command(&self, revision: &Revision) -> Option<&str> {
        let live = self.store.live.as_ref()?;
        let image = ingress_container(&revision.template)?.get("image")?.as_str()?;
        live.images.get(image).map(String::as_str)
    }

    /// Whether the revision has been handed to the supervisor and its start-up has not settled.
    pub(super) fn live_starting(&self, name: &str) -> bool {
        self.store
            .live
            .as_ref()
            .is_some_and(|l| l.starting.contains(name))
    }

    /// Hands a revision that passed judging to the supervisor; it stays pending until its probe ends.
    pub(super) fn start_live(&mut self, name: &str, now: DateTime<Utc>) {
        // A service being deleted starts nothing: the revision stays pending until the service is gone.
        if !self.live_wanted(name) {
            return;
        }
        let Some(revision) = self.store.revisions.get(name) else {
            return;
        };
        match self.launch(revision, true) {
            Ok(launch) => {
                if let Some(live) = self.store.live.as_mut() {
                    live.starting.insert(name.to_string());
                    let _ = live.commands.send(Command::Start(Box::new(launch)));
                }
            }
            Err(detail) => {
                let outcome = failure(name, "SECRETS_ACCESS_CHECK_FAILED", &detail);
                self.apply_outcome(name, outcome, now);
            }
        }
    }

    /// How a live start-up ended: the supervisor's report, applied as the timer's would be.
    pub(crate) fn live_settled(&mut self, name: &str, outcome: Outcome, at: DateTime<Utc>) {
        if let Some(live) = self.store.live.as_mut() {
            live.starting.remove(name);
        }
        if self
            .store
            .revisions
            .get(name)
            .is_some_and(|r| r.outcome == Outcome::Pending)
        {
            self.apply_outcome(name, outcome, at);
            self.complete_operations();
        }
        self.nudge_live();
    }

    /// A revision's process ended without settling its start-up (stopped while starting): it may start again.
    pub(crate) fn live_ended(&mut self, name: &str) {
        if let Some(live) = self.store.live.as_mut() {
            live.starting.remove(name);
        }
    }

    /// Asks the supervisor to stop the processes no longer wanted.
    pub(crate) fn nudge_live(&self) {
        if let Some(live) = &self.store.live {
            let _ = live.commands.send(Command::Sweep);
        }
    }

    /// Whether a revision's process should keep running: the revision and its service exist (not being deleted),
    /// and it is still starting or traffic reaches it (a percent or a tag).
    pub(crate) fn live_wanted(&self, name: &str) -> bool {
        let Some(r) = self.store.revisions.get(name) else {
            return false;
        };
        let Some(s) = self.store.services.get(&r.service) else {
            return false;
        };
        s.delete_time.is_none()
            && (r.outcome == Outcome::Pending || self.referenced_revisions(s).contains(name))
    }

    /// The instances a revision keeps running even without requests: its template's `scaling.minInstanceCount`,
    /// or its service's (service-level minimum instances), whichever is higher.
    pub(crate) fn min_instances(&self, name: &str) -> i64 {
        let Some(r) = self.store.revisions.get(name) else {
            return 0;
        };
        let of = |scaling: Option<&Value>| {
            scaling
                .and_then(|s| s.get("minInstanceCount"))
                .and_then(wire::int64_value)
                .unwrap_or(0)
        };
        let service = self
            .store
            .services
            .get(&r.service)
            .map_or(0, |s| of(s.spec.get("scaling")));
        of(r.template.get("scaling")).max(service)
    }

    /// Full names of the revisions that receive a share of traffic or carry a tag.
    pub(crate) fn referenced_revisions(&self, s: &Service) -> BTreeSet<String> {
        self.traffic_statuses(s)
            .iter()
            .filter(|t| percent_of(t) > 0 || tag_of(t).is_some())
            .filter_map(|t| self.status_revision(s, t))
            .collect()
    }

    /// The full name of the revision a traffic status names (LATEST: the latest ready one).
    fn status_revision(&self, s: &Service, t: &Value) -> Option<String> {
        match t
            .get("revision")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            Some(r) => Some(format!("{}/revisions/{r}", s.name)),
            None => s.latest_ready.clone(),
        }
    }

    /// The service a Cloud Run host names (`[TAG---]ID-HASH-REGION.a.run.app` or `ID-NUMBER.REGION.run.app`),
    /// with the tag, if any.
    pub(crate) fn service_of_host(&self, host: &str) -> Option<(String, Option<String>)> {
        let host = host.to_ascii_lowercase();
        let (tag, base) = match host.split_once("---") {
            Some((tag, base)) => (Some(tag.to_string()), base.to_string()),
            None => (None, host),
        };
        self.store
            .services
            .values()
            .find(|s| self.service_hosts(s).contains(&base))
            .map(|s| (s.name.clone(), tag))
    }

    /// The revision Cloud Run would send a request to: a tag's revision, or one drawn by the traffic
    /// percentages (`roll` uniform in [0, 1)). `None` when no revision serves (or the tag is unknown).
    pub(crate) fn pick_revision(&self, s: &Service, tag: Option<&str>, roll: f64) -> Option<String> {
        let statuses = self.traffic_statuses(s);
        if let Some(tag) = tag {
            return statuses
                .iter()
                .find(|t| tag_of(t) == Some(tag))
                .and_then(|t| self.status_revision(s, t));
        }
        let shares: Vec<(i64, String)> = statuses
            .iter()
            .filter(|t| percent_of(t) > 0)
            .filter_map(|t| Some((percent_of(t), self.status_revision(s, t)?)))
            .collect();
        let total: i64 = shares.iter().map(|(p, _)| p).sum();
        if total <= 0 {
            return None;
        }
        // `roll` < 1, so the draw is below `total` and some share always contains it.
        let mut draw = (roll * total as f64) as i64;
        for (percent, revision) in &shares {
            if draw < *percent {
                return Some(revision.clone());
            }
            draw -= percent;
        }
        shares.last().map(|(_, r)| r.clone())
    }

    /// Whether the caller may invoke a service: `allUsers` holds `run.routes.invoke` on it (as `roles/run.invoker`
    /// grants), or `principal` (none for a request without a known token) holds it on the service or its project.
    pub(crate) fn may_invoke(&self, s: &Service, principal: Option<&str>, now: DateTime<Utc>) -> bool {
        let project = split_service(&s.name).map(|n| n.project).unwrap_or("");
        let facts = crate::auth::Facts::of(&s.name, now);
        let holds = |who: &str| {
            self.policies()
                .grant(who, "run.routes.invoke", project, Some(&s.policy), &facts)
        };
        holds("allUsers") || principal.is_some_and(holds)
    }

    /// What a revision's process is started with. Secrets resolve now (`latest` to the newest version).
    pub(crate) fn launch(&self, revision: &Revision, settles: bool) -> Result<Launch, String> {
        let command = self
            .live_command(revision)
            .ok_or_else(|| "its image has no command".to_string())?
            .to_string();
        let n = split_service(&revision.service).map_err(|e| e.message)?;
        let (project, location, service_id) = (n.project, n.location, n.id);
        let short = revision.name.rsplit('/').next().unwrap_or("").to_string();
        let t = &revision.template;
        let container = ingress_container(t).cloned().unwrap_or(Value::Null);
        let resolve = |secret: &str, version: &str| -> Result<Vec<u8>, String> {
            let full = if secret.starts_with("projects/") {
                self.resourcemanager.numbered(secret)
            } else {
                self.resourcemanager
                    .numbered(&format!("projects/{project}/secrets/{secret}"))
            };
            let s = self
                .secretmanager
                .secrets
                .get(&full)
                .ok_or_else(|| format!("Secret {full}/versions/{version} was not found"))?;
            let id = s
                .resolve_version(version)
                .map_err(|_| format!("Secret {full}/versions/{version} was not found"))?;
            s.versions
                .get(&id)
                .filter(|v| v.state == VersionState::Enabled)
                .map(|v| v.data.clone())
                .ok_or_else(|| format!("Secret Version {full}/versions/{id} is not enabled."))
        };
        let mut env = Vec::new();
        for e in container
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = e.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let value = match e.get("valueSource").and_then(|v| v.get("secretKeyRef")) {
                Some(r) => {
                    let secret = r.get("secret").and_then(Value::as_str).unwrap_or("");
                    let version = r.get("version").and_then(Value::as_str).unwrap_or("latest");
                    EnvValue::Secret(resolve(secret, version)?)
                }
                None => EnvValue::Plain(e.get("value").and_then(Value::as_str).unwrap_or("").to_string()),
            };
            env.push((name, value));
        }
        let volumes: BTreeMap<&str, &Value> = t
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v.get("name")?.as_str()?, v)))
            .collect();
        let mut mounts = Vec::new();
        let mut files = Vec::new();
        for m in container
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(mount) = m
                .get("mountPath")
                .and_then(Value::as_str)
                .filter(|p| p.starts_with('/'))
            else {
                continue;
            };
            let mount = mount.trim_end_matches('/').to_string();
            let name = m.get("name").and_then(Value::as_str).unwrap_or("");
            if let Some(secret) = volumes.get(name).and_then(|v| v.get("secret")) {
                let id = secret.get("secret").and_then(Value::as_str).unwrap_or("");
                let mode_of = |v: Option<&Value>| {
                    v.and_then(wire::int64_value)
                        .and_then(|m| u32::try_from(m).ok())
                        .map(|m| m & 0o777)
                };
                let default_mode = mode_of(secret.get("defaultMode")).unwrap_or(0o400);
                let items = secret
                    .get("items")
                    .and_then(Value::as_array)
                    .filter(|i| !i.is_empty());
                match items {
                    // Cloud Run without items: one file named after the secret, holding its latest version.
                    None => files.push(SecretFile {
                        path: format!("{mount}/{}", id.rsplit('/').next().unwrap_or(id)),
                        data: resolve(id, "latest")?,
                        mode: default_mode,
                    }),
                    Some(items) => {
                        for item in items {
                            let path = item.get("path").and_then(Value::as_str).unwrap_or("");
                            let version = item.get("version").and_then(Value::as_str).unwrap_or("latest");
                            files.push(SecretFile {
                                path: format!("{mount}/{}", path.trim_start_matches('/')),
                                data: resolve(id, version)?,
                                mode: mode_of(item.get("mode")).unwrap_or(default_mode),
                            });
                        }
                    }
                }
            }
            mounts.push(mount);
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        Ok(Launch {
            revision: revision.name.clone(),
            service_id: service_id.to_string(),
            dir_name: format!("{project}_{location}_{short}"),
            short,
            command,
            container: container
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(service_id)
                .to_string(),
            args: strings(container.get("args")),
            env,
            mounts,
            files,
            probe: Probe::of(&container),
            settles,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    #[test]
    fn probes_default_as_cloud_run_does() {
        let none = Probe::of(&json!({"image": "x"}));
        assert_eq!(none.http_path, None);
        assert_eq!(none.timeout, Duration::from_secs(240));
        assert_eq!(none.failure_threshold, 1);
        let http = Probe::of(&json!({"startupProbe": {"httpGet": {"path": "ready"}, "periodSeconds": 2}}));
        assert_eq!(http.http_path.as_deref(), Some("/ready"));
        assert_eq!(http.period, Duration::from_secs(2));
        assert_eq!(http.timeout, Duration::from_secs(1));
        assert_eq!(http.failure_threshold, 3);
    }
}
