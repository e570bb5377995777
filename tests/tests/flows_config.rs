//! End-to-end flows, LiteLLM's configuration (`spec.config`): it becomes a Secret Manager secret the operator owns,
//! mounted into the service as `/etc/litellm/config.yaml` pinned to a version and passed with `--config`; an edit of
//! the inline YAML or of its ConfigMap adds a version and rolls a revision pinned to it, an unchanged one writes
//! nothing; invalid YAML is refused before any Google call, without quoting it. The operator runs in-process against
//! a real kube-apiserver + etcd and the Google emulator; each test has its own namespace, emulator and operator
//! instance ([`World`]).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use litellm_operator::controller::Settings;
use litellm_operator_api::LiteLLMDeploymentStatus;
use litellm_operator_gcp::{
    CloudRun, IamPolicies, PolicyTarget, SecretName, SecretStore, SecretVersionStore, ServiceName, VersionRef,
};
use litellm_operator_tests::fixtures::{PROJECT, REGION, RUNTIME_SA, minimal};
use litellm_operator_tests::world::fast_settings;
use litellm_operator_tests::{GOOGLE_WRITES, World, condition, is_ready, pinned};
use serde_json::{Value, json};

/// The key of the configuration's pin in `status.secrets`.
const CONFIG: &str = "/etc/litellm/config.yaml";

/// A configuration with one model; `answer` tells versions apart.
fn config_yaml(answer: &str) -> String {
    format!(
        "model_list:\n  - model_name: demo\n    litellm_params:\n      model: openai/gpt-4o-mini\n      \
         api_key: fake-key\n      mock_response: \"{answer}\"\ngeneral_settings:\n  master_key: \
         os.environ/LITELLM_MASTER_KEY\n"
    )
}

/// A LiteLLMDeployment named `name` with a generated master key and `config` as its `spec.config`: the
/// [`minimal`] one without its `DATABASE_URL`.
fn with_config(name: &str, config: Value) -> Value {
    let mut manifest = minimal(name);
    manifest["spec"]["secrets"].as_array_mut().unwrap().truncate(1);
    manifest["spec"]["config"] = config;
    manifest
}

/// The service in REST JSON shape, as the project's owner reads it.
async fn service(w: &World, name: &str) -> Value {
    let live = w
        .gcp
        .get_service(&ServiceName::new(PROJECT, REGION, name))
        .await
        .unwrap()
        .unwrap();
    serde_json::to_value(live).unwrap()
}

/// The value of version `version` of secret `id`, as the project's owner reads it.
async fn secret_value(w: &World, id: &str, version: u64) -> String {
    let got = w
        .gcp
        .access_version(&SecretName::new(PROJECT, id), VersionRef::Number(version))
        .await
        .unwrap();
    String::from_utf8(got.payload.expose().to_vec()).unwrap()
}

/// The service mounts secret `id` at version `version` as /etc/litellm/config.yaml and passes `--config`.
#[track_caller]
fn assert_mounted(svc: &Value, id: &str, version: &str) {
    let template = &svc["template"];
    let volume = template["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "litellm-config"))
        .unwrap_or_else(|| panic!("no config volume: {template}"));
    assert_eq!(
        volume["secret"]["secret"].as_str().unwrap().rsplit('/').next(),
        Some(id),
        "{volume}"
    );
    assert_eq!(
        volume["secret"]["items"],
        json!([{"version": version, "path": "config.yaml"}]),
        "{volume}"
    );
    let container = &template["containers"][0];
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "litellm-config", "mountPath": "/etc/litellm"}]),
        "{container}"
    );
    assert_eq!(container["args"], json!(["--config", CONFIG]), "{container}");
}

fn config_pinned(version: &'static str) -> impl Fn(&LiteLLMDeploymentStatus) -> bool {
    move |s| pinned(s, CONFIG) == version && is_ready(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_config_is_a_pinned_secret_file_and_an_edit_rolls_a_revision_on_version_2() {
    let w = World::new("cfg-inline").await;
    let name = w
        .create(with_config("cfg-inline", json!({"inline": config_yaml("one")})))
        .await;
    let first = w
        .wait_for(
            &name,
            "the config pinned to 1 and Ready",
            Duration::from_secs(60),
            config_pinned("1"),
        )
        .await;

    // An owned secret like any other: our labels, the value, access for the runtime account.
    let id = "cfg-inline-config";
    let secret = SecretName::new(PROJECT, id);
    let found = w.gcp.find_secret(&secret).await.unwrap().unwrap();
    assert_eq!(found.labels["managed-by"], "litellm-operator");
    assert_eq!(secret_value(&w, id, 1).await, config_yaml("one"));
    let policy = w
        .gcp
        .get_policy(&PolicyTarget::Secret(secret.clone()))
        .await
        .unwrap();
    assert!(
        policy
            .bindings
            .iter()
            .any(|b| b.role == "roles/secretmanager.secretAccessor"
                && b.members.contains(&format!("serviceAccount:{RUNTIME_SA}"))),
        "{policy:?}"
    );
    let entry = first.secrets.iter().find(|p| p.env == CONFIG).unwrap();
    assert_eq!(entry.secret, format!("projects/{PROJECT}/secrets/{id}"));
    assert_mounted(&service(&w, &name).await, id, "1");
    assert_eq!(pinned(&first, "LITELLM_MASTER_KEY"), "1");

    // Converged: resyncs (every 2 s) write nothing and read no value.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = w.calls();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let quiet = w.calls().since(&before);
    for method in GOOGLE_WRITES.iter().chain(&["*.AccessSecretVersion"]) {
        assert_eq!(quiet.count(method), 0, "{method} in steady state: {quiet:?}");
    }

    // An edit of the inline YAML: version 2, and a revision pinned to it.
    w.patch_spec(&name, json!({"config": {"inline": config_yaml("two")}}))
        .await;
    let second = w
        .wait_for(
            &name,
            "the config pinned to 2 and Ready",
            Duration::from_secs(60),
            config_pinned("2"),
        )
        .await;
    assert_ne!(second.latest_ready_revision, first.latest_ready_revision);
    assert_eq!(secret_value(&w, id, 2).await, config_yaml("two"));
    assert_mounted(&service(&w, &name).await, id, "2");
    // Only the configuration changed.
    assert_eq!(pinned(&second, "LITELLM_MASTER_KEY"), "1");
    assert_eq!(w.gcp.list_versions(&secret).await.unwrap().len(), 2);

    // A spec edit that leaves the YAML alone adds no version (the value is compared, not written again).
    w.patch_spec(&name, json!({"service": {"labels": {"team": "platform"}}}))
        .await;
    w.wait_for(&name, "the new generation served", Duration::from_secs(60), |s| {
        is_ready(s) && s.observed_generation == Some(3)
    })
    .await;
    assert_eq!(w.gcp.list_versions(&secret).await.unwrap().len(), 2);
}

/// ConfigMaps of the world's namespace.
fn config_maps(w: &World) -> Api<ConfigMap> {
    Api::namespaced(w.client.clone(), &w.ns)
}

/// Creates or replaces ConfigMap `name` with `data`.
async fn put_config_map(w: &World, name: &str, data: &[(&str, &str)]) {
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..ConfigMap::default()
    };
    config_maps(w)
        .patch(
            name,
            &PatchParams::apply("flows-test").force(),
            &Patch::Apply(&map),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_from_a_config_map_waits_for_it_and_follows_its_edits() {
    // No periodic resync during the test: only the ConfigMap watch can notice a change (a waiting resource is
    // looked at again only every 30 s, a converged one at the resync).
    let w = World::builder("cfg-map")
        .settings(Settings {
            resync: Duration::from_secs(600),
            ..fast_settings()
        })
        .start()
        .await;
    let name = w
        .create(with_config(
            "cfg-map",
            json!({"configMapKeyRef": {"name": "litellm-config", "key": "config.yaml"}}),
        ))
        .await;
    // No ConfigMap yet: a clear wait naming it and its key; the rest converges.
    let waiting = w
        .wait_for(&name, "SecretSourceMissing", Duration::from_secs(30), |s| {
            condition(s, "SecretsReady").1 == "SecretSourceMissing"
        })
        .await;
    let message = condition(&waiting, "SecretsReady").2;
    assert!(
        message.contains(&format!("ConfigMap {}/litellm-config", w.ns)),
        "{message}"
    );
    assert_eq!(pinned(&waiting, "LITELLM_MASTER_KEY"), "1");
    assert!(
        !w.service_exists("cfg-map").await,
        "no service before every secret is pinned"
    );

    // The key is missing: named too.
    put_config_map(&w, "litellm-config", &[("other.yaml", "a: 1\n")]).await;
    w.wait_for(&name, "the missing key named", Duration::from_secs(15), |s| {
        condition(s, "SecretsReady")
            .2
            .contains("has no key \"config.yaml\"")
    })
    .await;

    // Invalid YAML in the ConfigMap: refused for the configuration, never quoted.
    put_config_map(
        &w,
        "litellm-config",
        &[("config.yaml", "model_list:\n  - sk-never-shown\n")],
    )
    .await;
    let invalid = w
        .wait_for(
            &name,
            "InvalidSpec on SecretsReady",
            Duration::from_secs(15),
            |s| condition(s, "SecretsReady").1 == "InvalidSpec",
        )
        .await;
    let message = condition(&invalid, "SecretsReady").2;
    assert!(message.contains("model_list[0] is a string"), "{message}");
    assert!(
        !serde_json::to_string(&invalid)
            .unwrap()
            .contains("sk-never-shown")
    );
    assert!(!w.secret_exists("cfg-map-config").await);

    // The ConfigMap watch picks each change up within seconds, without any other trigger.
    put_config_map(&w, "litellm-config", &[("config.yaml", &config_yaml("one"))]).await;
    let first = w
        .wait_for(
            &name,
            "the config pinned to 1 and Ready",
            Duration::from_secs(20),
            config_pinned("1"),
        )
        .await;
    let rv = first
        .secrets
        .iter()
        .find(|p| p.env == CONFIG)
        .and_then(|p| p.source_resource_version.clone());
    assert!(rv.is_some(), "the ConfigMap's resourceVersion is recorded");
    assert_mounted(&service(&w, &name).await, "cfg-map-config", "1");

    put_config_map(&w, "litellm-config", &[("config.yaml", &config_yaml("two"))]).await;
    let second = w
        .wait_for(
            &name,
            "the config pinned to 2 and Ready",
            Duration::from_secs(20),
            config_pinned("2"),
        )
        .await;
    assert_ne!(second.latest_ready_revision, first.latest_ready_revision);
    assert_eq!(secret_value(&w, "cfg-map-config", 2).await, config_yaml("two"));
    assert_mounted(&service(&w, &name).await, "cfg-map-config", "2");

    // Pointing at another key of the same ConfigMap is a new value, though the ConfigMap's version is unchanged.
    put_config_map(
        &w,
        "litellm-config",
        &[
            ("config.yaml", &config_yaml("two")),
            ("alt.yaml", &config_yaml("three")),
        ],
    )
    .await;
    let rv = config_maps(&w)
        .get("litellm-config")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    // The operator has read this version of the ConfigMap (its config.yaml unchanged: no new version).
    w.wait_for(
        &name,
        "the ConfigMap's new version recorded",
        Duration::from_secs(20),
        |s| {
            s.secrets.iter().any(|p| {
                p.env == CONFIG
                    && p.version.as_deref() == Some("2")
                    && p.source_resource_version
                        .as_deref()
                        .is_some_and(|r| r.ends_with(&format!("@{rv}")))
            })
        },
    )
    .await;
    w.patch_spec(
        &name,
        json!({"config": {"configMapKeyRef": {"name": "litellm-config", "key": "alt.yaml"}}}),
    )
    .await;
    let third = w
        .wait_for(
            &name,
            "the other key's config pinned to 3 and Ready",
            Duration::from_secs(30),
            config_pinned("3"),
        )
        .await;
    assert_eq!(secret_value(&w, "cfg-map-config", 3).await, config_yaml("three"));
    assert_ne!(third.latest_ready_revision, second.latest_ready_revision);
    let second = third;

    // Dropping spec.config removes the volume and `--config` from the service.
    w.patch_spec(&name, json!({"config": null})).await;
    let without = w
        .wait_for(&name, "Ready without the config", Duration::from_secs(60), |s| {
            is_ready(s) && pinned(s, CONFIG).is_empty()
        })
        .await;
    assert_ne!(without.latest_ready_revision, second.latest_ready_revision);
    let svc = service(&w, &name).await;
    assert!(svc["template"].get("volumes").is_none(), "{svc}");
    assert!(svc["template"]["containers"][0].get("args").is_none(), "{svc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_inline_yaml_is_refused_by_line_and_column_without_calling_google() {
    let w = World::new("cfg-invalid").await;
    let yaml = "general_settings:\n  master_key: sk-never-shown\n bad: [\n";
    let name = w
        .create(with_config("cfg-invalid", json!({"inline": yaml})))
        .await;
    let status = w
        .wait_for(&name, "InvalidSpec", Duration::from_secs(30), |s| {
            condition(s, "Ready").1 == "InvalidSpec"
        })
        .await;
    let message = condition(&status, "Ready").2;
    assert!(
        message.contains("spec.config.inline: not valid YAML at line 3 column 2"),
        "{message}"
    );
    assert!(!serde_json::to_string(&status).unwrap().contains("sk-never-shown"));
    let events = w.events().await;
    assert!(events.iter().any(|e| e.starts_with("InvalidSpec")), "{events:?}");
    assert!(events.iter().all(|e| !e.contains("sk-never-shown")), "{events:?}");
    assert!(
        w.calls().is_empty(),
        "Google was called for an invalid spec: {:?}",
        w.calls()
    );
    let requests = w.emulator.state().requests();
    assert!(
        requests.is_empty(),
        "Google was called for an invalid spec: {:?}",
        requests.iter().map(|r| &r.method).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_a_config_with_both_sources_or_none() {
    let w = World::new("cfg-cel").await;
    for (config, case) in [
        (
            json!({"inline": config_yaml("one"), "configMapKeyRef": {"name": "c", "key": "k"}}),
            "both",
        ),
        (json!({}), "none"),
    ] {
        let obj = serde_json::from_value(with_config("cfg-cel", config)).unwrap();
        let err = w
            .deployments()
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(case);
        assert!(
            err.to_string()
                .contains("config needs exactly one of inline or configMapKeyRef"),
            "{case}: {err}"
        );
    }
}
