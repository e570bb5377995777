//! Secret Manager and secret IAM policies against the in-process emulator: happy paths, error classes,
//! fault injection (lost responses, outages, concurrent IAM writers).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use gcp_emulator::{Emulator, FaultRule};
use google_cloud_iam_v1::model::{Binding, GetPolicyOptions};
use google_cloud_secretmanager_v1::client::SecretManagerService;
use litellm_operator_gcp::{
    Error, Gcp, GcpConfig, IamPolicies, NewSecret, PolicyChange, PolicyTarget, RateLimits, Replication,
    RetrySettings, SecretName, SecretPayload, SecretStore, SecretVersionStore, VersionRef, VersionState,
};
use prometheus_client::registry::Registry;
use serde_json::json;

const ACCESSOR: &str = "roles/secretmanager.secretAccessor";
const SA: &str = "serviceAccount:run@p.iam.gserviceaccount.com";

fn config(emu: &Emulator) -> GcpConfig {
    GcpConfig {
        retry: RetrySettings {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(10),
            iam_conflict_attempts: 6,
            ..RetrySettings::default()
        },
        rate_limits: RateLimits::unlimited(),
        ..GcpConfig::emulator(emu.url().parse().unwrap())
    }
}

async fn start() -> (Emulator, Gcp) {
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        service_accounts: vec![
            "run@p.iam.gserviceaccount.com".to_owned(),
            "other@p.iam.gserviceaccount.com".to_owned(),
        ],
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    let gcp = Gcp::connect(&config(&emu), &mut Registry::default())
        .await
        .unwrap();
    (emu, gcp)
}

fn fault(rule: serde_json::Value) -> FaultRule {
    FaultRule::from_json(rule.as_object().unwrap()).unwrap()
}

fn secret(id: &str) -> SecretName {
    SecretName::new("p", id)
}

async fn create(gcp: &Gcp, id: &str) {
    gcp.create_secret(&secret(id), &NewSecret::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_secret_through_its_whole_life() {
    let (emu, gcp) = start().await;
    let name = secret("database-url");
    assert_eq!(gcp.find_secret(&name).await.unwrap(), None);

    let spec = NewSecret {
        replication: Replication::UserManaged(vec!["europe-west1".to_owned()]),
        labels: [("team".to_owned(), "ml".to_owned())].into(),
    };
    let created = gcp.create_secret(&name, &spec).await.unwrap();
    assert!(created.is_managed());
    let found = gcp.find_secret(&name).await.unwrap().unwrap();
    assert!(found.is_managed());
    assert_eq!(found.labels["team"], "ml");
    assert_eq!(
        found.replication,
        Some(Replication::UserManaged(vec!["europe-west1".to_owned()]))
    );
    let again = gcp.create_secret(&name, &spec).await.unwrap_err();
    assert!(matches!(again, Error::AlreadyExists { .. }), "{again:?}");

    let v1 = gcp
        .add_version(&name, &SecretPayload::from("postgres://one"))
        .await
        .unwrap();
    let v2 = gcp
        .add_version(&name, &SecretPayload::from("postgres://two"))
        .await
        .unwrap();
    assert_eq!((v1.number, v2.number), (1, 2));
    assert_eq!(v2.state, VersionState::Enabled);
    assert_eq!(
        emu.state()
            .secret_payload("projects/p/secrets/database-url", "2")
            .unwrap(),
        b"postgres://two"
    );

    assert_eq!(gcp.resolve_version(&name, VersionRef::Latest).await.unwrap(), 2);
    let latest = gcp.access_version(&name, VersionRef::Latest).await.unwrap();
    assert_eq!(
        (latest.number, latest.payload.expose()),
        (2, &b"postgres://two"[..])
    );
    let first = gcp.access_version(&name, VersionRef::Number(1)).await.unwrap();
    assert_eq!(first.payload.expose(), b"postgres://one");
    let numbers: Vec<_> = gcp
        .list_versions(&name)
        .await
        .unwrap()
        .iter()
        .map(|v| v.number)
        .collect();
    assert_eq!(numbers, [2, 1]);

    assert_eq!(
        gcp.disable_version(&name, 1).await.unwrap().state,
        VersionState::Disabled
    );
    assert_eq!(
        gcp.get_version(&name, VersionRef::Number(1))
            .await
            .unwrap()
            .unwrap()
            .state,
        VersionState::Disabled
    );
    let disabled = gcp
        .access_version(&name, VersionRef::Number(1))
        .await
        .unwrap_err();
    assert!(
        matches!(disabled, Error::FailedPrecondition { .. }),
        "{disabled:?}"
    );
    assert_eq!(
        gcp.enable_version(&name, 1).await.unwrap().state,
        VersionState::Enabled
    );
    assert_eq!(
        gcp.destroy_version(&name, 1).await.unwrap().state,
        VersionState::Destroyed
    );
    assert_eq!(gcp.get_version(&name, VersionRef::Number(9)).await.unwrap(), None);

    let mut labels = found.labels.clone();
    labels.insert("rotated".to_owned(), "yes".to_owned());
    let relabelled = gcp.update_labels(&name, &labels, &found.etag).await.unwrap();
    assert_eq!(relabelled.labels["rotated"], "yes");
    // The etag read before the update is stale now.
    let stale = gcp
        .update_labels(&name, &found.labels, &found.etag)
        .await
        .unwrap_err();
    assert!(matches!(stale, Error::FailedPrecondition { .. }), "{stale:?}");

    let listed = gcp
        .list_secrets("p", Some("labels.managed-by=litellm-operator"))
        .await
        .unwrap();
    let listed: Vec<_> = listed.iter().map(|s| &s.name).collect();
    assert_eq!(listed, [&name]);

    assert!(gcp.delete_secret(&name, None).await.unwrap());
    assert!(!gcp.delete_secret(&name, None).await.unwrap());
    assert_eq!(gcp.find_secret(&name).await.unwrap(), None);
}

#[tokio::test]
async fn google_errors_map_to_their_classes() {
    let (emu, gcp) = start().await;
    let missing = gcp
        .access_version(&secret("nope"), VersionRef::Latest)
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, Error::NotFound { resource, .. } if resource.ends_with("nope/versions/latest"))
    );
    let invalid = gcp
        .create_secret(&secret("not a valid id!"), &NewSecret::default())
        .await
        .unwrap_err();
    assert!(matches!(invalid, Error::InvalidArgument { .. }), "{invalid:?}");
    create(&gcp, "empty").await;
    let none = gcp
        .resolve_version(&secret("empty"), VersionRef::Latest)
        .await
        .unwrap_err();
    assert!(matches!(none, Error::NotFound { .. }), "{none:?}");
    // Google refuses a version without a value; the official client reports it as such.
    let empty = gcp
        .add_version(&secret("empty"), &SecretPayload::new(Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(&empty, Error::InvalidArgument { message, .. } if message.contains("Field [payload] is required")),
        "{empty:?}"
    );

    for (status, check) in [
        (
            "PERMISSION_DENIED",
            (|e: &Error| matches!(e, Error::PermissionDenied { .. })) as fn(&Error) -> bool,
        ),
        ("RESOURCE_EXHAUSTED", |e| matches!(e, Error::QuotaExceeded { .. })),
        ("UNAUTHENTICATED", |e| matches!(e, Error::Unauthenticated { .. })),
        ("ABORTED", |e| matches!(e, Error::Aborted { .. })),
        ("INTERNAL", |e| matches!(e, Error::Other { .. })),
    ] {
        emu.state().clear_faults();
        emu.state().add_fault(fault(
            json!({"method": "SecretManagerService.GetSecret", "status": status}),
        ));
        let err = gcp.find_secret(&secret("empty")).await.unwrap_err();
        assert!(check(&err), "{status}: {err:?}");
        assert_eq!(err.resource(), "projects/p/secrets/empty");
    }

    emu.state().clear_faults();
    emu.state().add_fault(fault(json!({
        "method": "SecretManagerService.*", "status": "PERMISSION_DENIED",
        "message": "Secret Manager API has not been used in project p before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/secretmanager.googleapis.com/overview?project=p then retry."
    })));
    let err = gcp.find_secret(&secret("empty")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("gcloud services enable secretmanager.googleapis.com --project=p"),
        "{err}"
    );
}

#[tokio::test]
async fn retries_stop_at_their_bound_and_recover_from_short_outages() {
    let (emu, gcp) = start().await;
    create(&gcp, "x").await;
    emu.state().add_fault(fault(
        json!({"method": "SecretManagerService.GetSecret", "status": "UNAVAILABLE"}),
    ));
    let err = gcp.find_secret(&secret("x")).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(emu.state().call_count("SecretManagerService.GetSecret"), 3);

    emu.state().clear_faults();
    emu.state().reset_calls();
    emu.state().add_fault(fault(
        json!({"method": "SecretManagerService.GetSecret", "status": "UNAVAILABLE", "count": 2}),
    ));
    assert!(gcp.find_secret(&secret("x")).await.unwrap().is_some());
    assert_eq!(emu.state().call_count("SecretManagerService.GetSecret"), 3);
}

#[tokio::test]
async fn a_lost_add_version_response_is_not_retried() {
    let (emu, gcp) = start().await;
    create(&gcp, "master-key").await;
    emu.state().add_fault(fault(json!({
        "method": "SecretManagerService.AddSecretVersion", "status": "UNAVAILABLE", "count": 1, "commitThenFail": true
    })));
    let payload = SecretPayload::from("sk-1234");
    let err = gcp
        .add_version(&secret("master-key"), &payload)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(emu.state().call_count("SecretManagerService.AddSecretVersion"), 1);
    // The version was stored: the caller finds it by content instead of adding a duplicate.
    let versions = gcp.list_versions(&secret("master-key")).await.unwrap();
    assert_eq!(versions.len(), 1);
    let latest = gcp
        .access_version(&secret("master-key"), VersionRef::Latest)
        .await
        .unwrap();
    assert_eq!(latest.payload, payload);
}

/// The official client, for setting up policies this crate would never write (conditional bindings).
async fn official(emu: &Emulator) -> SecretManagerService {
    SecretManagerService::builder()
        .with_endpoint(emu.url())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn iam_edits_are_minimal_and_keep_conditional_bindings() {
    let (emu, gcp) = start().await;
    create(&gcp, "db").await;
    let resource = "projects/p/secrets/db";
    let client = official(&emu).await;
    let conditional = Binding::new()
        .set_role(ACCESSOR)
        .set_members(["user:temp@example.com"])
        .set_condition(
            google_cloud_type::model::Expr::new()
                .set_title("until 2030")
                .set_expression("request.time < timestamp('2030-01-01T00:00:00Z')"),
        );
    let policy = client
        .get_iam_policy()
        .set_resource(resource)
        .set_options(GetPolicyOptions::new().set_requested_policy_version(3))
        .send()
        .await
        .unwrap();
    let policy = policy.set_version(3).set_bindings([conditional.clone()]);
    client
        .set_iam_policy()
        .set_resource(resource)
        .set_policy(policy)
        .send()
        .await
        .unwrap();

    let target = PolicyTarget::Secret(secret("db"));
    assert_eq!(
        gcp.add_member(&target, ACCESSOR, SA).await.unwrap(),
        PolicyChange::Changed
    );
    let writes = emu.state().call_count("SecretManagerService.SetIamPolicy");
    assert_eq!(
        gcp.add_member(&target, ACCESSOR, SA).await.unwrap(),
        PolicyChange::Unchanged
    );
    assert_eq!(
        gcp.add_member(&target, ACCESSOR, &SA.to_uppercase())
            .await
            .unwrap(),
        PolicyChange::Unchanged
    );
    assert_eq!(
        emu.state().call_count("SecretManagerService.SetIamPolicy"),
        writes,
        "no write when unchanged"
    );

    let read = gcp.get_policy(&target).await.unwrap();
    assert!(
        read.bindings.contains(&conditional),
        "conditional binding lost: {:?}",
        read.bindings
    );
    assert!(
        read.bindings
            .iter()
            .any(|b| b.condition.is_none() && b.role == ACCESSOR && b.members == [SA])
    );

    assert_eq!(
        gcp.remove_member(&target, ACCESSOR, SA).await.unwrap(),
        PolicyChange::Changed
    );
    assert_eq!(
        gcp.remove_member(&target, ACCESSOR, SA).await.unwrap(),
        PolicyChange::Unchanged
    );
    let read = gcp.get_policy(&target).await.unwrap();
    assert_eq!(read.bindings, vec![conditional]);
}

#[tokio::test]
async fn concurrent_iam_writers_both_keep_their_binding() {
    let (emu, gcp) = start().await;
    create(&gcp, "shared").await;
    // Google answers ABORTED to a few writes while another writer is busy with the same policy.
    emu.state().add_fault(fault(
        json!({"method": "SecretManagerService.SetIamPolicy", "status": "ABORTED", "count": 3}),
    ));
    let other = Gcp::connect(&config(&emu), &mut Registry::default())
        .await
        .unwrap();
    let target = PolicyTarget::Secret(secret("shared"));
    let reader = "serviceAccount:other@p.iam.gserviceaccount.com";
    let (ours, theirs) = tokio::join!(
        gcp.add_member(&target, ACCESSOR, SA),
        other.add_member(&target, "roles/secretmanager.viewer", reader),
    );
    assert_eq!(
        (ours.unwrap(), theirs.unwrap()),
        (PolicyChange::Changed, PolicyChange::Changed)
    );
    let bindings = emu.state().secret_bindings("projects/p/secrets/shared").unwrap();
    let has = |role: &str, member: &str| {
        bindings
            .iter()
            .any(|b| b["role"] == role && b["members"].as_array().unwrap().iter().any(|m| m == member))
    };
    assert!(
        has(ACCESSOR, SA) && has("roles/secretmanager.viewer", reader),
        "{bindings:?}"
    );
    assert!(emu.state().calls()["SecretManagerService.SetIamPolicy"]["ABORTED"] >= 3);
}

#[tokio::test]
async fn iam_conflicts_give_up_after_their_bound() {
    let (emu, gcp) = start().await;
    create(&gcp, "hot").await;
    emu.state().add_fault(fault(
        json!({"method": "SecretManagerService.SetIamPolicy", "status": "ABORTED"}),
    ));
    let err = gcp
        .add_member(&PolicyTarget::Secret(secret("hot")), ACCESSOR, SA)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Aborted { .. }), "{err:?}");
    assert_eq!(emu.state().call_count("SecretManagerService.SetIamPolicy"), 6);
    assert_eq!(emu.state().call_count("SecretManagerService.GetIamPolicy"), 6);
}
