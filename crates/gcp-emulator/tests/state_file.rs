//! State files stay loadable: `fixtures/state-before-stores.json` was written by the emulator whose `State` was one
//! flat struct (before each API got a store of its own). It holds every kind of persisted data: secrets with
//! versions, aliases, a disabled and a destroyed version and a policy history; seeded, created and deleted service
//! accounts and an account's policy; an API enabled by name; Cloud Run services, revisions (one ready, one failed)
//! and operations; a crashing image; a minted token; a Workload Identity pool; a project number and policy; a
//! custom role; the counter.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{Api, p_name};
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("fixtures/state-before-stores.json");
const SA: &str = "run@p.iam.gserviceaccount.com";
const SERVICES: &str = "/v2/projects/p/locations/us-central1/services";

/// An emulator started from a copy of the fixture (the emulator rewrites its state file).
async fn start_from_fixture(dir: &tempfile::TempDir) -> Api {
    let file = dir.path().join("state.json");
    std::fs::write(&file, FIXTURE).unwrap();
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        state_file: Some(file),
        ..Default::default()
    })
    .await
    .unwrap();
    Api {
        emu,
        http: reqwest::Client::new(),
        token: std::sync::Mutex::new(None),
    }
}

#[tokio::test]
async fn a_state_file_of_the_flat_state_loads_and_persists_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let api = start_from_fixture(&dir).await;
    let written: Value = serde_json::from_str(FIXTURE).unwrap();
    // Every field is read back and would be written again exactly as it was: same names, same shapes.
    let loaded = api.emu.state().with(|st| serde_json::to_value(&*st).unwrap());
    assert_eq!(loaded, written);
    let project = api.ok("GET", "/_emulator/projects/p", None).await;
    assert_eq!(project["projectNumber"], "123456789");
}

#[tokio::test]
async fn every_api_serves_what_the_old_state_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let api = start_from_fixture(&dir).await;

    // Secret Manager: payloads, states, aliases, policies.
    let secret = api.ok("GET", "/v1/projects/p/secrets/db", None).await;
    assert_eq!(secret["name"], p_name("secrets/db"));
    assert_eq!(secret["labels"]["team"], "llm");
    assert_eq!(secret["versionAliases"]["current"], "2");
    let access = api
        .ok("GET", "/v1/projects/p/secrets/db/versions/current:access", None)
        .await;
    assert_eq!(
        common::unb64(access["payload"]["data"].as_str().unwrap()),
        b"postgres://two"
    );
    api.err(
        "GET",
        "/v1/projects/p/secrets/db/versions/1:access",
        None,
        400,
        "FAILED_PRECONDITION",
    )
    .await;
    let gone = api
        .ok("GET", "/v1/projects/p/secrets/gone/versions/1", None)
        .await;
    assert_eq!(gone["state"], "DESTROYED");
    let policy = api
        .ok("GET", "/v1/projects/p/secrets/db:getIamPolicy", None)
        .await;
    let members = policy["bindings"][0]["members"].as_array().unwrap();
    assert!(
        members.contains(&json!(
            "deleted:serviceAccount:old-account@p.iam.gserviceaccount.com?uid=100000000000000000003"
        )),
        "{policy}"
    );
    assert!(
        members.contains(&json!(format!("serviceAccount:{SA}"))),
        "{policy}"
    );

    // IAM: seeded, created and deleted accounts, an account's policy, the custom role, the identity pool.
    let accounts = api.ok("GET", "/v1/projects/p/serviceAccounts", None).await;
    let emails: Vec<&str> = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap())
        .collect();
    assert!(emails.contains(&SA), "{accounts}");
    assert!(
        emails.contains(&"ci-deployer@p.iam.gserviceaccount.com"),
        "{accounts}"
    );
    api.err(
        "GET",
        "/v1/projects/p/serviceAccounts/old-account@p.iam.gserviceaccount.com",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    let ci = api
        .ok(
            "GET",
            "/v1/projects/p/serviceAccounts/ci-deployer@p.iam.gserviceaccount.com",
            None,
        )
        .await;
    assert_eq!(ci["description"], "Deploys");
    let sa_policy = api
        .ok(
            "POST",
            &format!("/v1/projects/p/serviceAccounts/{SA}:getIamPolicy"),
            None,
        )
        .await;
    assert_eq!(sa_policy["bindings"][0]["role"], "roles/iam.serviceAccountUser");
    let role = api.ok("GET", "/v1/projects/p/roles/litellmOperator", None).await;
    assert_eq!(role["title"], "Operator");
    // The pool of project p exists: its Workload Identity members are accepted.
    api.ok(
        "POST",
        "/v1/projects/p/secrets/gone:setIamPolicy",
        Some(
            json!({"policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor",
            "members": ["serviceAccount:p.svc.id.goog[ns/other]"]}]}}),
        ),
    )
    .await;

    // Resource Manager and Service Usage.
    let project_policy = api.ok("POST", "/v1/projects/p:getIamPolicy", None).await;
    assert_eq!(project_policy["bindings"][0]["role"], "roles/viewer");
    let services = api.ok("GET", "/v1/projects/p/services", None).await;
    assert!(
        services["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["config"]["name"] == "example.googleapis.com"),
        "{services}"
    );

    // Cloud Run: services, revisions, operations, the crashing image; and the Knative view of them.
    let llm = api.ok("GET", &format!("{SERVICES}/llm"), None).await;
    assert_eq!(llm["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    assert!(
        llm["latestReadyRevision"]
            .as_str()
            .unwrap()
            .contains("/revisions/llm-00001-"),
        "{llm}"
    );
    let broken = api.ok("GET", &format!("{SERVICES}/broken"), None).await;
    assert_eq!(broken["terminalCondition"]["state"], "CONDITION_FAILED");
    let revisions = api.ok("GET", &format!("{SERVICES}/llm/revisions"), None).await;
    assert_eq!(revisions["revisions"].as_array().unwrap().len(), 1);
    let operations = api
        .ok("GET", "/v2/projects/p/locations/us-central1/operations", None)
        .await;
    assert_eq!(operations["operations"].as_array().unwrap().len(), 2);
    let run_policy = api
        .ok("POST", &format!("{SERVICES}/llm:getIamPolicy"), None)
        .await;
    assert_eq!(run_policy["bindings"][0]["members"][0], "allUsers");
    let images = api.ok("GET", "/_emulator/crashing-images", None).await;
    assert_eq!(images["images"], json!(["img:crash"]));

    // The minted token still names its caller.
    api.use_token(Some("ya29.emu-cb35118b4d93db0a00000004"));
    api.ok("GET", "/v1/projects/p/secrets/db", None).await;
    api.use_token(None);
    let log = api.ok("GET", "/_emulator/requests?limit=1", None).await;
    assert_eq!(log["requests"][0]["caller"], "user:dev@example.com");

    // New resources continue the counter and the version numbering.
    let v3 = api.add_version("projects/p/secrets/db", b"three").await;
    assert_eq!(v3["name"], p_name("secrets/db/versions/3"));
}

#[tokio::test]
async fn configured_identity_pools_join_those_of_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    std::fs::write(&file, FIXTURE).unwrap();
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        state_file: Some(file),
        workload_identity_pools: vec!["configured-project".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (file_pools, configured) = emu.state().with(|st| {
        (
            st.iam.identity_pools.len(),
            st.iam.identity_pools.contains("configured-project"),
        )
    });
    assert!(configured, "the configured pool exists");
    assert!(file_pools >= 2, "the file's pool is kept too");
}
