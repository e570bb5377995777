//! Cloud Run v2 services, revisions, operations and the invoker policy against the in-process emulator.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use gcp_emulator::{Emulator, FaultRule};
use litellm_operator_gcp::{
    CloudRun, Error, Gcp, GcpConfig, IamPolicies, Operation, PolicyChange, PolicyTarget, RateLimits,
    RetrySettings, Service, ServiceName,
};
use prometheus_client::registry::Registry;
use serde_json::json;

const IMAGE: &str = "ghcr.io/berriai/litellm:main-stable";

async fn start() -> (Emulator, Gcp) {
    let config = gcp_emulator::Config {
        revision_startup: Duration::from_millis(50),
        service_accounts: vec!["run@p.iam.gserviceaccount.com".to_owned()],
        ..Default::default()
    };
    let emu = gcp_emulator::spawn(config).await.unwrap();
    let config = GcpConfig {
        retry: RetrySettings {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(10),
            ..RetrySettings::default()
        },
        rate_limits: RateLimits::unlimited(),
        ..GcpConfig::emulator(emu.url().parse().unwrap())
    };
    let gcp = Gcp::connect(&config, &mut Registry::default()).await.unwrap();
    (emu, gcp)
}

fn name() -> ServiceName {
    ServiceName::new("p", "us-central1", "litellm-proxy")
}

fn service(env_value: &str) -> Service {
    serde_json::from_value(json!({
        "labels": {"managed-by": "litellm-operator"},
        "template": {
            "serviceAccount": "run@p.iam.gserviceaccount.com",
            "containers": [{
                "image": IMAGE,
                "ports": [{"containerPort": 4000}],
                "env": [{"name": "LITELLM_LOG", "value": env_value}]
            }]
        }
    }))
    .unwrap()
}

/// What a reconcile would do across requeues; here, in a loop.
async fn until_done(gcp: &Gcp, op: &Operation) -> Operation {
    for _ in 0..200 {
        let now = gcp.get_operation(&op.name).await.unwrap();
        if now.done {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("operation {} never finished", op.name);
}

#[tokio::test]
async fn a_service_is_created_updated_and_deleted_without_blocking_on_operations() {
    let (emu, gcp) = start().await;
    assert!(gcp.get_service(&name()).await.unwrap().is_none());

    let op = gcp.create_service(&name(), service("INFO")).await.unwrap();
    assert!(!op.name.is_empty());
    assert_eq!(
        emu.state().call_count("Operations.GetOperation"),
        0,
        "create must not wait"
    );
    let done = until_done(&gcp, &op).await;
    assert_eq!(done.error, None);

    let live = gcp.get_service(&name()).await.unwrap().unwrap();
    assert_eq!(live.name, name().to_string());
    assert!(!live.latest_ready_revision.is_empty(), "{live:?}");
    let again = gcp.create_service(&name(), service("INFO")).await.unwrap_err();
    assert!(matches!(again, Error::AlreadyExists { .. }), "{again:?}");

    // A template change, conditional on the etag just read.
    let mut next = service("DEBUG");
    next.etag = live.etag.clone();
    let op = gcp.update_service(&name(), next).await.unwrap();
    until_done(&gcp, &op).await;
    let revisions = gcp.list_revisions(&name()).await.unwrap();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    let latest = gcp
        .get_service(&name())
        .await
        .unwrap()
        .unwrap()
        .latest_ready_revision;
    assert_ne!(latest, live.latest_ready_revision);
    let revision = gcp.get_revision(&latest).await.unwrap().unwrap();
    assert_eq!(revision.containers[0].env[0].value(), Some(&"DEBUG".to_owned()));

    let op = gcp.delete_service(&name()).await.unwrap().unwrap();
    until_done(&gcp, &op).await;
    assert!(gcp.get_service(&name()).await.unwrap().is_none());
    assert!(gcp.delete_service(&name()).await.unwrap().is_none());
}

#[tokio::test]
async fn the_invoker_policy_is_edited_minimally() {
    let (emu, gcp) = start().await;
    let op = gcp.create_service(&name(), service("INFO")).await.unwrap();
    until_done(&gcp, &op).await;
    let target = PolicyTarget::Service(name());
    assert_eq!(
        gcp.add_member(&target, "roles/run.invoker", "allUsers")
            .await
            .unwrap(),
        PolicyChange::Changed
    );
    assert_eq!(
        gcp.add_member(&target, "roles/run.invoker", "allusers")
            .await
            .unwrap(),
        PolicyChange::Unchanged
    );
    assert_eq!(emu.state().call_count("Services.SetIamPolicy"), 1);
    let policy = gcp.get_policy(&target).await.unwrap();
    assert!(
        policy
            .bindings
            .iter()
            .any(|b| b.role == "roles/run.invoker" && b.members == ["allUsers"])
    );
    assert_eq!(
        gcp.remove_member(&target, "roles/run.invoker", "allUsers")
            .await
            .unwrap(),
        PolicyChange::Changed
    );
    assert!(gcp.get_policy(&target).await.unwrap().bindings.is_empty());
}

#[tokio::test]
async fn run_errors_and_retries() {
    let (emu, gcp) = start().await;
    let fault = |rule: serde_json::Value| FaultRule::from_json(rule.as_object().unwrap()).unwrap();
    emu.state().add_fault(fault(
        json!({"method": "Services.CreateService", "status": "UNAVAILABLE"}),
    ));
    let err = gcp.create_service(&name(), service("INFO")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        emu.state().call_count("Services.CreateService"),
        1,
        "creates are never repeated"
    );

    emu.state().clear_faults();
    emu.state().add_fault(fault(
        json!({"method": "Services.GetService", "status": "UNAVAILABLE", "count": 2}),
    ));
    assert!(gcp.get_service(&name()).await.unwrap().is_none());
    assert_eq!(emu.state().call_count("Services.GetService"), 3);

    emu.state().clear_faults();
    emu.state().add_fault(fault(json!({
        "method": "Services.GetService", "status": "PERMISSION_DENIED",
        "message": "Permission 'run.services.get' denied on resource 'projects/p/locations/us-central1/services/litellm-proxy' (or resource may not exist)."
    })));
    let err = gcp.get_service(&name()).await.unwrap_err();
    let Error::PermissionDenied { permission, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(permission.as_deref(), Some("run.services.get"));
}
