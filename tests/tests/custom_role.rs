//! docs/security.md, proved against an emulator that checks every caller's permissions: the operator holding
//! exactly the guide's custom role (on the project) and `roles/iam.serviceAccountUser` (on the runtime account only)
//! does its whole job: create, adopt, rotate and retire, correct drift, open to the public, delete. With any one
//! of those permissions taken away it stops at the step that needs it, says which permission is missing and the
//! gcloud command that grants it, and does not retry in a loop.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use litellm_operator_api::LiteLLMDeploymentStatus;
use litellm_operator_gcp::{
    CloudRun, SecretName, SecretPayload, SecretStore, SecretVersionStore, ServiceName, VersionRef,
    VersionState,
};
use litellm_operator_tests::fixtures::{IMAGE, PROJECT, REGION, minimal};
use litellm_operator_tests::{OperatorGrants, World, condition, pinned};
use serde_json::json;

/// How long one step of the job may take.
const STEP: Duration = Duration::from_secs(40);

/// A refusal the operator reported: the text of the condition or Event that says so.
#[derive(Debug)]
struct Refused(String);

/// The text of every condition and Event of the world that reports a refused Google call.
async fn refusals(w: &World, name: &str) -> Vec<String> {
    let mut out: Vec<String> = w
        .events()
        .await
        .into_iter()
        .filter(|e| e.starts_with("PermissionDenied"))
        .collect();
    if let Some(obj) = w.deployments().get_opt(name).await.unwrap()
        && let Some(status) = obj.status
    {
        out.extend(
            status
                .conditions
                .iter()
                .filter(|c| c.reason == "PermissionDenied")
                .map(|c| format!("{}: {}", c.type_, c.message)),
        );
    }
    out
}

/// Waits until `done` holds for the status (or, when `gone`, until the resource is deleted), or until the operator
/// reports a refused call.
async fn step(
    w: &World,
    name: &str,
    what: &str,
    done: impl Fn(&LiteLLMDeploymentStatus) -> bool,
) -> Result<(), Refused> {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(refused) = refusals(w, name).await.into_iter().next() {
            return Err(Refused(refused));
        }
        match w.deployments().get_opt(name).await.unwrap() {
            None if what == "gone" => return Ok(()),
            Some(obj) if obj.status.as_ref().is_some_and(&done) => return Ok(()),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{what}: neither done nor refused within {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until Google holds what `check` looks for, or until the operator reports a refused call.
async fn google_step<F, Fut>(w: &World, name: &str, what: &str, check: F) -> Result<(), Refused>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(refused) = refusals(w, name).await.into_iter().next() {
            return Err(Refused(refused));
        }
        if check().await {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "{what}: neither done nor refused within {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn ready(s: &LiteLLMDeploymentStatus) -> bool {
    condition(s, "Ready").0 == "True"
}

/// The operator's whole job, step by step; the first refusal ends it.
async fn job(w: &World) -> Result<(), Refused> {
    // Another team's secret, unlabelled, that the deployment adopts (labels: secrets.update; comparing the
    // newest value with the source's before adding one: versions.access).
    let adopted = SecretName::new(PROJECT, "job-database-url");
    w.gcp.create_secret(&adopted, &Default::default()).await.unwrap();
    w.gcp
        .add_version(&adopted, &SecretPayload::new(b"postgres://db".to_vec()))
        .await
        .unwrap();
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let mut manifest = minimal("job");
    manifest["metadata"]["annotations"] = json!({"litellm.dev/adopt": "true"});
    manifest["spec"]["secretPolicy"] = json!({"keepEnabledVersions": 1});
    manifest["spec"]["deletionPolicy"] = json!({"service": "Delete", "secrets": "Delete"});
    let name = w.create(manifest).await;
    step(w, &name, "created and Ready", ready).await?;

    // Rotation: a new version, a new revision, and the old version retired.
    w.put_secret("creds", &[("database-url", "postgres://db2")]).await;
    step(w, &name, "rotated", |s| {
        pinned(s, "DATABASE_URL") == "2" && ready(s)
    })
    .await?;
    google_step(w, &name, "version 1 disabled", || async {
        let v1 = w
            .gcp
            .get_version(&adopted, VersionRef::Number(1))
            .await
            .unwrap()
            .unwrap();
        v1.state == VersionState::Disabled
    })
    .await?;

    // Drift: a change made outside the operator is put back.
    let service = ServiceName::new(PROJECT, REGION, "job");
    let mut live = serde_json::to_value(w.gcp.get_service(&service).await.unwrap().unwrap()).unwrap();
    live["template"]["containers"][0]["image"] = json!("example.com/someone-else:latest");
    w.gcp
        .update_service(&service, serde_json::from_value(live).unwrap())
        .await
        .unwrap();
    google_step(w, &name, "drift corrected", || async {
        let live = serde_json::to_value(w.gcp.get_service(&service).await.unwrap().unwrap()).unwrap();
        live["template"]["containers"][0]["image"] == IMAGE
    })
    .await?;

    // Public access: the invoker binding for allUsers.
    w.patch_spec(&name, json!({"service": {"allowUnauthenticated": true}}))
        .await;
    step(w, &name, "public", |s| {
        ready(s) && s.applied_bindings.iter().any(|b| b.member == "allUsers")
    })
    .await?;

    // Deletion with deletionPolicy Delete: the service and every secret of the deployment go.
    w.deployments().delete(&name, &Default::default()).await.unwrap();
    step(w, &name, "gone", |_| false).await?;
    assert!(!w.service_exists("job").await, "the service is deleted");
    assert!(
        !w.secret_exists("job-database-url").await,
        "the adopted secret is deleted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_role_does_the_whole_job() {
    let w = World::builder("role-all")
        .grants(OperatorGrants::Guide { without: None })
        .start()
        .await;
    if let Err(Refused(text)) = job(&w).await {
        panic!("the guide's grants were not enough: {text}");
    }
    let denied: Vec<String> = w
        .emulator
        .state()
        .calls()
        .into_iter()
        .filter(|(_, statuses)| statuses.contains_key("PERMISSION_DENIED"))
        .map(|(method, _)| method)
        .collect();
    assert!(denied.is_empty(), "calls refused along the way: {denied:?}");
}

/// Runs the job without `permission`: it must stop with a refusal naming the permission and the gcloud command that
/// grants it, and then leave Google alone (no retry storm).
async fn without(permission: &str) {
    let w = World::builder(&format!("no-{}", permission.replace('.', "-").to_lowercase()))
        .grants(OperatorGrants::Guide {
            without: Some(permission.to_owned()),
        })
        .start()
        .await;
    let Err(Refused(text)) = job(&w).await else {
        panic!("the whole job succeeded without {permission}: the guide grants one permission too many");
    };
    assert!(
        text.contains(permission),
        "the refusal does not name {permission}: {text}"
    );
    assert!(
        text.contains("gcloud projects add-iam-policy-binding")
            || text.contains("gcloud iam service-accounts add-iam-policy-binding"),
        "the refusal does not say how to grant it: {text}"
    );
    let denied = || -> u64 {
        w.emulator
            .state()
            .calls()
            .values()
            .filter_map(|statuses| statuses.get("PERMISSION_DENIED"))
            .sum()
    };
    let before = denied();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = denied();
    let refused: Vec<String> = w
        .emulator
        .state()
        .requests()
        .into_iter()
        .filter(|r| r.status == "PERMISSION_DENIED")
        .map(|r| format!("{} {}", r.time, r.method))
        .collect();
    assert!(
        after - before <= 1,
        "refused calls went on after the refusal was reported: {before} -> {after} in 6 s: {refused:#?}"
    );
}

macro_rules! without_each {
    ($($test:ident => $permission:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                without($permission).await;
            }
        )*

        #[test]
        fn every_permission_of_the_guide_has_a_test() {
            let tested: std::collections::BTreeSet<&str> = [$($permission),*].into_iter().collect();
            let mut documented = litellm_operator_tests::fixtures::documented_operator_permissions();
            documented.push("iam.serviceAccounts.actAs".to_owned());
            let documented: std::collections::BTreeSet<&str> = documented.iter().map(String::as_str).collect();
            assert_eq!(tested, documented);
        }
    };
}

without_each! {
    without_secrets_get => "secretmanager.secrets.get",
    without_secrets_create => "secretmanager.secrets.create",
    without_secrets_update => "secretmanager.secrets.update",
    without_secrets_delete => "secretmanager.secrets.delete",
    without_secrets_get_iam_policy => "secretmanager.secrets.getIamPolicy",
    without_secrets_set_iam_policy => "secretmanager.secrets.setIamPolicy",
    without_versions_add => "secretmanager.versions.add",
    without_versions_list => "secretmanager.versions.list",
    without_versions_access => "secretmanager.versions.access",
    without_versions_disable => "secretmanager.versions.disable",
    without_services_get => "run.services.get",
    without_services_create => "run.services.create",
    without_services_update => "run.services.update",
    without_services_delete => "run.services.delete",
    without_services_get_iam_policy => "run.services.getIamPolicy",
    without_services_set_iam_policy => "run.services.setIamPolicy",
    without_act_as => "iam.serviceAccounts.actAs",
}
