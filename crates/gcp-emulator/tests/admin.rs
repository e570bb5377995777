//! Faults, quotas, latency, call counters, the request log, reset, persistence and the binary.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Api, P_NUMBER, b64};
use serde_json::json;

#[tokio::test]
async fn fault_rules_fail_a_counted_number_of_calls() {
    let api = Api::default().await;
    api.create_secret("p", "k").await;
    let id = api
        .ok(
            "POST",
            "/_emulator/faults",
            Some(json!({"method": "SecretManagerService.GetSecret", "status": "UNAVAILABLE", "count": 2})),
        )
        .await["id"]
        .as_u64()
        .unwrap();
    for _ in 0..2 {
        let msg = api
            .err("GET", "/v1/projects/p/secrets/k", None, 503, "UNAVAILABLE")
            .await;
        assert!(msg.contains("Injected fault"), "{msg}");
    }
    api.ok("GET", "/v1/projects/p/secrets/k", None).await;
    // Other methods are untouched.
    api.ok("GET", "/v1/projects/p/secrets", None).await;
    let calls = api.ok("GET", "/_emulator/calls", None).await;
    assert_eq!(
        calls["calls"]["SecretManagerService.GetSecret"],
        json!({"OK": 1, "UNAVAILABLE": 2})
    );
    assert_eq!(api.emu.state().call_count("SecretManagerService.GetSecret"), 3);
    let faults = api.ok("GET", "/_emulator/faults", None).await;
    assert_eq!(faults["faults"][0]["count"], 0);
    api.ok("DELETE", &format!("/_emulator/faults/{id}"), None).await;
    api.err(
        "DELETE",
        &format!("/_emulator/faults/{id}"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    api.ok("DELETE", "/_emulator/calls", None).await;
    assert_eq!(api.ok("GET", "/_emulator/calls", None).await["calls"], json!({}));
}

#[tokio::test]
async fn fault_patterns_statuses_probability_and_messages() {
    let api = Api::default().await;
    api.create_secret("p", "k").await;
    api.ok(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "*.ListSecrets", "status": 429, "message": "slow down"})),
    )
    .await;
    let msg = api
        .err("GET", "/v1/projects/p/secrets", None, 429, "RESOURCE_EXHAUSTED")
        .await;
    assert_eq!(msg, "slow down");
    api.ok("DELETE", "/_emulator/faults", None).await;
    api.ok(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "SecretManagerService.*", "status": 7, "probability": 0.0})),
    )
    .await;
    api.ok("GET", "/v1/projects/p/secrets/k", None).await;
    api.ok("DELETE", "/_emulator/faults", None).await;
    api.ok(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "SecretManagerService.*", "status": "PERMISSION_DENIED", "probability": 1.0})),
    )
    .await;
    api.err("GET", "/v1/projects/p/secrets/k", None, 403, "PERMISSION_DENIED")
        .await;
    api.ok("DELETE", "/_emulator/faults", None).await;
    api.err(
        "POST",
        "/_emulator/faults",
        Some(json!({"status": "NOPE"})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        "/_emulator/faults",
        Some(json!({"status": "ABORTED", "probability": 2})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
}

#[tokio::test]
async fn commit_then_fail_keeps_the_effect_but_loses_the_response() {
    let api = Api::default().await;
    api.ok(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "SecretManagerService.CreateSecret", "status": "UNAVAILABLE", "count": 1, "commitThenFail": true})),
    )
    .await;
    api.err(
        "POST",
        "/v1/projects/p/secrets?secretId=lost",
        Some(json!({"replication": {"automatic": {}}})),
        503,
        "UNAVAILABLE",
    )
    .await;
    api.ok("GET", "/v1/projects/p/secrets/lost", None).await;
    api.err(
        "POST",
        "/v1/projects/p/secrets?secretId=lost",
        Some(json!({"replication": {"automatic": {}}})),
        409,
        "ALREADY_EXISTS",
    )
    .await;
}

#[tokio::test]
async fn fault_latency_and_configured_latency_delay_calls() {
    let api = Api::start(gcp_emulator::Config {
        latency: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    api.create_secret("p", "k").await;
    let t = Instant::now();
    api.ok("GET", "/v1/projects/p/secrets/k", None).await;
    assert!(t.elapsed() >= Duration::from_millis(400));
    api.ok(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "SecretManagerService.GetSecret", "latencyMs": 150})),
    )
    .await;
    let t = Instant::now();
    api.ok("GET", "/v1/projects/p/secrets/k", None).await;
    assert!(t.elapsed() >= Duration::from_millis(550), "{:?}", t.elapsed());
    // The admin API is not delayed.
    let t = Instant::now();
    api.ok("GET", "/_emulator/health", None).await;
    assert!(t.elapsed() < Duration::from_millis(400), "{:?}", t.elapsed());
}

#[tokio::test]
async fn quotas_are_token_buckets_per_project() {
    // 600 reads/min * 0.01 = 6 reads in the bucket.
    let api = Api::start(gcp_emulator::Config {
        quota_scale: 0.01,
        ..Default::default()
    })
    .await;
    api.create_secret("p", "k").await;
    for _ in 0..6 {
        api.ok("GET", "/v1/projects/p/secrets/k", None).await;
    }
    let (status, body) = api.call("GET", "/v1/projects/p/secrets/k", None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Quota exceeded for quota metric 'Read requests'")
    );
    assert_eq!(
        body["error"]["details"][0]["@type"],
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    assert_eq!(body["error"]["details"][0]["reason"], "RATE_LIMIT_EXCEEDED");
    // Another project and another class (writes) have their own buckets.
    api.create_secret("q", "k").await;
    api.ok("GET", "/v1/projects/q/secrets/k", None).await;
    // Refill at 6 per minute: one token after ~10 s, so still exhausted now.
    api.err("GET", "/v1/projects/p/secrets", None, 429, "RESOURCE_EXHAUSTED")
        .await;
    assert_eq!(
        api.emu.state().calls()["SecretManagerService.GetSecret"]["RESOURCE_EXHAUSTED"],
        1
    );

    let free = Api::start(gcp_emulator::Config {
        quota_scale: 0.0,
        ..Default::default()
    })
    .await;
    free.create_secret("p", "k").await;
    for _ in 0..20 {
        free.ok("GET", "/v1/projects/p/secrets/k", None).await;
    }
}

#[tokio::test]
async fn request_log_records_calls_without_payloads() {
    let api = Api::default().await;
    api.create_secret("p", "k").await;
    let secret_value = b"very-secret-value-123";
    api.add_version("projects/p/secrets/k", secret_value).await;
    api.ok("GET", "/v1/projects/p/secrets/k/versions/latest:access", None)
        .await;
    api.call("GET", "/v1/projects/p/secrets/none", None).await;
    let log = api.ok("GET", "/_emulator/requests", None).await;
    let entries = log["requests"].as_array().unwrap();
    let methods: Vec<&str> = entries.iter().map(|e| e["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "SecretManagerService.CreateSecret",
            "SecretManagerService.AddSecretVersion",
            "SecretManagerService.AccessSecretVersion",
            "SecretManagerService.GetSecret"
        ]
    );
    assert_eq!(entries[3]["status"], "NOT_FOUND");
    assert_eq!(entries[3]["httpStatus"], 404);
    assert_eq!(
        entries[2]["path"],
        "/v1/projects/p/secrets/k/versions/latest:access"
    );
    let text = log.to_string();
    assert!(!text.contains("very-secret-value"), "{text}");
    assert!(!text.contains(&b64(secret_value)), "{text}");
    let last = api.ok("GET", "/_emulator/requests?limit=1", None).await;
    assert_eq!(last["requests"].as_array().unwrap().len(), 1);
    assert_eq!(api.emu.state().requests().len(), 4);
    // Debug output of the state never shows payloads either.
    let debug = api.emu.state().with(|st| format!("{st:?}"));
    assert!(
        !debug.contains("very-secret-value") && !debug.contains(&b64(secret_value)),
        "{debug}"
    );
    api.ok("DELETE", "/_emulator/requests", None).await;
    assert!(
        api.ok("GET", "/_emulator/requests", None).await["requests"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn reset_forgets_everything_but_the_configuration() {
    let api = Api::start(gcp_emulator::Config {
        service_accounts: vec!["cfg@p.iam.gserviceaccount.com".into()],
        ..Default::default()
    })
    .await;
    api.create_secret("p", "k").await;
    api.ok(
        "POST",
        "/_emulator/service-accounts",
        Some(json!({"emails": ["extra@p.iam.gserviceaccount.com"]})),
    )
    .await;
    api.ok(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "Nothing.Matches", "status": "ABORTED"})),
    )
    .await;
    api.ok("POST", "/_emulator/reset", None).await;
    api.err("GET", "/v1/projects/p/secrets/k", None, 404, "NOT_FOUND")
        .await;
    assert_eq!(
        api.ok("GET", "/_emulator/faults", None).await["faults"],
        json!([])
    );
    let accounts = api.ok("GET", "/_emulator/service-accounts", None).await;
    assert_eq!(
        accounts["serviceAccounts"],
        json!(["cfg@p.iam.gserviceaccount.com"])
    );
    api.ok(
        "GET",
        "/v1/projects/-/serviceAccounts/cfg@p.iam.gserviceaccount.com",
        None,
    )
    .await;
    api.err(
        "GET",
        "/v1/projects/-/serviceAccounts/extra@p.iam.gserviceaccount.com",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    // Unseeding every account leaves none but each project's default compute account: unknown accounts stay
    // absent (the lenient "every account exists" mode is off by default).
    api.ok("DELETE", "/_emulator/service-accounts", None).await;
    for email in [
        "cfg@p.iam.gserviceaccount.com",
        "anyone@p.iam.gserviceaccount.com",
    ] {
        api.err(
            "GET",
            &format!("/v1/projects/-/serviceAccounts/{email}"),
            None,
            404,
            "NOT_FOUND",
        )
        .await;
    }
    api.ok(
        "GET",
        &format!(
            "/v1/projects/-/serviceAccounts/{}-compute@developer.gserviceaccount.com",
            P_NUMBER
        ),
        None,
    )
    .await;
    api.err("GET", "/_emulator/nothing", None, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn state_file_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let config = gcp_emulator::Config {
        state_file: Some(file.clone()),
        ..Default::default()
    };
    {
        let api = Api::start(config.clone()).await;
        api.create_secret("p", "k").await;
        api.add_version("projects/p/secrets/k", b"kept").await;
        api.ok(
            "POST",
            "/v1/projects/p/secrets/k:setIamPolicy",
            Some(json!({"policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor", "members": ["user:a@example.com"]}]}})),
        )
        .await;
        api.ok(
            "POST",
            "/_emulator/service-accounts",
            Some(json!({"email": "sa@p.iam.gserviceaccount.com"})),
        )
        .await;
        let op = api
            .ok("POST", "/v2/projects/p/locations/r/services?serviceId=s", Some(json!({"template": {"serviceAccount": "sa@p.iam.gserviceaccount.com", "containers": [{"image": "i"}]}})))
            .await;
        api.ok(
            "POST",
            &format!("/v2/{}:wait", op["name"].as_str().unwrap()),
            None,
        )
        .await;
    }
    assert!(file.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the state file holds payloads and must be private");
    }
    let api = Api::start(config).await;
    let access = api
        .ok("GET", "/v1/projects/p/secrets/k/versions/1:access", None)
        .await;
    assert_eq!(
        common::unb64(access["payload"]["data"].as_str().unwrap()),
        b"kept"
    );
    assert_eq!(access["name"], "projects/123456789/secrets/k/versions/1");
    // By number, the same version.
    let by_number = api
        .ok("GET", "/v1/projects/123456789/secrets/k/versions/1:access", None)
        .await;
    assert_eq!(by_number, access);
    let policy = api.ok("GET", "/v1/projects/p/secrets/k:getIamPolicy", None).await;
    assert_eq!(policy["bindings"][0]["members"][0], "user:a@example.com");
    api.err(
        "GET",
        "/v1/projects/-/serviceAccounts/other@p.iam.gserviceaccount.com",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    let svc = api.ok("GET", "/v2/projects/p/locations/r/services/s", None).await;
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    // Version numbering continues.
    let v2 = api.add_version("projects/p/secrets/k", b"next").await;
    assert_eq!(v2["name"], "projects/123456789/secrets/k/versions/2");
}

#[tokio::test]
async fn a_state_file_naming_secrets_by_project_id_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let config = gcp_emulator::Config {
        state_file: Some(file.clone()),
        ..Default::default()
    };
    {
        let api = Api::start(config.clone()).await;
        api.create_secret("p", "old").await;
        api.add_version("projects/p/secrets/old", b"kept").await;
    }
    // Written before names carried numbers: keys and names by project id.
    let text = std::fs::read_to_string(&file).unwrap();
    let numbered = format!("projects/{P_NUMBER}/secrets/");
    assert!(text.contains(&numbered));
    std::fs::write(&file, text.replace(&numbered, "projects/p/secrets/")).unwrap();
    let api = Api::start(config).await;
    let secret = api.ok("GET", "/v1/projects/p/secrets/old", None).await;
    assert_eq!(secret["name"], format!("{numbered}old"));
    let access = api
        .ok("GET", "/v1/projects/p/secrets/old/versions/1:access", None)
        .await;
    assert_eq!(
        common::unb64(access["payload"]["data"].as_str().unwrap()),
        b"kept"
    );
}

#[tokio::test]
async fn a_project_is_never_renumbered_once_it_has_resources() {
    let api = Api::default().await;
    api.create_secret("p", "k").await;
    let message = api
        .err(
            "PUT",
            "/_emulator/projects/p",
            Some(json!({"projectNumber": "42"})),
            400,
            "FAILED_PRECONDITION",
        )
        .await;
    assert!(message.contains("already has resources"), "{message}");
    // Setting the number it already has is fine.
    api.ok(
        "PUT",
        "/_emulator/projects/p",
        Some(json!({"projectNumber": P_NUMBER.to_string()})),
    )
    .await;
    api.ok("GET", "/v1/projects/p/secrets/k", None).await;
}

#[tokio::test]
async fn project_numbers_are_set_and_read_through_the_admin_api() {
    let api = Api::default().await;
    // Api::start gives `p` its fixed number; a project nobody numbered gets a stable hashed one.
    let p = api.ok("GET", "/_emulator/projects/p", None).await;
    assert_eq!(
        p,
        json!({"projectId": "p", "projectNumber": P_NUMBER.to_string()})
    );
    let other = api.ok("GET", "/_emulator/projects/other", None).await;
    assert_eq!(other["projectId"], "other");
    let hashed: u64 = other["projectNumber"].as_str().unwrap().parse().unwrap();
    assert!(hashed > 0);
    assert_eq!(api.emu.state().project_number("other"), hashed);
    assert_eq!(
        api.ok("GET", "/_emulator/projects/other", None).await,
        other,
        "stable"
    );

    // Set a number (as a string, the int64 JSON form, or as a plain number) and read it back.
    let set = api
        .ok(
            "PUT",
            "/_emulator/projects/other",
            Some(json!({"projectNumber": "555000111"})),
        )
        .await;
    assert_eq!(set, json!({"projectId": "other", "projectNumber": "555000111"}));
    assert_eq!(api.ok("GET", "/_emulator/projects/other", None).await, set);
    assert_eq!(api.emu.state().project_number("other"), 555_000_111);
    api.ok(
        "PUT",
        "/_emulator/projects/third",
        Some(json!({"projectNumber": 42})),
    )
    .await;
    assert_eq!(
        api.ok("GET", "/_emulator/projects/third", None).await["projectNumber"],
        "42"
    );

    // Bad bodies are 400 INVALID_ARGUMENT and change nothing.
    for body in [
        json!({}),
        json!({"projectNumber": "abc"}),
        json!({"projectNumber": 0}),
        json!({"projectNumber": -7}),
        json!({"projectNumber": true}),
        json!({"number": "1"}),
    ] {
        let msg = api
            .err(
                "PUT",
                "/_emulator/projects/other",
                Some(body.clone()),
                400,
                "INVALID_ARGUMENT",
            )
            .await;
        assert!(msg.contains("projectNumber"), "{body}: {msg}");
    }
    let resp = api
        .http
        .put(format!("{}/_emulator/projects/other", api.emu.url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{v}");
    // A project id is never a number.
    api.err(
        "PUT",
        "/_emulator/projects/987",
        Some(json!({"projectNumber": "1"})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    assert_eq!(api.emu.state().project_number("other"), 555_000_111);

    // A secret created afterwards is named with the set number, and is reachable by id or by number.
    let created = api.create_secret("other", "after").await;
    assert_eq!(created["name"], "projects/555000111/secrets/after");
    let v1 = api.add_version("projects/other/secrets/after", b"x").await;
    assert_eq!(v1["name"], "projects/555000111/secrets/after/versions/1");
    assert_eq!(
        api.ok("GET", "/v1/projects/555000111/secrets/after", None).await,
        created
    );
    assert_eq!(
        api.ok("GET", "/v1/projects/other/secrets/after", None).await,
        created
    );
    let msg = api
        .err(
            "GET",
            "/v1/projects/other/secrets/missing",
            None,
            404,
            "NOT_FOUND",
        )
        .await;
    assert_eq!(msg, "Secret [projects/555000111/secrets/missing] not found.");
    assert_eq!(
        api.emu
            .state()
            .secret_payload("projects/555000111/secrets/after", "1")
            .as_deref(),
        Some(&b"x"[..])
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_its_address_and_saves_state_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    let (mut child, url) = start_binary(&[
        "--revision-startup",
        "10ms",
        "--quota-scale",
        "0",
        "--state",
        file.to_str().unwrap(),
    ])
    .await;
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let http = reqwest::Client::new();
    let resp = http
        .put(format!("{url}/_emulator/projects/p"))
        .body(r#"{"projectNumber": "123456789"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = http
        .post(format!("{url}/v1/projects/p/secrets?secretId=from-binary"))
        .body(r#"{"replication": {"automatic": {}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let created: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(created["name"], "projects/123456789/secrets/from-binary");
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("projects/123456789/secrets/from-binary"),
        "{saved}"
    );
    // The number set through the admin API is saved too.
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["projectNumbers"]["p"], 123456789, "{saved}");
}

/// Starts the binary with `args` and returns it with its base URL.
async fn start_binary(args: &[&str]) -> (tokio::process::Child, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    common::start_binary(&args, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_seeds_accounts_and_offers_the_lenient_mode() {
    let http = reqwest::Client::new();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    let account = |url: &str, email: &str| format!("{url}/v1/projects/-/serviceAccounts/{email}");
    // By default only `--service-account` ones exist.
    let (_child, url) = start_binary(&["--service-account", "seeded@p.iam.gserviceaccount.com"]).await;
    assert_eq!(
        status(account(&url, "seeded@p.iam.gserviceaccount.com")).await,
        200
    );
    assert_eq!(
        status(account(&url, "other@p.iam.gserviceaccount.com")).await,
        404
    );
    // `--any-service-account-exists`: while none are seeded, every well-formed account exists.
    let (_lenient, url) = start_binary(&["--any-service-account-exists"]).await;
    assert_eq!(
        status(account(&url, "other@p.iam.gserviceaccount.com")).await,
        200
    );
}

#[tokio::test]
async fn dropping_the_emulator_stops_the_server() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config::default())
        .await
        .unwrap();
    let url = format!("{}/_emulator/health", emu.url());
    assert!(reqwest::get(&url).await.unwrap().status().is_success());
    drop(emu);
    let mut refused = false;
    for _ in 0..50 {
        if reqwest::Client::new().get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the server still answers after the emulator was dropped");
}
