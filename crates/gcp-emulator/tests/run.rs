//! Cloud Run Admin v2 against the in-process emulator: services, operations, revisions, start-up, IAM.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Api;
use serde_json::{Value, json};

const PARENT: &str = "/v2/projects/p/locations/us-central1";
const SA: &str = "run@p.iam.gserviceaccount.com";

fn service(image: &str) -> Value {
    json!({"template": {"serviceAccount": SA, "containers": [{"image": image}]}})
}

fn service_with_secret(secret: &str, version: &str) -> Value {
    json!({"template": {"serviceAccount": SA, "containers": [{"image": "img:1", "env": [
        {"name": "PLAIN", "value": "x"},
        {"name": "DB", "valueSource": {"secretKeyRef": {"secret": secret, "version": version}}}
    ]}]}})
}

/// An emulator with the runtime account [`SA`] seeded: only seeded or created accounts exist, as in Google.
async fn start(startup_ms: u64, propagation_ms: u64) -> Api {
    Api::start(gcp_emulator::Config {
        revision_startup: Duration::from_millis(startup_ms),
        iam_propagation: Duration::from_millis(propagation_ms),
        service_accounts: vec![SA.into()],
        ..gcp_emulator::Config::default()
    })
    .await
}

async fn wait(api: &Api, op: &Value) -> Value {
    let name = op["name"].as_str().unwrap();
    let done = api
        .ok(
            "POST",
            &format!("/v2/{name}:wait"),
            Some(json!({"timeout": "10s"})),
        )
        .await;
    assert_eq!(done["done"], true, "{done}");
    done
}

async fn grant(api: &Api, secret: &str, member: &str) {
    let path = format!("/v1/projects/p/secrets/{secret}");
    let policy = api
        .ok(
            "GET",
            &format!("{path}:getIamPolicy?options.requestedPolicyVersion=3"),
            None,
        )
        .await;
    let mut bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
    bindings.push(json!({"role": "roles/secretmanager.secretAccessor", "members": [member]}));
    api.ok(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": {"version": 3, "etag": policy["etag"], "bindings": bindings}})),
    )
    .await;
}

#[tokio::test]
async fn create_runs_a_long_running_operation_and_fills_defaults() {
    // Long enough that the reads below always happen while the revision is still starting.
    let api = start(2000, 0).await;
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=llm&$alt=json;enum-encoding=int"),
            Some(service("img:1")),
        )
        .await;
    assert!(
        op["name"]
            .as_str()
            .unwrap()
            .starts_with("projects/p/locations/us-central1/operations/"),
        "{op}"
    );
    assert_eq!(op["done"], false);
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Service"
    );

    let svc = api.ok("GET", &format!("{PARENT}/services/llm"), None).await;
    assert_eq!(svc["reconciling"], true);
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_RECONCILING");
    assert!(svc.get("latestReadyRevision").is_none());
    let rev = svc["latestCreatedRevision"].as_str().unwrap().to_string();
    let short = rev.rsplit('/').next().unwrap();
    // Cloud Run's shape: the generation, then three lower-case letters or digits.
    let suffix = short.strip_prefix("llm-00001-").unwrap_or_default();
    assert!(
        suffix.len() == 3
            && suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{short}"
    );

    let op_now = api
        .ok("GET", &format!("/v2/{}", op["name"].as_str().unwrap()), None)
        .await;
    assert_eq!(op_now["done"], false);
    let done = wait(&api, &op).await;
    assert_eq!(
        done["response"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Service"
    );
    assert_eq!(done["response"]["latestReadyRevision"], rev);

    let svc = api.ok("GET", &format!("{PARENT}/services/llm"), None).await;
    assert_eq!(svc["name"], "projects/p/locations/us-central1/services/llm");
    assert_eq!(svc["generation"], "1");
    assert_eq!(svc["observedGeneration"], "1");
    assert_eq!(svc["reconciling"], false);
    assert_eq!(svc["terminalCondition"]["type"], "Ready");
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    assert_eq!(svc["latestReadyRevision"], rev);
    assert_eq!(
        svc["trafficStatuses"],
        json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
    );
    assert_eq!(
        svc["traffic"],
        json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
    );
    // uid is a UUID, as Cloud Run's (version 4 layout), for the service and its revision.
    let is_uuid = |v: &Value| {
        let parts: Vec<&str> = v.as_str().unwrap_or_default().split('-').collect();
        parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && parts.iter().all(|p| {
                p.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            })
            && parts[2].starts_with('4')
            && parts[3].starts_with(['8', '9', 'a', 'b'])
    };
    assert!(is_uuid(&svc["uid"]), "{}", svc["uid"]);
    let revision = api.ok("GET", &format!("/v2/{}", rev), None).await;
    assert!(is_uuid(&revision["uid"]), "{}", revision["uid"]);
    assert_ne!(revision["uid"], svc["uid"]);
    assert!(svc["uri"].as_str().unwrap().starts_with("https://llm-"), "{svc}");
    assert!(svc["uri"].as_str().unwrap().ends_with("-uc.a.run.app"), "{svc}");
    assert!(svc["etag"].is_string());
    // Server defaults, as the real API fills them.
    assert_eq!(svc["ingress"], "INGRESS_TRAFFIC_ALL");
    assert_eq!(svc["launchStage"], "GA");
    assert_eq!(svc["template"]["timeout"], "300s");
    assert_eq!(svc["template"]["maxInstanceRequestConcurrency"], 80);
    assert_eq!(svc["template"]["scaling"]["maxInstanceCount"], 100);
    let c = &svc["template"]["containers"][0];
    assert_eq!(c["ports"], json!([{"name": "http1", "containerPort": 8080}]));
    assert_eq!(
        c["resources"]["limits"],
        json!({"cpu": "1000m", "memory": "512Mi"})
    );

    let revision = api.ok("GET", &format!("/v2/{rev}"), None).await;
    assert_eq!(
        revision["service"],
        "projects/p/locations/us-central1/services/llm"
    );
    assert_eq!(revision["conditions"][0]["state"], "CONDITION_SUCCEEDED");
    assert_eq!(revision["containers"][0]["image"], "img:1");
    assert_eq!(revision["serviceAccount"], SA);

    let ops = api.ok("GET", &format!("{PARENT}/operations"), None).await;
    assert_eq!(ops["operations"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.ok("DELETE", &format!("/v2/{}", op["name"].as_str().unwrap()), None)
            .await,
        json!({})
    );
    api.err(
        "GET",
        &format!("/v2/{}", op["name"].as_str().unwrap()),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn create_validation_errors() {
    let api = start(0, 0).await;
    api.ok(
        "POST",
        &format!("{PARENT}/services?serviceId=dup"),
        Some(service("img")),
    )
    .await;
    api.err(
        "POST",
        &format!("{PARENT}/services?serviceId=dup"),
        Some(service("img")),
        409,
        "ALREADY_EXISTS",
    )
    .await;
    api.err(
        "POST",
        &format!("{PARENT}/services?serviceId=Bad_Name"),
        Some(service("img")),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        &format!("{PARENT}/services"),
        Some(service("img")),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        &format!("{PARENT}/services?serviceId=a{}", "b".repeat(49)),
        Some(service("img")),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        &format!("{PARENT}/services?serviceId=nocont"),
        Some(json!({"template": {"containers": []}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    api.err(
        "POST",
        &format!("{PARENT}/services?serviceId=noimg"),
        Some(json!({"template": {"containers": [{}]}})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    let msg = api
        .err(
            "POST",
            &format!("{PARENT}/services?serviceId=port"),
            Some(json!({"template": {"containers": [{"image": "i", "env": [{"name": "PORT", "value": "1"}]}]}})),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(msg.contains("reserved env names"), "{msg}");
    api.err(
        "POST",
        &format!("{PARENT}/services?serviceId=x"),
        Some(json!({"template": "nope"})),
        400,
        "INVALID_ARGUMENT",
    )
    .await;

    // validateOnly stores nothing.
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=dry&validateOnly=true"),
            Some(service("img")),
        )
        .await;
    assert_eq!(op["done"], true);
    api.err("GET", &format!("{PARENT}/services/dry"), None, 404, "NOT_FOUND")
        .await;

    // Integer enums are accepted and answered by name.
    let mut body = service("img");
    body["ingress"] = json!(2);
    body["launchStage"] = json!(3);
    api.ok("POST", &format!("{PARENT}/services?serviceId=ints"), Some(body))
        .await;
    let svc = api.ok("GET", &format!("{PARENT}/services/ints"), None).await;
    assert_eq!(svc["ingress"], "INGRESS_TRAFFIC_INTERNAL_ONLY");
    assert_eq!(svc["launchStage"], "BETA");

    // An unknown runtime account is refused.
    let ghost = "ghost@p.iam.gserviceaccount.com";
    let msg = api
        .err(
            "POST",
            &format!("{PARENT}/services?serviceId=nosa"),
            Some(json!({"template": {"serviceAccount": ghost, "containers": [{"image": "img"}]}})),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert_eq!(msg, format!("Service account {ghost} does not exist."));
    let msg = api
        .err("GET", &format!("{PARENT}/services/none"), None, 404, "NOT_FOUND")
        .await;
    assert_eq!(
        msg,
        "Resource 'none' of kind 'SERVICE' in region 'us-central1' in project 'p' does not exist."
    );
}

#[tokio::test]
async fn updates_make_revisions_only_when_the_template_changes() {
    let api = start(0, 0).await;
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=s"),
            Some(service("img:1")),
        )
        .await;
    wait(&api, &op).await;
    let svc = api.ok("GET", &format!("{PARENT}/services/s"), None).await;
    let first = svc["latestReadyRevision"].as_str().unwrap().to_string();

    // A label change: new generation, no new revision, operation already done.
    let mut body = svc.clone();
    body["labels"] = json!({"team": "a"});
    let op = api.ok("PATCH", &format!("{PARENT}/services/s"), Some(body)).await;
    assert_eq!(op["done"], true, "{op}");
    let svc2 = api.ok("GET", &format!("{PARENT}/services/s"), None).await;
    assert_eq!(svc2["generation"], "2");
    assert_eq!(svc2["latestCreatedRevision"], first.as_str());
    assert_ne!(svc2["etag"], svc["etag"]);

    // Re-sending the same service changes nothing.
    let op = api
        .ok("PATCH", &format!("{PARENT}/services/s"), Some(svc2.clone()))
        .await;
    assert_eq!(op["done"], true);
    let same = api.ok("GET", &format!("{PARENT}/services/s"), None).await;
    assert_eq!(same["generation"], "2");
    assert_eq!(same["etag"], svc2["etag"]);

    // A stale etag is refused.
    let mut stale = svc2.clone();
    stale["etag"] = svc["etag"].clone();
    stale["template"]["containers"][0]["image"] = json!("img:2");
    api.err(
        "PATCH",
        &format!("{PARENT}/services/s"),
        Some(stale),
        409,
        "ABORTED",
    )
    .await;

    // A template change makes revision 00003.
    let mut body = svc2.clone();
    body["template"]["containers"][0]["image"] = json!("img:2");
    let op = api.ok("PATCH", &format!("{PARENT}/services/s"), Some(body)).await;
    let done = wait(&api, &op).await;
    let latest = done["response"]["latestReadyRevision"].as_str().unwrap();
    assert!(latest.contains("/revisions/s-00003-"), "{latest}");
    let revs = api
        .ok("GET", &format!("{PARENT}/services/s/revisions"), None)
        .await;
    let names: Vec<&str> = revs["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [latest, first.as_str()]);

    // The serving revision cannot be deleted; the old one can.
    api.err(
        "DELETE",
        &format!("/v2/{latest}"),
        None,
        400,
        "FAILED_PRECONDITION",
    )
    .await;
    let op = api.ok("DELETE", &format!("/v2/{first}"), None).await;
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Revision"
    );
    api.err("GET", &format!("/v2/{first}"), None, 404, "NOT_FOUND")
        .await;

    // Missing service: 404 unless allowMissing.
    api.err(
        "PATCH",
        &format!("{PARENT}/services/new"),
        Some(service("img")),
        404,
        "NOT_FOUND",
    )
    .await;
    let op = api
        .ok(
            "PATCH",
            &format!("{PARENT}/services/new?allowMissing=true"),
            Some(service("img")),
        )
        .await;
    wait(&api, &op).await;
    assert_eq!(
        api.ok("GET", &format!("{PARENT}/services/new"), None).await["generation"],
        "1"
    );

    let list = api
        .ok("GET", &format!("{PARENT}/services?pageSize=1"), None)
        .await;
    assert_eq!(list["services"].as_array().unwrap().len(), 1);
    assert!(list["nextPageToken"].is_string());
    let all = api.ok("GET", "/v2/projects/p/locations/-/services", None).await;
    assert_eq!(all["services"].as_array().unwrap().len(), 2);

    // With no start-up time, a delete is done at once; the service and its revisions are gone.
    let op = api.ok("DELETE", &format!("{PARENT}/services/s"), None).await;
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["name"],
        "projects/p/locations/us-central1/services/s"
    );
    api.err("GET", &format!("{PARENT}/services/s"), None, 404, "NOT_FOUND")
        .await;
    api.err("GET", &format!("/v2/{latest}"), None, 404, "NOT_FOUND")
        .await;
    api.err("DELETE", &format!("{PARENT}/services/s"), None, 404, "NOT_FOUND")
        .await;
}

#[tokio::test]
async fn revision_without_secret_access_fails_and_traffic_stays_on_the_last_ready_one() {
    let api = start(50, 0).await;
    api.create_secret("p", "db").await;
    api.add_version("projects/p/secrets/db", b"postgres://").await;
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=app"),
            Some(service("img:1")),
        )
        .await;
    wait(&api, &op).await;
    let ready = api.ok("GET", &format!("{PARENT}/services/app"), None).await["latestReadyRevision"]
        .as_str()
        .unwrap()
        .to_string();

    let mut body = service_with_secret("db", "1");
    body["template"]["serviceAccount"] = json!(SA);
    let op = api
        .ok("PATCH", &format!("{PARENT}/services/app"), Some(body.clone()))
        .await;
    let done = wait(&api, &op).await;
    assert_eq!(done["error"]["code"], 9, "{done}");
    let msg = done["error"]["message"].as_str().unwrap();
    assert!(msg.contains("is not ready and cannot serve traffic."), "{msg}");
    // Cloud Run names the secret the way Secret Manager does: by project number.
    assert!(msg.contains("Permission denied on secret: projects/123456789/secrets/db/versions/1 for Revision service account run@p.iam.gserviceaccount.com"), "{msg}");
    assert!(msg.contains("roles/secretmanager.secretAccessor"), "{msg}");

    let svc = api.ok("GET", &format!("{PARENT}/services/app"), None).await;
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");
    assert_eq!(svc["terminalCondition"]["message"], msg);
    assert_eq!(svc["latestReadyRevision"], ready.as_str());
    assert_ne!(svc["latestCreatedRevision"], ready.as_str());
    // observedGeneration stays at the last generation that serves.
    assert_eq!(svc["generation"], "2");
    assert_eq!(svc["observedGeneration"], "1");
    assert_eq!(svc["reconciling"], false);
    let short = ready.rsplit('/').next().unwrap();
    assert_eq!(
        svc["trafficStatuses"],
        json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": short, "percent": 100}])
    );
    let failed = api
        .ok(
            "GET",
            &format!("/v2/{}", svc["latestCreatedRevision"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(failed["conditions"][0]["state"], "CONDITION_FAILED");
    assert_eq!(failed["conditions"][0]["reason"], "SECRETS_ACCESS_CHECK_FAILED");

    // Grant access and redeploy: Ready.
    grant(&api, "db", &format!("serviceAccount:{SA}")).await;
    body["template"]["containers"][0]["env"][0]["value"] = json!("y");
    let op = api
        .ok("PATCH", &format!("{PARENT}/services/app"), Some(body))
        .await;
    let done = wait(&api, &op).await;
    assert!(done.get("error").is_none(), "{done}");
    let svc = api.ok("GET", &format!("{PARENT}/services/app"), None).await;
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    assert_eq!(svc["latestReadyRevision"], svc["latestCreatedRevision"]);

    // The grant holds for a reference to the secret by project number too.
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=bynumber"),
            Some(service_with_secret("projects/123456789/secrets/db", "1")),
        )
        .await;
    let done = wait(&api, &op).await;
    assert!(done.get("error").is_none(), "{done}");
}

#[tokio::test]
async fn iam_grants_take_effect_only_after_propagation() {
    let api = start(50, 1500).await;
    api.create_secret("p", "key").await;
    api.add_version("projects/p/secrets/key", b"v").await;
    grant(&api, "key", &format!("serviceAccount:{SA}")).await;
    // Deployed right away: at start-up the grant is younger than the propagation delay.
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=early"),
            Some(service_with_secret("key", "latest")),
        )
        .await;
    let done = wait(&api, &op).await;
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Permission denied on secret"),
        "{done}"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=late"),
            Some(service_with_secret("key", "latest")),
        )
        .await;
    let done = wait(&api, &op).await;
    assert!(done.get("error").is_none(), "{done}");
}

#[tokio::test]
async fn missing_disabled_and_destroyed_versions_and_crashing_images_fail_start_up() {
    let api = start(0, 0).await;
    api.create_secret("p", "k").await;
    api.add_version("projects/p/secrets/k", b"1").await;
    api.add_version("projects/p/secrets/k", b"2").await;
    grant(&api, "k", "allAuthenticatedUsers").await;
    api.ok("POST", "/v1/projects/p/secrets/k/versions/1:disable", None)
        .await;
    api.ok("POST", "/v1/projects/p/secrets/k/versions/2:destroy", None)
        .await;

    let cases = [
        (
            "nosecret",
            service_with_secret("absent", "1"),
            "Secret projects/123456789/secrets/absent/versions/1 was not found",
        ),
        (
            "noversion",
            service_with_secret("k", "7"),
            "Secret projects/123456789/secrets/k/versions/7 was not found",
        ),
        ("disabled", service_with_secret("k", "1"), "is in DISABLED state"),
        (
            "destroyed",
            service_with_secret("projects/p/secrets/k", "latest"),
            "is in DESTROYED state",
        ),
        // A reference by project number reaches the same secret as one by id.
        (
            "bynumber",
            service_with_secret("projects/123456789/secrets/k", "1"),
            "Secret Version projects/123456789/secrets/k/versions/1 is in DISABLED state",
        ),
        (
            "bynumbermissing",
            service_with_secret("projects/123456789/secrets/k", "7"),
            "Secret projects/123456789/secrets/k/versions/7 was not found",
        ),
    ];
    for (id, body, expected) in cases {
        let op = api
            .ok("POST", &format!("{PARENT}/services?serviceId={id}"), Some(body))
            .await;
        let done = wait(&api, &op).await;
        let msg = done["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(expected), "{id}: {done}");
        assert!(
            msg.contains("spec.template.spec.containers[0].env[1].value_from.secret_key_ref"),
            "{msg}"
        );
        // A new service whose first revision failed has served no generation: no observedGeneration.
        let svc = api.ok("GET", &format!("{PARENT}/services/{id}"), None).await;
        assert!(svc.get("observedGeneration").is_none(), "{id}: {svc}");
        assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");
    }

    api.ok(
        "POST",
        "/_emulator/crashing-images",
        Some(json!({"image": "bad:1"})),
    )
    .await;
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=crash"),
            Some(service("bad:1")),
        )
        .await;
    let done = wait(&api, &op).await;
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed to start and listen on the port"),
        "{done}"
    );
    let svc = api.ok("GET", &format!("{PARENT}/services/crash"), None).await;
    assert!(svc.get("latestReadyRevision").is_none());
    assert_eq!(svc["trafficStatuses"], json!([]));
}

#[tokio::test]
async fn service_iam_policy() {
    let api = start(0, 0).await;
    api.ok(
        "POST",
        &format!("{PARENT}/services?serviceId=pub"),
        Some(service("img")),
    )
    .await;
    let path = format!("{PARENT}/services/pub");
    let empty = api.ok("GET", &format!("{path}:getIamPolicy"), None).await;
    assert_eq!(empty["etag"], "ACAB");
    let binding = json!({"role": "roles/run.invoker", "members": ["allUsers"]});
    let set = api
        .ok(
            "POST",
            &format!("{path}:setIamPolicy"),
            Some(json!({"policy": {"bindings": [binding], "etag": "ACAB"}})),
        )
        .await;
    assert_eq!(set["bindings"][0], binding);
    api.err(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": {"bindings": [], "etag": "ACAB"}})),
        409,
        "ABORTED",
    )
    .await;
    let got = api
        .ok(
            "GET",
            &format!("{path}:getIamPolicy?options.requestedPolicyVersion=3"),
            None,
        )
        .await;
    assert_eq!(got, set);
    api.err(
        "GET",
        &format!("{PARENT}/services/none:getIamPolicy"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn knative_v1_needs_a_regional_host_and_mirrors_v2() {
    let api = start(0, 0).await;
    let msg = api
        .err(
            "GET",
            "/apis/serving.knative.dev/v1/namespaces/p/services/x",
            None,
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(msg.contains("regional host"), "{msg}");
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=mirror"),
            Some(service_with_secret("k", "3")),
        )
        .await;
    wait(&api, &op).await;
    let resp = api
        .http
        .get(format!(
            "{}/apis/serving.knative.dev/v1/namespaces/p/services/mirror",
            api.emu.url()
        ))
        .header("host", "us-central1-run.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v1: Value = resp.json().await.unwrap();
    assert_eq!(v1["kind"], "Service");
    assert_eq!(
        v1["metadata"]["labels"]["cloud.googleapis.com/location"],
        "us-central1"
    );
    assert_eq!(v1["spec"]["template"]["spec"]["serviceAccountName"], SA);
    assert_eq!(
        v1["spec"]["template"]["spec"]["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"],
        json!({"name": "k", "key": "3"})
    );
    // The secret does not exist, so Ready is False with Cloud Run's message.
    assert_eq!(v1["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(v1["status"]["conditions"][0]["status"], "False");
    assert!(
        v1["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("was not found")
    );
}

#[tokio::test]
async fn every_failing_secret_is_named_and_the_failure_code_is_configurable() {
    let api = Api::start(gcp_emulator::Config {
        revision_startup: Duration::from_millis(0),
        revision_failure_code: gcp_emulator::Code::Internal,
        service_accounts: vec![SA.into()],
        ..gcp_emulator::Config::default()
    })
    .await;
    api.create_secret("p", "denied").await;
    api.add_version("projects/p/secrets/denied", b"x").await;
    let body = json!({"template": {"serviceAccount": SA, "containers": [{"image": "img:1", "env": [
        {"name": "A", "valueSource": {"secretKeyRef": {"secret": "absent", "version": "1"}}},
        {"name": "B", "valueSource": {"secretKeyRef": {"secret": "denied", "version": "1"}}}
    ]}]}});
    let op = api
        .ok("POST", &format!("{PARENT}/services?serviceId=two"), Some(body))
        .await;
    let done = wait(&api, &op).await;
    assert_eq!(done["error"]["code"], 13, "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("env[0].value_from.secret_key_ref.name: Secret projects/123456789/secrets/absent/versions/1 was not found"),
        "{message}"
    );
    assert!(
        message.contains("env[1].value_from.secret_key_ref.name: Permission denied on secret: projects/123456789/secrets/denied/versions/1"),
        "{message}"
    );
}

#[tokio::test]
async fn a_delete_finishes_later_and_the_service_refuses_changes_meanwhile() {
    let api = start(300, 0).await;
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=s"),
            Some(service("img:1")),
        )
        .await;
    wait(&api, &op).await;
    let op = api.ok("DELETE", &format!("{PARENT}/services/s"), None).await;
    assert_eq!(op["done"], false, "{op}");
    let deleting = api.ok("GET", &format!("{PARENT}/services/s"), None).await;
    assert!(deleting["deleteTime"].is_string(), "{deleting}");
    assert_eq!(deleting["reconciling"], true);
    let message = api
        .err(
            "PATCH",
            &format!("{PARENT}/services/s"),
            Some(service("img:9")),
            400,
            "FAILED_PRECONDITION",
        )
        .await;
    assert!(message.contains("is being deleted"), "{message}");
    let done = wait(&api, &op).await;
    assert_eq!(
        done["response"]["name"],
        "projects/p/locations/us-central1/services/s"
    );
    api.err("GET", &format!("{PARENT}/services/s"), None, 404, "NOT_FOUND")
        .await;
}

#[tokio::test]
async fn an_unseeded_runtime_account_is_refused_on_create_and_update() {
    let api = Api::start(gcp_emulator::Config {
        revision_startup: Duration::from_millis(0),
        ..gcp_emulator::Config::default()
    })
    .await;
    // Nothing seeded: `SA` does not exist, so no revision may run as it, not even in a dry run.
    for query in ["serviceId=s", "serviceId=s&validateOnly=true"] {
        let msg = api
            .err(
                "POST",
                &format!("{PARENT}/services?{query}"),
                Some(service("img:1")),
                400,
                "INVALID_ARGUMENT",
            )
            .await;
        assert_eq!(msg, format!("Service account {SA} does not exist."));
    }
    api.err("GET", &format!("{PARENT}/services/s"), None, 404, "NOT_FOUND")
        .await;
    assert_eq!(
        api.emu
            .state()
            .with(|st| (st.run.services.len(), st.run.revisions.len())),
        (0, 0)
    );

    // Once seeded, it runs revisions; switching a service to an account that does not exist is refused too,
    // and leaves the service as it was.
    api.ok("POST", "/_emulator/service-accounts", Some(json!({"email": SA})))
        .await;
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=s"),
            Some(service("img:1")),
        )
        .await;
    let done = wait(&api, &op).await;
    assert!(done.get("error").is_none(), "{done}");
    let ghost = "ghost@p.iam.gserviceaccount.com";
    let msg = api
        .err(
            "PATCH",
            &format!("{PARENT}/services/s"),
            Some(json!({"template": {"serviceAccount": ghost, "containers": [{"image": "img:2"}]}})),
            400,
            "INVALID_ARGUMENT",
        )
        .await;
    assert_eq!(msg, format!("Service account {ghost} does not exist."));
    let svc = api.ok("GET", &format!("{PARENT}/services/s"), None).await;
    assert_eq!(svc["generation"], "1", "{svc}");
    assert_eq!(svc["template"]["serviceAccount"], SA);
}

#[tokio::test]
async fn without_an_account_a_service_runs_as_the_default_compute_account() {
    // Nothing seeded: the project's default compute account exists anyway.
    let api = Api::start(gcp_emulator::Config {
        revision_startup: Duration::from_millis(0),
        ..gcp_emulator::Config::default()
    })
    .await;
    let compute = format!("{}-compute@developer.gserviceaccount.com", common::P_NUMBER);
    api.create_secret("p", "db").await;
    api.add_version("projects/p/secrets/db", b"x").await;
    grant(&api, "db", &format!("serviceAccount:{compute}")).await;
    let body = json!({"template": {"containers": [{"image": "img:1", "env": [
        {"name": "DB", "valueSource": {"secretKeyRef": {"secret": "db", "version": "latest"}}}
    ]}]}});
    let op = api
        .ok("POST", &format!("{PARENT}/services?serviceId=s"), Some(body))
        .await;
    let done = wait(&api, &op).await;
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(done["response"]["template"]["serviceAccount"], compute.as_str());
    assert_eq!(
        done["response"]["terminalCondition"]["state"],
        "CONDITION_SUCCEEDED"
    );
    let svc = api.ok("GET", &format!("{PARENT}/services/s"), None).await;
    assert_eq!(svc["template"]["serviceAccount"], compute.as_str());
    assert_eq!(svc["latestReadyRevision"], svc["latestCreatedRevision"]);
    // Named explicitly, it is accepted as well.
    let op = api
        .ok(
            "POST",
            &format!("{PARENT}/services?serviceId=t"),
            Some(json!({"template": {"serviceAccount": compute, "containers": [{"image": "img:1"}]}})),
        )
        .await;
    let done = wait(&api, &op).await;
    assert!(done.get("error").is_none(), "{done}");
    assert!(api.emu.state().with(|st| st.iam.service_accounts.is_empty()));
}
