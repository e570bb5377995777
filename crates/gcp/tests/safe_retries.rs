//! What is retried, what is not, and what a failure leaves in errors, logs and metrics, against a scripted
//! endpoint speaking Google's wire format.
#![allow(clippy::unwrap_used, clippy::panic)]

mod fake;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fake::{Fake, error};
use litellm_operator_gcp::{
    Error, Gcp, GcpConfig, IamPolicies, NewSecret, PolicyChange, PolicyTarget, RateLimits, RetrySettings,
    SecretName, SecretPayload, SecretStore, SecretVersionStore,
};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

const ACCESSOR: &str = "roles/secretmanager.secretAccessor";
/// The bindings the policy server last held.
type Bindings = Arc<Mutex<Vec<Value>>>;

const SA: &str = "serviceAccount:run@p.iam.gserviceaccount.com";

fn config(url: &str) -> GcpConfig {
    GcpConfig {
        retry: RetrySettings {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            iam_conflict_attempts: 4,
            ..RetrySettings::default()
        },
        rate_limits: RateLimits::unlimited(),
        ..GcpConfig::emulator(url.parse().unwrap())
    }
}

async fn connect(fake: &Fake) -> (Gcp, Registry) {
    let mut registry = Registry::default();
    let gcp = Gcp::connect(&config(&fake.url), &mut registry).await.unwrap();
    (gcp, registry)
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

fn secret_x() -> SecretName {
    SecretName::new("p", "x")
}

#[tokio::test]
async fn reads_stop_retrying_at_their_bound_and_every_attempt_is_counted() {
    let fake = Fake::start(|_| error(503, "UNAVAILABLE", "The service is currently unavailable.")).await;
    let (gcp, registry) = connect(&fake).await;
    let err = gcp.find_secret(&secret_x()).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(fake.count("GET", "/v1/projects/p/secrets/x"), 3);
    let text = metrics_text(&registry);
    assert!(
        text.contains(
            r#"gcp_api_calls_total{service="secretmanager",method="GetSecret",code="UNAVAILABLE"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "gcp_api_call_duration_seconds_count{service=\"secretmanager\",method=\"GetSecret\"} 3"
        )
    );
}

#[tokio::test]
async fn reads_recover_from_transient_failures() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let fake = Fake::start(move |_| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n <= 2 {
            return error(429, "RESOURCE_EXHAUSTED", "Quota exceeded");
        }
        (
            200,
            json!({"name": "projects/p/secrets/x", "etag": "\"e\"", "replication": {"automatic": {}}})
                .to_string(),
        )
    })
    .await;
    let (gcp, registry) = connect(&fake).await;
    let secret = gcp.find_secret(&secret_x()).await.unwrap().unwrap();
    assert!(!secret.is_managed());
    assert_eq!(*calls.lock().unwrap(), 3);
    let text = metrics_text(&registry);
    assert!(
        text.contains(r#"method="GetSecret",code="RESOURCE_EXHAUSTED"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"method="GetSecret",code="OK"} 1"#), "{text}");
}

#[tokio::test]
async fn a_lost_add_version_or_create_response_is_not_retried() {
    // The server may have stored the version before the response was lost: repeating would add it twice.
    let fake = Fake::start(|_| error(503, "UNAVAILABLE", "upstream connect error")).await;
    let (gcp, _registry) = connect(&fake).await;
    let err = gcp
        .add_version(&secret_x(), &SecretPayload::from("value"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(fake.count("POST", "/v1/projects/p/secrets/x:addVersion"), 1);

    let err = gcp
        .create_secret(&secret_x(), &NewSecret::default())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(fake.count("POST", "/v1/projects/p/secrets"), 1);
}

#[tokio::test]
async fn add_version_sends_the_checksum_and_the_managed_label_is_added_on_create() {
    let fake = Fake::start(|seen| {
        if seen.path().ends_with(":addVersion") {
            return (
                200,
                json!({"name": "projects/p/secrets/x/versions/4", "state": "ENABLED"}).to_string(),
            );
        }
        let body: Value = serde_json::from_str(&seen.body).unwrap();
        (
            200,
            json!({"name": "projects/p/secrets/x", "labels": body["labels"], "etag": "\"1\""}).to_string(),
        )
    })
    .await;
    let (gcp, _registry) = connect(&fake).await;
    let v = gcp
        .add_version(&secret_x(), &SecretPayload::from("123456789"))
        .await
        .unwrap();
    assert_eq!(v.number, 4);
    let spec = NewSecret {
        labels: [("team".to_owned(), "ml".to_owned())].into(),
        ..NewSecret::default()
    };
    let created = gcp.create_secret(&secret_x(), &spec).await.unwrap();
    assert!(created.is_managed());
    assert_eq!(created.labels["team"], "ml");

    let seen = fake.seen();
    let add: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(add["payload"]["data"], STANDARD.encode("123456789"));
    // CRC32C("123456789") = 0xe3069283, sent as a decimal int64 string.
    assert_eq!(add["payload"]["dataCrc32c"], "3808858755");
    assert!(seen[1].uri.contains("secretId=x"), "{}", seen[1].uri);
    let create: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(create["labels"]["managed-by"], "litellm-operator");
    assert!(create["replication"]["automatic"].is_object(), "{create}");
}

#[tokio::test]
async fn oversized_payloads_are_refused_without_a_call() {
    let fake = Fake::start(|_| (200, "{}".to_owned())).await;
    let (gcp, _registry) = connect(&fake).await;
    let err = gcp
        .add_version(&secret_x(), &SecretPayload::new(vec![b'a'; 64 * 1024 + 1]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(fake.seen().is_empty());
}

/// An IAM policy endpoint with etags, and another writer that sneaks in a binding before each of our first
/// `conflicts` writes.
fn racing_policy_server(
    initial: Vec<Value>,
    conflicts: u32,
) -> (
    impl Fn(&fake::Seen) -> (u16, String) + Send + Sync + 'static,
    Bindings,
) {
    struct Policy {
        bindings: Vec<Value>,
        etag: u64,
        conflicts: u32,
    }
    let state = Arc::new(Mutex::new(Policy {
        bindings: initial,
        etag: 1,
        conflicts,
    }));
    let bindings = Arc::new(Mutex::new(Vec::new()));
    let out = bindings.clone();
    let render = |p: &Policy| {
        json!({"version": 3, "etag": STANDARD.encode(p.etag.to_string()), "bindings": p.bindings}).to_string()
    };
    let handler = move |seen: &fake::Seen| {
        let mut p = state.lock().unwrap();
        let reply = if seen.path().ends_with(":getIamPolicy") {
            assert!(
                seen.uri.contains("options.requestedPolicyVersion=3"),
                "{}",
                seen.uri
            );
            (200, render(&p))
        } else if seen.path().ends_with(":setIamPolicy") {
            if p.conflicts > 0 {
                p.conflicts -= 1;
                let n = p.conflicts;
                p.bindings
                    .push(json!({"role": "roles/viewer", "members": [format!("user:other{n}@example.com")]}));
                p.etag += 1;
            }
            let body: Value = serde_json::from_str(&seen.body).unwrap();
            let sent = STANDARD.decode(body["policy"]["etag"].as_str().unwrap()).unwrap();
            if sent != p.etag.to_string().into_bytes() {
                error(409, "ABORTED", "There were concurrent policy changes.")
            } else {
                p.bindings = body["policy"]["bindings"].as_array().cloned().unwrap_or_default();
                p.etag += 1;
                (200, render(&p))
            }
        } else {
            error(404, "NOT_FOUND", "no")
        };
        *out.lock().unwrap() = p.bindings.clone();
        reply
    };
    (handler, bindings)
}

#[tokio::test]
async fn iam_conflicts_re_read_and_every_writer_keeps_its_binding() {
    let conditional = json!({
        "role": ACCESSOR,
        "members": ["user:temp@example.com"],
        "condition": {"title": "expires", "expression": "request.time < timestamp('2030-01-01T00:00:00Z')"}
    });
    let (handler, bindings) = racing_policy_server(vec![conditional.clone()], 2);
    let fake = Fake::start(handler).await;
    let (gcp, registry) = connect(&fake).await;
    let target = PolicyTarget::Secret(secret_x());
    assert_eq!(
        gcp.add_member(&target, ACCESSOR, SA).await.unwrap(),
        PolicyChange::Changed
    );
    assert_eq!(fake.count("GET", ":getIamPolicy"), 3);
    assert_eq!(fake.count("POST", ":setIamPolicy"), 3);

    let bindings = bindings.lock().unwrap().clone();
    assert!(
        bindings.contains(&conditional),
        "conditional binding lost: {bindings:?}"
    );
    for other in ["user:other1@example.com", "user:other0@example.com"] {
        assert!(
            bindings.iter().any(|b| b["members"][0] == other),
            "{other} lost: {bindings:?}"
        );
    }
    assert!(
        bindings
            .iter()
            .any(|b| b["role"] == ACCESSOR && b.get("condition").is_none() && b["members"][0] == SA),
        "{bindings:?}"
    );
    // The write carried version 3 because the policy has a condition.
    let last: Value = serde_json::from_str(&fake.seen().last().unwrap().body).unwrap();
    assert_eq!(last["policy"]["version"], 3);
    let text = metrics_text(&registry);
    assert!(
        text.contains(r#"method="SetIamPolicy",code="ABORTED"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn iam_conflicts_stop_at_their_bound() {
    let (handler, _bindings) = racing_policy_server(vec![], 1000);
    let fake = Fake::start(handler).await;
    let (gcp, _registry) = connect(&fake).await;
    let err = gcp
        .add_member(&PolicyTarget::Secret(secret_x()), ACCESSOR, SA)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Aborted { .. }), "{err:?}");
    assert_eq!(fake.count("POST", ":setIamPolicy"), 4);
}

#[tokio::test]
async fn no_write_when_the_member_differs_only_in_case() {
    let existing = json!({"role": ACCESSOR, "members": [SA.to_uppercase()]});
    let (handler, _bindings) = racing_policy_server(vec![existing], 0);
    let fake = Fake::start(handler).await;
    let (gcp, _registry) = connect(&fake).await;
    let target = PolicyTarget::Secret(secret_x());
    assert_eq!(
        gcp.add_member(&target, ACCESSOR, SA).await.unwrap(),
        PolicyChange::Unchanged
    );
    assert_eq!(
        gcp.remove_member(&target, "roles/run.invoker", SA).await.unwrap(),
        PolicyChange::Unchanged
    );
    assert_eq!(fake.count("POST", ":setIamPolicy"), 0);
    // Removing matches case-insensitively too.
    assert_eq!(
        gcp.remove_member(&target, ACCESSOR, SA).await.unwrap(),
        PolicyChange::Changed
    );
    let last: Value = serde_json::from_str(&fake.seen().last().unwrap().body).unwrap();
    // An empty repeated field is omitted on the wire; setIamPolicy replaces bindings (default mask).
    let sent = &last["policy"]["bindings"];
    assert!(sent.is_null() || *sent == json!([]), "{sent}");
    assert!(
        last["policy"]["etag"].is_string(),
        "the write must carry the etag: {last}"
    );
}

#[tokio::test]
async fn calls_are_held_to_the_configured_rate_and_the_wait_is_measured() {
    let fake = Fake::start(|_| (200, json!({"name": "projects/p/secrets/x"}).to_string())).await;
    let mut registry = Registry::default();
    // 1,200/min = 20/s with one second of burst.
    let limits = RateLimits {
        secret_reads_per_minute: Some(1200),
        ..RateLimits::unlimited()
    };
    let config = GcpConfig {
        rate_limits: limits,
        ..config(&fake.url)
    };
    let gcp = Gcp::connect(&config, &mut registry).await.unwrap();
    let start = std::time::Instant::now();
    for _ in 0..40 {
        gcp.find_secret(&secret_x()).await.unwrap();
    }
    // 20 go out at once, the next 20 at 20/s.
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    let text = metrics_text(&registry);
    assert!(
        text.contains(r#"gcp_rate_limit_wait_seconds_count{quota_class="secret_read"} 40"#),
        "{text}"
    );
    let sum: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"gcp_rate_limit_wait_seconds_sum{quota_class="secret_read"} "#))
        .unwrap()
        .parse()
        .unwrap();
    // How long depends on how fast the calls themselves were (the bucket refills meanwhile); that the
    // limiter held calls back at all is what is measured.
    assert!(sum > 0.0, "waited {sum} s in total");
}

#[tokio::test]
async fn an_etag_guarded_label_update_is_retried_and_lists_are_paged() {
    let patches = Arc::new(Mutex::new(0));
    let p = patches.clone();
    let fake = Fake::start(move |seen| {
        if seen.method == "PATCH" {
            let mut n = p.lock().unwrap();
            *n += 1;
            if *n <= 2 {
                return error(503, "UNAVAILABLE", "try again");
            }
            let body: Value = serde_json::from_str(&seen.body).unwrap();
            return (
                200,
                json!({"name": "projects/p/secrets/x", "labels": body["labels"], "etag": "\"2\""})
                    .to_string(),
            );
        }
        let page = |ids: &[&str], next: &str| {
            let secrets: Vec<_> = ids
                .iter()
                .map(|id| json!({"name": format!("projects/p/secrets/{id}")}))
                .collect();
            json!({"secrets": secrets, "nextPageToken": next}).to_string()
        };
        if seen.uri.contains("pageToken=t2") {
            (200, page(&["c"], ""))
        } else {
            (200, page(&["a", "b"], "t2"))
        }
    })
    .await;
    let (gcp, _registry) = connect(&fake).await;
    let labels = [("managed-by".to_owned(), "litellm-operator".to_owned())].into();
    let updated = gcp.update_labels(&secret_x(), &labels, "\"1\"").await.unwrap();
    assert!(updated.is_managed());
    assert_eq!(*patches.lock().unwrap(), 3);
    let patch = fake.seen().into_iter().find(|s| s.method == "PATCH").unwrap();
    assert!(patch.uri.contains("updateMask=labels"), "{}", patch.uri);
    let body: Value = serde_json::from_str(&patch.body).unwrap();
    assert_eq!(body["etag"], "\"1\"");

    let listed = gcp
        .list_secrets("p", Some("labels.managed-by=litellm-operator"))
        .await
        .unwrap();
    let ids: Vec<_> = listed.iter().map(|s| s.name.secret.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let list = fake.seen().into_iter().find(|s| s.method == "GET").unwrap();
    assert!(
        list.uri.contains("filter=labels.managed-by%3Dlitellm-operator"),
        "{}",
        list.uri
    );
}
