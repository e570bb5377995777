//! Test harness for litellm-operator: a real etcd, kube-apiserver and kube-controller-manager on
//! loopback.
//!
//! The binaries come from `tests/control-plane/build.sh`, which builds the releases pinned in
//! `tests/control-plane/go.mod` once into a cache outside the repository. A test asks for
//! [`ControlPlane::shared`] (one control plane per test binary) or [`ControlPlane::start`] (its
//! own), then works in its own [`ControlPlane::namespace`].

mod binaries;
mod control_plane;
mod error;
mod manifests;
mod pki;
mod supervisor;

pub use binaries::{bin_dir, kubernetes_version};
pub use control_plane::{ControlPlane, NAMESPACE_LABEL};
pub use error::{Error, Result};
pub use manifests::{FIELD_MANAGER, install_crd, repo_path, yaml_documents};
