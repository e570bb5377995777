//! Test harness for litellm-operator: a real etcd, kube-apiserver and kube-controller-manager on
//! loopback, and what the tests share on top of it.
//!
//! The binaries come from `tests/control-plane/build.sh`, which builds the releases pinned in
//! `tests/control-plane/go.mod` once into a cache outside the repository. A test asks for
//! [`ControlPlane::shared`] (one control plane per test binary) or [`ControlPlane::start`] (its
//! own), then works in its own [`ControlPlane::namespace`].
//!
//! - [`World`]: one end-to-end test's namespace, Google emulator and in-process operator.
//! - [`eventually`]: the one way to wait for something.
//! - [`fixtures`]: LiteLLMDeployment manifests (the shipped examples, a minimal one).
//! - [`Calls`]: Google calls, read from the emulator's counters.
//! - [`tools`]: where helm, glua, kubectl's release and the operator binary are.
//! - [`chart`]: the Helm chart rendered, read and applied.
//! - [`live`]: the real LiteLLM proxy as a Cloud Run image.

pub mod calls;
pub mod chart;
mod control_plane;
pub mod doctest;
mod error;
pub mod eventually;
pub mod fixtures;
pub mod live;
mod manifests;
pub mod node;
mod pki;
mod supervisor;
pub mod tools;
pub mod world;

pub use calls::{Calls, GOOGLE_WRITES};
pub use control_plane::{ControlPlane, NAMESPACE_LABEL};
pub use error::{Error, Result};
pub use eventually::{Patience, eventually};
pub use manifests::{
    FIELD_MANAGER, LITELLM_CRD, install_crd, install_litellm_crd, read_repo_file, repo_path, yaml_documents,
};
pub use tools::{bin_dir, kubernetes_version};
pub use world::{OperatorGrants, World, WorldBuilder, condition, is_ready, pinned};
