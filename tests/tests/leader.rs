//! Leader election on a real Lease: one leader at a time, and a hand-over when it stops.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use litellm_operator::leader::Election;
use litellm_operator_tests::{ControlPlane, eventually};

fn election(ns: &str, identity: &str) -> Election {
    Election {
        lease_duration: Duration::from_secs(3),
        renew: Duration::from_millis(500),
        ..Election::new(ns.to_owned(), "litellm-operator".to_owned(), identity.to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_a_hand_over_when_it_stops() {
    let cp = ControlPlane::shared().await.unwrap();
    let ns = cp.namespace("leader").await.unwrap();

    // Each replica has its own client, as two pods would.
    let (a, a_task) = election(&ns, "replica-a").spawn_with_handle(cp.client().unwrap());
    eventually("replica-a to lead", Duration::from_secs(10), || async {
        *a.borrow()
    })
    .await;
    let (b, b_task) = election(&ns, "replica-b").spawn_with_handle(cp.client().unwrap());

    // For several renew periods, b never leads while a holds the lease.
    for _ in 0..20 {
        assert!(*a.borrow() && !*b.borrow(), "two leaders, or a lost its lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lease: Api<Lease> = Api::namespaced(cp.client().unwrap(), &ns);
    let holder = lease
        .get("litellm-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some("replica-a"));

    // a stops renewing (its pod is gone): b takes over once the lease expires.
    a_task.abort();
    eventually("replica-b to take over", Duration::from_secs(10), || async {
        *b.borrow()
    })
    .await;
    let spec = lease.get("litellm-operator").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    b_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_shuts_down_hands_over_without_waiting_for_expiry() {
    let cp = ControlPlane::shared().await.unwrap();
    let ns = cp.namespace("release").await.unwrap();
    let mut slow = election(&ns, "replica-a");
    slow.lease_duration = Duration::from_secs(30);
    let (a, a_task) = slow.clone().spawn_with_handle(cp.client().unwrap());
    eventually("replica-a to lead", Duration::from_secs(10), || async {
        *a.borrow()
    })
    .await;
    let (b, b_task) = election(&ns, "replica-b").spawn_with_handle(cp.client().unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!*b.borrow());

    // Graceful shutdown: stop renewing, release. b must not wait out a's 30 s lease.
    a_task.abort();
    slow.release(cp.client().unwrap()).await.unwrap();
    eventually("replica-b to take over", Duration::from_secs(3), || async {
        *b.borrow()
    })
    .await;
    b_task.abort();
}
