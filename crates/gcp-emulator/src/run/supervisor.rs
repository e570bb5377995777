//! The live runtime's supervisor: starts revision processes, probes them, keeps their output, stops them, and
//! reports how each start-up ended to the state. One task ([`supervise`], started with the server) takes the
//! state's commands and ticks; each process has a task of its own. The state lock is a sync mutex: it is taken
//! only between awaits, never across one.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::leftovers;
use super::live::{Command, EnvValue, Launch, Probe};
use super::startup::{HEALTH_CHECK_FAILED, failure, health_check_detail};
use crate::App;
use crate::model::Outcome;
use crate::wire;

/// Lines of output kept per revision, oldest dropped first.
pub const LOG_LINES: usize = 2_000;
/// Longer lines are split.
const MAX_LINE: u64 = 64 * 1024;
/// How long a stopped process has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How often the supervisor settles due revisions and stops unwanted processes without being asked.
const TICK: Duration = Duration::from_millis(100);
/// Pause between connection attempts of a TCP probe.
const CONNECT_RETRY: Duration = Duration::from_millis(50);

/// One line a revision's container wrote (`stdout`, `stderr`), or one the runtime logged about it (`system`),
/// as Cloud Logging shows a Cloud Run revision's logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RevisionLogEntry {
    pub time: String,
    pub stream: String,
    pub text: String,
    /// Full revision name.
    pub revision: String,
}

/// Where a revision's process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Starting,
    /// Passed its start-up probe; answers on this local port.
    Serving(u16),
    Ended,
}

struct Instance {
    id: u64,
    /// The process (and process group) id of the shell running the command.
    pid: Option<u32>,
    phase: watch::Receiver<Phase>,
    /// Taken when a stop is asked for.
    stop: Option<oneshot::Sender<()>>,
    dir: PathBuf,
    /// When a request last reached it or ended (its start, before any).
    last_request: Instant,
    /// Requests it is answering.
    in_flight: usize,
}

/// The processes of revisions and their output.
pub(crate) struct Supervisor {
    run_dir: PathBuf,
    /// A temporary directory the supervisor made, removed at shutdown.
    owns_run_dir: bool,
    /// The run directory is this emulator's while it lives.
    _claim: leftovers::Claim,
    base_url: String,
    /// See [`crate::Config::stop_idle_after`].
    stop_idle_after: Option<Duration>,
    instances: Mutex<HashMap<String, Instance>>,
    logs: Mutex<HashMap<String, VecDeque<RevisionLogEntry>>>,
    next_id: AtomicU64,
    shut_down: AtomicBool,
}

/// Logs what a killed emulator left and this one removed.
fn cleared(removed: &[PathBuf], killed: usize) {
    if !removed.is_empty() {
        tracing::warn!(
            directories = ?removed,
            processes = killed,
            "removed what a killed emulator left: revision directories and the processes working in them"
        );
    }
}

/// A request a revision's process is answering (see [`Supervisor::request`]).
pub(crate) struct RequestGuard {
    supervisor: Arc<Supervisor>,
    revision: String,
    /// The instance that counted it.
    instance: u64,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut instances = lock(&self.supervisor.instances);
        if let Some(i) = instances
            .get_mut(&self.revision)
            .filter(|i| i.id == self.instance)
        {
            i.in_flight = i.in_flight.saturating_sub(1);
            i.last_request = Instant::now();
        }
    }
}

/// Whether an instance serves, is not being stopped, answers no request and has had none for `after`.
fn is_idle(i: &Instance, after: Duration) -> bool {
    i.stop.is_some()
        && i.in_flight == 0
        && matches!(*i.phase.borrow(), Phase::Serving(_))
        && i.last_request.elapsed() >= after
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Supervisor {
    /// Prepares the run directory: `run_dir`, or a fresh one under the system's temporary directory.
    pub(crate) fn new(
        run_dir: Option<PathBuf>,
        base_url: String,
        stop_idle_after: Option<Duration>,
    ) -> Result<Self, (PathBuf, std::io::Error)> {
        let (dir, owns, claim) = match run_dir {
            // A given directory keeps its permissions.
            Some(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| (dir.clone(), e))?;
                let (claim, removed, killed) = leftovers::claim(&dir).map_err(|e| (dir.clone(), e))?;
                cleared(&removed, killed);
                (dir, false, claim)
            }
            None => {
                let temp = std::env::temp_dir();
                let (removed, killed) = leftovers::clear_temporary(&temp);
                cleared(&removed, killed);
                let (dir, claim) = leftovers::make_temporary(&temp).map_err(|e| (temp.clone(), e))?;
                (dir, true, claim)
            }
        };
        Ok(Supervisor {
            run_dir: dir,
            owns_run_dir: owns,
            _claim: claim,
            base_url,
            stop_idle_after,
            instances: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            shut_down: AtomicBool::new(false),
        })
    }

    fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Starts a revision's process, unless one is already starting or serving; returns where it is.
    pub(crate) fn start(self: &Arc<Self>, app: Weak<App>, launch: Launch) -> watch::Receiver<Phase> {
        let mut instances = lock(&self.instances);
        if let Some(existing) = instances.get(&launch.revision)
            && *existing.phase.borrow() != Phase::Ended
        {
            let phase = existing.phase.clone();
            drop(instances);
            if launch.settles {
                // The state waits on this start-up: report the running instance's instead.
                let me = self.clone();
                let revision = launch.revision.clone();
                let mut watching = phase.clone();
                tokio::spawn(async move {
                    let settled = watching.wait_for(|p| *p != Phase::Starting).await.map(|p| *p);
                    match settled {
                        Ok(Phase::Serving(_)) => me.report(&app, &revision, Some(Outcome::Ready)),
                        _ => me.report(&app, &revision, None),
                    }
                });
            }
            return phase;
        }
        let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
        if self.is_shut_down() {
            phase_tx.send_replace(Phase::Ended);
            return phase_rx;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (stop_tx, stop_rx) = oneshot::channel();
        let dir = self.run_dir.join(&launch.dir_name);
        instances.insert(
            launch.revision.clone(),
            Instance {
                id,
                pid: None,
                phase: phase_rx.clone(),
                stop: Some(stop_tx),
                dir: dir.clone(),
                last_request: Instant::now(),
                in_flight: 0,
            },
        );
        drop(instances);
        let me = self.clone();
        tokio::spawn(async move { me.run_instance(app, launch, id, dir, stop_rx, phase_tx).await });
        phase_rx
    }

    /// Where a revision's process is, if it has one.
    pub(crate) fn phase(&self, revision: &str) -> Option<watch::Receiver<Phase>> {
        lock(&self.instances).get(revision).map(|i| i.phase.clone())
    }

    /// The process id of a revision's process (the shell running its command, leader of its process group).
    pub(crate) fn pid(&self, revision: &str) -> Option<u32> {
        lock(&self.instances).get(revision).and_then(|i| i.pid)
    }

    /// Where a revision's process is, while it is being stopped.
    pub(crate) fn stopping(&self, revision: &str) -> Option<watch::Receiver<Phase>> {
        lock(&self.instances)
            .get(revision)
            .filter(|i| i.stop.is_none() && *i.phase.borrow() != Phase::Ended)
            .map(|i| i.phase.clone())
    }

    /// The port of a revision's serving process, with the request counted until the guard drops (an instance
    /// answering one is never idle). `None` when no process serves, or it is being stopped: it takes no new request.
    pub(crate) fn request(self: &Arc<Self>, revision: &str) -> Option<(u16, RequestGuard)> {
        let mut instances = lock(&self.instances);
        let i = instances.get_mut(revision).filter(|i| i.stop.is_some())?;
        let Phase::Serving(port) = *i.phase.borrow() else {
            return None;
        };
        i.in_flight += 1;
        i.last_request = Instant::now();
        let guard = RequestGuard {
            supervisor: self.clone(),
            revision: revision.to_owned(),
            instance: i.id,
        };
        Some((port, guard))
    }

    /// Starts an instance's idle time when it begins to serve (its start-up is not idleness).
    fn serving(&self, revision: &str, id: u64) {
        if let Some(i) = lock(&self.instances).get_mut(revision).filter(|i| i.id == id) {
            i.last_request = Instant::now();
        }
    }

    /// Revisions whose process serves, answers no request, and has had none for `after`.
    fn idle(&self, after: Duration) -> Vec<String> {
        lock(&self.instances)
            .iter()
            .filter(|(_, i)| is_idle(i, after))
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Stops a revision's process if it is still idle (a request may have reached it since); true if it was.
    fn stop_if_idle(&self, revision: &str, after: Duration) -> bool {
        let stop = lock(&self.instances)
            .get_mut(revision)
            .filter(|i| is_idle(i, after))
            .and_then(|i| i.stop.take());
        stop.is_some_and(|stop| stop.send(()).is_ok())
    }

    /// Asks a revision's process to stop: SIGTERM, then SIGKILL after a grace period; its directory is removed.
    pub(crate) fn stop(&self, revision: &str) {
        if let Some(stop) = lock(&self.instances)
            .get_mut(revision)
            .and_then(|i| i.stop.take())
        {
            let _ = stop.send(());
        }
    }

    /// Asks every process to stop.
    pub(crate) fn stop_all(&self) {
        for instance in lock(&self.instances).values_mut() {
            if let Some(stop) = instance.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    /// Revisions whose process runs and has not been asked to stop.
    fn running(&self) -> Vec<String> {
        lock(&self.instances)
            .iter()
            .filter(|(_, i)| i.stop.is_some())
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Stops every process gracefully, then kills what is left and removes the run directory (if it made it).
    pub(crate) async fn shut_down_gracefully(&self) {
        // Nothing starts from now on, and nothing is reported to a state that is going away.
        self.shut_down.store(true, Ordering::Release);
        self.stop_all();
        let deadline = Instant::now() + STOP_GRACE + Duration::from_secs(1);
        while Instant::now() < deadline && !lock(&self.instances).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill_all_now();
    }

    /// Kills every process now (their whole process groups) and removes the directories: the path taken when the
    /// emulator is dropped, which cannot wait.
    pub(crate) fn kill_all_now(&self) {
        self.shut_down.store(true, Ordering::Release);
        let instances = lock(&self.instances);
        for instance in instances.values() {
            kill_group(instance.pid);
            let _ = std::fs::remove_dir_all(&instance.dir);
        }
        drop(instances);
        if self.owns_run_dir {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }

    /// Log entries, oldest first: one revision's (full name), or every revision of a service (full name), or all.
    pub(crate) fn logs(&self, revision: Option<&str>, service: Option<&str>) -> Vec<RevisionLogEntry> {
        let logs = lock(&self.logs);
        let prefix = service.map(|s| format!("{s}/revisions/"));
        let mut out: Vec<RevisionLogEntry> = logs
            .iter()
            .filter(|(r, _)| revision.is_none_or(|want| want == r.as_str()))
            .filter(|(r, _)| prefix.as_deref().is_none_or(|p| r.starts_with(p)))
            .flat_map(|(_, ring)| ring.iter().cloned())
            .collect();
        // Timestamps have a fixed width, so text order is time order; the sort is stable within a revision.
        out.sort_by(|a, b| a.time.cmp(&b.time));
        out
    }

    pub(crate) fn clear_logs(&self) {
        lock(&self.logs).clear();
    }

    fn log(&self, revision: &str, stream: &str, text: String) {
        let mut logs = lock(&self.logs);
        let ring = logs.entry(revision.to_string()).or_default();
        if ring.len() >= LOG_LINES {
            ring.pop_front();
        }
        ring.push_back(RevisionLogEntry {
            time: wire::timestamp(Utc::now()),
            stream: stream.to_string(),
            text,
            revision: revision.to_string(),
        });
    }

    /// Records the process id; false when the emulator shut down meanwhile (the caller kills the process).
    fn set_pid(&self, revision: &str, id: u64, pid: Option<u32>) -> bool {
        let mut instances = lock(&self.instances);
        if let Some(i) = instances.get_mut(revision).filter(|i| i.id == id) {
            i.pid = pid;
        }
        !self.is_shut_down()
    }

    fn forget_instance(&self, revision: &str, id: u64) {
        let mut instances = lock(&self.instances);
        if instances.get(revision).is_some_and(|i| i.id == id) {
            instances.remove(revision);
        }
    }

    /// Tells the state how a start-up ended (`None`: it did not end, the process was stopped while starting).
    fn report(&self, app: &Weak<App>, revision: &str, outcome: Option<Outcome>) {
        if self.is_shut_down() {
            return;
        }
        let Some(app) = app.upgrade() else { return };
        {
            let mut st = app.lock();
            match outcome {
                Some(outcome) => st.cloud_run().live_settled(revision, outcome, Utc::now()),
                None => st.cloud_run().live_ended(revision),
            }
        }
        app.mark_dirty();
    }

    /// Stops the processes the state no longer wants and those idle long enough without minimum instances, and
    /// forgets the logs of revisions that are gone.
    fn sweep(&self, app: &App) {
        let running = self.running();
        let idle = self
            .stop_idle_after
            .map(|after| self.idle(after))
            .unwrap_or_default();
        let (unwanted, scaled_in, gone): (Vec<String>, Vec<String>, Vec<String>) = {
            let mut st = app.lock();
            let run = st.cloud_run();
            let unwanted: Vec<String> = running.into_iter().filter(|r| !run.live_wanted(r)).collect();
            let scaled_in = idle
                .into_iter()
                .filter(|r| !unwanted.contains(r) && run.min_instances(r) == 0)
                .collect();
            let gone = lock(&self.logs)
                .keys()
                .filter(|r| !run.store.revisions.contains_key(r.as_str()))
                .cloned()
                .collect();
            (unwanted, scaled_in, gone)
        };
        for revision in unwanted {
            self.stop(&revision);
        }
        if let Some(after) = self.stop_idle_after {
            for revision in scaled_in {
                if self.stop_if_idle(&revision, after) {
                    self.log(
                        &revision,
                        "system",
                        format!(
                            "Shutting down the instance: no request for {} s and no minimum instances. The next \
                             request starts one.",
                            after.as_secs()
                        ),
                    );
                }
            }
        }
        if !gone.is_empty() {
            let mut logs = lock(&self.logs);
            for revision in gone {
                logs.remove(&revision);
            }
        }
    }

    /// The admin URL of a revision's logs.
    pub(crate) fn logs_url(&self, revision: &str) -> String {
        super::live::logs_url(&self.base_url, revision)
    }

    fn failed(&self, launch: &Launch, port: u16) -> Outcome {
        let logs_url = self.logs_url(&launch.revision);
        let detail = format!("{} Logs URL: {logs_url}", health_check_detail(port));
        failure(&launch.revision, HEALTH_CHECK_FAILED, &detail)
    }

    /// One revision's process, from its directory and start to its end.
    async fn run_instance(
        self: Arc<Self>,
        app: Weak<App>,
        launch: Launch,
        id: u64,
        dir: PathBuf,
        mut stop_rx: oneshot::Receiver<()>,
        phase: watch::Sender<Phase>,
    ) {
        let revision = launch.revision.clone();
        let reported = self
            .clone()
            .live_through(&app, &launch, id, &dir, &mut stop_rx, &phase)
            .await;
        let _ = std::fs::remove_dir_all(&dir);
        phase.send_replace(Phase::Ended);
        self.forget_instance(&revision, id);
        if launch.settles && !reported {
            self.report(&app, &revision, None);
        }
    }

    /// Starts, probes and runs the process until it ends or is stopped; true once the start-up was reported.
    async fn live_through(
        self: Arc<Self>,
        app: &Weak<App>,
        launch: &Launch,
        id: u64,
        dir: &Path,
        stop_rx: &mut oneshot::Receiver<()>,
        phase: &watch::Sender<Phase>,
    ) -> bool {
        let revision = launch.revision.as_str();
        let port = match free_port() {
            Ok(port) => port,
            Err(e) => {
                self.log(
                    revision,
                    "system",
                    format!("No free local port for the container: {e}"),
                );
                if launch.settles {
                    self.report(app, revision, Some(self.failed(launch, 0)));
                }
                return launch.settles;
            }
        };
        let spawned = prepare(dir, launch).and_then(|root| {
            spawn(launch, dir, &root, port).map_err(|e| format!("The container could not be started: {e}"))
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(message) => {
                self.log(revision, "system", message);
                if launch.settles {
                    self.report(app, revision, Some(self.failed(launch, port)));
                }
                return launch.settles;
            }
        };
        let pid = child.id();
        if !self.set_pid(revision, id, pid) {
            kill_group(pid);
        }
        if let Some(out) = child.stdout.take() {
            self.capture(revision, "stdout", out);
        }
        if let Some(err) = child.stderr.take() {
            self.capture(revision, "stderr", err);
        }
        let probe = run_probe(&launch.probe, port);
        tokio::pin!(probe);
        let started = tokio::select! {
            status = child.wait() => Err(Some(status)),
            passed = &mut probe => passed.map_err(|failures| {
                self.log(revision, "system", probe_failed(launch, port, failures));
                None
            }),
            _ = &mut *stop_rx => {
                stop(&mut child, pid).await;
                return false;
            }
        };
        match started {
            Ok(()) => {
                self.serving(revision, id);
                phase.send_replace(Phase::Serving(port));
                if launch.settles {
                    self.report(app, revision, Some(Outcome::Ready));
                }
                tokio::select! {
                    status = child.wait() => {
                        self.log(revision, "system", exit_line(status));
                        kill_group(pid);
                    }
                    _ = &mut *stop_rx => stop(&mut child, pid).await,
                }
            }
            Err(exited) => {
                match exited {
                    Some(status) => {
                        self.log(revision, "system", exit_line(status));
                        kill_group(pid);
                    }
                    None => {
                        // The probe window ended: the instance is not started.
                        kill_group(pid);
                        let _ = child.wait().await;
                    }
                }
                if launch.settles {
                    self.report(app, revision, Some(self.failed(launch, port)));
                }
            }
        }
        launch.settles
    }

    /// Copies a stream of the process into the revision's log, line by line.
    fn capture(
        self: &Arc<Self>,
        revision: &str,
        stream: &'static str,
        out: impl AsyncRead + Unpin + Send + 'static,
    ) {
        let me = self.clone();
        let revision = revision.to_string();
        tokio::spawn(async move {
            let mut reader = BufReader::new(out);
            let mut line = Vec::new();
            loop {
                line.clear();
                match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        while matches!(line.last(), Some(b'\n' | b'\r')) {
                            line.pop();
                        }
                        me.log(&revision, stream, String::from_utf8_lossy(&line).into_owned());
                    }
                }
            }
        });
    }
}

/// The supervisor's task: starts what the state hands over, stops what it no longer wants, and settles due
/// revisions every tick so start-ups proceed without reads. Ends with the emulator.
pub(crate) async fn supervise(
    app: Weak<App>,
    supervisor: Arc<Supervisor>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let command = tokio::select! {
            command = commands.recv() => match command {
                Some(command) => Some(command),
                None => break,
            },
            _ = tick.tick() => None,
        };
        if supervisor.is_shut_down() {
            break;
        }
        let Some(strong) = app.upgrade() else { break };
        match command {
            Some(Command::Start(launch)) => {
                supervisor.start(app.clone(), *launch);
            }
            Some(Command::Sweep) => supervisor.sweep(&strong),
            None => {
                strong.lock().cloud_run().settle(Utc::now());
                supervisor.sweep(&strong);
            }
        }
    }
}

/// Makes the revision's directory afresh (mode 0700) with `root/` (mount paths and secret files) and `home/`;
/// returns the root.
fn prepare(dir: &Path, launch: &Launch) -> Result<PathBuf, String> {
    let failed =
        |what: &str, e: std::io::Error| format!("The revision directory could not be prepared ({what}): {e}");
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| failed("removing the old one", e))?;
    }
    let root = dir.join("root");
    std::fs::create_dir_all(&root).map_err(|e| failed("creating it", e))?;
    restrict(dir, 0o700).map_err(|e| failed("setting its mode", e))?;
    leftovers::mark_revision(dir).map_err(|e| failed("marking it", e))?;
    std::fs::create_dir_all(dir.join("home")).map_err(|e| failed("creating home", e))?;
    for mount in &launch.mounts {
        let relative =
            under_root(mount).ok_or_else(|| format!("The mount path {mount} is not a plain path."))?;
        std::fs::create_dir_all(root.join(relative)).map_err(|e| failed("creating a mount path", e))?;
    }
    for file in &launch.files {
        let relative = under_root(&file.path).ok_or_else(|| {
            format!(
                "The secret volume path {} is not a plain relative path.",
                file.path
            )
        })?;
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed("creating a secret's directory", e))?;
        }
        write_file(&path, &file.data, file.mode).map_err(|e| failed("writing a secret file", e))?;
    }
    Ok(root)
}

/// `path` relative to the revision's root, when it stays inside it: plain segments only (no `..`).
fn under_root(path: &str) -> Option<&Path> {
    let relative = Path::new(path.trim_start_matches('/'));
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(relative)
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(data)?;
    drop(f);
    restrict(path, mode)
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// A value under a declared mount path, rewritten to the same path under the revision's root; so is the value of
/// a `--flag=PATH` argument.
fn map_path(value: &str, mounts: &[String], root: &str) -> String {
    let under = |path: &str| {
        mounts.iter().any(|mount| {
            path == mount.as_str()
                || path
                    .strip_prefix(mount.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    };
    if under(value) {
        return format!("{root}{value}");
    }
    match value.split_once('=') {
        Some((flag, path)) if flag.starts_with('-') && under(path) => format!("{flag}={root}{path}"),
        _ => value.to_string(),
    }
}

/// `sh -c 'COMMAND "$@"' sh ARGS...` with a minimal environment, in its own process group.
fn spawn(launch: &Launch, dir: &Path, root: &Path, port: u16) -> std::io::Result<Child> {
    let root = root.to_string_lossy();
    let map = |v: &str| map_path(v, &launch.mounts, &root);
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{} \"$@\"", launch.command))
        .arg("sh")
        .args(launch.args.iter().map(|a| map(a)))
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", dir.join("home"))
        .env(
            "LANG",
            std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()),
        );
    for (name, value) in &launch.env {
        match value {
            EnvValue::Plain(v) => command.env(name, map(v)),
            EnvValue::Secret(bytes) => command.env(name, os_string(bytes)),
        };
    }
    command
        .env("PORT", port.to_string())
        .env("K_SERVICE", &launch.service_id)
        .env("K_REVISION", &launch.short)
        .env("K_CONFIGURATION", &launch.service_id)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    command.spawn()
}

#[cfg(unix)]
fn os_string(bytes: &[u8]) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(bytes.to_vec())
}

#[cfg(not(unix))]
fn os_string(bytes: &[u8]) -> std::ffi::OsString {
    String::from_utf8_lossy(bytes).into_owned().into()
}

/// Ports handed to revisions by any emulator of this process, newest last: a port is not handed out again while it
/// is among the last [`PORTS_REMEMBERED`], so two emulators in one test binary never give their revisions the
/// same port (the OS only promises the port was free when asked).
static HANDED_OUT: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());
const PORTS_REMEMBERED: usize = 4_096;

fn free_port() -> std::io::Result<u16> {
    for _ in 0..64 {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let mut handed = lock(&HANDED_OUT);
        if handed.contains(&port) {
            continue;
        }
        if handed.len() == PORTS_REMEMBERED {
            handed.pop_front();
        }
        handed.push_back(port);
        return Ok(port);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no local port that no revision was given recently",
    ))
}

/// SIGTERM to the process group, SIGKILL after the grace period, then SIGKILL to what is left of the group.
async fn stop(child: &mut Child, pid: Option<u32>) {
    signal_group(pid, Signal::Term);
    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
        signal_group(pid, Signal::Kill);
        let _ = child.wait().await;
    }
    kill_group(pid);
}

pub(super) fn kill_group(pid: Option<u32>) {
    signal_group(pid, Signal::Kill);
}

enum Signal {
    Term,
    Kill,
}

#[cfg(unix)]
fn signal_group(pid: Option<u32>, signal: Signal) {
    use rustix::process::{Pid, Signal as Sig, kill_process_group};
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).and_then(Pid::from_raw) else {
        return;
    };
    let signal = match signal {
        Signal::Term => Sig::TERM,
        Signal::Kill => Sig::KILL,
    };
    let _ = kill_process_group(pid, signal);
}

#[cfg(not(unix))]
fn signal_group(_pid: Option<u32>, _signal: Signal) {}

/// Runs a start-up probe until it passes, or returns how many attempts failed.
async fn run_probe(probe: &Probe, port: u16) -> Result<(), u32> {
    tokio::time::sleep(probe.initial_delay).await;
    let mut failures = 0;
    loop {
        let started = Instant::now();
        if attempt(probe, port).await {
            return Ok(());
        }
        failures += 1;
        if failures >= probe.failure_threshold {
            return Err(failures);
        }
        tokio::time::sleep_until(started + probe.period).await;
    }
}

/// One probe attempt: TCP connects repeatedly until one succeeds within the timeout; HTTP asks once for a 2xx or
/// 3xx answer within it.
async fn attempt(probe: &Probe, port: u16) -> bool {
    let deadline = Instant::now() + probe.timeout;
    match &probe.http_path {
        None => loop {
            let connect = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port));
            if let Ok(Ok(_)) = tokio::time::timeout_at(deadline, connect).await {
                return true;
            }
            if Instant::now() + CONNECT_RETRY >= deadline {
                return false;
            }
            tokio::time::sleep(CONNECT_RETRY).await;
        },
        Some(path) => {
            let request = axum::http::Request::get(path.as_str())
                .header(axum::http::header::HOST, format!("localhost:{port}"))
                .header(axum::http::header::USER_AGENT, "GoogleHC/1.0")
                .body(axum::body::Body::empty());
            let Ok(request) = request else { return false };
            matches!(
                tokio::time::timeout_at(deadline, super::serve::send(port, request)).await,
                Ok(Ok(response)) if (200..400).contains(&response.status().as_u16())
            )
        }
    }
}

/// Cloud Run's system log line for a start-up probe that gave up.
fn probe_failed(launch: &Launch, port: u16, failures: u32) -> String {
    let times = if failures == 1 { "time" } else { "times" };
    let (kind, place) = match &launch.probe.http_path {
        Some(path) => ("HTTP", format!("on path \"{path}\"")),
        None => ("TCP", format!("on port {port}")),
    };
    format!(
        "STARTUP {kind} probe failed {failures} {times} consecutively for container \"{}\" {place}. The instance was not started.",
        launch.container
    )
}

/// Cloud Run's system log line for a container that ended.
fn exit_line(status: std::io::Result<std::process::ExitStatus>) -> String {
    let Ok(status) = status else {
        return "Container exited.".into();
    };
    if let Some(code) = status.code() {
        return format!("Container called exit({code}).");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("Container terminated on signal {signal}.");
        }
    }
    "Container exited.".into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn an_instance_answering_a_request_is_not_idle_and_one_being_stopped_takes_no_request() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor =
            Arc::new(Supervisor::new(Some(dir.path().to_owned()), "http://x".into(), None).unwrap());
        let (_phase_tx, phase) = watch::channel(Phase::Serving(1));
        let (stop, mut stopped) = oneshot::channel();
        lock(&supervisor.instances).insert(
            "r".into(),
            Instance {
                id: 7,
                pid: None,
                phase,
                stop: Some(stop),
                dir: dir.path().join("r"),
                last_request: Instant::now(),
                in_flight: 0,
            },
        );
        let now = Duration::ZERO;
        let (port, guard) = supervisor.request("r").unwrap();
        assert_eq!(port, 1);
        assert!(supervisor.idle(now).is_empty());
        assert!(!supervisor.stop_if_idle("r", now));
        drop(guard);
        assert_eq!(supervisor.idle(now), ["r"]);
        assert!(
            supervisor.idle(Duration::from_secs(60)).is_empty(),
            "a request just ended"
        );
        assert!(supervisor.stop_if_idle("r", now));
        assert!(stopped.try_recv().is_ok());
        assert!(supervisor.request("r").is_none());
        assert!(supervisor.stopping("r").is_some());
        assert!(supervisor.request("gone").is_none());
    }

    #[test]
    fn only_plain_paths_stay_under_the_revision_root() {
        assert_eq!(
            under_root("/etc/litellm/config.yaml"),
            Some(Path::new("etc/litellm/config.yaml"))
        );
        for escaping in ["/etc/../../outside", "/..", "/../x"] {
            assert_eq!(under_root(escaping), None, "{escaping}");
        }
    }

    #[test]
    fn paths_under_mounts_are_mapped_on_segment_boundaries() {
        let mounts = vec!["/etc/litellm".to_string(), "/secrets".to_string()];
        assert_eq!(
            map_path("/etc/litellm/config.yaml", &mounts, "/run/r/root"),
            "/run/r/root/etc/litellm/config.yaml"
        );
        assert_eq!(map_path("/secrets", &mounts, "/x"), "/x/secrets");
        assert_eq!(map_path("/etc/litellmx", &mounts, "/x"), "/etc/litellmx");
        assert_eq!(map_path("--port", &mounts, "/x"), "--port");
        assert_eq!(
            map_path("--config=/etc/litellm/config.yaml", &mounts, "/x"),
            "--config=/x/etc/litellm/config.yaml"
        );
        assert_eq!(
            map_path("--config=/etc/other", &mounts, "/x"),
            "--config=/etc/other"
        );
        assert_eq!(map_path("KEY=/secrets/a", &mounts, "/x"), "KEY=/secrets/a");
    }
}
