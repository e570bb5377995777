//! Status conditions: `SecretsReady`, `IamReady`, `ServiceReady`, and `Ready` summarising them.
//!
//! `lastTransitionTime` changes only when a condition's status changes, so an unchanged outcome produces an
//! identical status and the status write is skipped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use litellm_operator_api::names::condition;

pub use crate::plan::Outcome;

/// Sets condition `type_` in `conditions`, keeping `lastTransitionTime` unless the status flips.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    outcome: &Outcome,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if outcome.ok { "True" } else { "False" };
    let message: String = outcome.message.chars().take(1024).collect();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status.to_owned();
            c.reason.clone_from(&outcome.reason);
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: outcome.reason.clone(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// `Ready` from the three step conditions: true only when all are; otherwise the first failing step's reason
/// and message, so `kubectl get llmd` shows the cause.
pub fn ready(secrets: &Outcome, iam: &Outcome, service: &Outcome) -> Outcome {
    for (kind, o) in [
        (condition::SECRETS_READY, secrets),
        (condition::IAM_READY, iam),
        (condition::SERVICE_READY, service),
    ] {
        if !o.ok {
            return Outcome::not_ready(&o.reason, format!("{kind}: {}", o.message));
        }
    }
    Outcome::ready(service.message.clone())
}

/// Sets all four conditions from the step outcomes.
pub fn set_all(
    conditions: &mut Vec<Condition>,
    secrets: &Outcome,
    iam: &Outcome,
    service: &Outcome,
    generation: Option<i64>,
    now: &Time,
) {
    set(conditions, condition::SECRETS_READY, secrets, generation, now);
    set(conditions, condition::IAM_READY, iam, generation, now);
    set(conditions, condition::SERVICE_READY, service, generation, now);
    set(
        conditions,
        condition::READY,
        &ready(secrets, iam, service),
        generation,
        now,
    );
}

/// Sets every condition false for the same reason (invalid spec, paused): no step ran.
pub fn set_all_blocked(
    conditions: &mut Vec<Condition>,
    blocked: &Outcome,
    generation: Option<i64>,
    now: &Time,
) {
    for type_ in [
        condition::SECRETS_READY,
        condition::IAM_READY,
        condition::SERVICE_READY,
        condition::READY,
    ] {
        set(conditions, type_, blocked, generation, now);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use litellm_operator_api::names::reason;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = Vec::new();
        set(
            &mut c,
            "SecretsReady",
            &Outcome::not_ready("Reconciling", "creating"),
            Some(1),
            &at(10),
        );
        set(
            &mut c,
            "SecretsReady",
            &Outcome::not_ready("SecretSourceMissing", "no secret x"),
            Some(1),
            &at(20),
        );
        assert_eq!(c[0].last_transition_time, at(10));
        assert_eq!(c[0].reason, "SecretSourceMissing");
        set(
            &mut c,
            "SecretsReady",
            &Outcome::ready("11 secrets"),
            Some(2),
            &at(30),
        );
        assert_eq!(c[0].last_transition_time, at(30));
        assert_eq!(
            (c[0].status.as_str(), c[0].observed_generation),
            ("True", Some(2))
        );
    }

    #[test]
    fn same_outcome_twice_is_the_same_status() {
        let o = Outcome::ready("ok");
        let mut a = Vec::new();
        set_all(&mut a, &o, &o, &o, Some(3), &at(1));
        let mut b = a.clone();
        set_all(&mut b, &o, &o, &o, Some(3), &at(99));
        assert_eq!(a, b);
    }

    #[test]
    fn ready_names_the_first_failing_step() {
        let ok = Outcome::ready("ok");
        let iam = Outcome::not_ready(reason::IAM_PROPAGATING, "waiting for access to database-url");
        let r = ready(&ok, &iam, &Outcome::not_ready(reason::RECONCILING, "x"));
        assert!(!r.ok);
        assert_eq!(r.reason, reason::IAM_PROPAGATING);
        assert_eq!(r.message, "IamReady: waiting for access to database-url");
        assert!(ready(&ok, &ok, &ok).ok);
    }

    #[test]
    fn long_messages_are_cut_to_the_kubernetes_limit_budget() {
        let mut c = Vec::new();
        set(
            &mut c,
            "Ready",
            &Outcome::not_ready("X", "y".repeat(5000)),
            None,
            &at(1),
        );
        assert_eq!(c[0].message.len(), 1024);
    }
}
