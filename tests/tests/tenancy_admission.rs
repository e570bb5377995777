//! Tenancy at admission: the chart's ValidatingAdmissionPolicies, rendered from its `tenancy` values, refuse each
//! attack at `kubectl apply` on the real API server with a message naming the rule, let what the namespace may do
//! through, and never stand in the way of the operator's own writes (finalizer, status) on resources that were
//! there before the policy. In its own test binary: its policies apply to the whole (per-binary) control plane.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use litellm_operator_api::LiteLLMDeployment;
use litellm_operator_tests::chart::{control_plane, documents, kubectl_stdin, release_for, template};
use litellm_operator_tests::fixtures::minimal;
use litellm_operator_tests::{Patience, eventually, install_litellm_crd};
use serde_json::{Value, json};

fn manifest(name: &str, change: impl FnOnce(&mut Value)) -> LiteLLMDeployment {
    let mut m = minimal(name);
    change(&mut m);
    serde_json::from_value(m).unwrap()
}

/// Creates `obj`; the API server's refusal message, or `None` when it was accepted.
async fn create(api: &Api<LiteLLMDeployment>, obj: &LiteLLMDeployment) -> Option<String> {
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.message),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_admission_policies_refuse_each_attack_and_spare_the_operators_writes() {
    let cp = control_plane().await;
    let client = cp.client().unwrap();
    install_litellm_crd(&client).await.unwrap();
    let own = cp.namespace("tenancy-operator").await.unwrap();
    let team = cp.namespace("tenancy-team").await.unwrap();
    let other = cp.namespace("tenancy-other").await.unwrap();
    let in_team: Api<LiteLLMDeployment> = Api::namespaced(client.clone(), &team);
    let in_other: Api<LiteLLMDeployment> = Api::namespaced(client.clone(), &other);

    // A resource that was there before the policy, and that the policy will not allow (public).
    let before = manifest("before", |m| {
        m["spec"]["service"]["allowUnauthenticated"] = json!(true)
    });
    in_team.create(&PostParams::default(), &before).await.unwrap();

    let release = release_for(&own);
    let namespace = format!("tenancy.tenants[0].namespaces[0]={team}");
    let rendered = template(
        &release,
        &own,
        &[
            "--set",
            "tenancy.tenants[0].name=team",
            "--set",
            &namespace,
            "--set",
            "tenancy.tenants[0].projects[0]=my-project",
            "--set",
            "tenancy.tenants[0].externalSecrets[0]=tavily-api-key",
            "--set",
            "tenancy.tenants[0].allowUnauthenticated=false",
        ],
    );
    let admission: Vec<String> = documents(&rendered)
        .into_iter()
        .filter(|d| {
            d["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("ValidatingAdmissionPolicy"))
        })
        .map(|d| serde_yaml::to_string(&d).unwrap())
        .collect();
    assert_eq!(
        admission.len(),
        4,
        "a policy and a binding for the tenant and for the default"
    );
    kubectl_stdin(cp, &["apply", "--server-side"], &admission.join("---\n")).await;

    // The policies take effect once the API server has loaded them.
    let external = manifest("external", |m| {
        m["spec"]["secrets"] = json!([{"env": "LITELLM_MASTER_KEY", "secretId": "other-team-litellm-master-key",
            "external": {"version": "latest"}}]);
    });
    let refused = eventually(
        "the admission policies to refuse another team's secret",
        Patience::new(Duration::from_secs(30)),
        || async {
            let message = create(&in_team, &external).await;
            if message.is_none() {
                in_team.delete("external", &Default::default()).await.unwrap();
            }
            message
        },
    )
    .await;
    assert!(
        refused.contains("external secret this namespace may not use (tenancy policy team: tavily-api-key)"),
        "{refused}"
    );

    let attacks = [
        (
            &in_other,
            manifest("account", |m| {
                m["spec"]["service"]["serviceAccount"] =
                    json!("attacker@other-project.iam.gserviceaccount.com");
            }),
            "spec.service.serviceAccount is not one of the runtime accounts this namespace may use (tenancy policy default",
        ),
        (
            &in_team,
            manifest("adopt", |m| {
                m["metadata"]["annotations"] = json!({"litellm.dev/adopt": "true"})
            }),
            "litellm.dev/adopt: \"true\" is not allowed in this namespace (tenancy policy team)",
        ),
        (
            &in_team,
            manifest("public", |m| {
                m["spec"]["service"]["allowUnauthenticated"] = json!(true)
            }),
            "allowUnauthenticated: true is not allowed in this namespace (tenancy policy team)",
        ),
        (
            &in_team,
            manifest("project", |m| {
                m["spec"]["project"] = json!("other-project");
                m["spec"]["service"]["serviceAccount"] = json!("run@other-project.iam.gserviceaccount.com");
            }),
            "spec.project is not one of the projects this namespace may use (tenancy policy team: my-project)",
        ),
        (
            &in_other,
            manifest("external", |m| {
                m["spec"]["secrets"] = json!([{"env": "TAVILY_API_KEY", "external": {"version": "latest"}}]);
            }),
            "external secret this namespace may not use (tenancy policy default: no external secrets allowed)",
        ),
    ];
    for (api, obj, rule) in attacks {
        let message = create(api, &obj)
            .await
            .unwrap_or_else(|| panic!("{rule}: accepted"));
        assert!(message.contains(rule), "{message}");
    }

    // What each namespace may do is accepted: the team's external secret, the default's own-project account.
    let allowed = manifest("allowed", |m| {
        m["spec"]["secrets"] = json!([{"env": "TAVILY_API_KEY", "external": {"version": "latest"}}]);
    });
    assert_eq!(create(&in_team, &allowed).await, None);
    assert_eq!(create(&in_other, &manifest("allowed", |_| {})).await, None);
    // An update that makes it break a rule is refused.
    let adopt = json!({"metadata": {"annotations": {"litellm.dev/adopt": "true"}}});
    let err = in_team
        .patch("allowed", &PatchParams::default(), &Patch::Merge(&adopt))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("litellm.dev/adopt"), "{err}");

    // The resource from before the policy: the operator's finalizer and status writes pass, a spec change does not.
    let finalizer = json!({"metadata": {"finalizers": ["litellm.dev/cleanup"]}});
    in_team
        .patch("before", &PatchParams::default(), &Patch::Merge(&finalizer))
        .await
        .unwrap();
    let status = json!({"status": {"observedGeneration": 1}});
    in_team
        .patch_status("before", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let image = json!({"spec": {"service": {"image": "ghcr.io/berriai/litellm:main-v1.74.0"}}});
    assert!(
        in_team
            .patch("before", &PatchParams::default(), &Patch::Merge(&image))
            .await
            .is_err()
    );
    // And its deletion (the operator removing its finalizer) goes through.
    in_team.delete("before", &Default::default()).await.unwrap();
    let none = json!({"metadata": {"finalizers": null}});
    in_team
        .patch("before", &PatchParams::default(), &Patch::Merge(&none))
        .await
        .unwrap();
}
