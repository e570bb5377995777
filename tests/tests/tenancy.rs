//! Tenancy, enforced by the operator (admission may be bypassed or not installed): a deployment its namespace
//! may not make is refused before any Google call, with `Ready=False, reason=Forbidden` naming the rule, and waits
//! for a change (no retry loop). One test per attack from the tenancy issue, on the real API server.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use litellm_operator::controller::Settings;
use litellm_operator::plan::tenancy::{Rules, TenancyPolicy, Tenant};
use litellm_operator_gcp::{SecretName, SecretPayload, SecretStore, SecretVersionStore};
use litellm_operator_tests::fixtures::{OPERATOR_ACCOUNT, PROJECT, minimal};
use litellm_operator_tests::world::fast_settings;
use litellm_operator_tests::{World, condition};
use serde_json::{Value, json};

/// The safe default, narrowed to one project and no public services.
fn policy() -> TenancyPolicy {
    TenancyPolicy {
        tenants: Vec::new(),
        default: Rules {
            projects: vec![PROJECT.to_owned()],
            allow_unauthenticated: false,
            ..Rules::default()
        },
    }
}

async fn world(test: &str) -> World {
    World::builder(test)
        .settings(Settings {
            tenancy: policy(),
            ..fast_settings()
        })
        .start()
        .await
}

/// Creates `manifest`, waits for `Forbidden`, and checks the message and that Google saw no call at all.
async fn refused(w: &World, manifest: Value, rule: &str) {
    let calls = w.calls();
    let name = w.create(manifest).await;
    let status = w
        .wait_for(&name, "Forbidden", Duration::from_secs(30), |s| {
            condition(s, "Ready").1 == "Forbidden"
        })
        .await;
    let message = condition(&status, "Ready").2;
    assert!(message.contains(rule), "{name}: {message}");
    assert!(message.contains("tenancy policy (default)"), "{message}");
    // A few resyncs later: still nothing sent to Google, and no retry loop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let since = w.calls().since(&calls);
    assert!(since.is_empty(), "{name}: Google calls {:?}", since.per_method());
    let events = w.events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("Forbidden") && e.contains(rule))
            .count(),
        1,
        "one Warning per change, not one per pass: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_teams_secret_as_external_is_refused_before_any_google_call() {
    let w = world("tenancy-external").await;
    let mut m = minimal("external");
    m["spec"]["secrets"] = json!([{"env": "LITELLM_MASTER_KEY", "secretId": "other-team-litellm-master-key",
        "external": {"version": "latest"}}]);
    refused(&w, m, "projects/my-project/secrets/other-team-litellm-master-key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_account_of_another_project_is_refused() {
    let w = world("tenancy-account").await;
    let mut m = minimal("account");
    m["spec"]["service"]["serviceAccount"] = json!("attacker@other-project.iam.gserviceaccount.com");
    refused(&w, m, "attacker@other-project.iam.gserviceaccount.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_public_access_and_other_projects_are_refused_where_not_allowed() {
    let w = world("tenancy-rules").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let mut adopt = minimal("adopt");
    adopt["metadata"]["annotations"] = json!({"litellm.dev/adopt": "true"});
    adopt["spec"]["service"]["name"] = json!("someone-elses-service");
    refused(&w, adopt, "litellm.dev/adopt").await;
    let mut public = minimal("public");
    public["spec"]["service"]["allowUnauthenticated"] = json!(true);
    refused(&w, public, "allowUnauthenticated").await;
    let mut project = minimal("project");
    project["spec"]["project"] = json!("other-project");
    project["spec"]["service"]["serviceAccount"] = json!("run@other-project.iam.gserviceaccount.com");
    refused(&w, project, "spec.project other-project").await;
    // What the namespace may do still converges.
    let allowed = w.create(minimal("allowed")).await;
    w.wait_ready(&allowed).await;
}

// ---------------------------------------------------------------------------------------------
// Per-namespace impersonation: Google's IAM limits each tenant even when a rule above is wrong.

/// A tenant's own Google account, which the operator acts as for the world's namespace.
const TENANT: &str = "tenant-a@my-project.iam.gserviceaccount.com";

/// A world whose namespace belongs to tenant `a`, impersonated as [`TENANT`], with otherwise permissive rules (the
/// "policy mistake"). The operator may mint tokens for [`TENANT`] unless `token_creator` is false.
async fn impersonating_world(test: &str, token_creator: bool) -> World {
    let w = World::builder(test).start().await;
    let mut w = w;
    let rules = Rules {
        impersonate: Some(TENANT.to_owned()),
        ..Rules::permissive()
    };
    w.set_settings(Settings {
        tenancy: TenancyPolicy {
            tenants: vec![Tenant {
                name: "a".to_owned(),
                namespaces: vec![w.ns.clone()],
                rules,
            }],
            default: Rules::default(),
        },
        ..fast_settings()
    });
    let state = w.emulator.state();
    state.seed_service_account(TENANT);
    let tenant = format!("serviceAccount:{TENANT}");
    // The tenant's account holds the guide's role and actAs in its own project only.
    state.grant_on_project(PROJECT, "projects/my-project/roles/litellmOperator", &tenant);
    state.grant_on_project(PROJECT, "roles/iam.serviceAccountUser", &tenant);
    if token_creator {
        state.grant_on_service_account(
            TENANT,
            "roles/iam.serviceAccountTokenCreator",
            &format!("serviceAccount:{OPERATOR_ACCOUNT}"),
        );
    }
    w.start_operator().await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_impersonation_every_google_call_of_the_namespace_carries_the_tenants_identity() {
    let w = impersonating_world("tenancy-as-a", true).await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    w.emulator.state().reset_calls();
    let name = w.create(minimal("as-a")).await;
    w.wait_ready(&name).await;
    let log = w.emulator.state().requests();
    let tenant = format!("serviceAccount:{TENANT}");
    let operator = format!("serviceAccount:{OPERATOR_ACCOUNT}");
    let by: std::collections::BTreeMap<&str, usize> = log.iter().fold(Default::default(), |mut m, r| {
        *m.entry(r.caller.as_str()).or_default() += 1;
        m
    });
    assert!(by.get(tenant.as_str()).copied().unwrap_or(0) > 5, "{by:?}");
    for r in &log {
        if r.method == "IAMCredentials.GenerateAccessToken" {
            assert_eq!(r.caller, operator, "the operator mints the tenant's token");
        } else {
            assert_eq!(r.caller, tenant, "{} {} ran as {:?}", r.method, r.path, r.caller);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_impersonation_a_policy_mistake_is_still_stopped_by_google() {
    let w = impersonating_world("tenancy-mistake", true).await;
    // Team B's project: the operator serves it too (it holds the guide's role there), tenant A's account does not.
    let other = "team-b-project";
    let state = w.emulator.state();
    let role = state.put_custom_role(
        other,
        "litellmOperator",
        &litellm_operator_tests::fixtures::documented_operator_permissions()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    state.grant_on_project(other, &role, &format!("serviceAccount:{OPERATOR_ACCOUNT}"));
    state.grant_on_project(other, "roles/owner", "user:owner@example.com");
    let key = SecretName::new(other, "team-b-litellm-master-key");
    w.gcp.create_secret(&key, &Default::default()).await.unwrap();
    w.gcp
        .add_version(&key, &SecretPayload::new(b"sk-team-b".to_vec()))
        .await
        .unwrap();
    let policy_before = state.secret_bindings(&key.to_string());

    // The rules allow any project and any external secret: the mistake. Google refuses anyway.
    let mut m = minimal("steal");
    m["spec"]["project"] = json!(other);
    m["spec"]["secrets"] = json!([{"env": "LITELLM_MASTER_KEY", "secretId": "team-b-litellm-master-key",
        "external": {"version": "latest"}}]);
    let name = w.create(m).await;
    let status = w
        .wait_for(&name, "PermissionDenied", Duration::from_secs(30), |s| {
            condition(s, "SecretsReady").1 == "PermissionDenied"
        })
        .await;
    let message = condition(&status, "SecretsReady").2;
    assert!(message.contains("team-b-litellm-master-key"), "{message}");
    assert_eq!(condition(&status, "Ready").0, "False");
    // Nothing of team B's changed, and nothing reached it as the operator itself.
    assert_eq!(state.secret_bindings(&key.to_string()), policy_before);
    let as_operator: Vec<String> = state
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(other) && r.caller == format!("serviceAccount:{OPERATOR_ACCOUNT}"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(as_operator.is_empty(), "{as_operator:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_token_creator_on_the_tenants_account_the_operator_says_how_to_grant_it() {
    let w = impersonating_world("tenancy-no-token", false).await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let name = w.create(minimal("no-token")).await;
    let status = w
        .wait_for(&name, "PermissionDenied", Duration::from_secs(30), |s| {
            condition(s, "Ready").1 == "PermissionDenied"
        })
        .await;
    let message = condition(&status, "Ready").2;
    assert!(message.contains(&format!("cannot act as {TENANT}")), "{message}");
    assert!(
        message.contains(&format!(
            "gcloud iam service-accounts add-iam-policy-binding {TENANT} --member=serviceAccount:OPERATOR_SA \
             --role=roles/iam.serviceAccountTokenCreator"
        )),
        "{message}"
    );
    // No Secret Manager or Cloud Run call was made without the tenant's token.
    let reached: Vec<String> = w
        .emulator
        .state()
        .requests()
        .into_iter()
        .filter(|r| r.method != "IAMCredentials.GenerateAccessToken")
        .map(|r| r.method)
        .collect();
    assert!(reached.is_empty(), "{reached:?}");
}
