use std::path::PathBuf;
use std::time::Duration;

/// Why the control plane could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{binary} not found in {dir}: run `bash tests/control-plane/build.sh` (or `make control-plane`) \
         to build it, or point LITELLM_K8S_BIN_DIR at a directory holding them"
    )]
    BinaryMissing { binary: &'static str, dir: PathBuf },

    #[error("neither LITELLM_K8S_BIN_DIR, LITELLM_CACHE_DIR nor HOME is set: cannot find the binaries")]
    NoCacheDir,

    #[error("could not read the version of {module} pinned in {go_mod}")]
    NoPinnedVersion {
        module: &'static str,
        go_mod: &'static str,
    },

    #[error("{tool} not found at {path}: {how}")]
    ToolMissing {
        tool: &'static str,
        path: PathBuf,
        how: String,
    },

    #[error("could not find the running executable")]
    CurrentExe(#[source] std::io::Error),

    #[error("could not read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("could not create the control plane's directory")]
    TempDir(#[source] std::io::Error),

    #[error("could not write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("could not find a free loopback port")]
    FreePort(#[source] std::io::Error),

    #[error("could not generate the {what}")]
    Certificate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },

    #[error("could not serialize the kubeconfig")]
    Kubeconfig(#[source] serde_yaml::Error),

    #[error("could not load the admin kubeconfig")]
    LoadKubeconfig(#[source] kube::config::KubeconfigError),

    #[error("could not start {name}")]
    Spawn {
        name: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{name} exited during startup ({status}); last lines of its log:\n{log_tail}")]
    ExitedEarly {
        name: String,
        status: std::process::ExitStatus,
        log_tail: String,
    },

    #[error(
        "kube-apiserver was not ready after {waited:?}; last /readyz answer: {last}; last lines of its log:\n{log_tail}"
    )]
    NotReady {
        waited: Duration,
        last: String,
        log_tail: String,
    },

    #[error("could not build the credentials of a service-account client")]
    AuthInfo(#[source] serde_json::Error),

    #[error("could not build a Kubernetes client")]
    Client(#[source] kube::Error),

    #[error("Kubernetes API request failed: {what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },

    #[error("could not parse {what}")]
    Parse {
        what: String,
        #[source]
        source: serde_yaml::Error,
    },

    #[error("{what} did not happen within {waited:?}")]
    Timeout { what: String, waited: Duration },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
