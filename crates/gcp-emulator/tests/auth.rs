//! Caller identity and permissions (`Config::enforce_auth`): tokens, 401s, Google's 403 with its `ErrorInfo`,
//! project and resource policies, predefined and custom roles, `actAs`, `generateAccessToken`, and
//! `testIamPermissions` answering what the caller holds.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::Api;
use serde_json::{Value, json};

const OWNER: &str = "user:owner@example.com";
const OPERATOR: &str = "serviceAccount:operator@p.iam.gserviceaccount.com";
const RUNTIME: &str = "runtime@p.iam.gserviceaccount.com";

/// An emulator with checks on, project `p` owned by [`OWNER`], accounts [`OPERATOR`] and [`RUNTIME`] seeded (only
/// seeded or created accounts exist, as in Google); calls carry the owner's token.
async fn enforcing() -> Api {
    let api = Api::start(gcp_emulator::Config {
        enforce_auth: true,
        service_accounts: vec![
            OPERATOR.trim_start_matches("serviceAccount:").to_string(),
            RUNTIME.to_string(),
        ],
        ..gcp_emulator::Config::default()
    })
    .await;
    api.emu.state().grant_on_project("p", "roles/owner", OWNER);
    let token = api.emu.state().mint_token(OWNER).unwrap();
    api.use_token(Some(&token));
    api
}

/// The `ErrorInfo` detail of an error body.
fn error_info(body: &Value) -> Value {
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo in {body}"))
}

#[tokio::test]
async fn calls_without_a_minted_token_are_unauthenticated() {
    let api = enforcing().await;
    api.use_token(None);
    let (status, body) = api.call("GET", "/v1/projects/p/secrets", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(error_info(&body)["reason"], "CREDENTIALS_MISSING");
    api.use_token(Some("ya29.made-up"));
    let (status, body) = api.call("GET", "/v1/projects/p/secrets", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Request had invalid authentication credentials."),
        "{body}"
    );
    // The admin API is the test's own door and needs no token.
    let minted = api
        .ok("POST", "/_emulator/tokens", Some(json!({"principal": OPERATOR})))
        .await;
    assert!(minted["token"].as_str().unwrap().starts_with("ya29."));
    api.err(
        "POST",
        "/_emulator/tokens",
        Some(json!({"principal": "operator"})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
}

#[tokio::test]
async fn a_call_without_its_permission_is_denied_the_way_google_denies_it() {
    let api = enforcing().await;
    api.create_secret("p", "k").await;
    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    let (status, body) = api.call("GET", "/v1/projects/p/secrets/k", None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        body["error"]["message"],
        "Permission 'secretmanager.secrets.get' denied on resource 'projects/123456789/secrets/k' (or it may not exist)."
    );
    let info = error_info(&body);
    assert_eq!(info["reason"], "IAM_PERMISSION_DENIED");
    assert_eq!(info["metadata"]["permission"], "secretmanager.secrets.get");
    // By number, the same secret is denied the same way.
    let (status, by_number) = api.call("GET", "/v1/projects/123456789/secrets/k", None).await;
    assert_eq!(status, 403, "{by_number}");
    assert_eq!(by_number["error"]["message"], body["error"]["message"]);
    // A secret that does not exist is denied alike: existence does not leak.
    let (status, _) = api.call("GET", "/v1/projects/p/secrets/absent", None).await;
    assert_eq!(status, 403);
    // Denied calls change nothing and are counted under PERMISSION_DENIED.
    let calls = api.emu.state().calls();
    assert_eq!(calls["SecretManagerService.GetSecret"]["PERMISSION_DENIED"], 3);
}

#[tokio::test]
async fn project_grants_cover_every_resource_and_resource_grants_only_their_own() {
    let api = enforcing().await;
    api.create_secret("p", "mine").await;
    api.create_secret("p", "theirs").await;
    api.add_version("projects/p/secrets/mine", b"m").await;
    api.add_version("projects/p/secrets/theirs", b"t").await;
    // A resource-level accessor grant on one secret, through the API.
    let policy = api
        .ok("GET", "/v1/projects/p/secrets/mine:getIamPolicy", None)
        .await;
    api.ok(
        "POST",
        "/v1/projects/p/secrets/mine:setIamPolicy",
        Some(json!({"policy": {"etag": policy["etag"], "bindings": [
            {"role": "roles/secretmanager.secretAccessor", "members": [OPERATOR]}
        ]}})),
    )
    .await;
    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    api.ok("GET", "/v1/projects/p/secrets/mine/versions/1:access", None)
        .await;
    // The grant is on the secret, whichever form of the project names it.
    let by_number = api
        .ok(
            "GET",
            "/v1/projects/123456789/secrets/mine/versions/1:access",
            None,
        )
        .await;
    assert_eq!(by_number["name"], "projects/123456789/secrets/mine/versions/1");
    api.err(
        "GET",
        "/v1/projects/123456789/secrets/theirs/versions/1:access",
        None,
        403,
        "PERMISSION_DENIED",
    )
    .await;
    api.err(
        "GET",
        "/v1/projects/p/secrets/theirs/versions/1:access",
        None,
        403,
        "PERMISSION_DENIED",
    )
    .await;
    // Accessor does not include reading metadata.
    api.err(
        "GET",
        "/v1/projects/p/secrets/mine",
        None,
        403,
        "PERMISSION_DENIED",
    )
    .await;
    // A project-level viewer grant covers both secrets' metadata.
    api.emu
        .state()
        .grant_on_project("p", "roles/secretmanager.viewer", OPERATOR);
    api.ok("GET", "/v1/projects/p/secrets/mine", None).await;
    api.ok("GET", "/v1/projects/p/secrets/theirs", None).await;
    api.err(
        "GET",
        "/v1/projects/q/secrets/theirs",
        None,
        403,
        "PERMISSION_DENIED",
    )
    .await;
}

#[tokio::test]
async fn project_policies_are_read_and_written_through_resource_manager_v1_and_v3() {
    let api = enforcing().await;
    let v3 = api
        .ok("POST", "/v3/projects/p:getIamPolicy", Some(json!({})))
        .await;
    assert_eq!(v3["bindings"][0]["role"], "roles/owner");
    let mut bindings = v3["bindings"].as_array().unwrap().clone();
    bindings.push(json!({"role": "roles/run.viewer", "members": [OPERATOR]}));
    api.ok(
        "POST",
        "/v1/projects/p:setIamPolicy",
        Some(json!({"policy": {"etag": v3["etag"], "bindings": bindings}})),
    )
    .await;
    // The etag guards the read-modify-write.
    api.err(
        "POST",
        "/v3/projects/p:setIamPolicy",
        Some(json!({"policy": {"etag": v3["etag"], "bindings": []}})),
        409,
        "ABORTED",
    )
    .await;
    let v1 = api
        .ok("POST", "/v1/projects/p:getIamPolicy", Some(json!({})))
        .await;
    assert_eq!(v1["bindings"].as_array().unwrap().len(), 2, "{v1}");
    let project = api.ok("GET", "/v3/projects/p", None).await;
    assert_eq!(project["projectId"], "p");
    let number = project["name"]
        .as_str()
        .unwrap()
        .strip_prefix("projects/")
        .unwrap();
    assert!(
        number.len() >= 6 && number.bytes().all(|b| b.is_ascii_digit()),
        "{project}"
    );
    // Only project IAM admins may change it.
    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    let (status, body) = api
        .call(
            "POST",
            "/v3/projects/p:setIamPolicy",
            Some(json!({"policy": {"bindings": []}})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        error_info(&body)["metadata"]["permission"],
        "resourcemanager.projects.setIamPolicy"
    );
}

#[tokio::test]
async fn custom_roles_grant_exactly_their_permissions_until_deleted() {
    let api = enforcing().await;
    let role = api
        .ok(
            "POST",
            "/v1/projects/p/roles",
            Some(json!({"roleId": "litellmOperator", "role": {
                "title": "LiteLLM operator", "stage": "GA",
                "includedPermissions": ["secretmanager.secrets.get", "secretmanager.secrets.create"]
            }})),
        )
        .await;
    assert_eq!(role["name"], "projects/p/roles/litellmOperator");
    api.err(
        "POST",
        "/v1/projects/p/roles",
        Some(json!({"roleId": "litellmOperator", "role": {}})),
        409,
        "ALREADY_EXISTS",
    )
    .await;
    api.err(
        "POST",
        "/v1/projects/p/roles",
        Some(json!({"roleId": "bad", "role": {"includedPermissions": ["not a permission"]}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.emu
        .state()
        .grant_on_project("p", "projects/p/roles/litellmOperator", OPERATOR);
    let owner = api.token.lock().unwrap().clone();
    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    api.create_secret("p", "k").await;
    api.ok("GET", "/v1/projects/p/secrets/k", None).await;
    let message = api
        .err(
            "DELETE",
            "/v1/projects/p/secrets/k",
            None,
            403,
            "PERMISSION_DENIED",
        )
        .await;
    assert!(message.contains("'secretmanager.secrets.delete'"), "{message}");
    // Adding the permission to the role grants it at once.
    api.use_token(owner.as_deref());
    api.ok(
        "PATCH",
        "/v1/projects/p/roles/litellmOperator?updateMask=includedPermissions",
        Some(json!({"includedPermissions": [
            "secretmanager.secrets.get", "secretmanager.secrets.create", "secretmanager.secrets.delete"
        ]})),
    )
    .await;
    api.ok("DELETE", "/v1/projects/p/roles/litellmOperator", None)
        .await;
    let listed = api.ok("GET", "/v1/projects/p/roles?showDeleted=true", None).await;
    assert_eq!(listed["roles"][0]["deleted"], true, "{listed}");
    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    api.err("GET", "/v1/projects/p/secrets/k", None, 403, "PERMISSION_DENIED")
        .await;
}

#[tokio::test]
async fn deploying_as_an_account_needs_act_as_on_it() {
    let api = enforcing().await;
    api.emu
        .state()
        .grant_on_project("p", "roles/run.developer", OPERATOR);
    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    let service = json!({"template": {
        "serviceAccount": RUNTIME,
        "containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]
    }});
    let (status, body) = api
        .call(
            "POST",
            "/v2/projects/p/locations/europe-west1/services?serviceId=s",
            Some(service.clone()),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["message"],
        format!(
            "Permission 'iam.serviceaccounts.actAs' denied on service account {RUNTIME} (or it may not exist)."
        )
    );
    assert_eq!(
        error_info(&body)["metadata"]["permission"],
        "iam.serviceAccounts.actAs"
    );
    // Granted on that account only, as the security guide says.
    api.emu
        .state()
        .grant_on_service_account(RUNTIME, "roles/iam.serviceAccountUser", OPERATOR);
    api.ok(
        "POST",
        "/v2/projects/p/locations/europe-west1/services?serviceId=s",
        Some(service),
    )
    .await;
    // Without a named account the revision runs as the default compute account, which needs actAs too.
    let (status, body) = api
        .call(
            "POST",
            "/v2/projects/p/locations/europe-west1/services?serviceId=t",
            Some(json!({"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("-compute@developer.gserviceaccount.com"),
        "{body}"
    );
}

#[tokio::test]
async fn generate_access_token_needs_token_creator_and_acts_as_the_account() {
    let api = enforcing().await;
    let tenant = "tenant-a@p.iam.gserviceaccount.com";
    api.emu.state().seed_service_account(tenant);
    api.emu.state().grant_on_project(
        "p",
        "roles/secretmanager.viewer",
        &format!("serviceAccount:{tenant}"),
    );
    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    let path = format!("/v1/projects/-/serviceAccounts/{tenant}:generateAccessToken");
    let request = json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "600s"});
    let message = api
        .err("POST", &path, Some(request.clone()), 403, "PERMISSION_DENIED")
        .await;
    assert!(
        message.contains("iam.serviceAccounts.getAccessToken"),
        "{message}"
    );
    api.emu
        .state()
        .grant_on_service_account(tenant, "roles/iam.serviceAccountTokenCreator", OPERATOR);
    api.err("POST", &path, Some(json!({"scope": []})), 400, "INVALID_ARGUMENT")
        .await;
    let minted = api.ok("POST", &path, Some(request)).await;
    assert!(minted["expireTime"].as_str().unwrap().ends_with('Z'), "{minted}");
    // The minted token acts as the tenant's account, with the tenant's grants only.
    api.use_token(minted["accessToken"].as_str());
    api.emu.state().reset_calls();
    api.ok("GET", "/v1/projects/p/secrets", None).await;
    api.err(
        "POST",
        "/v1/projects/p/secrets?secretId=x",
        Some(json!({"replication": {"automatic": {}}})),
        403,
        "PERMISSION_DENIED",
    )
    .await;
    let callers: Vec<String> = api.emu.state().requests().into_iter().map(|r| r.caller).collect();
    assert_eq!(callers, vec![format!("serviceAccount:{tenant}"); 2]);
    // An account that does not exist gets no token.
    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    api.emu
        .state()
        .grant_on_project("p", "roles/iam.serviceAccountTokenCreator", OPERATOR);
    api.err(
        "POST",
        "/v1/projects/-/serviceAccounts/ghost@p.iam.gserviceaccount.com:generateAccessToken",
        Some(json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]})),
        404,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn test_iam_permissions_answers_what_the_caller_holds() {
    let api = enforcing().await;
    api.create_secret("p", "k").await;
    api.emu
        .state()
        .grant_on_project("p", "roles/secretmanager.viewer", OPERATOR);
    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    let held = api
        .ok(
            "POST",
            "/v1/projects/p/secrets/k:testIamPermissions",
            Some(json!({"permissions": ["secretmanager.secrets.get", "secretmanager.secrets.delete"]})),
        )
        .await;
    assert_eq!(held["permissions"], json!(["secretmanager.secrets.get"]));
}

#[tokio::test]
async fn without_enforcement_every_caller_may_do_everything_and_known_tokens_are_still_recorded() {
    let api = Api::default().await;
    api.create_secret("p", "anonymous").await;
    let token = api.emu.state().mint_token(OPERATOR).unwrap();
    api.use_token(Some(&token));
    api.create_secret("p", "named").await;
    api.use_token(Some("ya29.from-a-gcloud-token-file"));
    api.create_secret("p", "unknown").await;
    let callers: Vec<String> = api.emu.state().requests().into_iter().map(|r| r.caller).collect();
    assert_eq!(callers, vec![String::new(), OPERATOR.to_string(), String::new()]);
}

#[tokio::test]
async fn a_conditional_project_grant_applies_only_where_its_condition_holds() {
    let api = enforcing().await;
    api.create_secret("p", "litellm-master-key").await;
    api.create_secret("p", "team-b-master-key").await;
    let number = api.emu.state().project_number("p");
    // docs/security.md's narrowing: the role everywhere but on secrets, and on secrets named `litellm-*`.
    let guide = format!(
        "!resource.name.startsWith(\"projects/{number}/secrets/\") || \
         resource.name.startsWith(\"projects/{number}/secrets/litellm-\")"
    );
    let policy = api
        .ok(
            "POST",
            "/v3/projects/p:getIamPolicy",
            Some(json!({"options": {"requestedPolicyVersion": 3}})),
        )
        .await;
    let mut bindings = policy["bindings"].as_array().unwrap().clone();
    bindings.push(json!({
        "role": "roles/secretmanager.admin",
        "members": [OPERATOR],
        "condition": {"title": "litellm-only", "expression": guide},
    }));
    bindings.push(json!({
        "role": "roles/run.viewer",
        "members": [OPERATOR],
        "condition": {"title": "expired", "expression": "request.time < timestamp(\"2020-01-01T00:00:00Z\")"},
    }));
    api.ok(
        "POST",
        "/v3/projects/p:setIamPolicy",
        Some(json!({"policy": {"version": 3, "etag": policy["etag"], "bindings": bindings}})),
    )
    .await;

    api.use_token(Some(&api.emu.state().mint_token(OPERATOR).unwrap()));
    // Within the prefix, by id or by number, the grant holds; listing is on the project, outside `secrets/`.
    api.ok("GET", "/v1/projects/p/secrets/litellm-master-key", None)
        .await;
    api.ok(
        "GET",
        &format!("/v1/projects/{number}/secrets/litellm-master-key"),
        None,
    )
    .await;
    api.ok("GET", "/v1/projects/p/secrets", None).await;
    // Outside it, Google's denial.
    let (status, body) = api
        .call("GET", "/v1/projects/p/secrets/team-b-master-key", None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        error_info(&body)["metadata"]["permission"],
        "secretmanager.secrets.get"
    );
    // A grant whose time has passed grants nothing.
    let (status, body) = api
        .call("GET", "/v2/projects/p/locations/us-central1/services", None)
        .await;
    assert_eq!(status, 403, "{body}");
    // testIamPermissions answers by the same conditions.
    let answer = api
        .ok(
            "POST",
            "/v1/projects/p/secrets/team-b-master-key:testIamPermissions",
            Some(json!({"permissions": ["secretmanager.secrets.get"]})),
        )
        .await;
    assert_eq!(answer, json!({}), "nothing held on team B's secret");
}
