//! A stand-in for the one node the test control plane does not have: it runs the chart's operator Deployment as
//! a local process, the way a kubelet would run its pod, so `helm install` followed by `kubectl apply` converges
//! here as it does on a cluster.
//!
//! The process is the real `litellm-operator` binary with the Deployment's own arguments and environment
//! (downward-API fields filled in), a bound token of the Deployment's ServiceAccount (so the chart's RBAC is what
//! it has), and its ConfigMap volumes written to a directory that stands for their mount paths. Only what a
//! process cannot have here is changed: the metrics port (a free one on loopback) and Google (the emulator,
//! through `LITELLM_GCP_ENDPOINT`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::{ControlPlane, tools};

/// The label the chart puts on its Deployment.
const SELECTOR: &str = "app.kubernetes.io/name=litellm-operator";

/// Runs every operator Deployment that appears, one process each, until dropped.
pub struct Node {
    dir: tempfile::TempDir,
    started: Arc<Mutex<Vec<Started>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Started {
    deployment: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Node {
    /// Starts watching `cp` for the chart's Deployments; their processes talk to Google at `gcp_endpoint`.
    pub fn start(cp: &ControlPlane, gcp_endpoint: &str) -> Result<Node, Failure> {
        let cluster = Cluster {
            client: cp.client()?,
            server: cp.server().to_owned(),
            ca: admin_ca(cp)?,
        };
        let dir = tempfile::tempdir()?;
        let root = dir.path().to_owned();
        let started: Arc<Mutex<Vec<Started>>> = Arc::default();
        let endpoint = gcp_endpoint.to_owned();
        let list = started.clone();
        let task = tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            loop {
                if let Ok(found) = deployments(&cluster.client).await {
                    for deployment in found {
                        let key = format!(
                            "{}/{}",
                            deployment.metadata.namespace.clone().unwrap_or_default(),
                            deployment.metadata.name.clone().unwrap_or_default()
                        );
                        if seen.contains(&key) {
                            continue;
                        }
                        // A Deployment whose ServiceAccount or ConfigMap is not there yet is tried again.
                        if let Ok(run) = run(
                            &cluster,
                            &deployment,
                            &root.join(seen.len().to_string()),
                            &endpoint,
                        )
                        .await
                        {
                            seen.insert(key.clone());
                            if let Ok(mut list) = list.lock() {
                                list.push(Started {
                                    deployment: key,
                                    child: run.0,
                                    log: run.1,
                                });
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Ok(Node { dir, started, task })
    }

    /// What each process printed, for a failure message: `namespace/name` then its output.
    pub fn logs(&self) -> String {
        let Ok(list) = self.started.lock() else {
            return String::new();
        };
        list.iter()
            .map(|s| {
                format!(
                    "--- operator {} ---\n{}",
                    s.deployment,
                    std::fs::read_to_string(&s.log).unwrap_or_default()
                )
            })
            .collect()
    }

    /// The directory the processes keep their files in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut list) = self.started.lock() {
            for s in list.iter_mut() {
                let _ = s.child.start_kill();
            }
        }
    }
}

/// What the stand-in needs of the control plane.
struct Cluster {
    client: Client,
    server: String,
    ca: String,
}

async fn deployments(client: &Client) -> Result<Vec<Deployment>, kube::Error> {
    let listed = Api::<Deployment>::all(client.clone())
        .list(&ListParams::default().labels(SELECTOR))
        .await?;
    Ok(listed.items)
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Starts the Deployment's operator container as a process; its child and log file.
async fn run(
    cluster: &Cluster,
    deployment: &Deployment,
    root: &Path,
    endpoint: &str,
) -> Result<(tokio::process::Child, PathBuf), Failure> {
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let pod: Value = serde_json::to_value(&deployment.spec.as_ref().ok_or("no spec")?.template)?;
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    std::fs::create_dir_all(root)?;
    let client = cluster.client.clone();

    // ConfigMap volumes, at `<root>/<mountPath>`.
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = mount["name"].as_str().unwrap_or_default();
        let path = mount["mountPath"].as_str().unwrap_or_default();
        let volume = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name);
        let Some(config_map) = volume.and_then(|v| v["configMap"]["name"].as_str()) else {
            continue;
        };
        let data = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .get(config_map)
            .await?
            .data
            .unwrap_or_default();
        let local = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&local)?;
        for (file, content) in data {
            std::fs::write(local.join(file), content)?;
        }
        mounts.push((path.to_owned(), local));
    }

    // A bound token of the pod's ServiceAccount, and a kubeconfig holding only it.
    let account = spec["serviceAccountName"].as_str().unwrap_or("default");
    let token = Api::<ServiceAccount>::namespaced(client, &namespace)
        .create_token_request(
            account,
            &PostParams::default(),
            &serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}}))?,
        )
        .await?
        .status
        .ok_or("no token")?
        .token;
    let kubeconfig = root.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        token_kubeconfig(&cluster.server, &cluster.ca, &token)?,
    )?;

    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let args: Vec<String> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|arg| {
            if arg.starts_with("--metrics-addr=") {
                return format!("--metrics-addr={metrics}");
            }
            mounts
                .iter()
                .find_map(|(path, local)| {
                    arg.split_once(&format!("={path}"))
                        .map(|(flag, rest)| format!("{flag}={}{rest}", local.display()))
                })
                .unwrap_or_else(|| arg.to_owned())
        })
        .collect();
    let pod_name = format!("{}-node-0", deployment.metadata.name.clone().unwrap_or_default());
    let log = root.join("operator.log");
    let out = std::fs::File::create(&log)?;
    let mut command = tokio::process::Command::new(tools::operator_binary()?);
    command
        .args(&args)
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("LITELLM_GCP_ENDPOINT", endpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .kill_on_drop(true);
    for env in container["env"].as_array().into_iter().flatten() {
        let name = env["name"].as_str().unwrap_or_default();
        let value = match env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.namespace") => namespace.clone(),
            Some("metadata.name") => pod_name.clone(),
            Some(other) => return Err(format!("fieldRef {other} is not filled in here").into()),
            None => env["value"].as_str().unwrap_or_default().to_owned(),
        };
        command.env(name, value);
    }
    Ok((command.spawn()?, log))
}

/// The control plane's CA (base64), from its admin kubeconfig.
fn admin_ca(cp: &ControlPlane) -> Result<String, Failure> {
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(cp.kubeconfig())?)?;
    Ok(admin["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .ok_or("the admin kubeconfig has no CA")?
        .to_owned())
}

/// A kubeconfig for `cp` that authenticates with `token` only (no admin client certificate).
pub fn kubeconfig_with_token(cp: &ControlPlane, token: &str) -> Result<String, Failure> {
    token_kubeconfig(cp.server(), &admin_ca(cp)?, token)
}

fn token_kubeconfig(server: &str, ca: &str, token: &str) -> Result<String, Failure> {
    Ok(serde_yaml::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "test",
    }))?)
}
