//! The CLI's record of what is its own, between runs: a JSON file (default `litellm-operator.state.json` in the
//! current directory, `--state` to choose), one entry per LiteLLMDeployment (`namespace/name`) with the pins of
//! its running revision, the bindings an operator write added, and the bindings its spec needs (so other entries
//! are peers in IAM decisions). It holds names and version numbers, never a value. Keep it with the manifests
//! (it is what the controller keeps in `status`); `apply` rewrites it after every pass, atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use litellm_operator_api::{AppliedBinding, PinnedSecret};
use serde::{Deserialize, Serialize};

use crate::plan::{PeerSet, Record};

/// Reading or writing the state file failed.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a state file.
    #[error("{}: not a litellm-operator state file: {source}", path.display())]
    Parse {
        /// Which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl From<StateFileError> for super::Problems {
    fn from(e: StateFileError) -> Self {
        super::Problems(vec![e.to_string()])
    }
}

/// Default file name, in the current directory.
pub const DEFAULT_STATE_FILE: &str = "litellm-operator.state.json";

/// The whole file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Entries by `namespace/name`.
    #[serde(default)]
    pub deployments: BTreeMap<String, Entry>,
}

/// One LiteLLMDeployment's record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Google Cloud project.
    pub project: String,
    /// Pins of the running revision.
    #[serde(default)]
    pub secrets: Vec<PinnedSecret>,
    /// Bindings an operator write added.
    #[serde(default)]
    pub applied_bindings: Vec<AppliedBinding>,
    /// Bindings its spec needed at the last apply.
    #[serde(default)]
    pub needs: Vec<AppliedBinding>,
}

impl Entry {
    /// As the planner's record.
    pub fn record(&self) -> Record {
        Record {
            pins: self.secrets.clone(),
            bindings: self.applied_bindings.iter().cloned().collect(),
        }
    }
}

impl State {
    /// Reads the file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, StateFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| StateFileError::Parse {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StateFileError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the file atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|source| StateFileError::Parse {
            path: path.to_owned(),
            source,
        })?;
        text.push('\n');
        let mut tmp = PathBuf::from(path);
        tmp.set_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| StateFileError::Io {
                path: path.to_owned(),
                source,
            })
    }

    /// Every other entry of the same project, as peers; `others` adds what deployments not yet recorded need.
    pub fn peers(&self, id: &str, project: &str, others: &[AppliedBinding]) -> PeerSet {
        let mut peers = PeerSet::default();
        for (other, entry) in &self.deployments {
            if other == id || entry.project != project {
                continue;
            }
            peers.needs.extend(entry.needs.iter().cloned());
            peers.records.extend(entry.applied_bindings.iter().cloned());
        }
        peers.needs.extend(others.iter().cloned());
        peers
    }
}
