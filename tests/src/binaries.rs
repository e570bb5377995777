//! Where the binaries built by `tests/control-plane/build.sh` live.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The go.mod that pins the Kubernetes and etcd releases; the single source of the version.
const GO_MOD: &str = include_str!("../control-plane/go.mod");

/// The Kubernetes release the control plane runs, e.g. `1.34.12`, as pinned in go.mod.
pub fn kubernetes_version() -> Result<&'static str> {
    pinned_version(GO_MOD, "k8s.io/kubernetes").ok_or(Error::NoPinnedVersion)
}

/// The version `module` is required at in `go_mod`, without the leading `v`. Replace and tool lines
/// never carry a bare version after the module path, so they are skipped by the `v` check.
fn pinned_version<'a>(go_mod: &'a str, module: &str) -> Option<&'a str> {
    go_mod.lines().find_map(|line| {
        let mut words = line.split_whitespace().peekable();
        if words.peek() == Some(&"require") {
            words.next();
        }
        match (words.next(), words.next()) {
            (Some(path), Some(version)) if path == module => version.strip_prefix('v'),
            _ => None,
        }
    })
}

/// The directory holding `etcd`, `kube-apiserver`, `kube-controller-manager` and `kubectl`: `LITELLM_K8S_BIN_DIR` if set,
/// else `${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}/k8s-<version>/bin`, as build.sh
/// writes it.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LITELLM_K8S_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let cache = match std::env::var_os("LITELLM_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").ok_or(Error::NoCacheDir)?)
            .join(".cache")
            .join("litellm-operator"),
    };
    Ok(cache.join(format!("k8s-{}", kubernetes_version()?)).join("bin"))
}

/// The path of `binary` in `dir`, or an error telling how to build it.
pub(crate) fn require(dir: &Path, binary: &'static str) -> Result<PathBuf> {
    let path = dir.join(binary);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::BinaryMissing {
            binary,
            dir: dir.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn reads_the_pinned_kubernetes_version_from_go_mod() {
        let version = kubernetes_version().unwrap();
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(parts.len(), 3, "{version}");
        assert!(parts[0] == 1 && parts[1] >= 34, "{version}");
    }

    #[test]
    fn skips_replace_and_tool_lines() {
        let go_mod = "module x\n\nreplace k8s.io/api => k8s.io/api v0.34.1\n\
                      tool k8s.io/kubernetes/cmd/kubectl\n\
                      require (\n\tk8s.io/api v0.34.1\n\tk8s.io/kubernetes v1.35.2 // indirect\n)\n";
        assert_eq!(pinned_version(go_mod, "k8s.io/kubernetes"), Some("1.35.2"));
        assert_eq!(pinned_version(go_mod, "k8s.io/api"), Some("0.34.1"));
        assert_eq!(pinned_version(go_mod, "go.etcd.io/etcd/server/v3"), None);
        let single = "require k8s.io/kubernetes v1.34.12\n";
        assert_eq!(pinned_version(single, "k8s.io/kubernetes"), Some("1.34.12"));
    }
}
