//! Where a Cloud Run rollout stands, read from the service's REST JSON. Pure.

use serde_json::Value;

/// Where the latest rollout of a service stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Cloud Run is still working on the latest generation.
    InProgress {
        /// The revision starting, when known.
        revision: Option<String>,
    },
    /// The latest revision serves.
    Ready {
        /// Its short name.
        revision: String,
    },
    /// The latest revision failed; traffic stays where it was.
    Failed {
        /// Cloud Run's message.
        message: String,
    },
}

/// Reads the rollout state from the service's `generation`, `observedGeneration`, `reconciling`,
/// `terminalCondition` and revisions.
pub fn rollout(live: &Value) -> Rollout {
    let short = |v: &Value| {
        v.as_str()
            .filter(|s| !s.is_empty())
            .map(|s| s.rsplit('/').next().unwrap_or_default().to_owned())
    };
    let number = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    let created = short(&live["latestCreatedRevision"]);
    let ready = short(&live["latestReadyRevision"]);
    let reconciling = live["reconciling"].as_bool().unwrap_or(false);
    // Cloud Run advances observedGeneration only when a generation serves: after a failed revision it stays
    // behind (absent for a new service whose first revision failed), so a failure is read from the terminal
    // condition, and only success needs the generation caught up.
    let caught_up = number(&live["observedGeneration"]) >= number(&live["generation"]);
    let state = live["terminalCondition"]["state"].as_str().unwrap_or_default();
    if reconciling {
        return Rollout::InProgress { revision: created };
    }
    match state {
        "CONDITION_SUCCEEDED" if created == ready && caught_up => Rollout::Ready {
            revision: ready.unwrap_or_default(),
        },
        "CONDITION_SUCCEEDED" if !caught_up => Rollout::InProgress { revision: created },
        "CONDITION_FAILED" | "CONDITION_SUCCEEDED" => Rollout::Failed {
            message: format!(
                "revision {} failed, traffic stays on {}: {}",
                created.as_deref().unwrap_or("(new)"),
                ready.as_deref().unwrap_or("no revision"),
                live["terminalCondition"]["message"].as_str().unwrap_or_default()
            ),
        },
        _ => Rollout::InProgress { revision: created },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    #[test]
    fn rollout_states() {
        let base = json!({"generation": "2", "observedGeneration": "2",
            "terminalCondition": {"state": "CONDITION_SUCCEEDED"},
            "latestCreatedRevision": "projects/p/locations/r/services/s/revisions/s-00002-abc",
            "latestReadyRevision": "projects/p/locations/r/services/s/revisions/s-00002-abc"});
        assert_eq!(
            rollout(&base),
            Rollout::Ready {
                revision: "s-00002-abc".into()
            }
        );
        let mut starting = base.clone();
        starting["generation"] = json!("3");
        assert!(matches!(rollout(&starting), Rollout::InProgress { .. }));
        let mut failed = base;
        failed["terminalCondition"] = json!({"state": "CONDITION_FAILED", "message": "boom"});
        failed["latestCreatedRevision"] = json!("s-00003-xyz");
        // Cloud Run leaves observedGeneration at the last generation that served.
        failed["generation"] = json!("3");
        let Rollout::Failed { message } = rollout(&failed) else {
            panic!()
        };
        assert!(
            message.contains("traffic stays on s-00002-abc: boom"),
            "{message}"
        );
        let mut reconciling = failed.clone();
        reconciling["reconciling"] = json!(true);
        assert!(matches!(rollout(&reconciling), Rollout::InProgress { .. }));
    }

    #[test]
    fn a_new_service_whose_first_revision_failed_has_no_observed_generation_and_reads_failed() {
        let live = json!({"generation": "1",
            "terminalCondition": {"state": "CONDITION_FAILED", "message": "denied"},
            "latestCreatedRevision": "s-00001-abc"});
        let Rollout::Failed { message } = rollout(&live) else {
            panic!("{:?}", rollout(&live))
        };
        assert!(
            message.contains("traffic stays on no revision: denied"),
            "{message}"
        );
    }
}
