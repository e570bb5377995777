//! Stateful local emulator of the Google Cloud APIs litellm-operator uses: Secret Manager v1, Cloud Run Admin
//! v2 (and its v1 view for gcloud), IAM service accounts and their policies, and Service Usage, over HTTP/JSON
//! exactly as Google's REST APIs. With [`Config::run_images`], revisions of those images run as local processes
//! (env, secret files and start-up probe resolved from the pinned versions) and services serve their traffic
//! through the emulator at `http://ADDR/_run/HOST/`; see the README's "Live revisions".
//!
//! ```no_run
//! # async fn demo() -> Result<(), gcp_emulator::Error> {
//! let emu = gcp_emulator::spawn(gcp_emulator::Config::default()).await?;
//! let base = emu.url(); // "http://127.0.0.1:PORT"
//! emu.state().seed_service_account("runtime@p.iam.gserviceaccount.com");
//! drop(emu); // shuts the server down
//! # let _ = base; Ok(()) }
//! ```

pub mod admin;
pub mod auth;
pub mod condition;
pub mod error;
pub mod faults;
pub mod iam;
pub mod knative;
pub mod model;
pub mod quota;
pub mod resourcemanager;
pub mod roles;
pub mod run;
pub mod runtime;
pub mod secretmanager;
mod server;
pub mod serviceusage;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use admin::{FaultRule, LogEntry};
pub use error::{ApiError, Code};
pub use model::State;
pub use run::RevisionLogEntry;

/// Largest request body read; larger ones are answered 400 INVALID_ARGUMENT.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How long an idle instance of a revision without minimum instances lives by default ([`Config::stop_idle_after`]).
pub const DEFAULT_STOP_IDLE_AFTER: Duration = Duration::from_secs(15 * 60);

/// How the emulator behaves. `Config::default()` binds a random loopback port with no added latency.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind; `None` binds `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// Latency added to every API call (not to the admin API).
    pub latency: Duration,
    /// How long a new Cloud Run revision takes to become Ready (or fail).
    pub revision_startup: Duration,
    /// How old an IAM grant must be before a revision start-up honours it.
    pub iam_propagation: Duration,
    /// Multiplier on Google's default quotas; 0 disables quota enforcement.
    pub quota_scale: f64,
    /// JSON file to load state from at start and persist state to after every change.
    pub state_file: Option<PathBuf>,
    /// Service accounts that exist (besides each project's default compute account). Others are created through
    /// the IAM API or seeded later.
    pub service_accounts: Vec<String>,
    /// The old lenient mode: while none are seeded or created, every well-formed account exists (and every
    /// Workload Identity member). Off: an account exists only once seeded or created, as in Google.
    pub any_service_account_exists: bool,
    /// Projects whose GKE Workload Identity pool (`PROJECT.svc.id.goog`) exists, as once a cluster of theirs has
    /// Workload Identity: members `serviceAccount:PROJECT.svc.id.goog[NS/NAME]` are accepted only for those.
    pub workload_identity_pools: Vec<String>,
    /// Container images whose revisions fail to start.
    pub crashing_images: Vec<String>,
    /// The code of a failed revision's operation error: Google has answered `FAILED_PRECONDITION` (9) and
    /// `INTERNAL` (13) for the same failure.
    pub revision_failure_code: Code,
    /// Callers must present a token the emulator minted, and hold the permission each call needs (project and
    /// resource IAM policies, predefined and custom roles). Off: every caller may do everything.
    pub enforce_auth: bool,
    /// Images the emulator runs as local processes: image -> shell command line, run as
    /// `sh -c 'COMMAND "$@"' sh ARGS...` with the container's `args` (its `command` is ignored). Their revisions
    /// really start (judged first, then probed), and services serve traffic through the emulator at
    /// `http://ADDR/_run/HOST/`. Empty: every revision's start-up is only simulated, and URLs are Google's.
    pub run_images: BTreeMap<String, String>,
    /// Where revision processes get their directories (one per revision); `None`: a fresh directory under the
    /// system's temporary directory, removed at shutdown.
    pub run_dir: Option<PathBuf>,
    /// How long a serving process of a revision without minimum instances may go without requests before it is
    /// stopped, as Cloud Run scales such a revision to zero; the next request starts one (a cold start). `None`:
    /// never. Default: 15 minutes, how long Cloud Run keeps an idle instance at most.
    pub stop_idle_after: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: None,
            latency: Duration::ZERO,
            revision_startup: Duration::from_millis(100),
            iam_propagation: Duration::ZERO,
            quota_scale: 1.0,
            state_file: None,
            service_accounts: Vec::new(),
            any_service_account_exists: false,
            workload_identity_pools: Vec::new(),
            crashing_images: Vec::new(),
            revision_failure_code: Code::FailedPrecondition,
            enforce_auth: false,
            run_images: BTreeMap::new(),
            run_dir: None,
            stop_idle_after: Some(DEFAULT_STOP_IDLE_AFTER),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading state file {path}")]
    ReadState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing state file {path}")]
    ParseState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("preparing the run directory {path}")]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Shared by every request: configuration, the one state lock, the persistence flag and the live runtime.
pub struct App {
    config: Config,
    state: Mutex<State>,
    dirty: AtomicBool,
    /// The processes of revisions, when some image has a command.
    live: Option<Arc<run::Supervisor>>,
}

impl App {
    /// Locks the state. Callers never hold the guard across an await.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn mark_dirty(&self) {
        if self.config.state_file.is_some() {
            self.dirty.store(true, Ordering::Release);
        }
    }

    fn fresh_state(config: &Config) -> Result<State, Error> {
        let mut state = State::default();
        state.run.timing = run::Timing {
            revision_startup: config.revision_startup,
            iam_propagation: config.iam_propagation,
            failure_code: config.revision_failure_code,
        };
        state.iam.any_account_exists = config.any_service_account_exists;
        state
            .iam
            .identity_pools
            .extend(config.workload_identity_pools.iter().cloned());
        for email in &config.service_accounts {
            state
                .iam
                .seed_service_account(email, None, &mut state.counter)
                .map_err(|e| Error::Config(e.message))?;
        }
        state
            .run
            .crashing_images
            .extend(config.crashing_images.iter().cloned());
        Ok(state)
    }

    /// Forgets every resource, fault, counter and log entry; re-seeds the configured accounts and images. Every
    /// revision process stops.
    pub fn reset(&self) {
        let mut fresh = Self::fresh_state(&self.config).unwrap_or_default();
        {
            let mut st = self.lock();
            fresh.run.live = st.run.live.as_ref().map(run::LiveLink::renewed);
            *st = fresh;
        }
        if let Some(live) = &self.live {
            live.stop_all();
            live.clear_logs();
        }
        self.mark_dirty();
    }

    /// Writes the state file if anything changed since the last write.
    fn flush(&self) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let text = {
            let st = self.lock();
            serde_json::to_vec_pretty(&*st)
        };
        let Ok(text) = text else { return };
        let tmp = path.with_extension("tmp");
        // The file holds secret payloads: readable by its owner only.
        let written = write_private(&tmp, &text).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            self.dirty.store(true, Ordering::Release);
            tracing::warn!(error = %e, path = %path.display(), "Failed to persist emulator state");
        }
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A running emulator. Dropping it shuts the server down, kills every revision process (and writes the state file,
/// if any); [`Emulator::shutdown`] stops the processes gracefully first.
pub struct Emulator {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Emulator {
    /// Base URL for Secret Manager, Cloud Run v2, IAM and the admin API: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every setting that points gcloud at this emulator, with `config` as gcloud's configuration directory (it
    /// must hold a file `token` with any text: gcloud's access token). Secret Manager, IAM and Service Usage take
    /// the emulator's URL. `gcloud run` speaks the older Cloud Run v1 API on a regional host it derives by
    /// prefixing the region to the override's host (`us-central1-run.fake`), which no DNS resolves: gcloud sends
    /// every request through the emulator as its HTTP proxy, and the emulator answers the absolute-form requests
    /// itself.
    pub fn gcloud_env(&self, config: &std::path::Path) -> Vec<(&'static str, String)> {
        let url = format!("{}/", self.url());
        vec![
            ("CLOUDSDK_CONFIG", config.display().to_string()),
            (
                "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
                config.join("token").display().to_string(),
            ),
            ("CLOUDSDK_CORE_DISABLE_PROMPTS", "1".into()),
            ("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true".into()),
            ("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false".into()),
            ("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true".into()),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER", url.clone()),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM", url.clone()),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER",
                url.clone(),
            ),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_SERVICEUSAGE", url),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN", "http://run.fake/".into()),
            ("CLOUDSDK_PROXY_TYPE", "http".into()),
            ("CLOUDSDK_PROXY_ADDRESS", self.addr.ip().to_string()),
            ("CLOUDSDK_PROXY_PORT", self.addr.port().to_string()),
        ]
    }

    /// A handle to inspect and change the emulated world directly.
    pub fn state(&self) -> StateHandle {
        StateHandle(self.app.clone())
    }

    /// Shuts down: revision processes get SIGTERM and a few seconds before SIGKILL, then the server stops.
    pub async fn shutdown(self) {
        if let Some(live) = &self.app.live {
            live.shut_down_gracefully().await;
        }
        drop(self);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Dropping cannot wait for a graceful stop: kill the processes' groups now, so none outlives the emulator.
        if let Some(live) = &self.app.live {
            live.kill_all_now();
        }
        self.app.flush();
    }
}

/// Starts the emulator on `config.listen` (or a random loopback port) and serves until dropped.
pub async fn spawn(config: Config) -> Result<Emulator, Error> {
    let mut state = App::fresh_state(&config)?;
    if let Some(path) = &config.state_file
        && path.exists()
    {
        let text = std::fs::read(path).map_err(|source| Error::ReadState {
            path: path.clone(),
            source,
        })?;
        let mut loaded: State = serde_json::from_slice(&text).map_err(|source| Error::ParseState {
            path: path.clone(),
            source,
        })?;
        // What the configuration decides, and the file does not hold, comes from the fresh state; so do the
        // configured accounts, identity pools and crashing images the file lacks.
        loaded.runtime = std::mem::take(&mut state.runtime);
        loaded
            .iam
            .identity_pools
            .extend(std::mem::take(&mut state.iam.identity_pools));
        loaded.run.timing = state.run.timing;
        loaded.iam.any_account_exists = state.iam.any_account_exists;
        for (email, account) in std::mem::take(&mut state.iam.service_accounts) {
            loaded.iam.service_accounts.entry(email).or_insert(account);
        }
        loaded
            .run
            .crashing_images
            .extend(std::mem::take(&mut state.run.crashing_images));
        loaded.number_secret_names();
        state = loaded;
    }
    let addr = config
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let mut supervisor = None;
    if !config.run_images.is_empty() {
        let base_url = format!("http://{addr}");
        let live = run::Supervisor::new(config.run_dir.clone(), base_url.clone(), config.stop_idle_after)
            .map_err(|(path, source)| Error::RunDir { path, source })?;
        let (tx, rx) = mpsc::unbounded_channel();
        state.run.live = Some(run::LiveLink::new(config.run_images.clone(), base_url, tx));
        supervisor = Some((Arc::new(live), rx));
    }
    let app = Arc::new(App {
        config,
        state: Mutex::new(state),
        dirty: AtomicBool::new(false),
        live: supervisor.as_ref().map(|(live, _)| live.clone()),
    });
    if let Some((live, commands)) = supervisor {
        tokio::spawn(run::supervise(Arc::downgrade(&app), live, commands));
    }
    // Payloads are at most 64 KiB; bigger bodies up to this size still get Google's error shape.
    let router = axum::Router::new()
        .fallback(server::handle)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app.clone());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "Emulator server stopped");
        }
    });
    if app.config.state_file.is_some() {
        let weak = Arc::downgrade(&app);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(app) = weak.upgrade() else { break };
                // Flushing does blocking file I/O; keep it off the async workers.
                let _ = tokio::task::spawn_blocking(move || app.flush()).await;
            }
        });
    }
    Ok(Emulator {
        addr,
        app,
        shutdown: Some(tx),
    })
}

/// Direct access to the emulated world for Rust tests.
#[derive(Clone)]
pub struct StateHandle(Arc<App>);

impl StateHandle {
    /// Runs `f` with the state locked. Do not block inside `f`.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let out = f(&mut self.0.lock());
        self.0.mark_dirty();
        out
    }

    /// Makes `email` exist (in the lenient mode, from then on unseeded accounts do not).
    pub fn seed_service_account(&self, email: &str) {
        self.with(|st| {
            if let Err(e) = st.iam.seed_service_account(email, None, &mut st.counter) {
                tracing::warn!(error = %e, "Refused to seed service account");
            }
        });
    }

    /// A token that authenticates as `principal` (`serviceAccount:EMAIL` or `user:EMAIL`) until the emulator
    /// stops; an error for a malformed principal.
    pub fn mint_token(&self, principal: &str) -> Result<String, ApiError> {
        self.with(|st| st.iam.tokens.mint_token(principal, None, &mut st.counter))
    }

    /// Grants `role` to `member` on project `project`, as `gcloud projects add-iam-policy-binding` does.
    pub fn grant_on_project(&self, project: &str, role: &str, member: &str) {
        self.with(|st| {
            let mut policy = st.resourcemanager.project_policy(project);
            iam::add_binding(&mut policy, role, member, &mut st.counter);
            st.resourcemanager.put_project_policy(project, policy);
        });
    }

    /// Grants `role` to `member` on service account `email`, as `gcloud iam service-accounts
    /// add-iam-policy-binding` does.
    pub fn grant_on_service_account(&self, email: &str, role: &str, member: &str) {
        self.with(|st| {
            let mut policy = st
                .iam
                .service_account_policies
                .get(email)
                .cloned()
                .unwrap_or_default();
            iam::add_binding(&mut policy, role, member, &mut st.counter);
            st.iam.service_account_policies.insert(email.to_string(), policy);
        });
    }

    /// Creates (or replaces) custom role `projects/{project}/roles/{id}` with exactly `permissions`; returns its
    /// name.
    pub fn put_custom_role(&self, project: &str, id: &str, permissions: &[&str]) -> String {
        let name = format!("projects/{project}/roles/{id}");
        self.with(|st| {
            st.iam.custom_roles.put(
                &name,
                auth::CustomRole {
                    title: id.to_string(),
                    included_permissions: permissions.iter().map(|p| p.to_string()).collect(),
                    stage: "GA".into(),
                    ..auth::CustomRole::default()
                },
            )
        });
        name
    }

    /// The payload of a secret version (`latest`, an alias or a number), if it exists and was not destroyed.
    pub fn secret_payload(&self, secret: &str, version: &str) -> Option<Vec<u8>> {
        let st = self.0.lock();
        st.secretmanager
            .payload(&st.resourcemanager.numbered(secret), version)
    }

    /// The bindings of a secret's IAM policy (`projects/P/secrets/ID`, by project id or number).
    pub fn secret_bindings(&self, secret: &str) -> Option<Vec<serde_json::Value>> {
        let st = self.0.lock();
        st.secretmanager
            .secrets
            .get(&st.resourcemanager.numbered(secret))
            .map(|s| s.policy.bindings.clone())
    }

    /// Makes project `project`'s GKE Workload Identity pool exist, as enabling Workload Identity on a cluster does.
    pub fn enable_workload_identity(&self, project: &str) {
        self.with(|st| st.iam.identity_pools.insert(project.to_string()));
    }

    /// Gives project `project` (an id) the number `number`, as Google would have assigned it; refused once
    /// resources are named by its current number.
    pub fn set_project_number(&self, project: &str, number: u64) -> Result<(), ApiError> {
        self.with(|st| {
            st.resourcemanager
                .set_project_number(project, number, &st.secretmanager)
        })
    }

    /// The number of project `project` (an id, or already a number).
    pub fn project_number(&self, project: &str) -> u64 {
        self.0.lock().resourcemanager.project_number(project)
    }

    /// Makes revisions using `image` fail to start.
    pub fn add_crashing_image(&self, image: &str) {
        self.with(|st| st.run.crashing_images.insert(image.to_string()));
    }

    /// Adds a fault rule and returns its id.
    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.0.lock().runtime.add_fault(rule)
    }

    pub fn clear_faults(&self) {
        self.0.lock().runtime.faults.clear();
    }

    /// Calls of one method (e.g. `SecretManagerService.AccessSecretVersion`), any status.
    pub fn call_count(&self, method: &str) -> u64 {
        self.0.lock().runtime.call_count(method)
    }

    /// Calls per method, then per status name.
    pub fn calls(&self) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> {
        self.0.lock().runtime.calls.clone()
    }

    pub fn reset_calls(&self) {
        let mut st = self.0.lock();
        st.runtime.calls.clear();
        st.runtime.log.clear();
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<LogEntry> {
        self.0.lock().runtime.log.iter().cloned().collect()
    }

    /// Forgets everything, as `POST /_emulator/reset` does.
    pub fn reset(&self) {
        self.0.reset();
    }

    /// A revision's container output (and the runtime's lines about it), oldest first, as
    /// `GET /_emulator/logs?revision=NAME` answers; empty without the live runtime.
    pub fn revision_logs(&self, revision: &str) -> Vec<RevisionLogEntry> {
        self.0
            .live
            .as_ref()
            .map(|l| l.logs(Some(revision), None))
            .unwrap_or_default()
    }

    /// The process id of a revision's running process (the shell running its command, which leads the process
    /// group), if it has one.
    pub fn revision_pid(&self, revision: &str) -> Option<u32> {
        self.0.live.as_ref().and_then(|l| l.pid(revision))
    }
}
