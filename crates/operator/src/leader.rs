//! Leader election on a `coordination.k8s.io/v1` Lease, so only one of several replicas writes.
//!
//! The holder renews every `renew` period; a candidate takes the lease once it has gone unrenewed for
//! `lease_duration`. Every write carries the lease's `resourceVersion`, so two candidates cannot both win. A leader
//! that fails to renew before its lease expires steps down (the caller stops its controller).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct Election {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews.
    pub renew: Duration,
}

impl Election {
    /// Defaults Kubernetes' own controllers use: 15 s lease, renewed every 5 s.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        }
    }

    /// Campaigns forever; the receiver says whether this replica currently leads.
    pub fn spawn(self, client: Client) -> watch::Receiver<bool> {
        self.spawn_with_handle(client).0
    }

    /// Like [`Election::spawn`], with the campaign's task handle (aborting it stops renewing).
    pub fn spawn_with_handle(self, client: Client) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let api: Api<Lease> = Api::namespaced(client, &self.namespace);
            let mut last_renewed: Option<tokio::time::Instant> = None;
            loop {
                match self.try_acquire_or_renew(&api).await {
                    Ok(true) => {
                        if !*tx.borrow() {
                            info!(lease = %self.name, identity = %self.identity, "Acquired leader lease");
                        }
                        last_renewed = Some(tokio::time::Instant::now());
                        let _ = tx.send(true);
                    }
                    Ok(false) => {
                        if *tx.borrow() {
                            warn!(lease = %self.name, "Lost leader lease to another replica");
                        }
                        last_renewed = None;
                        let _ = tx.send(false);
                    }
                    Err(e) => {
                        warn!(lease = %self.name, error = %e, "Could not renew leader lease");
                        // Step down before the lease can expire under us.
                        if last_renewed.is_some_and(|t| t.elapsed() + self.renew >= self.lease_duration) {
                            last_renewed = None;
                            let _ = tx.send(false);
                        }
                    }
                }
                tokio::time::sleep(self.renew).await;
            }
        });
        (rx, task)
    }

    /// Gives the lease up (on shutdown), so a standby takes over at its next renew instead of after expiry.
    pub async fn release(&self, client: Client) -> Result<(), kube::Error> {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let Some(mut lease) = api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                info!(lease = %self.name, "Released leader lease");
                Ok(())
            }
            // Someone else already moved on.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn try_acquire_or_renew(&self, api: &Api<Lease>) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let held_by_me = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(seconds)));
        let expired = spec.renew_time.as_ref().is_none_or(|t| t.0 + duration < now);
        if !held_by_me && !expired {
            return Ok(false);
        }
        if !held_by_me {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(MicroTime(now));
        // `replace` sends the resourceVersion we read: a concurrent winner makes this a 409.
        match api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// This replica's identity when `--identity` / `POD_NAME` is not given: the host name, which in a container is the
/// pod's name, else `litellm-operator-<pid>` (never alone in a container, where every pid is 1).
pub fn default_identity(hostname_env: Option<String>, etc_hostname: Option<String>, pid: u32) -> String {
    [hostname_env, etc_hostname]
        .into_iter()
        .flatten()
        .map(|h| h.trim().to_owned())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| format!("litellm-operator-{pid}"))
}

#[cfg(test)]
mod identity_tests {
    use super::default_identity;

    #[test]
    fn the_identity_is_the_host_name_then_the_pid() {
        assert_eq!(
            default_identity(Some("op-7d4b9c-x2x9k".into()), None, 1),
            "op-7d4b9c-x2x9k"
        );
        assert_eq!(default_identity(None, Some("op-abc\n".into()), 1), "op-abc");
        assert_eq!(
            default_identity(Some(" ".into()), None, 42),
            "litellm-operator-42"
        );
        // Two replicas in two containers, both pid 1, still differ by host name.
        assert_ne!(
            default_identity(Some("a".into()), None, 1),
            default_identity(Some("b".into()), None, 1)
        );
    }
}
