//! The harness itself: a real API server with RBAC, per-test namespaces, CRD installation, and no
//! process or directory left behind however a test ends.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use litellm_operator_tests::{ControlPlane, NAMESPACE_LABEL, eventually, install_crd, kubernetes_version};
use serde_json::json;

/// Set in the child process of `janitor_stops_everything_when_the_test_process_exits`.
const EXIT_HELPER_ENV: &str = "LITELLM_TESTS_EXIT_HELPER";

#[tokio::test]
async fn serves_the_pinned_release_with_rbac() {
    let cp = ControlPlane::shared().await.unwrap();
    let client = cp.client().unwrap();

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, format!("v{}", kubernetes_version().unwrap()));

    // Admin (system:masters) may do anything...
    let ns = cp.namespace("harness-rbac").await.unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "probe"}, "data": {"k": "v"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    // ...but a user without bindings is refused by RBAC.
    let mut config = cp.config().clone();
    config.auth_info.impersonate = Some("nobody".to_owned());
    let nobody = Client::try_from(config).unwrap();
    let error = Api::<Secret>::namespaced(nobody, &ns)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("\"nobody\""), "{}", status.message);
        }
        other => panic!("expected 403 Forbidden, got {other}"),
    }
}

#[tokio::test]
async fn namespaces_are_unique_and_labelled() {
    let cp = ControlPlane::shared().await.unwrap();
    let a = cp.namespace("harness-ns").await.unwrap();
    let b = cp.namespace("harness-ns").await.unwrap();
    assert_ne!(a, b);
    let namespaces = Api::<Namespace>::all(cp.client().unwrap());
    for name in [&a, &b] {
        let ns = namespaces.get(name).await.unwrap();
        assert_eq!(
            ns.metadata
                .labels
                .unwrap()
                .get(NAMESPACE_LABEL)
                .map(String::as_str),
            Some("true")
        );
    }
}

#[tokio::test]
async fn kubectl_uses_the_admin_kubeconfig() {
    let cp = ControlPlane::shared().await.unwrap();
    let ns = cp.namespace("harness-kubectl").await.unwrap();
    let output = cp
        .kubectl()
        .args([
            "create",
            "configmap",
            "made-by-kubectl",
            "-n",
            &ns,
            "--from-literal=a=b",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let made = Api::<ConfigMap>::namespaced(cp.client().unwrap(), &ns)
        .get("made-by-kubectl")
        .await
        .unwrap();
    assert_eq!(made.data.unwrap()["a"], "b");
}

/// A CRD of our own with a CEL rule: install_crd waits for Established, and the API server
/// enforces the rule at admission.
#[tokio::test]
async fn installs_a_crd_whose_cel_rule_the_server_enforces() {
    let cp = ControlPlane::shared().await.unwrap();
    let client = cp.client().unwrap();
    let crd = install_crd(&client, WIDGET_CRD).await.unwrap();
    assert_eq!(crd.metadata.name.as_deref(), Some("widgets.harness.test"));

    let ns = cp.namespace("harness-crd").await.unwrap();
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("harness.test", "v1", "Widget"), "widgets");
    let widgets = Api::<DynamicObject>::namespaced_with(client, &ns, &resource);
    let widget = |name: &str, min: i64, max: i64| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "harness.test/v1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"min": min, "max": max}
        }))
        .unwrap()
    };
    widgets
        .create(&PostParams::default(), &widget("good", 1, 2))
        .await
        .unwrap();
    let error = widgets
        .create(&PostParams::default(), &widget("bad", 3, 2))
        .await
        .unwrap_err();
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains("min must not exceed max"),
                "{}",
                status.message
            );
        }
        other => panic!("expected 422 Invalid, got {other}"),
    }
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.harness.test
spec:
  group: harness.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                min: {type: integer}
                max: {type: integer}
              x-kubernetes-validations:
                - rule: self.min <= self.max
                  message: min must not exceed max
"#;

fn port_open(server: &str) -> bool {
    let address = server.trim_start_matches("https://");
    TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_millis(200)).is_ok()
}

fn assert_gone(dir: &Path, server: &str) {
    // Both are gone by the time drop returns: it waits for the processes and the clean-up.
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!port_open(server), "{server} still accepts connections");
}

#[tokio::test]
async fn drop_stops_the_processes_and_removes_the_directory() {
    let cp = ControlPlane::start().await.unwrap();
    let (dir, server) = (cp.dir().to_owned(), cp.server().to_owned());
    assert!(dir.join("kubeconfig").is_file());
    assert!(port_open(&server));
    drop(cp);
    assert_gone(&dir, &server);
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let (tx, rx) = std::sync::mpsc::channel::<(PathBuf, String)>();
    let result = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let cp = ControlPlane::start().await.unwrap();
            tx.send((cp.dir().to_owned(), cp.server().to_owned())).unwrap();
            panic!("a test failed while holding the control plane");
        })
    })
    .join();
    assert!(result.is_err(), "the thread was meant to panic");
    let (dir, server) = rx.recv().unwrap();
    assert_gone(&dir, &server);
}

/// A lazily started global is never dropped; the janitor must stop it when the process exits,
/// even by `exit` without destructors. Runs this test binary again as the child.
#[tokio::test]
async fn janitor_stops_everything_when_the_test_process_exits() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "exit_helper", "--ignored", "--nocapture"])
        .env(EXIT_HELPER_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| -> String {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the helper's output: {stdout}"))
            .to_owned()
    };
    let (dir, server) = (PathBuf::from(field("DIR=")), field("SERVER="));
    eventually(
        "the janitor stopping kube-apiserver",
        Duration::from_secs(15),
        || async { !port_open(&server) },
    )
    .await;
    eventually(
        "the janitor removing the directory",
        Duration::from_secs(15),
        || async { !dir.exists() },
    )
    .await;
}

/// The child process of the test above, run only by it.
#[test]
#[ignore = "run by janitor_stops_everything_when_the_test_process_exits"]
fn exit_helper() {
    assert!(
        std::env::var_os(EXIT_HELPER_ENV).is_some(),
        "run only as a child process"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cp = runtime.block_on(ControlPlane::shared()).unwrap();
    println!("DIR={}", cp.dir().display());
    println!("SERVER={}", cp.server());
    std::process::exit(0);
}

/// Service-account tokens are signed and verified with the generated keys, and RBAC applies to
/// them: refused before a binding, allowed after.
#[tokio::test]
async fn service_account_clients_get_exactly_their_rbac() {
    let cp = ControlPlane::shared().await.unwrap();
    let ns = cp.namespace("harness-sa").await.unwrap();
    let reader = cp.service_account_client(&ns, "reader").await.unwrap();
    let config_maps = Api::<ConfigMap>::namespaced(reader, &ns);

    match config_maps.list(&ListParams::default()).await.unwrap_err() {
        // 403, not 401: the token authenticated, and RBAC refused.
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains(&format!("system:serviceaccount:{ns}:reader")),
                "{}",
                status.message
            );
        }
        other => panic!("expected 403 Forbidden, got {other}"),
    }

    let admin = cp.client().unwrap();
    let rbac = [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "read-config-maps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "reader-reads-config-maps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-config-maps"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": &ns}],
        }),
    ];
    for (object, plural) in rbac.into_iter().zip(["roles", "rolebindings"]) {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(
                "rbac.authorization.k8s.io",
                "v1",
                object["kind"].as_str().unwrap(),
            ),
            plural,
        );
        Api::<DynamicObject>::namespaced_with(admin.clone(), &ns, &resource)
            .create(&PostParams::default(), &serde_json::from_value(object).unwrap())
            .await
            .unwrap();
    }
    // The authorizer sees new bindings through an informer: allow it a moment.
    eventually(
        "the reader to be allowed to list config maps",
        Duration::from_secs(15),
        || async {
            config_maps
                .list(&ListParams::default())
                .await
                .map_err(|error| format!("still refused: {error}"))
        },
    )
    .await;
    // Still only what the role grants.
    let secrets = Api::<Secret>::namespaced(cp.service_account_client(&ns, "reader").await.unwrap(), &ns);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        Err(other) => panic!("expected 403 Forbidden for secrets, got {other}"),
        // Never print secrets, even test ones.
        Ok(list) => panic!("listing secrets was allowed ({} items)", list.items.len()),
    }
}

/// kube-controller-manager runs the controllers operator tests rely on: new namespaces get a
/// `default` service account, owner references are garbage-collected, and a deleted namespace is
/// emptied and removed.
#[tokio::test]
async fn namespaces_are_finalized_and_dependents_collected() {
    let cp = ControlPlane::shared().await.unwrap();
    let client = cp.client().unwrap();
    let ns = cp.namespace("harness-kcm").await.unwrap();
    let log = || cp.log_tail("kube-controller-manager");

    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    eventually_kcm("the default service account", &log, || async {
        accounts.get_opt("default").await.unwrap().is_some()
    })
    .await;

    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let owner = config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let dependent = json!({"metadata": {"name": "dependent", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.unwrap(),
    }]}});
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(dependent).unwrap(),
        )
        .await
        .unwrap();
    config_maps
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    eventually_kcm("garbage collection of the dependent", &log, || async {
        config_maps.get_opt("dependent").await.unwrap().is_none()
    })
    .await;

    let namespaces = Api::<Namespace>::all(client);
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    eventually_kcm("deletion of the namespace", &log, || async {
        namespaces.get_opt(&ns).await.unwrap().is_none()
    })
    .await;
}

/// Waits up to 60 s (the garbage collector first discovers every resource type) for `done`; a failure shows
/// kube-controller-manager's log.
async fn eventually_kcm<F, Fut>(what: &str, log: &dyn Fn() -> String, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(what, Duration::from_secs(60), || {
        let done = done();
        async move {
            if done.await {
                Ok(())
            } else {
                Err(format!("kube-controller-manager log:\n{}", log()))
            }
        }
    })
    .await;
}
