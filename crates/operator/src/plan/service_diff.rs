//! Decides whether the live Cloud Run service differs from the desired one in the fields the operator owns.
//!
//! Every template change creates a revision, so a false "differs" costs a rollout. Only fields present in the
//! desired service are compared; fields the server fills in (container names, port names, `cpuIdle`, launch stage,
//! status) are ignored, and a value the desired service leaves at its proto3 default matches an absent one.

use litellm_operator_api::names::{CONFIG_PATH, CONFIG_VOLUME};
use serde_json::{Map, Value};

/// Label keys Google itself may put on a service; never counted as drift.
const SYSTEM_LABEL_PREFIXES: [&str; 3] = ["goog-", "run.googleapis.com", "cloud.googleapis.com"];

/// The owned-field paths where `live` differs from `desired`, e.g. `template.containers[0].image`.
pub fn drift(desired: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    compare("", desired, Some(live), &mut out);
    // The liveness probe is wholly owned: a spec without one (`probes.liveness.enabled: false`) removes it.
    let container = |v: &Value| v["template"]["containers"][0].clone();
    if container(desired).is_object()
        && container(desired).get("livenessProbe").is_none()
        && container(live).get("livenessProbe").is_some_and(|p| !p.is_null())
    {
        out.push("template.containers[0].livenessProbe".to_owned());
    }
    // LiteLLM's configuration is wholly owned: a spec without `config` removes its volume (the update sends the
    // spec's container, so its mount and `--config` go with it, as every container field is the spec's). Only the
    // operator's own volume counts: another tool's volumes are left alone.
    if desired.get("template").is_some()
        && desired["template"].get("volumes").is_none()
        && has_config_volume(live)
    {
        out.push(format!("template.volumes (removes {CONFIG_VOLUME})"));
    }
    if container(desired).is_object()
        && container(desired).get("args").is_none()
        && container(live)["args"] == config_args()
    {
        out.push("template.containers[0].args (removes --config)".to_owned());
    }
    // Labels are wholly owned: one removed from the spec must go from the service too.
    if let (Some(want), Some(have)) = (
        desired.get("labels").and_then(Value::as_object),
        live.get("labels").and_then(Value::as_object),
    ) {
        for key in have.keys() {
            if !want.contains_key(key) && !SYSTEM_LABEL_PREFIXES.iter().any(|p| key.starts_with(p)) {
                out.push(format!("labels.{key}"));
            }
        }
    }
    out
}

fn compare(path: &str, desired: &Value, live: Option<&Value>, out: &mut Vec<String>) {
    let Some(live) = live.filter(|l| !l.is_null()) else {
        if !is_default(desired) {
            out.push(path.to_owned());
        }
        return;
    };
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                compare(&join(path, key), value, have.get(key), out);
            }
        }
        (Value::Array(want), Value::Array(have)) if path.ends_with(".env") && named(want) && named(have) => {
            compare_env(path, want, have, out);
        }
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                out.push(path.to_owned());
                return;
            }
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                compare(&format!("{path}[{i}]"), w, Some(h), out);
            }
        }
        (want, have) => {
            if !same_scalar(want, have) && !same_secret(path, want, have) {
                out.push(path.to_owned());
            }
        }
    }
}

/// Whether the service has the operator's configuration volume.
fn has_config_volume(service: &Value) -> bool {
    service["template"]["volumes"]
        .as_array()
        .is_some_and(|volumes| volumes.iter().any(|v| v["name"] == CONFIG_VOLUME))
}

/// The arguments the operator gives LiteLLM for `spec.config`.
fn config_args() -> Value {
    Value::from(vec!["--config", CONFIG_PATH])
}

/// Whether every item is an object with a string `name` (env vars).
fn named(items: &[Value]) -> bool {
    items.iter().all(|i| i["name"].is_string())
}

/// Env vars by name, so the change says which variables come and go (`template.containers[0].env (adds A;
/// removes B)`): a plaintext variable the spec leaves out shows by name in `plan` and `apply`. Variables in
/// both are compared field by field (`env[0].valueSource.secretKeyRef.version`, the index the spec's). Names
/// only, never values.
fn compare_env(path: &str, want: &[Value], have: &[Value], out: &mut Vec<String>) {
    let name = |v: &Value| v["name"].as_str().unwrap_or_default().to_owned();
    let wanted: Vec<String> = want.iter().map(name).collect();
    let had: Vec<String> = have.iter().map(name).collect();
    let added: Vec<&str> = wanted
        .iter()
        .filter(|n| !had.contains(n))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = had
        .iter()
        .filter(|n| !wanted.contains(n))
        .map(String::as_str)
        .collect();
    let mut what = Vec::new();
    if !added.is_empty() {
        what.push(format!("adds {}", added.join(", ")));
    }
    if !removed.is_empty() {
        what.push(format!("removes {}", removed.join(", ")));
    }
    if !what.is_empty() {
        out.push(format!("{path} ({})", what.join("; ")));
    }
    let before = out.len();
    for (i, w) in want.iter().enumerate() {
        if let Some(h) = have.iter().find(|h| h["name"] == w["name"]) {
            compare(&format!("{path}[{i}]"), w, Some(h), out);
        }
    }
    // The same variables with the same values in another order: still a change (the spec's order is sent).
    let common = |names: &[String], other: &[String]| -> Vec<String> {
        names.iter().filter(|n| other.contains(n)).cloned().collect()
    };
    if what.is_empty() && out.len() == before && common(&wanted, &had) != common(&had, &wanted) {
        out.push(format!("{path} (order)"));
    }
}

/// Cloud Run keeps a secret of the service's own project as the bare id it was given (`gcloud run deploy
/// --set-secrets ENV=ID:N`, or `/PATH=ID:N` for a secret volume), the spec names it in full
/// (`projects/P/secrets/ID`). The spec's secrets are always of the service's project, so the two name the same
/// secret.
fn same_secret(path: &str, want: &Value, have: &Value) -> bool {
    if !(path.ends_with(".secretKeyRef.secret") || path.ends_with(".secret.secret")) {
        return false;
    }
    match (want.as_str(), have.as_str()) {
        (Some(full), Some(id)) => {
            !id.is_empty()
                && !id.contains('/')
                && full.strip_suffix(id).is_some_and(|p| p.ends_with("/secrets/"))
        }
        _ => false,
    }
}

/// Google's JSON writes int64 as strings and omits proto3 defaults; compare by meaning.
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::String(y)) | (Value::String(y), Value::Number(x)) => x.to_string() == *y,
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn is_default(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_default),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The service to send in a patch: the live service with every owned field replaced by the desired value, so
/// fields other tools set (annotations, traffic splits, client info) survive. Objects merge key by key; arrays and
/// scalars are replaced whole; `labels` is replaced whole (keeping Google's system labels).
pub fn merge_owned(live: &Value, desired: &Value) -> Value {
    let mut merged = live.clone();
    merge_into(&mut merged, desired);
    if let (Some(want), Some(have)) = (
        desired.get("labels").and_then(Value::as_object),
        live.get("labels").and_then(Value::as_object),
    ) {
        let mut labels: Map<String, Value> = have
            .iter()
            .filter(|(k, _)| SYSTEM_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.extend(want.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged["labels"] = Value::Object(labels);
    }
    // Without `config` in the spec, its volume goes (another tool's volumes stay).
    if desired.get("template").is_some()
        && desired["template"].get("volumes").is_none()
        && let Some(template) = merged.get_mut("template").and_then(Value::as_object_mut)
        && let Some(volumes) = template.get_mut("volumes").and_then(Value::as_array_mut)
    {
        volumes.retain(|v| v["name"] != CONFIG_VOLUME);
        if volumes.is_empty() {
            template.remove("volumes");
        }
    }
    merged
}

fn merge_into(target: &mut Value, desired: &Value) {
    match (target, desired) {
        (Value::Object(t), Value::Object(d)) => {
            for (key, value) in d {
                match t.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge_into(existing, value)
                    }
                    _ => {
                        t.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (t, d) => *t = d.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde_json::json;

    #[test]
    fn a_liveness_probe_the_spec_turned_off_is_drift_and_none_on_either_side_is_not() {
        let probe = json!({"httpGet": {"path": "/health/liveliness", "port": 4000}});
        let without = json!({"template": {"containers": [{"image": "i"}]}});
        let with = json!({"template": {"containers": [{"image": "i", "livenessProbe": probe}]}});
        assert_eq!(
            super::drift(&without, &with),
            vec!["template.containers[0].livenessProbe".to_owned()]
        );
        assert!(super::drift(&without, &without).is_empty());
        assert!(super::drift(&with, &with).is_empty());
        // The update sends the spec's container, so the probe goes.
        let merged = super::merge_owned(&with, &without);
        assert!(merged["template"]["containers"][0].get("livenessProbe").is_none());
    }

    use super::*;

    fn desired() -> Value {
        json!({
            "labels": {"managed-by": "litellm-operator"},
            "ingress": "INGRESS_TRAFFIC_ALL",
            "template": {
                "serviceAccount": "run@p.iam.gserviceaccount.com",
                "scaling": {"minInstanceCount": 0, "maxInstanceCount": 10},
                "timeout": "300s",
                "containers": [{
                    "image": "litellm:1",
                    "ports": [{"containerPort": 4000}],
                    "env": [{"name": "A", "valueSource": {"secretKeyRef": {"secret": "projects/p/secrets/a", "version": "3"}}}]
                }]
            }
        })
    }

    /// What Cloud Run returns for `desired()`: server defaults filled in, zero values omitted, int64 as strings.
    fn live() -> Value {
        json!({
            "name": "projects/p/locations/r/services/s",
            "generation": "4",
            "labels": {"managed-by": "litellm-operator", "goog-managed-by": "cloudfunctions"},
            "ingress": "INGRESS_TRAFFIC_ALL",
            "launchStage": "GA",
            "template": {
                "serviceAccount": "run@p.iam.gserviceaccount.com",
                "scaling": {"maxInstanceCount": 10},
                "timeout": "300s",
                "maxInstanceRequestConcurrency": 80,
                "containers": [{
                    "name": "litellm-1",
                    "image": "litellm:1",
                    "ports": [{"name": "http1", "containerPort": 4000}],
                    "resources": {"limits": {"cpu": "1000m"}, "cpuIdle": true},
                    "env": [{"name": "A", "valueSource": {"secretKeyRef": {"secret": "projects/p/secrets/a", "version": "3"}}}]
                }]
            },
            "latestReadyRevision": "projects/p/locations/r/services/s/revisions/s-00004-abc"
        })
    }

    #[test]
    fn server_defaults_and_output_fields_are_not_drift() {
        assert_eq!(drift(&desired(), &live()), Vec::<String>::new());
    }

    #[test]
    fn a_changed_owned_field_is_drift_with_its_path() {
        let mut l = live();
        l["template"]["containers"][0]["image"] = json!("evil:latest");
        l["template"]["containers"][0]["env"][0]["valueSource"]["secretKeyRef"]["version"] = json!("2");
        assert_eq!(
            drift(&desired(), &l),
            [
                "template.containers[0].env[0].valueSource.secretKeyRef.version",
                "template.containers[0].image"
            ]
        );
    }

    #[test]
    fn added_env_and_labels_are_drift() {
        let mut l = live();
        l["template"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "B", "value": "x"}));
        l["labels"]["owner"] = json!("someone");
        assert_eq!(
            drift(&desired(), &l),
            ["template.containers[0].env (removes B)", "labels.owner"]
        );
    }

    /// A plaintext variable the spec leaves out is named (never its value), and so is one it adds; variables in
    /// both are still compared field by field.
    #[test]
    fn env_changes_name_the_variables() {
        let mut l = live();
        l["template"]["containers"][0]["env"] = json!([
            {"name": "OPENAI_API_KEY", "value": "sk-proj-do-not-print"},
            {"name": "A", "valueSource": {"secretKeyRef": {"secret": "projects/p/secrets/a", "version": "latest"}}}
        ]);
        let mut d = desired();
        d["template"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "C", "value": "1"}));
        let paths = drift(&d, &l);
        assert_eq!(
            paths,
            [
                "template.containers[0].env (adds C; removes OPENAI_API_KEY)",
                "template.containers[0].env[0].valueSource.secretKeyRef.version"
            ]
        );
        assert!(!paths.concat().contains("sk-proj"), "{paths:?}");
        // Same variables, other order: a change, named as such.
        let mut l = live();
        let mut d = desired();
        d["template"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "B", "value": "x"}));
        l["template"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "B", "value": "x"}));
        assert_eq!(drift(&d, &l), ["template.containers[0].env (order)"]);
    }

    #[test]
    fn a_secret_named_by_its_bare_id_is_the_same_secret() {
        let mut l = live();
        l["template"]["containers"][0]["env"][0]["valueSource"]["secretKeyRef"]["secret"] = json!("a");
        assert_eq!(drift(&desired(), &l), Vec::<String>::new());
        l["template"]["containers"][0]["env"][0]["valueSource"]["secretKeyRef"]["secret"] = json!("b");
        assert_eq!(
            drift(&desired(), &l),
            ["template.containers[0].env[0].valueSource.secretKeyRef.secret"]
        );
        l["template"]["containers"][0]["env"][0]["valueSource"]["secretKeyRef"]["secret"] =
            json!("projects/other/secrets/a");
        assert_eq!(
            drift(&desired(), &l),
            ["template.containers[0].env[0].valueSource.secretKeyRef.secret"]
        );
    }

    /// `desired()` with LiteLLM's configuration pinned to `version`, as `desired::service` builds it.
    fn with_config(version: &str) -> Value {
        let mut d = desired();
        d["template"]["volumes"] = json!([{"name": "litellm-config", "secret": {
            "secret": "projects/p/secrets/s-config", "items": [{"version": version, "path": "config.yaml"}]
        }}]);
        d["template"]["containers"][0]["volumeMounts"] =
            json!([{"name": "litellm-config", "mountPath": "/etc/litellm"}]);
        d["template"]["containers"][0]["args"] = json!(["--config", "/etc/litellm/config.yaml"]);
        d
    }

    /// What Cloud Run returns for `with_config(version)`.
    fn live_with_config(version: &str) -> Value {
        let mut l = live();
        let d = with_config(version);
        l["template"]["volumes"] = d["template"]["volumes"].clone();
        l["template"]["volumes"][0]["secret"]["items"][0]["mode"] = json!(0);
        l["template"]["containers"][0]["volumeMounts"] =
            d["template"]["containers"][0]["volumeMounts"].clone();
        l["template"]["containers"][0]["args"] = d["template"]["containers"][0]["args"].clone();
        l
    }

    #[test]
    fn a_pinned_config_file_is_compared_by_version_and_by_secret_id_as_for_env() {
        assert_eq!(
            drift(&with_config("1"), &live_with_config("1")),
            Vec::<String>::new()
        );
        assert_eq!(
            drift(&with_config("2"), &live_with_config("1")),
            ["template.volumes[0].secret.items[0].version"]
        );
        // `gcloud run deploy --set-secrets /etc/litellm/config.yaml=s-config:1` keeps the bare id.
        let mut l = live_with_config("1");
        l["template"]["volumes"][0]["secret"]["secret"] = json!("s-config");
        assert_eq!(drift(&with_config("1"), &l), Vec::<String>::new());
        // Adding a config to a service without one is a template change.
        let added = drift(&with_config("1"), &live());
        assert!(added.contains(&"template.volumes".to_owned()), "{added:?}");
        assert!(
            added.contains(&"template.containers[0].args".to_owned()),
            "{added:?}"
        );
    }

    #[test]
    fn a_spec_without_config_removes_the_operators_volume_mount_and_args_only() {
        let paths = drift(&desired(), &live_with_config("1"));
        assert_eq!(
            paths,
            [
                "template.volumes (removes litellm-config)",
                "template.containers[0].args (removes --config)"
            ]
        );
        let merged = merge_owned(&live_with_config("1"), &desired());
        assert!(merged["template"].get("volumes").is_none(), "{merged}");
        assert!(merged["template"]["containers"][0].get("args").is_none());
        assert!(merged["template"]["containers"][0].get("volumeMounts").is_none());
        assert_eq!(drift(&desired(), &merged), Vec::<String>::new());

        // Another tool's volume and arguments are not ours to remove.
        let mut l = live();
        l["template"]["volumes"] = json!([{"name": "certs", "secret": {"secret": "certs"}}]);
        l["template"]["containers"][0]["args"] = json!(["--port", "4000"]);
        assert_eq!(drift(&desired(), &l), Vec::<String>::new());
        let merged = merge_owned(&l, &desired());
        assert_eq!(merged["template"]["volumes"][0]["name"], "certs");
    }

    #[test]
    fn a_nonzero_default_missing_live_is_drift() {
        let mut d = desired();
        d["template"]["scaling"]["minInstanceCount"] = json!(2);
        assert_eq!(drift(&d, &live()), ["template.scaling.minInstanceCount"]);
    }

    #[test]
    fn merge_keeps_foreign_fields_and_replaces_owned_ones() {
        let mut l = live();
        l["annotations"] = json!({"run.googleapis.com/client-name": "gcloud"});
        l["labels"]["owner"] = json!("someone");
        l["template"]["containers"][0]["image"] = json!("evil:latest");
        let merged = merge_owned(&l, &desired());
        assert_eq!(merged["annotations"]["run.googleapis.com/client-name"], "gcloud");
        assert_eq!(merged["template"]["containers"][0]["image"], "litellm:1");
        assert_eq!(
            merged["labels"],
            json!({"managed-by": "litellm-operator", "goog-managed-by": "cloudfunctions"})
        );
        assert_eq!(drift(&desired(), &merged), Vec::<String>::new());
    }
}
