//! Google calls counted where they land: the emulator's own per-method counters.

use std::collections::BTreeMap;

use gcp_emulator::admin::glob_match;

/// Google writes the operator may make, as the emulator names them (`*` spans Secret Manager and Cloud Run): what a
/// converged deployment must never call again.
pub const GOOGLE_WRITES: [&str; 7] = [
    "*.CreateSecret",
    "*.AddSecretVersion",
    "*.SetIamPolicy",
    "*.CreateService",
    "*.UpdateService",
    "*.DisableSecretVersion",
    "*.DeleteSecret",
];

/// A snapshot of the Google calls an emulator answered: per method (`SecretManagerService.AddSecretVersion`,
/// `Services.GetService`, ...), per status (`OK`, `NOT_FOUND`, ...). Every request counts, whoever made it and
/// however it ended, including the operator's retries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calls(BTreeMap<String, BTreeMap<String, u64>>);

impl Calls {
    /// The calls `emulator` has answered so far.
    pub fn of(emulator: &gcp_emulator::StateHandle) -> Self {
        Self(emulator.calls())
    }

    /// Calls of every method matching `pattern`, any status. The pattern is a method name or a glob as the
    /// emulator's fault rules take them: `SecretManagerService.AddSecretVersion`, `*.SetIamPolicy` (secrets and
    /// services), `SecretManagerService.*`.
    pub fn count(&self, pattern: &str) -> u64 {
        self.0
            .iter()
            .filter(|(method, _)| glob_match(pattern, method))
            .flat_map(|(_, by_status)| by_status.values())
            .sum()
    }

    /// Calls of every method, any status.
    pub fn total(&self) -> u64 {
        self.count("*")
    }

    /// Whether no call was made at all.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Calls per method (any status) in this snapshot.
    pub fn per_method(&self) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .map(|(method, by_status)| (method.clone(), by_status.values().sum()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The calls made after `earlier`, an earlier snapshot of the same emulator.
    #[must_use]
    pub fn since(&self, earlier: &Calls) -> Calls {
        let mut new = BTreeMap::new();
        for (method, by_status) in &self.0 {
            let before = earlier.0.get(method);
            let by_status: BTreeMap<String, u64> = by_status
                .iter()
                .map(|(status, n)| {
                    let old = before.and_then(|b| b.get(status)).copied().unwrap_or(0);
                    (status.clone(), n.saturating_sub(old))
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            if !by_status.is_empty() {
                new.insert(method.clone(), by_status);
            }
        }
        Calls(new)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn calls(entries: &[(&str, &str, u64)]) -> Calls {
        let mut map: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (method, status, n) in entries {
            map.entry((*method).to_owned())
                .or_default()
                .insert((*status).to_owned(), *n);
        }
        Calls(map)
    }

    #[test]
    fn counts_by_method_or_glob_over_every_status() {
        let c = calls(&[
            ("SecretManagerService.SetIamPolicy", "OK", 2),
            ("SecretManagerService.SetIamPolicy", "ABORTED", 1),
            ("Services.SetIamPolicy", "OK", 1),
            ("Services.GetService", "NOT_FOUND", 4),
        ]);
        assert_eq!(c.count("SecretManagerService.SetIamPolicy"), 3);
        assert_eq!(c.count("*.SetIamPolicy"), 4);
        assert_eq!(c.count("Services.*"), 5);
        assert_eq!(c.count("Services.CreateService"), 0);
        assert_eq!(c.total(), 8);
        assert!(!c.is_empty());
        assert!(Calls::default().is_empty());
    }

    #[test]
    fn since_keeps_only_new_calls() {
        let before = calls(&[("Services.GetService", "OK", 2)]);
        let after = calls(&[
            ("Services.GetService", "OK", 5),
            ("Services.GetService", "NOT_FOUND", 1),
            ("SecretManagerService.GetSecret", "OK", 1),
        ]);
        let new = after.since(&before);
        assert_eq!(new.count("Services.GetService"), 4);
        assert_eq!(
            new.per_method(),
            BTreeMap::from([
                ("SecretManagerService.GetSecret".to_owned(), 1),
                ("Services.GetService".to_owned(), 4),
            ])
        );
        assert!(after.since(&after).is_empty());
    }
}
