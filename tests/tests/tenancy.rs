//! Tenancy, enforced by the operator (admission may be bypassed or not installed): a deployment its namespace
//! may not make is refused before any Google call, with `Ready=False, reason=Forbidden` naming the rule, and waits
//! for a change (no retry loop). One test per attack from the tenancy issue, on the real API server.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use litellm_operator::controller::Settings;
use litellm_operator::plan::tenancy::{Rules, TenancyPolicy};
use litellm_operator_tests::fixtures::{PROJECT, minimal};
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
