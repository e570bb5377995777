//! Secret Manager v1 REST against the in-process emulator: every call, every error class.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{Api, P_NUMBER, b64, p_name, unb64};
use serde_json::{Value, json};

const P: &str = "/v1/projects/p";

#[tokio::test]
async fn secret_lifecycle_and_errors() {
    let api = Api::default().await;
    let created = api
        .ok(
            "POST",
            &format!("{P}/secrets?secretId=db-url&alt=json"),
            Some(json!({"replication": {"automatic": {}}, "labels": {"env": "prod"}, "annotations": {"owner": "me"}})),
        )
        .await;
    // Google names the secret by project number even when it was created by project id.
    assert_eq!(created["name"], "projects/123456789/secrets/db-url");
    assert_eq!(P_NUMBER, 123456789);
    assert_eq!(created["labels"]["env"], "prod");
    assert_eq!(created["annotations"]["owner"], "me");
    assert!(created["createTime"].as_str().unwrap().ends_with('Z'));
    let etag = created["etag"].as_str().unwrap().to_string();
    assert!(!unb64(&etag).is_empty(), "etag is base64 of bytes");

    let msg = api
        .err(
            "POST",
            &format!("{P}/secrets?secretId=db-url"),
            Some(json!({"replication": {"automatic": {}}})),
            409,
            "ALREADY_EXISTS",
        )
        .await;
    assert!(msg.contains("already exists"), "{msg}");
    api.err(
        "POST",
        &format!("{P}/secrets?secretId=bad.id"),
        Some(json!({"replication": {"automatic": {}}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let msg = api
        .err(
            "POST",
            &format!("{P}/secrets?secretId=norep"),
            Some(json!({})),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(msg.contains("replication"), "{msg}");
    api.err(
        "POST",
        &format!("{P}/secrets?secretId=badlabel"),
        Some(json!({"replication": {"automatic": {}}, "labels": {"Env": "x"}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let (status, body) = api.call("POST", &format!("{P}/secrets?secretId=x"), None).await;
    assert_eq!(status, 400, "{body}");
    // Malformed JSON is a 400 with a message, not a crash.
    let resp = api
        .http
        .post(format!("{}{P}/secrets?secretId=y", api.emu.url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid JSON payload")
    );

    let got = api
        .ok(
            "GET",
            &format!("{P}/secrets/db-url?$alt=json;enum-encoding=int"),
            None,
        )
        .await;
    assert_eq!(got, created);
    // Either form of the project reaches the same secret.
    let by_number = api.ok("GET", "/v1/projects/123456789/secrets/db-url", None).await;
    assert_eq!(by_number, created);
    let msg = api
        .err("GET", &format!("{P}/secrets/missing"), None, 404, "NOT_FOUND")
        .await;
    assert_eq!(msg, "Secret [projects/123456789/secrets/missing] not found.");

    // Patch needs an update mask; a stale etag is 400 FAILED_PRECONDITION.
    api.err(
        "PATCH",
        &format!("{P}/secrets/db-url"),
        Some(json!({"labels": {"env": "dev"}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "PATCH",
        &format!("{P}/secrets/db-url?updateMask=labels"),
        Some(json!({"labels": {"env": "dev"}, "etag": "AAAA"})),
        400,
        "FAILED_PRECONDITION",
    )
    .await;
    api.err(
        "PATCH",
        &format!("{P}/secrets/db-url?updateMask=replication"),
        Some(json!({})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let patched = api
        .ok(
            "PATCH",
            &format!("{P}/secrets/db-url?updateMask=labels"),
            Some(json!({"labels": {"env": "dev"}, "etag": etag})),
        )
        .await;
    assert_eq!(patched["labels"]["env"], "dev");
    assert_eq!(
        patched["annotations"]["owner"], "me",
        "fields outside the mask are kept"
    );
    assert_ne!(patched["etag"], created["etag"]);

    // Delete with a stale etag fails, with the current one succeeds.
    api.err(
        "DELETE",
        &format!("{P}/secrets/db-url?etag={etag}"),
        None,
        400,
        "FAILED_PRECONDITION",
    )
    .await;
    let cur = patched["etag"].as_str().unwrap();
    assert_eq!(
        api.ok("DELETE", &format!("{P}/secrets/db-url?etag={cur}"), None)
            .await,
        json!({})
    );
    api.err("GET", &format!("{P}/secrets/db-url"), None, 404, "NOT_FOUND")
        .await;
    api.err("DELETE", &format!("{P}/secrets/db-url"), None, 404, "NOT_FOUND")
        .await;
}

#[tokio::test]
async fn list_paginates_newest_first_and_filters_by_label() {
    // Google lists secrets newest first (the order paging follows too).
    let api = Api::default().await;
    for i in 0..5 {
        let env = if i % 2 == 0 { "prod" } else { "dev" };
        api.ok(
            "POST",
            &format!("{P}/secrets?secretId=s{i}"),
            Some(json!({"replication": {"automatic": {}}, "labels": {"env": env}})),
        )
        .await;
    }
    api.create_secret("other", "elsewhere").await;
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = api
            .ok("GET", &format!("{P}/secrets?pageSize=2&pageToken={token}"), None)
            .await;
        let secrets = page["secrets"].as_array().unwrap();
        assert!(secrets.len() <= 2);
        names.extend(secrets.iter().map(|s| s["name"].as_str().unwrap().to_string()));
        match page["nextPageToken"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(
        names,
        (0..5)
            .rev()
            .map(|i| format!("projects/123456789/secrets/s{i}"))
            .collect::<Vec<_>>()
    );
    // Listing by number is the same list.
    let by_number = api
        .ok("GET", &format!("/v1/projects/{P_NUMBER}/secrets"), None)
        .await;
    let by_number: Vec<&str> = by_number["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(by_number, names);
    let prod = api
        .ok("GET", &format!("{P}/secrets?filter=labels.env%3Dprod"), None)
        .await;
    let prod: Vec<&str> = prod["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        prod,
        [
            "projects/123456789/secrets/s4",
            "projects/123456789/secrets/s2",
            "projects/123456789/secrets/s0"
        ]
    );
    let none = api
        .ok("GET", &format!("{P}/secrets?filter=labels.team:*"), None)
        .await;
    assert!(none.get("secrets").is_none(), "{none}");
    api.err(
        "GET",
        &format!("{P}/secrets?filter=bogus%3Dx"),
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "GET",
        &format!("{P}/secrets?pageToken=%21%21"),
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;
}

#[tokio::test]
async fn versions_add_access_states_and_checksums() {
    let api = Api::default().await;
    api.create_secret("p", "key").await;
    let s = "projects/p/secrets/key";
    // What Google returns: the project as a number.
    let n = p_name("secrets/key");
    let v1 = api.add_version(s, b"first").await;
    assert_eq!(
        v1["name"], "projects/123456789/secrets/key/versions/1",
        "no leading slash"
    );
    assert_eq!(v1["state"], "ENABLED");
    assert_eq!(v1["clientSpecifiedPayloadChecksum"], true);
    let v2 = api.add_version(s, b"second").await;
    assert_eq!(v2["name"], "projects/123456789/secrets/key/versions/2");

    let latest = api
        .ok("GET", &format!("/v1/{s}/versions/latest:access"), None)
        .await;
    assert_eq!(latest["name"], "projects/123456789/secrets/key/versions/2");
    assert_eq!(unb64(latest["payload"]["data"].as_str().unwrap()), b"second");
    assert_eq!(
        latest["payload"]["dataCrc32c"],
        crc32c::crc32c(b"second").to_string()
    );
    let got = api.ok("GET", &format!("/v1/{s}/versions/latest"), None).await;
    assert_eq!(got["name"], "projects/123456789/secrets/key/versions/2");
    // The returned (numbered) name is usable as is.
    let again = api.ok("GET", &format!("/v1/{n}/versions/2:access"), None).await;
    assert_eq!(again, latest);

    // Checksum and size limits.
    let msg = api
        .err(
            "POST",
            &format!("/v1/{s}:addVersion"),
            Some(json!({"payload": {"data": b64(b"x"), "dataCrc32c": "12345"}})),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(msg.contains("Checksum"), "{msg}");
    let big = vec![b'a'; 65537];
    api.err(
        "POST",
        &format!("/v1/{s}:addVersion"),
        Some(json!({"payload": {"data": b64(&big)}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let max = vec![b'a'; 65536];
    api.ok(
        "POST",
        &format!("/v1/{s}:addVersion"),
        Some(json!({"payload": {"data": b64(&max)}})),
    )
    .await;
    api.err(
        "POST",
        &format!("/v1/{s}:addVersion"),
        Some(json!({"payload": {"data": "%%%"}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        &format!("/v1/{s}:addVersion"),
        Some(json!({})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        "/v1/projects/p/secrets/none:addVersion",
        Some(json!({"payload": {"data": "eA=="}})),
        404,
        "NOT_FOUND",
    )
    .await;

    // Disable: access fails with FAILED_PRECONDITION; a stale etag too; enable restores.
    api.err(
        "POST",
        &format!("/v1/{s}/versions/1:disable"),
        Some(json!({"etag": "AAAA"})),
        400,
        "FAILED_PRECONDITION",
    )
    .await;
    let disabled = api
        .ok(
            "POST",
            &format!("/v1/{s}/versions/1:disable"),
            Some(json!({"etag": v1["etag"]})),
        )
        .await;
    assert_eq!(disabled["state"], "DISABLED");
    let msg = api
        .err(
            "GET",
            &format!("/v1/{s}/versions/1:access"),
            None,
            400,
            "FAILED_PRECONDITION",
        )
        .await;
    assert_eq!(
        msg,
        "Secret Version [projects/123456789/secrets/key/versions/1] is in DISABLED state."
    );
    let enabled = api
        .ok("POST", &format!("/v1/{s}/versions/1:enable"), Some(json!({})))
        .await;
    assert_eq!(enabled["state"], "ENABLED");
    assert_eq!(
        unb64(
            api.ok("GET", &format!("/v1/{s}/versions/1:access"), None).await["payload"]["data"]
                .as_str()
                .unwrap()
        ),
        b"first"
    );

    // Destroy wipes the payload; a destroyed version cannot be enabled.
    let destroyed = api.ok("POST", &format!("/v1/{s}/versions/2:destroy"), None).await;
    assert_eq!(destroyed["state"], "DESTROYED");
    assert!(destroyed["destroyTime"].is_string());
    api.err(
        "GET",
        &format!("/v1/{s}/versions/2:access"),
        None,
        400,
        "FAILED_PRECONDITION",
    )
    .await;
    api.err(
        "POST",
        &format!("/v1/{s}/versions/2:enable"),
        None,
        400,
        "FAILED_PRECONDITION",
    )
    .await;
    assert_eq!(api.emu.state().secret_payload(s, "2"), None);
    assert_eq!(
        api.emu.state().secret_payload(s, "1").as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        api.emu.state().secret_payload(&n, "1").as_deref(),
        Some(&b"first"[..])
    );

    api.err("GET", &format!("/v1/{s}/versions/9"), None, 404, "NOT_FOUND")
        .await;
    api.err(
        "GET",
        &format!("/v1/{s}/versions/9:access"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;

    // List: newest first, state filter, pagination.
    let all = api.ok("GET", &format!("/v1/{s}/versions"), None).await;
    let names: Vec<&str> = all["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            format!("{n}/versions/3"),
            format!("{n}/versions/2"),
            format!("{n}/versions/1")
        ]
    );
    assert_eq!(all["totalSize"], 3);
    let enabled = api
        .ok("GET", &format!("/v1/{s}/versions?filter=state:ENABLED"), None)
        .await;
    let names: Vec<&str> = enabled["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("{n}/versions/3"), format!("{n}/versions/1")]);
    let page = api.ok("GET", &format!("/v1/{s}/versions?pageSize=1"), None).await;
    let token = page["nextPageToken"].as_str().unwrap();
    let page2 = api
        .ok(
            "GET",
            &format!("/v1/{s}/versions?pageSize=1&pageToken={token}"),
            None,
        )
        .await;
    assert_eq!(page2["versions"][0]["name"], format!("{n}/versions/2"));

    // latest of a secret without versions.
    api.create_secret("p", "empty").await;
    let msg = api
        .err(
            "GET",
            "/v1/projects/p/secrets/empty/versions/latest:access",
            None,
            404,
            "NOT_FOUND",
        )
        .await;
    assert!(msg.contains("has no versions"), "{msg}");
}

#[tokio::test]
async fn latest_is_the_most_recently_created_version_even_when_disabled() {
    let api = Api::default().await;
    api.create_secret("p", "k").await;
    api.add_version("projects/p/secrets/k", b"a").await;
    api.add_version("projects/p/secrets/k", b"b").await;
    api.ok("POST", "/v1/projects/p/secrets/k/versions/2:disable", None)
        .await;
    let got = api
        .ok("GET", "/v1/projects/p/secrets/k/versions/latest", None)
        .await;
    assert_eq!(got["name"], "projects/123456789/secrets/k/versions/2");
    api.err(
        "GET",
        "/v1/projects/p/secrets/k/versions/latest:access",
        None,
        400,
        "FAILED_PRECONDITION",
    )
    .await;
}

#[tokio::test]
async fn secret_iam_policy_with_etags() {
    let api = Api::default().await;
    // Only seeded or created accounts exist, as in Google.
    api.emu
        .state()
        .seed_service_account("run@p.iam.gserviceaccount.com");
    api.create_secret("p", "k").await;
    let path = "/v1/projects/p/secrets/k";
    let empty = api
        .ok(
            "GET",
            &format!("{path}:getIamPolicy?options.requestedPolicyVersion=3"),
            None,
        )
        .await;
    assert_eq!(empty, json!({"version": 1, "etag": "ACAB"}));
    let binding = json!({"role": "roles/secretmanager.secretAccessor", "members": ["serviceAccount:run@p.iam.gserviceaccount.com"]});
    let set = api
        .ok(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {"version": 3, "etag": "ACAB", "bindings": [binding]}})),
        )
        .await;
    assert_eq!(set["bindings"][0], binding);
    assert_eq!(set["version"], 1);
    let etag = set["etag"].as_str().unwrap().to_string();
    assert_ne!(etag, "ACAB");
    // Same bytes in the URL-safe alphabet are the same etag (clients re-encode).
    let again = api
        .ok(
            "POST",
            &format!("{path}:getIamPolicy"),
            Some(json!({"options": {"requestedPolicyVersion": 3}})),
        )
        .await;
    assert_eq!(again, set);

    // A stale etag is 409 ABORTED.
    let msg = api
        .err(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {"etag": "ACAB", "bindings": []}})),
            409,
            "ABORTED",
        )
        .await;
    assert!(msg.contains("concurrent policy changes"), "{msg}");

    // Conditional bindings are kept and require version 3.
    let cond = json!({"role": "roles/secretmanager.secretAccessor", "members": ["user:a@example.com"],
        "condition": {"title": "t", "expression": "request.time < timestamp(\"2030-01-01T00:00:00Z\")"}});
    api.err(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": {"version": 1, "bindings": [cond]}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    // A condition that cannot be CEL is refused when set, not only when evaluated.
    let mut broken = cond.clone();
    broken["condition"]["expression"] = json!("request.time < timestamp(\"2030-01-01T00:00:00Z\"");
    let msg = api
        .err(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {"version": 3, "bindings": [broken]}})),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(
        msg.contains(
            "Invalid CEL expression in policy.bindings[0].condition: the '(' at column 25 is not closed"
        ),
        "{msg}"
    );
    let set3 = api
        .ok(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {"version": 3, "etag": etag, "bindings": [binding, cond]}})),
        )
        .await;
    assert_eq!(set3["version"], 3);
    assert_eq!(set3["bindings"][1]["condition"]["title"], "t");
    api.err(
        "GET",
        &format!("{path}:getIamPolicy"),
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let got = api
        .ok(
            "GET",
            &format!("{path}:getIamPolicy?options.requestedPolicyVersion=3"),
            None,
        )
        .await;
    assert_eq!(got, set3);

    // Invalid members and roles are refused.
    api.err(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": {"bindings": [{"role": "roles/x", "members": ["bob"]}]}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": {"bindings": [{"role": "owner", "members": ["allUsers"]}]}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "GET",
        "/v1/projects/p/secrets/none:getIamPolicy",
        None,
        404,
        "NOT_FOUND",
    )
    .await;

    // Binding an account that was never seeded or created is refused; once seeded, it may be bound.
    let msg = api
        .err("POST", &format!("{path}:setIamPolicy"), Some(json!({"policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor", "members": ["serviceAccount:known@p.iam.gserviceaccount.com"]}]}})), 400, "INVALID_ARGUMENT")
        .await;
    assert_eq!(
        msg,
        "Service account known@p.iam.gserviceaccount.com does not exist."
    );
    api.emu
        .state()
        .seed_service_account("known@p.iam.gserviceaccount.com");
    let msg = api
        .err("POST", &format!("{path}:setIamPolicy"), Some(json!({"policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor", "members": ["serviceAccount:ghost@p.iam.gserviceaccount.com"]}]}})), 400, "INVALID_ARGUMENT")
        .await;
    assert!(msg.contains("does not exist"), "{msg}");
    api.ok("POST", &format!("{path}:setIamPolicy"), Some(json!({"policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor", "members": ["serviceAccount:known@p.iam.gserviceaccount.com"]}]}}))).await;
    assert_eq!(
        api.emu
            .state()
            .secret_bindings("projects/p/secrets/k")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api.emu.state().secret_bindings(&p_name("secrets/k")),
        api.emu.state().secret_bindings("projects/p/secrets/k")
    );
    let by_number = api
        .ok(
            "GET",
            "/v1/projects/123456789/secrets/k:getIamPolicy?options.requestedPolicyVersion=3",
            None,
        )
        .await;
    assert_eq!(
        by_number["bindings"][0]["members"][0],
        "serviceAccount:known@p.iam.gserviceaccount.com"
    );
}

#[tokio::test]
async fn policy_etag_compares_decoded_bytes() {
    let api = Api::default().await;
    api.create_secret("p", "k").await;
    let path = "/v1/projects/p/secrets/k";
    let set = api
        .ok("POST", &format!("{path}:setIamPolicy"), Some(json!({"policy": {"bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"]}]}})))
        .await;
    let etag = set["etag"].as_str().unwrap();
    let unpadded = etag.trim_end_matches('=').replace('+', "-").replace('/', "_");
    api.ok(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": {"etag": unpadded, "bindings": []}})),
    )
    .await;
}

#[tokio::test]
async fn service_accounts_exist_until_seeded_then_only_seeded_ones() {
    // The lenient mode, asked for explicitly (by default only seeded or created accounts exist): until one is
    // seeded, every well-formed account exists.
    let api = Api::start(gcp_emulator::Config {
        any_service_account_exists: true,
        ..gcp_emulator::Config::default()
    })
    .await;
    let sa = api
        .ok(
            "GET",
            "/v1/projects/-/serviceAccounts/runner@proj-1.iam.gserviceaccount.com",
            None,
        )
        .await;
    assert_eq!(sa["email"], "runner@proj-1.iam.gserviceaccount.com");
    assert_eq!(sa["projectId"], "proj-1");
    assert_eq!(
        sa["name"],
        "projects/proj-1/serviceAccounts/runner@proj-1.iam.gserviceaccount.com"
    );
    api.err(
        "GET",
        "/v1/projects/-/serviceAccounts/not-an-email",
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "GET",
        "/v1/projects/-/serviceAccounts/Bad_Name@x.com",
        None,
        404,
        "NOT_FOUND",
    )
    .await;

    api.ok(
        "POST",
        "/_emulator/service-accounts",
        Some(json!({"email": "runner@proj-1.iam.gserviceaccount.com", "displayName": "Runner"})),
    )
    .await;
    let sa = api
        .ok(
            "GET",
            "/v1/projects/proj-1/serviceAccounts/runner%40proj-1.iam.gserviceaccount.com",
            None,
        )
        .await;
    assert_eq!(sa["displayName"], "Runner");
    api.err(
        "GET",
        "/v1/projects/-/serviceAccounts/other@proj-1.iam.gserviceaccount.com",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    api.err(
        "GET",
        "/v1/projects/elsewhere/serviceAccounts/runner@proj-1.iam.gserviceaccount.com",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_404_json() {
    let api = Api::default().await;
    api.err("GET", "/v1/projects/p/widgets", None, 404, "NOT_FOUND")
        .await;
    api.err("PUT", "/v1/projects/p/secrets/x", None, 404, "NOT_FOUND")
        .await;
    api.err("POST", "/v1/projects/p/secrets/x:explode", None, 404, "NOT_FOUND")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_concurrent_writes_get_distinct_versions() {
    let api = std::sync::Arc::new(Api::default().await);
    api.create_secret("p", "busy").await;
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let v = api
                .add_version("projects/p/secrets/busy", format!("value-{i}").as_bytes())
                .await;
            v["name"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .parse::<u32>()
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=200).collect::<Vec<_>>());
    let latest = api
        .ok("GET", "/v1/projects/p/secrets/busy/versions/latest", None)
        .await;
    assert_eq!(latest["name"], "projects/123456789/secrets/busy/versions/200");
}

#[tokio::test]
async fn oversized_bodies_get_a_google_shaped_error() {
    let api = Api::default().await;
    api.create_secret("p", "k").await;
    let resp = api
        .http
        .post(format!("{}/v1/projects/p/secrets/k:addVersion", api.emu.url()))
        .body(vec![b' '; 5 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn an_empty_payload_is_refused_as_google_does() {
    let api = Api::default().await;
    api.create_secret("p", "empty").await;
    for body in [json!({"payload": {}}), json!({"payload": {"data": ""}})] {
        let msg = api
            .err(
                "POST",
                "/v1/projects/p/secrets/empty:addVersion",
                Some(body),
                400,
                "INVALID_ARGUMENT",
            )
            .await;
        assert!(msg.contains("Field [payload] is required"), "{msg}");
    }
    let versions = api.ok("GET", "/v1/projects/p/secrets/empty/versions", None).await;
    assert!(versions.get("versions").is_none(), "{versions}");
}

#[tokio::test]
async fn a_policy_is_normalised_one_binding_per_role_and_condition_members_sorted() {
    let api = Api::start(gcp_emulator::Config {
        service_accounts: vec!["run@p.iam.gserviceaccount.com".into()],
        ..gcp_emulator::Config::default()
    })
    .await;
    api.create_secret("p", "norm").await;
    let path = "/v1/projects/p/secrets/norm";
    let role = "roles/secretmanager.secretAccessor";
    let set = api
        .ok(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {"bindings": [
                {"role": role, "members": ["user:zoe@example.com", "serviceAccount:run@p.iam.gserviceaccount.com"]},
                {"role": "roles/secretmanager.viewer", "members": ["user:ann@example.com"]},
                {"role": role, "members": ["user:ann@example.com", "user:zoe@example.com"]}
            ]}})),
        )
        .await;
    assert_eq!(
        set["bindings"],
        json!([
            {"role": role, "members": [
                "serviceAccount:run@p.iam.gserviceaccount.com", "user:ann@example.com", "user:zoe@example.com"
            ]},
            {"role": "roles/secretmanager.viewer", "members": ["user:ann@example.com"]}
        ])
    );
}

#[tokio::test]
async fn validation_errors_name_the_field_in_a_bad_request_detail() {
    let api = Api::default().await;
    let violation = |body: &Value| -> String {
        let detail = body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            .cloned()
            .unwrap_or_else(|| panic!("no BadRequest detail: {body}"));
        detail["fieldViolations"][0]["field"].as_str().unwrap().to_owned()
    };
    let (status, body) = api
        .call(
            "POST",
            "/v1/projects/p/secrets?secretId=bad%20id",
            Some(json!({"replication": {"automatic": {}}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(violation(&body), "secret_id");
    let (_, body) = api
        .call("POST", "/v1/projects/p/secrets?secretId=k", Some(json!({})))
        .await;
    assert_eq!(violation(&body), "secret.replication");
    api.create_secret("p", "k").await;
    let (status, body) = api
        .call(
            "POST",
            "/v1/projects/p/secrets/k:addVersion",
            Some(json!({"payload": {}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(violation(&body), "payload");
    let (_, body) = api
        .call(
            "POST",
            "/v2/projects/p/locations/us-central1/services?serviceId=s",
            Some(json!({})),
        )
        .await;
    assert_eq!(violation(&body), "service.template");
}
