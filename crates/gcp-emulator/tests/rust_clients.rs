//! Conformance with Google's official Rust clients (google-cloud-rust) over REST with anonymous credentials.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use google_cloud_gax::error::rpc::Code;
use google_cloud_lro::Poller;
use google_cloud_run_v2::client::{Revisions, Services};
use google_cloud_run_v2::model as run;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model as sm;

fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

async fn secret_manager(emu: &gcp_emulator::Emulator) -> SecretManagerService {
    SecretManagerService::builder()
        .with_endpoint(emu.url())
        .with_credentials(anonymous())
        .build()
        .await
        .unwrap()
}

fn code_of(err: &google_cloud_gax::error::Error) -> Code {
    err.status()
        .map(|s| s.code)
        .unwrap_or_else(|| panic!("no status in {err:?}"))
}

#[tokio::test]
async fn secret_manager_client_lifecycle() {
    // The account bound below must exist: only seeded or created accounts do, as in Google.
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        service_accounts: vec!["run@p.iam.gserviceaccount.com".into()],
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    let client = secret_manager(&emu).await;
    // No number was set for `p`: the emulator derives a stable one, and Google-style names carry it.
    let number = emu.state().project_number("p");
    assert_ne!(number.to_string(), "p");

    let secret = client
        .create_secret()
        .set_parent("projects/p")
        .set_secret_id("api-key")
        .set_secret(
            sm::Secret::new()
                .set_replication(sm::Replication::new().set_automatic(sm::replication::Automatic::new()))
                .set_labels([("env", "prod")]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(secret.name, format!("projects/{number}/secrets/api-key"));
    assert_eq!(secret.labels.get("env").map(String::as_str), Some("prod"));
    assert!(secret.create_time.is_some());

    let err = client
        .create_secret()
        .set_parent("projects/p")
        .set_secret_id("api-key")
        .set_secret(
            sm::Secret::new()
                .set_replication(sm::Replication::new().set_automatic(sm::replication::Automatic::new())),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Code::AlreadyExists);

    let data = bytes::Bytes::from_static(b"sk-123");
    let version = client
        .add_secret_version()
        .set_parent(&secret.name)
        .set_payload(
            sm::SecretPayload::new()
                .set_data(data.clone())
                .set_data_crc32c(i64::from(crc32c::crc32c(&data))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        version.name,
        format!("projects/{number}/secrets/api-key/versions/1")
    );
    assert_eq!(version.state, sm::secret_version::State::Enabled);

    let bad = client
        .add_secret_version()
        .set_parent(&secret.name)
        .set_payload(sm::SecretPayload::new().set_data(data.clone()).set_data_crc32c(1))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&bad), Code::InvalidArgument);

    let access = client
        .access_secret_version()
        .set_name("projects/p/secrets/api-key/versions/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(
        access.name,
        format!("projects/{number}/secrets/api-key/versions/1")
    );
    let payload = access.payload.clone().unwrap();
    assert_eq!(payload.data, data);
    assert_eq!(payload.data_crc32c, Some(i64::from(crc32c::crc32c(&data))));
    // By number, the same version.
    let by_number = client
        .access_secret_version()
        .set_name(format!("projects/{number}/secrets/api-key/versions/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_number, access);
    let by_id = client
        .get_secret()
        .set_name("projects/p/secrets/api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(by_id.name, secret.name);

    let disabled = client
        .disable_secret_version()
        .set_name(&version.name)
        .set_etag(&version.etag)
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.state, sm::secret_version::State::Disabled);
    let err = client
        .access_secret_version()
        .set_name(&version.name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Code::FailedPrecondition);
    let err = client
        .enable_secret_version()
        .set_name(&version.name)
        .set_etag(&version.etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Code::FailedPrecondition, "stale version etag");
    client
        .enable_secret_version()
        .set_name(&version.name)
        .send()
        .await
        .unwrap();

    let list = client
        .list_secret_versions()
        .set_parent(&secret.name)
        .set_filter("state:ENABLED")
        .send()
        .await
        .unwrap();
    assert_eq!(list.versions.len(), 1);
    assert_eq!(list.total_size, 1);

    // IAM with etags: a stale etag is ABORTED.
    let policy = client
        .get_iam_policy()
        .set_resource(&secret.name)
        .set_options(google_cloud_iam_v1::model::GetPolicyOptions::new().set_requested_policy_version(3))
        .send()
        .await
        .unwrap();
    let binding = google_cloud_iam_v1::model::Binding::new()
        .set_role("roles/secretmanager.secretAccessor")
        .set_members(["serviceAccount:run@p.iam.gserviceaccount.com"]);
    let updated = client
        .set_iam_policy()
        .set_resource(&secret.name)
        .set_policy(policy.clone().set_version(3).set_bindings([binding.clone()]))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.bindings, vec![binding.clone()]);
    assert_ne!(updated.etag, policy.etag);
    let err = client
        .set_iam_policy()
        .set_resource(&secret.name)
        .set_policy(policy.set_bindings([binding]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Code::Aborted);
    assert_eq!(err.http_status_code(), Some(409));

    // Patch with a mask, then a stale secret etag.
    let patched = client
        .update_secret()
        .set_secret(secret.clone().set_labels([("env", "dev")]))
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels"]))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.labels.get("env").map(String::as_str), Some("dev"));
    let err = client
        .update_secret()
        .set_secret(secret.clone())
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Code::FailedPrecondition);

    let listed = client
        .list_secrets()
        .set_parent("projects/p")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.secrets.len(), 1);
    assert_eq!(listed.secrets[0].name, secret.name);
    let listed_by_number = client
        .list_secrets()
        .set_parent(format!("projects/{number}"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed_by_number.secrets, listed.secrets);
    client
        .delete_secret()
        .set_name(&secret.name)
        .send()
        .await
        .unwrap();
    let err = client
        .get_secret()
        .set_name(&secret.name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Code::NotFound);
    assert!(emu.state().call_count("SecretManagerService.AccessSecretVersion") >= 2);
}

#[tokio::test]
async fn run_client_services_through_long_running_operations() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        revision_startup: Duration::from_millis(50),
        // The revisions' runtime account must exist: only seeded or created accounts do, as in Google.
        service_accounts: vec!["run@p.iam.gserviceaccount.com".into()],
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    let services = Services::builder()
        .with_endpoint(emu.url())
        .with_credentials(anonymous())
        .build()
        .await
        .unwrap();
    let revisions = Revisions::builder()
        .with_endpoint(emu.url())
        .with_credentials(anonymous())
        .build()
        .await
        .unwrap();
    let parent = "projects/p/locations/us-central1";
    let template = run::RevisionTemplate::new()
        .set_service_account("run@p.iam.gserviceaccount.com")
        .set_containers([run::Container::new()
            .set_image("img:1")
            .set_env([run::EnvVar::new().set_name("A").set_value("1")])]);
    let created = services
        .create_service()
        .set_parent(parent)
        .set_service_id("llm")
        .set_service(
            run::Service::new()
                .set_template(template)
                .set_ingress(run::IngressTraffic::InternalOnly),
        )
        .poller()
        .until_done()
        .await
        .unwrap();
    assert_eq!(created.name, format!("{parent}/services/llm"));
    assert_eq!(created.ingress, run::IngressTraffic::InternalOnly);
    assert_eq!(created.generation, 1);
    assert_eq!(created.observed_generation, 1);
    assert!(!created.reconciling);
    assert_eq!(created.latest_ready_revision, created.latest_created_revision);
    assert_eq!(
        created.terminal_condition.as_ref().unwrap().state,
        run::condition::State::ConditionSucceeded
    );
    assert_eq!(created.traffic_statuses.len(), 1);

    let got = services
        .get_service()
        .set_name(&created.name)
        .send()
        .await
        .unwrap();
    let mut changed = got.clone();
    changed.template.as_mut().unwrap().containers[0].image = "img:2".into();
    let updated = services
        .update_service()
        .set_service(changed)
        .poller()
        .until_done()
        .await
        .unwrap();
    assert_eq!(updated.generation, 2);
    assert_ne!(updated.latest_ready_revision, created.latest_ready_revision);
    assert!(
        updated.latest_ready_revision.contains("/revisions/llm-00002-"),
        "{}",
        updated.latest_ready_revision
    );

    let revs = revisions
        .list_revisions()
        .set_parent(&created.name)
        .send()
        .await
        .unwrap();
    assert_eq!(revs.revisions.len(), 2);
    let rev = revisions
        .get_revision()
        .set_name(&updated.latest_ready_revision)
        .send()
        .await
        .unwrap();
    assert_eq!(rev.containers[0].image, "img:2");
    assert_eq!(rev.service, created.name);

    let err = services
        .get_service()
        .set_name(format!("{parent}/services/none"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Code::NotFound);
    let err = services
        .create_service()
        .set_parent(parent)
        .set_service_id("llm")
        .set_service(run::Service::new().set_template(
            run::RevisionTemplate::new().set_containers([run::Container::new().set_image("x")]),
        ))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Code::AlreadyExists);

    let policy = services
        .get_iam_policy()
        .set_resource(&created.name)
        .send()
        .await
        .unwrap();
    let binding = google_cloud_iam_v1::model::Binding::new()
        .set_role("roles/run.invoker")
        .set_members(["allUsers"]);
    let set = services
        .set_iam_policy()
        .set_resource(&created.name)
        .set_policy(policy.set_bindings([binding.clone()]))
        .send()
        .await
        .unwrap();
    assert_eq!(set.bindings, vec![binding]);

    let deleted = services
        .delete_service()
        .set_name(&created.name)
        .poller()
        .until_done()
        .await
        .unwrap();
    assert_eq!(deleted.name, created.name);
    let err = services
        .get_service()
        .set_name(&created.name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Code::NotFound);
}
