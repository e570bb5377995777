//! Where the tools the tests run live: the control plane's binaries (`tests/control-plane/build.sh`),
//! helm and glua (`tests/helm/build.sh`), each pinned in a go.mod and built once into a cache outside the
//! repository, and the `litellm-operator` binary cargo builds.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The go.mod that pins the Kubernetes and etcd releases; the single source of their versions.
const CONTROL_PLANE_GO_MOD: &str = include_str!("../control-plane/go.mod");

/// The go.mod that pins helm and gopher-lua; the single source of their versions.
const HELM_GO_MOD: &str = include_str!("../helm/go.mod");

/// The Kubernetes release the control plane runs, e.g. `1.34.12`, as pinned in go.mod.
pub fn kubernetes_version() -> Result<&'static str> {
    pinned(
        CONTROL_PLANE_GO_MOD,
        "tests/control-plane/go.mod",
        "k8s.io/kubernetes",
    )
}

fn pinned(go_mod: &'static str, file: &'static str, module: &'static str) -> Result<&'static str> {
    pinned_version(go_mod, module).ok_or(Error::NoPinnedVersion { module, go_mod: file })
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

/// `${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}`, where the build scripts put what they build.
pub fn cache_dir() -> Result<PathBuf> {
    match std::env::var_os("LITELLM_CACHE_DIR") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(PathBuf::from(std::env::var_os("HOME").ok_or(Error::NoCacheDir)?)
            .join(".cache")
            .join("litellm-operator")),
    }
}

/// The directory holding `etcd`, `kube-apiserver`, `kube-controller-manager` and `kubectl`: `LITELLM_K8S_BIN_DIR` if set,
/// else `<cache>/k8s-<version>/bin`, as build.sh writes it.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LITELLM_K8S_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    Ok(cache_dir()?
        .join(format!("k8s-{}", kubernetes_version()?))
        .join("bin"))
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

/// The helm CLI: `LITELLM_HELM_BIN`, else `<cache>/helm-<version>/bin/helm` as `tests/helm/build.sh` builds it.
pub fn helm() -> Result<PathBuf> {
    cached_tool("helm", "LITELLM_HELM_BIN", "helm.sh/helm/v3", "helm")
}

/// gopher-lua's `glua` (the Lua interpreter Argo CD embeds): `LITELLM_GLUA_BIN`, else
/// `<cache>/gopher-lua-<version>/bin/glua` as `tests/helm/build.sh` builds it.
pub fn glua() -> Result<PathBuf> {
    cached_tool(
        "glua",
        "LITELLM_GLUA_BIN",
        "github.com/yuin/gopher-lua",
        "gopher-lua",
    )
}

fn cached_tool(
    tool: &'static str,
    env: &'static str,
    module: &'static str,
    dir_prefix: &str,
) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let version = pinned(HELM_GO_MOD, "tests/helm/go.mod", module)?;
    let path = cache_dir()?
        .join(format!("{dir_prefix}-{version}"))
        .join("bin")
        .join(tool);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::ToolMissing {
            tool,
            path,
            how: format!("run `bash tests/helm/build.sh` first (or set {env})"),
        })
    }
}

/// The `litellm-operator` binary: `LITELLM_OPERATOR_BIN`, else the one cargo built for the profile the running test
/// or bench was built with (`target/<profile>/litellm-operator`; `cargo build [--release] -p litellm-operator`
/// puts it there).
pub fn operator_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("LITELLM_OPERATOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(Error::CurrentExe)?;
    // target/<profile>/deps/<test>-<hash> for tests and benches, target/<profile>/<bin> for binaries.
    let mut dir = exe.parent().unwrap_or(Path::new("."));
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let path = dir.join("litellm-operator");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::ToolMissing {
            tool: "litellm-operator",
            path,
            how:
                "run `cargo build -p litellm-operator --bin litellm-operator` (with `--release` for benches) \
                  first (or set LITELLM_OPERATOR_BIN)"
                    .to_owned(),
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
    fn reads_the_pinned_helm_and_gopher_lua_versions() {
        let helm = pinned_version(HELM_GO_MOD, "helm.sh/helm/v3").unwrap();
        assert!(helm.starts_with("3."), "{helm}");
        assert!(pinned_version(HELM_GO_MOD, "github.com/yuin/gopher-lua").is_some());
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
