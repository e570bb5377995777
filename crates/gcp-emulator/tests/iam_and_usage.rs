//! IAM service accounts (create, list, policies) and Service Usage over HTTP, in Google's shapes.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::Api;
use serde_json::json;

const SA: &str = "/v1/projects/p/serviceAccounts";

/// Project p's default compute account, which every listing of p's accounts includes.
fn compute_of_p() -> String {
    format!("{}-compute@developer.gserviceaccount.com", common::P_NUMBER)
}

/// The emails a listing of `path` names, in order.
async fn listed(api: &Api, path: &str) -> Vec<String> {
    let list = api.ok("GET", path, None).await;
    list["accounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["email"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn created_accounts_exist_and_end_the_every_account_exists_mode() {
    // The lenient mode, asked for explicitly (by default only seeded or created accounts exist): while nothing is
    // seeded or created, every well-formed account exists.
    let api = Api::start(gcp_emulator::Config {
        any_service_account_exists: true,
        ..gcp_emulator::Config::default()
    })
    .await;
    api.ok("GET", &format!("{SA}/anyone@p.iam.gserviceaccount.com"), None)
        .await;
    assert_eq!(listed(&api, SA).await, vec![compute_of_p()]);

    let created = api
        .ok(
            "POST",
            SA,
            Some(
                json!({"accountId": "runtime", "serviceAccount": {"displayName": "Run", "description": "d"}}),
            ),
        )
        .await;
    assert_eq!(created["email"], "runtime@p.iam.gserviceaccount.com");
    assert_eq!(
        created["name"],
        "projects/p/serviceAccounts/runtime@p.iam.gserviceaccount.com"
    );
    assert_eq!(created["projectId"], "p");
    assert_eq!(created["displayName"], "Run");
    assert_eq!(created["description"], "d");
    assert_eq!(created["oauth2ClientId"], created["uniqueId"]);
    assert!(created["etag"].is_string());

    let got = api
        .ok(
            "GET",
            "/v1/projects/-/serviceAccounts/runtime@p.iam.gserviceaccount.com",
            None,
        )
        .await;
    assert_eq!(got, created);
    let list = api.ok("GET", SA, None).await;
    assert_eq!(list["accounts"][1], created);
    assert_eq!(
        listed(&api, SA).await,
        vec![compute_of_p(), "runtime@p.iam.gserviceaccount.com".to_string()]
    );
    let other = api
        .emu
        .state()
        .with(|st| st.resourcemanager.project_number("other"));
    assert_eq!(
        listed(&api, "/v1/projects/other/serviceAccounts").await,
        vec![format!("{other}-compute@developer.gserviceaccount.com")]
    );

    // From now on, only created (or seeded) accounts exist.
    let msg = api
        .err(
            "GET",
            &format!("{SA}/anyone@p.iam.gserviceaccount.com"),
            None,
            404,
            "NOT_FOUND",
        )
        .await;
    assert_eq!(msg, "Unknown service account");

    let (code, dup) = api.call("POST", SA, Some(json!({"accountId": "runtime"}))).await;
    assert_eq!(code, 409, "{dup}");
    assert_eq!(dup["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(
        dup["error"]["message"],
        "Service account runtime already exists within project projects/p."
    );
    assert_eq!(
        dup["error"]["details"][0],
        json!({"@type": "type.googleapis.com/google.rpc.ResourceInfo",
               "resourceName": "projects/p/serviceAccounts/runtime@p.iam.gserviceaccount.com"})
    );
    for bad in ["short", "Upper-case", "ends-with-", "1starts-with-digit", ""] {
        api.err(
            "POST",
            SA,
            Some(json!({"accountId": bad})),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    }
    assert_eq!(api.emu.state().call_count("IAM.CreateServiceAccount"), 7);
}

#[tokio::test]
async fn by_default_only_seeded_created_and_default_compute_accounts_exist() {
    let api = Api::default().await;
    let ghost = "ghost@p.iam.gserviceaccount.com";
    // Nothing seeded: an unknown account does not exist, as in Google.
    let msg = api
        .err("GET", &format!("{SA}/{ghost}"), None, 404, "NOT_FOUND")
        .await;
    assert_eq!(msg, "Unknown service account");
    api.err(
        "GET",
        &format!("/v1/projects/-/serviceAccounts/{ghost}"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(listed(&api, SA).await, vec![compute_of_p()]);
    let msg = api
        .err(
            "POST",
            &format!("{SA}/{ghost}:getIamPolicy"),
            None,
            404,
            "NOT_FOUND",
        )
        .await;
    assert_eq!(
        msg,
        format!("Service account projects/p/serviceAccounts/{ghost} does not exist.")
    );
    api.err("DELETE", &format!("{SA}/{ghost}"), None, 404, "NOT_FOUND")
        .await;

    // As a member of any policy it is 400: a secret's, a Cloud Run service's, the project's and an account's.
    api.create_secret("p", "k").await;
    let op = api
        .ok(
            "POST",
            "/v2/projects/p/locations/europe-west1/services?serviceId=s",
            Some(json!({"template": {"containers": [{"image": "img"}]}})),
        )
        .await;
    api.ok(
        "POST",
        &format!("/v2/{}:wait", op["name"].as_str().unwrap()),
        None,
    )
    .await;
    api.ok("POST", SA, Some(json!({"accountId": "runtime"}))).await;
    let member = format!("serviceAccount:{ghost}");
    for (resource, role) in [
        ("/v1/projects/p/secrets/k", "roles/secretmanager.secretAccessor"),
        (
            "/v2/projects/p/locations/europe-west1/services/s",
            "roles/run.invoker",
        ),
        ("/v1/projects/p", "roles/viewer"),
        ("/v3/projects/p", "roles/viewer"),
        (
            "/v1/projects/p/serviceAccounts/runtime@p.iam.gserviceaccount.com",
            "roles/iam.serviceAccountUser",
        ),
    ] {
        let msg = api
            .err(
                "POST",
                &format!("{resource}:setIamPolicy"),
                Some(json!({"policy": {"bindings": [{"role": role, "members": [&member]}]}})),
                400,
                "INVALID_ARGUMENT",
            )
            .await;
        assert_eq!(
            msg,
            format!("Service account {ghost} does not exist."),
            "{resource}"
        );
    }

    // Each project's default compute account exists without seeding, and may be bound.
    let compute = format!("{}-compute@developer.gserviceaccount.com", common::P_NUMBER);
    let got = api
        .ok("GET", &format!("/v1/projects/-/serviceAccounts/{compute}"), None)
        .await;
    assert_eq!(got["email"], compute.as_str());
    // It belongs to the project of that number, named by its id, and is listed with the project's accounts.
    let got = api
        .ok("GET", &format!("/v1/projects/p/serviceAccounts/{compute}"), None)
        .await;
    assert_eq!(got["projectId"], "p");
    assert_eq!(got["name"], format!("projects/p/serviceAccounts/{compute}"));
    assert_eq!(got["displayName"], "Compute Engine default service account");
    let listed = api.ok("GET", "/v1/projects/p/serviceAccounts", None).await;
    let emails: Vec<&str> = listed["accounts"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["email"].as_str()).collect())
        .unwrap_or_default();
    assert!(emails.contains(&compute.as_str()), "{listed}");
    api.err(
        "GET",
        &format!("/v1/projects/other-project/serviceAccounts/{compute}"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    api.ok(
        "POST",
        "/v1/projects/p/secrets/k:setIamPolicy",
        Some(json!({"policy": {"bindings": [
            {"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{compute}")]},
        ]}})),
    )
    .await;

    // Seeded through the admin API, `Config` or `state()`, or created through the IAM API, an account exists;
    // the others still do not.
    api.ok(
        "POST",
        "/_emulator/service-accounts",
        Some(json!({"email": "admin-seeded@p.iam.gserviceaccount.com"})),
    )
    .await;
    api.emu
        .state()
        .seed_service_account("state-seeded@p.iam.gserviceaccount.com");
    for email in [
        "admin-seeded@p.iam.gserviceaccount.com",
        "state-seeded@p.iam.gserviceaccount.com",
        "runtime@p.iam.gserviceaccount.com",
    ] {
        api.ok("GET", &format!("{SA}/{email}"), None).await;
        api.ok(
            "POST",
            "/v1/projects/p/secrets/k:setIamPolicy",
            Some(json!({"policy": {"bindings": [
                {"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{email}")]},
            ]}})),
        )
        .await;
    }
    api.err("GET", &format!("{SA}/{ghost}"), None, 404, "NOT_FOUND")
        .await;
    let configured = Api::start(gcp_emulator::Config {
        service_accounts: vec!["configured@p.iam.gserviceaccount.com".into()],
        ..gcp_emulator::Config::default()
    })
    .await;
    configured
        .ok("GET", &format!("{SA}/configured@p.iam.gserviceaccount.com"), None)
        .await;
    configured
        .err("GET", &format!("{SA}/{ghost}"), None, 404, "NOT_FOUND")
        .await;
}

#[tokio::test]
async fn the_lenient_mode_makes_every_well_formed_account_exist_when_asked_for() {
    // `any_service_account_exists` (`--any-service-account-exists`): while none are seeded or created, every
    // well-formed account exists, may be bound in policies, and runs revisions.
    let api = Api::start(gcp_emulator::Config {
        any_service_account_exists: true,
        ..gcp_emulator::Config::default()
    })
    .await;
    assert!(api.emu.state().with(|st| st.iam.any_account_exists));
    let anyone = "anyone@p.iam.gserviceaccount.com";
    let got = api.ok("GET", &format!("{SA}/{anyone}"), None).await;
    assert_eq!(got["email"], anyone);
    // Listing names only seeded or created accounts.
    assert_eq!(listed(&api, SA).await, vec![compute_of_p()]);
    api.create_secret("p", "k").await;
    api.ok(
        "POST",
        "/v1/projects/p/secrets/k:setIamPolicy",
        Some(json!({"policy": {"bindings": [
            {"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{anyone}")]},
        ]}})),
    )
    .await;
    let op = api
        .ok(
            "POST",
            "/v2/projects/p/locations/europe-west1/services?serviceId=s",
            Some(json!({"template": {"serviceAccount": anyone, "containers": [{"image": "img"}]}})),
        )
        .await;
    let done = api
        .ok(
            "POST",
            &format!("/v2/{}:wait", op["name"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(done["response"]["template"]["serviceAccount"], anyone);
    // A malformed email is still refused.
    api.err(
        "GET",
        &format!("{SA}/Not_An_Account@example.com"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    // Once one is seeded, the mode ends: unknown accounts no longer exist.
    api.emu
        .state()
        .seed_service_account("seeded@p.iam.gserviceaccount.com");
    api.err("GET", &format!("{SA}/{anyone}"), None, 404, "NOT_FOUND")
        .await;
}

#[tokio::test]
async fn service_account_policies_are_etag_checked_and_normalised() {
    let api = Api::default().await;
    api.ok("POST", SA, Some(json!({"accountId": "runtime"}))).await;
    api.ok("POST", SA, Some(json!({"accountId": "operator"}))).await;
    let resource = format!("{SA}/runtime@p.iam.gserviceaccount.com");
    let empty = api.ok("POST", &format!("{resource}:getIamPolicy"), None).await;
    assert_eq!(empty, json!({"version": 1, "etag": "ACAB"}));

    // A Workload Identity member needs its project's identity pool, which a GKE cluster with Workload Identity
    // creates.
    let wi = json!({"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser",
        "members": ["serviceAccount:p.svc.id.goog[litellm-system/litellm-operator]"]}]}});
    let message = api
        .err(
            "POST",
            &format!("{resource}:setIamPolicy"),
            Some(wi),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(
        message.starts_with("Identity Pool does not exist (p.svc.id.goog)."),
        "{message}"
    );
    api.ok(
        "POST",
        "/_emulator/workload-identity-pools",
        Some(json!({"project": "p"})),
    )
    .await;

    let member = "serviceAccount:operator@p.iam.gserviceaccount.com";
    let set = api
        .ok(
            "POST",
            &format!("{resource}:setIamPolicy"),
            Some(json!({"policy": {"etag": "ACAB", "bindings": [
                {"role": "roles/iam.serviceAccountUser", "members": [member]},
                {"role": "roles/iam.serviceAccountUser", "members": [member, "user:a@example.com"]},
                {"role": "roles/iam.serviceAccountTokenCreator", "members": []},
                {"role": "roles/iam.workloadIdentityUser",
                 "members": ["serviceAccount:p.svc.id.goog[litellm-system/litellm-operator]"]},
            ]}})),
        )
        .await;
    assert_eq!(
        set["bindings"],
        json!([
            {"role": "roles/iam.serviceAccountUser", "members": [member, "user:a@example.com"]},
            {"role": "roles/iam.workloadIdentityUser",
             "members": ["serviceAccount:p.svc.id.goog[litellm-system/litellm-operator]"]},
        ])
    );
    let got = api
        .ok(
            "GET",
            &format!("{resource}:getIamPolicy?options.requestedPolicyVersion=3"),
            None,
        )
        .await;
    assert_eq!(got, set);
    // A stale etag is 409 ABORTED; an unknown member is 400.
    api.err(
        "POST",
        &format!("{resource}:setIamPolicy"),
        Some(json!({"policy": {"etag": "ACAB", "bindings": []}})),
        409,
        "ABORTED",
    )
    .await;
    let msg = api
        .err(
            "POST",
            &format!("{resource}:setIamPolicy"),
            Some(json!({"policy": {"bindings": [
                {"role": "roles/iam.serviceAccountUser", "members": ["serviceAccount:ghost@p.iam.gserviceaccount.com"]},
            ]}})),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert_eq!(
        msg,
        "Service account ghost@p.iam.gserviceaccount.com does not exist."
    );
    // The other account's policy is its own.
    let other = api
        .ok(
            "POST",
            &format!("{SA}/operator@p.iam.gserviceaccount.com:getIamPolicy"),
            None,
        )
        .await;
    assert!(other.get("bindings").is_none(), "{other}");

    // Policy calls on an account that does not exist are 404 in Google's shape.
    for (verb, body) in [
        ("getIamPolicy", None),
        ("setIamPolicy", Some(json!({"policy": {}}))),
        (
            "testIamPermissions",
            Some(json!({"permissions": ["iam.serviceAccounts.actAs"]})),
        ),
    ] {
        let msg = api
            .err(
                "POST",
                &format!("{SA}/ghost@p.iam.gserviceaccount.com:{verb}"),
                body,
                404,
                "NOT_FOUND",
            )
            .await;
        assert_eq!(
            msg,
            "Service account projects/p/serviceAccounts/ghost@p.iam.gserviceaccount.com does not exist."
        );
    }
    // An account of another project is not found under this one.
    api.err(
        "POST",
        "/v1/projects/other/serviceAccounts/runtime@p.iam.gserviceaccount.com:getIamPolicy",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    let granted = api
        .ok(
            "POST",
            &format!("{resource}:testIamPermissions"),
            Some(json!({"permissions": ["iam.serviceAccounts.actAs"]})),
        )
        .await;
    assert_eq!(granted["permissions"], json!(["iam.serviceAccounts.actAs"]));

    // Re-creating an account (after an admin unseed) starts it with an empty policy.
    api.ok(
        "DELETE",
        "/_emulator/service-accounts/runtime@p.iam.gserviceaccount.com",
        None,
    )
    .await;
    api.ok("POST", SA, Some(json!({"accountId": "runtime"}))).await;
    let fresh = api.ok("POST", &format!("{resource}:getIamPolicy"), None).await;
    assert!(fresh.get("bindings").is_none(), "{fresh}");
}

#[tokio::test]
async fn policies_of_accounts_that_exist_without_seeding() {
    // The lenient mode, asked for explicitly (by default only seeded or created accounts exist): with nothing
    // seeded, any well-formed account has a policy; setting it does not create the account.
    let api = Api::start(gcp_emulator::Config {
        any_service_account_exists: true,
        ..gcp_emulator::Config::default()
    })
    .await;
    let resource = "/v1/projects/-/serviceAccounts/runtime@p.iam.gserviceaccount.com";
    api.ok(
        "POST",
        &format!("{resource}:setIamPolicy"),
        Some(json!({"policy": {"bindings": [
            {"role": "roles/iam.serviceAccountUser", "members": ["serviceAccount:op@p.iam.gserviceaccount.com"]},
        ]}})),
    )
    .await;
    let got = api.ok("POST", &format!("{resource}:getIamPolicy"), None).await;
    assert_eq!(got["bindings"][0]["role"], "roles/iam.serviceAccountUser");
    assert!(api.emu.state().with(|st| st.iam.service_accounts.is_empty()));
    api.ok(
        "GET",
        "/v1/projects/p/serviceAccounts/someone-else@p.iam.gserviceaccount.com",
        None,
    )
    .await;
}

#[tokio::test]
async fn created_accounts_and_their_policies_persist() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let config = gcp_emulator::Config {
        state_file: Some(state_file.clone()),
        ..gcp_emulator::Config::default()
    };
    {
        let api = Api::start(config.clone()).await;
        api.ok("POST", SA, Some(json!({"accountId": "runtime"}))).await;
        api.ok(
            "POST",
            &format!("{SA}/runtime@p.iam.gserviceaccount.com:setIamPolicy"),
            Some(json!({"policy": {"bindings": [
                {"role": "roles/iam.serviceAccountUser", "members": ["user:a@example.com"]},
            ]}})),
        )
        .await;
    }
    let api = Api::start(config).await;
    api.ok("GET", &format!("{SA}/runtime@p.iam.gserviceaccount.com"), None)
        .await;
    api.err(
        "GET",
        &format!("{SA}/other@p.iam.gserviceaccount.com"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    let policy = api
        .ok(
            "POST",
            &format!("{SA}/runtime@p.iam.gserviceaccount.com:getIamPolicy"),
            None,
        )
        .await;
    assert_eq!(policy["bindings"][0]["members"], json!(["user:a@example.com"]));
}

#[tokio::test]
async fn service_usage_enables_lists_and_gets() {
    let api = Api::default().await;
    let got = api
        .ok("GET", "/v1/projects/p/services/run.googleapis.com", None)
        .await;
    assert_eq!(got["state"], "ENABLED");
    assert_eq!(got["config"]["name"], "run.googleapis.com");
    assert_eq!(got["config"]["title"], "Cloud Run Admin API");
    let name = got["name"].as_str().unwrap();
    let number = name
        .strip_prefix("projects/")
        .and_then(|r| r.strip_suffix("/services/run.googleapis.com"))
        .unwrap();
    assert!(number.chars().all(|c| c.is_ascii_digit()), "{name}");
    // Addressed by number, the same project.
    let by_number = api
        .ok(
            "GET",
            &format!("/v1/projects/{number}/services/run.googleapis.com"),
            None,
        )
        .await;
    assert_eq!(by_number, got);

    let op = api
        .ok(
            "POST",
            "/v1/projects/p/services:batchEnable",
            Some(json!({"serviceIds": ["secretmanager.googleapis.com", "custom.example.com"]})),
        )
        .await;
    assert_eq!(op["name"], "operations/noop.DONE_OPERATION");
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse"
    );
    assert_eq!(
        op["response"]["services"][1]["config"]["name"],
        "custom.example.com"
    );
    assert_eq!(op["response"]["services"][1]["state"], "ENABLED");
    let op = api
        .ok(
            "POST",
            "/v1/projects/p/services/one.example.com:enable",
            Some(json!({})),
        )
        .await;
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse"
    );
    assert_eq!(op["response"]["service"]["config"]["name"], "one.example.com");
    // Google does not serve its no-op operation.
    api.err(
        "GET",
        "/v1/operations/noop.DONE_OPERATION",
        None,
        404,
        "NOT_FOUND",
    )
    .await;

    let listed = api
        .ok("GET", "/v1/projects/p/services?filter=state:ENABLED", None)
        .await;
    let names: Vec<&str> = listed["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["config"]["name"].as_str().unwrap())
        .collect();
    for api_name in [
        "custom.example.com",
        "iam.googleapis.com",
        "one.example.com",
        "run.googleapis.com",
        "secretmanager.googleapis.com",
    ] {
        assert!(names.contains(&api_name), "{names:?}");
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    // Enabling is per project.
    let elsewhere = api.ok("GET", "/v1/projects/q/services", None).await;
    assert!(
        !elsewhere.to_string().contains("custom.example.com"),
        "{elsewhere}"
    );
    assert_eq!(
        api.ok("GET", "/v1/projects/p/services?filter=state:DISABLED", None)
            .await,
        json!({})
    );
    let page = api.ok("GET", "/v1/projects/p/services?pageSize=2", None).await;
    assert_eq!(page["services"].as_array().unwrap().len(), 2);
    let token = page["nextPageToken"]
        .as_str()
        .unwrap()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let next = api
        .ok(
            "GET",
            &format!("/v1/projects/p/services?pageSize=2&pageToken={token}"),
            None,
        )
        .await;
    assert_eq!(next["services"][0]["config"]["name"], names[2]);

    api.err(
        "GET",
        "/v1/projects/p/services?filter=name:run",
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        "/v1/projects/p/services:batchEnable",
        Some(json!({"serviceIds": []})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let many: Vec<String> = (0..21).map(|i| format!("api{i}.example.com")).collect();
    api.err(
        "POST",
        "/v1/projects/p/services:batchEnable",
        Some(json!({"serviceIds": many})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        "/v1/projects/p/services/not-a-service:enable",
        None,
        403,
        "PERMISSION_DENIED",
    )
    .await;
}
