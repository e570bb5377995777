//! A real etcd, kube-apiserver and kube-controller-manager on loopback, started fresh in a
//! temporary directory.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::pki::Pki;
use crate::supervisor::Supervisor;
use crate::tools;

/// How long kube-apiserver may take to report `/readyz` ok. It is ~2-5 s on an idle machine; the
/// margin is for a shared CI machine busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Set to keep the control plane's directory (logs, certificates, etcd data) after the tests.
const KEEP_ENV: &str = "LITELLM_KEEP_CONTROL_PLANE";

/// The label every namespace made by [`ControlPlane::namespace`] carries.
pub const NAMESPACE_LABEL: &str = "litellm-operator-tests/harness";

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

/// A running etcd, kube-apiserver (RBAC authorization, service-account token signing, TLS with a
/// throw-away CA) and kube-controller-manager (namespace, garbage-collector and service-account
/// controllers), and an admin kubeconfig. Dropping it kills both processes and removes
/// the directory; so does the test process exiting in any way.
pub struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    config: Config,
    bin_dir: PathBuf,
    startup: Duration,
    supervisor: Mutex<Supervisor>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts a new control plane and waits until kube-apiserver's `/readyz` is ok.
    ///
    /// Ports are picked free just before the start; if another process takes one in between, the
    /// start is retried with new ports.
    pub async fn start() -> Result<Self> {
        let bin_dir = tools::bin_dir()?;
        let mut attempt = 1;
        loop {
            match Self::start_once(&bin_dir).await {
                Err(Error::ExitedEarly { log_tail, .. })
                    if attempt < 3 && log_tail.contains("address already in use") =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One control plane shared by all tests of this test binary, started on first use. It is
    /// never dropped; the supervisor's janitor stops it when the test binary exits. Give each test
    /// its own [`namespace`](Self::namespace).
    pub async fn shared() -> Result<&'static Self> {
        SHARED.get_or_try_init(Self::start).await
    }

    async fn start_once(bin_dir: &Path) -> Result<Self> {
        install_crypto_provider();
        let started = Instant::now();
        let etcd = tools::require(bin_dir, "etcd")?;
        let apiserver = tools::require(bin_dir, "kube-apiserver")?;
        let controller_manager = tools::require(bin_dir, "kube-controller-manager")?;

        let dir = tempfile::Builder::new()
            .prefix("litellm-control-plane-")
            .tempdir()
            .map_err(Error::TempDir)?
            .keep();
        let keep = std::env::var_os(KEEP_ENV).is_some();
        // From here on the supervisor owns the directory: dropping it (an error below returns
        // early) kills whatever was started and removes the directory.
        let mut supervisor = Supervisor::new((!keep).then_some(dir.as_path()))?;

        let pki = Pki::generate()?;
        let write = |name: &str, contents: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, contents).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        };
        let ca = write("ca.crt", &pki.ca_cert)?;
        let serving_cert = write("apiserver.crt", &pki.serving_cert)?;
        let serving_key = write("apiserver.key", &pki.serving_key)?;
        let sa_key = write("service-account.key", &pki.service_account_key)?;
        let sa_pub = write("service-account.pub", &pki.service_account_public_key)?;

        let [etcd_client, etcd_peer, secure_port] = free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");

        let mut command = Command::new(&etcd);
        command.args([
            "--name=test".to_owned(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=test={peer_url}"),
            // The data is thrown away: durability only costs time.
            "--unsafe-no-fsync".to_owned(),
            "--log-level=warn".to_owned(),
        ]);
        supervisor.spawn("etcd", command, &dir.join("etcd.log"))?;

        let mut command = Command::new(&apiserver);
        command.args([
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={secure_port}"),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--tls-cert-file={}", serving_cert.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", ca.display()),
            "--authorization-mode=RBAC".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            // Loopback is no valid endpoint for the `kubernetes` Service; nothing here needs it.
            "--endpoint-reconciler-type=none".to_owned(),
            "--profiling=false".to_owned(),
        ]);
        supervisor.spawn("kube-apiserver", command, &dir.join("kube-apiserver.log"))?;

        let server = format!("https://127.0.0.1:{secure_port}");
        let kubeconfig = dir.join("kubeconfig");
        write(
            "kubeconfig",
            &admin_kubeconfig(&server, &pki).map_err(Error::Kubeconfig)?,
        )?;
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).map_err(Error::LoadKubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await
        .map_err(Error::LoadKubeconfig)?;
        let client = Client::try_from(config.clone()).map_err(Error::Client)?;

        wait_ready(&client, &mut supervisor).await?;

        // Only the controllers the API alone lacks for operator tests: namespace deletion,
        // owner-reference garbage collection, and each namespace's `default` service account.
        // Started after /readyz, and not waited for: nothing at startup depends on it.
        let mut command = Command::new(&controller_manager);
        command.args([
            format!("--kubeconfig={}", kubeconfig.display()),
            "--controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller"
                .to_owned(),
            "--leader-elect=false".to_owned(),
            // No metrics or health endpoint: one less port to pick.
            "--secure-port=0".to_owned(),
            "--profiling=false".to_owned(),
        ]);
        supervisor.spawn(
            "kube-controller-manager",
            command,
            &dir.join("kube-controller-manager.log"),
        )?;

        Ok(Self {
            dir,
            kubeconfig,
            server,
            config,
            bin_dir: bin_dir.to_owned(),
            startup: started.elapsed(),
            supervisor: Mutex::new(supervisor),
        })
    }

    /// A new client with admin rights (`system:masters`).
    ///
    /// Each call builds a fresh client, so it belongs to the caller's Tokio runtime: a client
    /// outlives neither the runtime that made it nor, with [`shared`](Self::shared), the test.
    pub fn client(&self) -> Result<Client> {
        install_crypto_provider();
        Client::try_from(self.config.clone()).map_err(Error::Client)
    }

    /// The admin client's configuration, e.g. to derive one that impersonates a service account.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The admin kubeconfig, for `kubectl --kubeconfig`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The directory with the logs, certificates and etcd's data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long [`start`](Self::start) took, from spawning etcd to `/readyz` ok.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// The last lines of kube-apiserver's log, for a failing test's message.
    pub fn apiserver_log_tail(&self) -> String {
        self.log_tail("kube-apiserver")
    }

    /// The last lines of a process's log (`etcd`, `kube-apiserver`, `kube-controller-manager`),
    /// for a failing test's message.
    pub fn log_tail(&self, process: &str) -> String {
        self.supervisor
            .lock()
            .map(|s| s.log_tail(process))
            .unwrap_or_default()
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`, using the kubectl built next to kube-apiserver
    /// (same release) when there is one, else the one on `PATH`.
    pub fn kubectl(&self) -> tokio::process::Command {
        let built = self.bin_dir.join("kubectl");
        let program = if built.is_file() {
            built
        } else {
            PathBuf::from("kubectl")
        };
        let mut command = tokio::process::Command::new(program);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .kill_on_drop(true);
        command
    }

    /// A client authenticated as service account `namespace/name` (created if missing) with a
    /// bound token from the TokenRequest API, so it has exactly the RBAC bound to that account.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Result<Client> {
        let api = Api::<ServiceAccount>::namespaced(self.client()?, namespace);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(source) => {
                return Err(Error::Api {
                    what: format!("create service account {namespace}/{name}"),
                    source,
                });
            }
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|source| Error::Api {
                what: format!("request a token for service account {namespace}/{name}"),
                source,
            })?;
        let token = issued.status.map(|s| s.token).unwrap_or_default();
        let mut config = self.config.clone();
        // Only the token: the admin client certificate must not come along.
        config.auth_info =
            serde_json::from_value(serde_json::json!({ "token": token })).map_err(Error::AuthInfo)?;
        Client::try_from(config).map_err(Error::Client)
    }

    /// Creates a namespace named `<prefix>-<random>` for one test and returns its name.
    ///
    /// Tests need not delete it: the whole control plane is thrown away at the end. Deleting one
    /// works as in a cluster (kube-controller-manager's namespace controller empties it).
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        let name = namespace_name(prefix);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client()?)
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|source| Error::Api {
                what: format!("create namespace {name}"),
                source,
            })?;
        Ok(name)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        match self.supervisor.get_mut() {
            Ok(supervisor) => supervisor.shutdown(),
            Err(poisoned) => poisoned.into_inner().shutdown(),
        }
    }
}

/// Picks rustls's process-wide crypto provider. Test binaries that also link the Google clients
/// get both `ring` and `aws-lc-rs`, and rustls then refuses to choose. Whichever is installed
/// first stays: any provider serves the loopback API server.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `<prefix>-<8 random chars>`, with the prefix reduced to a valid DNS label part.
fn namespace_name(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    clean = clean.trim_matches('-').to_owned();
    if clean.is_empty() {
        clean.push_str("test");
    }
    let suffix: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(8)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect();
    format!("{clean}-{suffix}")
}

/// Three distinct free loopback ports. The listeners are held until all three are chosen so the
/// kernel cannot hand out one port twice.
fn free_ports() -> Result<[u16; 3]> {
    let listeners = [(); 3].map(|()| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)));
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(listeners) {
        *port = listener
            .and_then(|l| l.local_addr())
            .map_err(Error::FreePort)?
            .port();
    }
    Ok(ports)
}

fn admin_kubeconfig(server: &str, pki: &Pki) -> Result<String, serde_yaml::Error> {
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "litellm-test",
            "cluster": {
                "server": server,
                "certificate-authority-data": BASE64.encode(&pki.ca_cert),
            },
        }],
        "users": [{
            "name": "admin",
            "user": {
                "client-certificate-data": BASE64.encode(&pki.admin_cert),
                "client-key-data": BASE64.encode(&pki.admin_key),
            },
        }],
        "contexts": [{
            "name": "litellm-test",
            "context": {"cluster": "litellm-test", "user": "admin", "namespace": "default"},
        }],
        "current-context": "litellm-test",
    });
    serde_yaml::to_string(&kubeconfig)
}

/// Polls `/readyz` until it answers `ok`, failing fast if a process exits.
async fn wait_ready(client: &Client, supervisor: &mut Supervisor) -> Result<()> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    loop {
        supervisor.check_running()?;
        let request = http::Request::get("/readyz").body(Vec::new());
        if let Ok(request) = request {
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last = body,
                Err(error) => last = error.to_string(),
            }
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(Error::NotReady {
                waited: started.elapsed(),
                last,
                log_tail: supervisor.log_tail("kube-apiserver"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn namespace_names_are_valid_dns_labels_and_unique() {
        let a = namespace_name("CEL rules: spec.region");
        let b = namespace_name("CEL rules: spec.region");
        assert_ne!(a, b);
        for name in [&a, &b, &namespace_name("---"), &namespace_name(&"x".repeat(80))] {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
        }
        assert!(a.starts_with("cel-rules--spec-region-"), "{a}");
    }

    #[test]
    fn free_ports_are_distinct() {
        let [a, b, c] = free_ports().unwrap();
        assert!(a != b && b != c && a != c);
    }
}
