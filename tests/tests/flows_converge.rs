//! End-to-end flows, convergence: the runbook stack converges to Ready with every secret pinned and granted, a
//! converged resource stays quiet, a change made outside the operator is put back, and a missing input or an invalid
//! spec is reported. The operator runs in-process against a real kube-apiserver + etcd and the Google emulator; each
//! test has its own namespace, emulator and operator instance ([`World`]).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use litellm_operator_gcp::{
    CloudRun, IamPolicies, PolicyTarget, SecretName, SecretVersionStore, ServiceName, VersionRef,
    VersionState,
};
use litellm_operator_tests::fixtures::{PROJECT, REGION, RUNTIME_SA, runbook};
use litellm_operator_tests::{GOOGLE_WRITES, World, condition, eventually, pinned};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbook_stack_converges_to_ready() {
    let w = World::runbook("converge").await;
    let name = w.create(runbook("litellm-proxy")).await;
    let status = w.wait_ready(&name).await;

    // Every secret exists with a concrete pinned version and an accessor binding for the runtime account.
    assert_eq!(status.secrets.len(), 11, "{status:?}");
    for pinned_secret in &status.secrets {
        let version: u64 = pinned_secret.version.as_deref().unwrap().parse().unwrap();
        let secret = SecretName::parse(&pinned_secret.secret).unwrap();
        let v = w
            .gcp
            .get_version(&secret, VersionRef::Number(version))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.state, VersionState::Enabled);
        let policy = w
            .gcp
            .get_policy(&PolicyTarget::Secret(secret.clone()))
            .await
            .unwrap();
        let accessor = policy
            .bindings
            .iter()
            .find(|b| b.role == "roles/secretmanager.secretAccessor")
            .unwrap();
        assert!(
            accessor.members.contains(&format!("serviceAccount:{RUNTIME_SA}")),
            "{secret}"
        );
    }
    // Generated keys carry the prefix and length, and are in Secret Manager only.
    let master = w
        .gcp
        .access_version(
            &SecretName::new(PROJECT, "litellm-master-key"),
            VersionRef::Latest,
        )
        .await
        .unwrap();
    assert_eq!(master.payload.len(), 51);
    assert!(master.payload.expose().starts_with(b"sk-"));

    // The service pins every secret to the version in status, never `latest`.
    let service = w
        .gcp
        .get_service(&ServiceName::new(PROJECT, REGION, "litellm-proxy"))
        .await
        .unwrap()
        .unwrap();
    let service = serde_json::to_value(&service).unwrap();
    let env = service["template"]["containers"][0]["env"].as_array().unwrap();
    for p in &status.secrets {
        let e = env.iter().find(|e| e["name"] == p.env.as_str()).unwrap();
        assert_eq!(
            e["valueSource"]["secretKeyRef"]["version"],
            p.version.clone().unwrap().as_str(),
            "{}",
            p.env
        );
    }
    assert_eq!(
        env.iter().find(|e| e["name"] == "STORE_MODEL_IN_DB").unwrap()["value"],
        "True"
    );
    assert!(
        status.url.as_deref().unwrap_or_default().starts_with("https://"),
        "{status:?}"
    );
    assert!(status.latest_ready_revision.is_some());
    // allowUnauthenticated: allUsers may invoke.
    let policy = w
        .gcp
        .get_policy(&PolicyTarget::Service(ServiceName::new(
            PROJECT,
            REGION,
            "litellm-proxy",
        )))
        .await
        .unwrap();
    assert!(
        policy
            .bindings
            .iter()
            .any(|b| b.role == "roles/run.invoker" && b.members.contains(&"allUsers".to_owned()))
    );
    assert_eq!(status.applied_bindings.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_resource_makes_no_google_writes_and_no_status_writes() {
    let w = World::runbook("steady").await;
    let name = w.create(runbook("steady")).await;
    w.wait_ready(&name).await;
    // Let the last post-Ready reconcile settle, then watch a few resyncs (2 s each).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = w.calls();
    let status_writes = w.metrics.encode();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = w.calls();
    // Counted by the emulator, whoever called.
    for method in GOOGLE_WRITES {
        assert_eq!(
            before.count(method),
            after.count(method),
            "{method} was called in steady state: {after:?}"
        );
    }
    assert_eq!(
        before.count("*.AccessSecretVersion"),
        after.count("*.AccessSecretVersion"),
        "payload read in steady state"
    );
    let resyncs = after.count("Services.GetService") - before.count("Services.GetService");
    assert!(
        resyncs >= 2,
        "expected resyncs to read the service: {before:?} -> {after:?}"
    );
    let writes_line = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("litellm_operator_status_writes_total"))
            .map(str::to_owned)
    };
    assert_eq!(
        writes_line(&status_writes),
        writes_line(&w.metrics.encode()),
        "status written in steady state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_outside_the_operator_is_put_back() {
    let w = World::runbook("drift").await;
    let name = w.create(runbook("drift")).await;
    w.wait_ready(&name).await;
    let service_name = ServiceName::new(PROJECT, REGION, "drift");
    let mut live = serde_json::to_value(w.gcp.get_service(&service_name).await.unwrap().unwrap()).unwrap();
    live["template"]["containers"][0]["image"] = json!("example.com/someone-else:latest");
    w.gcp
        .update_service(&service_name, serde_json::from_value(live).unwrap())
        .await
        .unwrap();

    eventually("the drift to be corrected", Duration::from_secs(30), || async {
        let live = serde_json::to_value(w.gcp.get_service(&service_name).await.unwrap().unwrap()).unwrap();
        let image = &live["template"]["containers"][0]["image"];
        if image == "ghcr.io/berriai/litellm:main-stable" {
            Ok(())
        } else {
            Err(format!("drift not corrected: {image}"))
        }
    })
    .await;
    w.wait_ready(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_secret_is_reported_and_the_rest_converges() {
    let w = World::new("missing").await;
    let manifest = json!({
        "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
        "metadata": {"name": "missing"},
        "spec": {
            "project": PROJECT, "region": REGION,
            "service": {"image": "ghcr.io/berriai/litellm:main-stable", "serviceAccount": RUNTIME_SA},
            "secrets": [
                {"env": "LITELLM_MASTER_KEY", "generate": {"length": 32}},
                {"env": "OPENAI_API_KEY", "fromSecret": {"name": "not-there-yet", "key": "openai"}}
            ]
        }
    });
    let name = w.create(manifest).await;
    let status = w
        .wait_for(&name, "SecretSourceMissing", Duration::from_secs(30), |s| {
            condition(s, "SecretsReady").1 == "SecretSourceMissing"
        })
        .await;
    assert!(
        condition(&status, "SecretsReady").2.contains("not-there-yet"),
        "{status:?}"
    );
    assert_eq!(
        pinned(&status, "LITELLM_MASTER_KEY"),
        "1",
        "the other secret still converged"
    );
    assert_eq!(condition(&status, "Ready").0, "False");

    // Creating the Secret is picked up by the Secret watch.
    w.put_secret("not-there-yet", &[("openai", "sk-openai")]).await;
    w.wait_ready(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_reported_without_calling_google() {
    let w = World::new("invalid").await;
    let manifest = json!({
        "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
        "metadata": {"name": "invalid"},
        "spec": {
            "project": PROJECT, "region": REGION,
            "service": {"image": "ghcr.io/berriai/litellm:main-stable", "serviceAccount": RUNTIME_SA,
                        "resources": {"cpu": "3", "memory": "4Gi"}}
        }
    });
    let name = w.create(manifest).await;
    let status = w
        .wait_for(&name, "InvalidSpec", Duration::from_secs(30), |s| {
            condition(s, "Ready").1 == "InvalidSpec"
        })
        .await;
    assert!(
        condition(&status, "Ready")
            .2
            .contains("spec.service.resources.cpu"),
        "{status:?}"
    );
    assert!(
        w.calls().is_empty(),
        "Google was called for an invalid spec: {:?}",
        w.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_warning_is_one_event_with_a_count_not_a_pile() {
    let w = World::new("repeat").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    // Google keeps failing the same way: each retry publishes the same Warning.
    w.emulator.state().add_fault(gcp_emulator::FaultRule::new(
        "SecretManagerService.CreateSecret",
        Some(gcp_emulator::Code::Unavailable),
    ));
    let name = w
        .create(litellm_operator_tests::fixtures::minimal("repeat"))
        .await;
    let api: kube::Api<k8s_openapi::api::events::v1::Event> = kube::Api::namespaced(w.client.clone(), &w.ns);
    let series = eventually(
        "the second identical Warning to join the first as a series",
        Duration::from_secs(40),
        || async {
            let warnings: Vec<_> = api
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| {
                    e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("GoogleApiError")
                })
                .collect();
            match warnings.as_slice() {
                [one] => one.series.as_ref().map(|s| s.count),
                _ => None,
            }
        },
    )
    .await;
    assert!(series >= 2, "{series}");
    assert!(condition(&w.status(&name).await, "Ready").0 == "False");
}
