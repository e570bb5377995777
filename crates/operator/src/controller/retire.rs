//! Step 5: after the revision pinned to the new versions is Ready, disable versions beyond
//! `keepEnabledVersions` (the pinned one always stays enabled). Versions are disabled, never destroyed, so a bad
//! rotation can be rolled back by re-enabling one. External secrets are never touched.

use std::collections::BTreeMap;

use kube::runtime::events::EventType;
use litellm_operator_api::LiteLLMDeployment;
use litellm_operator_gcp::{SecretName, SecretVersionStore, VersionState};

use super::Context;
use crate::desired::{DesiredSource, DesiredState};
use crate::error::{Error, Result};

/// Versions to disable: enabled ones beyond the newest `keep`, never `pinned`. `enabled` is newest first.
pub(super) fn beyond_keep(enabled: &[u64], pinned: u64, keep: usize) -> Vec<u64> {
    let mut kept: Vec<u64> = vec![pinned];
    kept.extend(
        enabled
            .iter()
            .copied()
            .filter(|n| *n != pinned)
            .take(keep.saturating_sub(1)),
    );
    enabled.iter().copied().filter(|n| !kept.contains(n)).collect()
}

pub(super) async fn converge(
    obj: &LiteLLMDeployment,
    desired: &DesiredState,
    pinned: &BTreeMap<String, String>,
    ctx: &Context,
) -> Result<()> {
    for secret in &desired.secrets {
        if matches!(secret.source, DesiredSource::External { .. }) {
            continue;
        }
        let Some(pinned) = pinned.get(&secret.env).and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let name = SecretName::new(&desired.project, &secret.secret_id);
        let versions = ctx
            .gcp
            .list_versions(&name)
            .await
            .map_err(Error::google("retire"))?;
        let enabled: Vec<u64> = versions
            .iter()
            .filter(|v| v.state == VersionState::Enabled)
            .map(|v| v.number)
            .collect();
        for number in beyond_keep(&enabled, pinned, desired.keep_enabled_versions) {
            ctx.gcp
                .disable_version(&name, number)
                .await
                .map_err(Error::google("retire"))?;
            ctx.event(
                obj,
                EventType::Normal,
                "SecretVersionDisabled",
                format!(
                    "Disabled version {number} of {name} (keeping {} enabled)",
                    desired.keep_enabled_versions
                ),
            )
            .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_pinned_and_the_newest() {
        assert_eq!(beyond_keep(&[5, 4, 3, 2, 1], 5, 2), vec![3, 2, 1]);
        assert_eq!(beyond_keep(&[5, 4, 3], 5, 1), vec![4, 3]);
        // Pinned to an older version (rolled back): it stays, plus the newest.
        assert_eq!(beyond_keep(&[5, 4, 3], 3, 2), vec![4]);
        assert_eq!(beyond_keep(&[2, 1], 2, 5), Vec::<u64>::new());
    }
}
