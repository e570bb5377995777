//! Deleting a service account (`projects.serviceAccounts.delete`), as Google IAM does it: the account and its own
//! policy go, every policy that named it names `deleted:serviceAccount:EMAIL?uid=UNIQUE_ID` instead, and an account
//! re-created with the same email is a new principal that holds none of the old grants.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Api, p_name};
use serde_json::{Value, json};

const RUN: &str = "runtime-sa@p.iam.gserviceaccount.com";
const OTHER: &str = "other-sa@p.iam.gserviceaccount.com";
const PARENT: &str = "/v2/projects/p/locations/us-central1";

fn account_path(email: &str) -> String {
    format!("/v1/projects/p/serviceAccounts/{email}")
}

fn deleted(email: &str, uid: &str) -> String {
    format!("deleted:serviceAccount:{email}?uid={uid}")
}

async fn start(propagation_ms: u64) -> Api {
    Api::start(gcp_emulator::Config {
        revision_startup: Duration::from_millis(20),
        iam_propagation: Duration::from_millis(propagation_ms),
        ..gcp_emulator::Config::default()
    })
    .await
}

/// Like [`start`] with no propagation delay, in the lenient mode where, while none are seeded or created, every
/// well-formed account exists.
async fn start_lenient() -> Api {
    Api::start(gcp_emulator::Config {
        revision_startup: Duration::from_millis(20),
        any_service_account_exists: true,
        ..gcp_emulator::Config::default()
    })
    .await
}

/// Creates `ACCOUNT_ID@p.iam.gserviceaccount.com` and returns its `uniqueId`.
async fn create_account(api: &Api, account_id: &str) -> String {
    let sa = api
        .ok(
            "POST",
            "/v1/projects/p/serviceAccounts",
            Some(json!({"accountId": account_id})),
        )
        .await;
    sa["uniqueId"].as_str().unwrap().to_string()
}

/// Replaces the policy at `path` (a resource path without the verb) by `bindings`, etag-guarded.
async fn set_bindings(api: &Api, path: &str, bindings: Value) -> Value {
    let current = api
        .ok("POST", &format!("{path}:getIamPolicy"), Some(json!({})))
        .await;
    api.ok(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": {"etag": current["etag"], "bindings": bindings}})),
    )
    .await
}

async fn get_policy(api: &Api, path: &str) -> Value {
    api.ok("POST", &format!("{path}:getIamPolicy"), Some(json!({})))
        .await
}

fn service_with_secret(name: &str, account: &str) -> Value {
    json!({"template": {"serviceAccount": account, "containers": [{"image": format!("img:{name}"), "env": [
        {"name": "DB", "valueSource": {"secretKeyRef": {"secret": "db", "version": "latest"}}}
    ]}]}})
}

/// Deploys service `name` running as `account` with secret `db` and returns the finished operation.
async fn deploy(api: &Api, name: &str, account: &str) -> Value {
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId={name}"),
            Some(service_with_secret(name, account)),
        )
        .await;
    let done = api
        .ok(
            "POST",
            &format!("/v2/{}:wait", op["name"].as_str().unwrap()),
            Some(json!({"timeout": "10s"})),
        )
        .await;
    assert_eq!(done["done"], true, "{done}");
    done
}

#[tokio::test]
async fn delete_answers_empty_and_the_account_is_gone() {
    let api = start(0).await;
    let uid = create_account(&api, "runtime-sa").await;
    create_account(&api, "other-sa").await;
    set_bindings(
        &api,
        &account_path(RUN),
        json!([{"role": "roles/iam.serviceAccountUser", "members": [format!("serviceAccount:{OTHER}")]}]),
    )
    .await;

    let out = api.ok("DELETE", &account_path(RUN), None).await;
    assert_eq!(out, json!({}));
    let msg = api.err("GET", &account_path(RUN), None, 404, "NOT_FOUND").await;
    assert_eq!(msg, "Unknown service account");
    let msg = api
        .err("DELETE", &account_path(RUN), None, 404, "NOT_FOUND")
        .await;
    assert_eq!(
        msg,
        format!("Service account projects/p/serviceAccounts/{RUN} does not exist.")
    );
    api.err(
        "POST",
        &format!("{}:getIamPolicy", account_path(RUN)),
        Some(json!({})),
        404,
        "NOT_FOUND",
    )
    .await;
    // Never existed, or in another project: 404 too.
    api.err(
        "DELETE",
        &account_path("never-made@p.iam.gserviceaccount.com"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    api.err(
        "DELETE",
        &format!("/v1/projects/q/serviceAccounts/{OTHER}"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    api.err(
        "DELETE",
        &account_path("not-an-email"),
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;

    let list = api.ok("GET", "/v1/projects/p/serviceAccounts", None).await;
    let emails: Vec<&str> = list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap())
        .filter(|e| !e.ends_with("-compute@developer.gserviceaccount.com"))
        .collect();
    assert_eq!(emails, [OTHER], "the project's default compute account aside");
    let (own_policy, tombstone) = api.emu.state().with(|st| {
        (
            st.iam.service_account_policies.contains_key(RUN),
            st.iam.deleted_service_accounts.get(RUN).cloned(),
        )
    });
    assert!(!own_policy, "the deleted account's own policy is removed");
    assert_eq!(tombstone.as_deref(), Some(uid.as_str()));
    // `projects/-` addresses any project, as gcloud sends it.
    api.ok("DELETE", &format!("/v1/projects/-/serviceAccounts/{OTHER}"), None)
        .await;
    let calls = api.emu.state().call_count("IAM.DeleteServiceAccount");
    assert_eq!(calls, 6);
}

#[tokio::test]
async fn every_policy_naming_the_account_names_the_deleted_uid_instead() {
    let api = start(0).await;
    let uid = create_account(&api, "runtime-sa").await;
    create_account(&api, "other-sa").await;
    let member = format!("serviceAccount:{RUN}");
    let other = format!("serviceAccount:{OTHER}");
    let gone = deleted(RUN, &uid);

    api.create_secret("p", "db").await;
    let secret = "/v1/projects/p/secrets/db";
    let before_secret = set_bindings(
        &api,
        secret,
        json!([
            {"role": "roles/secretmanager.secretAccessor",
             "members": ["user:zed@example.com", member, other, "group:admins@example.com"]},
            {"role": "roles/secretmanager.viewer", "members": ["user:zed@example.com"]},
        ]),
    )
    .await;
    assert_eq!(
        before_secret["bindings"][0]["members"],
        json!(["group:admins@example.com", other, member, "user:zed@example.com"])
    );

    api.ok(
        "POST",
        &format!("{PARENT}/services?serviceId=web"),
        Some(json!({"template": {"serviceAccount": OTHER, "containers": [{"image": "img"}]}})),
    )
    .await;
    let service = format!("{PARENT}/services/web");
    let before_service = set_bindings(
        &api,
        &service,
        json!([{"role": "roles/run.invoker", "members": [member, "allUsers"]}]),
    )
    .await;

    let project = "/v1/projects/p";
    let before_project = set_bindings(
        &api,
        project,
        json!([
            {"role": "roles/secretmanager.secretAccessor", "members": [member]},
            {"role": "roles/run.viewer", "members": [member, "user:ann@example.com"]},
            {"role": "roles/owner", "members": ["user:ann@example.com"]},
        ]),
    )
    .await;

    // A member that already names the deleted account is merged with the rewritten one.
    let other_account = account_path(OTHER);
    let before_other = set_bindings(
        &api,
        &other_account,
        json!([{"role": "roles/iam.serviceAccountUser", "members": [member, gone]}]),
    )
    .await;
    let history_before = api.emu.state().with(|st| {
        st.secretmanager.secrets[&p_name("secrets/db")]
            .policy_history
            .len()
    });

    api.ok("DELETE", &account_path(RUN), None).await;

    let got = get_policy(&api, secret).await;
    assert_eq!(
        got["bindings"],
        json!([
            {"role": "roles/secretmanager.secretAccessor",
             "members": [gone, "group:admins@example.com", other, "user:zed@example.com"]},
            {"role": "roles/secretmanager.viewer", "members": ["user:zed@example.com"]},
        ])
    );
    assert_ne!(got["etag"], before_secret["etag"]);
    let history = api.emu.state().with(|st| {
        st.secretmanager.secrets[&p_name("secrets/db")]
            .policy_history
            .last()
            .map(|c| c.bindings.clone())
            .unwrap()
    });
    assert_eq!(Value::Array(history), got["bindings"]);
    assert_eq!(
        api.emu
            .state()
            .with(|st| st.secretmanager.secrets[&p_name("secrets/db")]
                .policy_history
                .len()),
        history_before + 1
    );

    let got = get_policy(&api, &service).await;
    assert_eq!(
        got["bindings"],
        json!([{"role": "roles/run.invoker", "members": ["allUsers", gone]}])
    );
    assert_ne!(got["etag"], before_service["etag"]);

    let got = get_policy(&api, project).await;
    assert_eq!(
        got["bindings"],
        json!([
            {"role": "roles/secretmanager.secretAccessor", "members": [gone]},
            {"role": "roles/run.viewer", "members": [gone, "user:ann@example.com"]},
            {"role": "roles/owner", "members": ["user:ann@example.com"]},
        ])
    );
    assert_ne!(got["etag"], before_project["etag"]);

    let got = get_policy(&api, &other_account).await;
    assert_eq!(
        got["bindings"],
        json!([{"role": "roles/iam.serviceAccountUser", "members": [gone]}])
    );
    assert_ne!(got["etag"], before_other["etag"]);
}

#[tokio::test]
async fn policies_not_naming_the_account_keep_their_etag() {
    let api = start(0).await;
    create_account(&api, "runtime-sa").await;
    create_account(&api, "other-sa").await;
    api.create_secret("p", "db").await;
    let secret = "/v1/projects/p/secrets/db";
    let before = set_bindings(
        &api,
        secret,
        json!([{"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{OTHER}")]}]),
    )
    .await;
    let history = api.emu.state().with(|st| {
        st.secretmanager.secrets[&p_name("secrets/db")]
            .policy_history
            .len()
    });
    api.ok("DELETE", &account_path(RUN), None).await;
    assert_eq!(get_policy(&api, secret).await, before);
    assert_eq!(
        api.emu
            .state()
            .with(|st| st.secretmanager.secrets[&p_name("secrets/db")]
                .policy_history
                .len()),
        history
    );
    // A policy never set stays unset.
    assert_eq!(get_policy(&api, "/v1/projects/p").await["etag"], "ACAB");
}

#[tokio::test]
async fn a_policy_with_a_deleted_member_round_trips() {
    let api = start(0).await;
    let uid = create_account(&api, "runtime-sa").await;
    api.create_secret("p", "db").await;
    let secret = "/v1/projects/p/secrets/db";
    let project = "/v1/projects/p";
    let binding = json!([{"role": "roles/secretmanager.secretAccessor",
                          "members": [format!("serviceAccount:{RUN}"), "user:ann@example.com"]}]);
    set_bindings(&api, secret, binding.clone()).await;
    set_bindings(&api, project, binding).await;
    api.ok("DELETE", &account_path(RUN), None).await;

    for path in [secret, project] {
        let read = get_policy(&api, path).await;
        assert_eq!(
            read["bindings"][0]["members"],
            json!([deleted(RUN, &uid), "user:ann@example.com"])
        );
        // A client writes back what it read, adding a binding: the deleted member is kept as it is.
        let mut bindings = read["bindings"].as_array().unwrap().clone();
        bindings.push(json!({"role": "roles/secretmanager.viewer", "members": ["user:ann@example.com"]}));
        let written = api
            .ok(
                "POST",
                &format!("{path}:setIamPolicy"),
                Some(json!({"policy": {"etag": read["etag"], "bindings": bindings}})),
            )
            .await;
        assert_eq!(written["bindings"][0], read["bindings"][0]);
        assert_eq!(get_policy(&api, path).await, written);
    }
}

#[tokio::test]
async fn a_recreated_account_gets_a_new_uid_and_none_of_the_old_grants() {
    let api = start(0).await;
    let old_uid = create_account(&api, "runtime-sa").await;
    api.create_secret("p", "db").await;
    api.add_version("projects/p/secrets/db", b"postgres://").await;
    let member = format!("serviceAccount:{RUN}");
    set_bindings(
        &api,
        "/v1/projects/p/secrets/db",
        json!([{"role": "roles/secretmanager.secretAccessor", "members": [member]}]),
    )
    .await;
    let done = deploy(&api, "before", RUN).await;
    assert!(done.get("error").is_none(), "granted: {done}");

    api.ok("DELETE", &account_path(RUN), None).await;
    // While it is deleted, a revision cannot run as it at all.
    api.err(
        "POST",
        &format!("{PARENT}/services?serviceId=meanwhile"),
        Some(service_with_secret("meanwhile", RUN)),
        400,
        "INVALID_ARGUMENT",
    )
    .await;

    let new_uid = create_account(&api, "runtime-sa").await;
    assert_ne!(new_uid, old_uid);
    let got = api.ok("GET", &account_path(RUN), None).await;
    assert_eq!(got["uniqueId"], new_uid.as_str());
    assert!(
        api.emu
            .state()
            .with(|st| !st.iam.deleted_service_accounts.contains_key(RUN))
    );
    // The grant names the deleted account, not the new one.
    let policy = get_policy(&api, "/v1/projects/p/secrets/db").await;
    assert_eq!(policy["bindings"][0]["members"], json!([deleted(RUN, &old_uid)]));
    let policy = get_policy(&api, &account_path(RUN)).await;
    assert!(policy.get("bindings").is_none(), "{policy}");

    let done = deploy(&api, "after", RUN).await;
    assert_eq!(done["error"]["code"], 9, "{done}");
    let msg = done["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "Permission denied on secret: projects/123456789/secrets/db/versions/latest for Revision service account {RUN}"
        )),
        "{msg}"
    );

    // Granting the new account works as for any account.
    set_bindings(
        &api,
        "/v1/projects/p/secrets/db",
        json!([{"role": "roles/secretmanager.secretAccessor", "members": [member, deleted(RUN, &old_uid)]}]),
    )
    .await;
    let done = deploy(&api, "regranted", RUN).await;
    assert!(done.get("error").is_none(), "{done}");
}

#[tokio::test]
async fn a_recreated_account_never_held_the_old_grants_even_within_propagation() {
    let api = start(1000).await;
    create_account(&api, "runtime-sa").await;
    api.create_secret("p", "db").await;
    api.add_version("projects/p/secrets/db", b"postgres://").await;
    set_bindings(
        &api,
        "/v1/projects/p/secrets/db",
        json!([{"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{RUN}")]}]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let done = deploy(&api, "propagated", RUN).await;
    assert!(done.get("error").is_none(), "the grant has propagated: {done}");

    // Deleted and re-created at once: the policy as it stood a second ago named the old account only.
    api.ok("DELETE", &account_path(RUN), None).await;
    create_account(&api, "runtime-sa").await;
    let done = deploy(&api, "recreated", RUN).await;
    assert_eq!(done["error"]["code"], 9, "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Permission denied on secret"),
        "{done}"
    );
}

#[tokio::test]
async fn a_project_grant_does_not_carry_over_either() {
    let api = start(0).await;
    create_account(&api, "runtime-sa").await;
    api.create_secret("p", "db").await;
    api.add_version("projects/p/secrets/db", b"postgres://").await;
    set_bindings(
        &api,
        "/v1/projects/p",
        json!([{"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{RUN}")]}]),
    )
    .await;
    assert!(deploy(&api, "before", RUN).await.get("error").is_none());
    api.ok("DELETE", &account_path(RUN), None).await;
    create_account(&api, "runtime-sa").await;
    let done = deploy(&api, "after", RUN).await;
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Permission denied on secret"),
        "{done}"
    );
}

#[tokio::test]
async fn an_account_that_exists_because_none_are_seeded_can_be_deleted() {
    // The lenient mode, asked for explicitly (by default only seeded or created accounts exist).
    let api = start_lenient().await;
    let ghost = "ghost-sa@p.iam.gserviceaccount.com";
    let uid = api.ok("GET", &account_path(ghost), None).await["uniqueId"]
        .as_str()
        .unwrap()
        .to_string();
    api.create_secret("p", "db").await;
    set_bindings(
        &api,
        "/v1/projects/p/secrets/db",
        json!([{"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{ghost}")]}]),
    )
    .await;

    assert_eq!(api.ok("DELETE", &account_path(ghost), None).await, json!({}));
    let policy = get_policy(&api, "/v1/projects/p/secrets/db").await;
    assert_eq!(policy["bindings"][0]["members"], json!([deleted(ghost, &uid)]));
    // That email no longer exists; every other well-formed account still does, and none became seeded.
    api.err("GET", &account_path(ghost), None, 404, "NOT_FOUND").await;
    api.err("DELETE", &account_path(ghost), None, 404, "NOT_FOUND")
        .await;
    api.err(
        "POST",
        &format!("{}:getIamPolicy", account_path(ghost)),
        Some(json!({})),
        404,
        "NOT_FOUND",
    )
    .await;
    api.ok("GET", &account_path(OTHER), None).await;
    assert!(api.emu.state().with(|st| st.iam.service_accounts.is_empty()));
    // Nor can it be bound in a service account's policy or run a revision.
    let msg = api
        .err(
            "POST",
            &format!("{}:setIamPolicy", account_path(OTHER)),
            Some(json!({"policy": {"bindings": [
                {"role": "roles/iam.serviceAccountUser", "members": [format!("serviceAccount:{ghost}")]}
            ]}})),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert_eq!(msg, format!("Service account {ghost} does not exist."));
    api.err(
        "POST",
        &format!("{PARENT}/services?serviceId=ghost"),
        Some(json!({"template": {"serviceAccount": ghost, "containers": [{"image": "img"}]}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;

    // Created again, it is a new account (and, as for any creation, only created accounts exist from then on).
    let new_uid = create_account(&api, "ghost-sa").await;
    assert_ne!(new_uid, uid);
    assert!(
        api.emu
            .state()
            .with(|st| st.iam.deleted_service_accounts.is_empty())
    );
}

#[tokio::test]
async fn deleting_the_last_seeded_account_keeps_it_deleted() {
    // By default, deleting the last seeded account leaves none but the default compute accounts.
    let api = Api::start(gcp_emulator::Config {
        service_accounts: vec![RUN.into()],
        ..gcp_emulator::Config::default()
    })
    .await;
    api.ok("DELETE", &account_path(RUN), None).await;
    api.err("GET", &account_path(RUN), None, 404, "NOT_FOUND").await;
    api.err("GET", &account_path(OTHER), None, 404, "NOT_FOUND").await;
    api.ok("POST", "/_emulator/service-accounts", Some(json!({"email": RUN})))
        .await;
    api.ok("GET", &account_path(RUN), None).await;

    // The lenient mode, asked for explicitly: deleting the last seeded account puts the emulator back in the
    // "none seeded" mode, where every well-formed account exists again, except the deleted one.
    let api = Api::start(gcp_emulator::Config {
        service_accounts: vec![RUN.into()],
        any_service_account_exists: true,
        ..gcp_emulator::Config::default()
    })
    .await;
    api.err("GET", &account_path(OTHER), None, 404, "NOT_FOUND").await;
    api.ok("DELETE", &account_path(RUN), None).await;
    api.err("GET", &account_path(RUN), None, 404, "NOT_FOUND").await;
    api.ok("GET", &account_path(OTHER), None).await;
    // Seeding it again brings it back as a new account.
    api.ok("POST", "/_emulator/service-accounts", Some(json!({"email": RUN})))
        .await;
    api.ok("GET", &account_path(RUN), None).await;
}

#[tokio::test]
async fn delete_needs_its_permission_and_revokes_the_accounts_tokens() {
    let api = Api::start(gcp_emulator::Config {
        enforce_auth: true,
        ..gcp_emulator::Config::default()
    })
    .await;
    let state = api.emu.state();
    state.grant_on_project("p", "roles/owner", "user:owner@example.com");
    state.grant_on_project("p", "roles/viewer", "user:viewer@example.com");
    state.grant_on_project("p", "roles/iam.serviceAccountAdmin", "user:admin@example.com");
    let owner = state.mint_token("user:owner@example.com").unwrap();
    let viewer = state.mint_token("user:viewer@example.com").unwrap();
    let admin = state.mint_token("user:admin@example.com").unwrap();
    api.use_token(Some(&owner));
    create_account(&api, "runtime-sa").await;
    state.grant_on_project("p", "roles/viewer", &format!("serviceAccount:{RUN}"));
    let own = state.mint_token(&format!("serviceAccount:{RUN}")).unwrap();
    api.use_token(Some(&own));
    api.ok("GET", &account_path(RUN), None).await;

    api.use_token(Some(&viewer));
    let msg = api
        .err("DELETE", &account_path(RUN), None, 403, "PERMISSION_DENIED")
        .await;
    assert_eq!(
        msg,
        format!(
            "Permission 'iam.serviceAccounts.delete' denied on resource 'projects/p/serviceAccounts/{RUN}' (or it may not exist)."
        )
    );
    api.use_token(Some(&admin));
    api.ok("DELETE", &account_path(RUN), None).await;
    // The deleted account's credentials stop working.
    api.use_token(Some(&own));
    api.err("GET", "/v1/projects/p/secrets", None, 401, "UNAUTHENTICATED")
        .await;
}

#[tokio::test]
async fn a_deleted_account_cannot_be_bound_again_in_any_policy() {
    // By default and in the lenient mode (asked for explicitly), where deleting the only created account goes
    // back to "none seeded" and the deleted email must stay absent.
    for lenient in [false, true] {
        let api = Api::start(gcp_emulator::Config {
            any_service_account_exists: lenient,
            ..gcp_emulator::Config::default()
        })
        .await;
        let email = "gone-sa@p.iam.gserviceaccount.com";
        create_account(&api, "gone-sa").await;
        api.ok("DELETE", &format!("/v1/projects/p/serviceAccounts/{email}"), None)
            .await;
        assert!(api.emu.state().with(|st| st.iam.service_accounts.is_empty()));
        api.create_secret("p", "k").await;
        let body = json!({"policy": {"bindings": [
            {"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{email}")]}
        ]}});
        for path in [
            "/v1/projects/p/secrets/k:setIamPolicy",
            "/v3/projects/p:setIamPolicy",
        ] {
            let message = api
                .err("POST", path, Some(body.clone()), 400, "INVALID_ARGUMENT")
                .await;
            assert!(message.contains(email), "lenient={lenient} {path}: {message}");
        }
    }
}
