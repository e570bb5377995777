//! The Cloud Run Admin v1 (Knative `serving.knative.dev/v1`) view of the same services, for `gcloud run`, which
//! speaks v1 on a regional host (`REGION-run.HOST`). A view, owning no data: each function translates a v1 request
//! into Cloud Run v2 calls over the run store ([`CloudRun`]) and the v2 answer back into Knative objects.

use chrono::DateTime;
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::run::CloudRun;
use crate::wire;

const INGRESS: [(&str, &str); 3] = [
    ("all", "INGRESS_TRAFFIC_ALL"),
    ("internal", "INGRESS_TRAFFIC_INTERNAL_ONLY"),
    (
        "internal-and-cloud-load-balancing",
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    ),
];

/// The region of a regional v1 host such as `us-central1-run.googleapis.com`.
pub fn region_of_host(host: &str) -> Option<String> {
    let (region, _) = host.split_once("-run.")?;
    (!region.is_empty()).then(|| region.to_string())
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// Knative Service (v1) -> Cloud Run v2 Service body.
fn to_v2(body: &Map<String, Value>) -> ApiResult<Map<String, Value>> {
    let body = Value::Object(body.clone());
    let meta = body.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut out = Map::new();
    if let Some(Value::Object(labels)) = meta.get("labels") {
        let kept: Map<String, Value> = labels
            .iter()
            .filter(|(k, _)| !k.starts_with("cloud.googleapis.com/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !kept.is_empty() {
            out.insert("labels".into(), Value::Object(kept));
        }
    }
    let annotations = meta
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(ingress) = annotations
        .get("run.googleapis.com/ingress")
        .and_then(Value::as_str)
    {
        let v2 = INGRESS
            .iter()
            .find(|(k, _)| *k == ingress)
            .map(|(_, v)| *v)
            .ok_or_else(|| ApiError::invalid(format!("Invalid ingress setting: {ingress}")))?;
        out.insert("ingress".into(), json!(v2));
    }
    if let Some(stage) = annotations.get("run.googleapis.com/launch-stage") {
        out.insert("launchStage".into(), stage.clone());
    }
    let tmeta = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let tspec = spec
        .get("template")
        .and_then(|t| t.get("spec"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut template = Map::new();
    if let Some(name) = tmeta.get("name").and_then(Value::as_str) {
        template.insert("revision".into(), json!(name));
    }
    let tann = tmeta
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut scaling = Map::new();
    for (key, field) in [
        ("autoscaling.knative.dev/maxScale", "maxInstanceCount"),
        ("autoscaling.knative.dev/minScale", "minInstanceCount"),
    ] {
        if let Some(n) = tann
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<i64>().ok())
        {
            scaling.insert(field.into(), json!(n));
        }
    }
    if !scaling.is_empty() {
        template.insert("scaling".into(), Value::Object(scaling));
    }
    if let Some(n) = tspec.get("containerConcurrency").and_then(wire::int64_value) {
        template.insert("maxInstanceRequestConcurrency".into(), json!(n));
    }
    if let Some(n) = tspec.get("timeoutSeconds").and_then(wire::int64_value) {
        template.insert("timeout".into(), json!(format!("{n}s")));
    }
    if let Some(sa) = tspec.get("serviceAccountName").and_then(Value::as_str) {
        template.insert("serviceAccount".into(), json!(sa));
    }
    let mut containers = Vec::new();
    for c in tspec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let mut out_c = Map::new();
        for field in ["name", "image", "command", "args", "ports", "workingDir"] {
            if let Some(v) = c.get(field) {
                out_c.insert(field.into(), v.clone());
            }
        }
        if let Some(limits) = c.get("resources").and_then(|r| r.get("limits")) {
            out_c.insert("resources".into(), json!({"limits": limits}));
        }
        let mut env = Vec::new();
        for e in c
            .get("env")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let name = e.get("name").cloned().unwrap_or(Value::Null);
            if let Some(r) = e.get("valueFrom").and_then(|v| v.get("secretKeyRef")) {
                let secret = r.get("name").cloned().unwrap_or(Value::Null);
                let version = r.get("key").cloned().unwrap_or(json!("latest"));
                env.push(json!({"name": name, "valueSource": {"secretKeyRef": {"secret": secret, "version": version}}}));
            } else {
                env.push(json!({"name": name, "value": e.get("value").cloned().unwrap_or(json!(""))}));
            }
        }
        if !env.is_empty() {
            out_c.insert("env".into(), Value::Array(env));
        }
        containers.push(Value::Object(out_c));
    }
    template.insert("containers".into(), Value::Array(containers));
    out.insert("template".into(), Value::Object(template));
    if let Some(Value::Array(traffic)) = spec.get("traffic") {
        let list: Vec<Value> = traffic
            .iter()
            .map(|t| {
                let percent = t.get("percent").cloned().unwrap_or(json!(0));
                match t.get("revisionName").and_then(Value::as_str) {
                    Some(r) if t.get("latestRevision").and_then(Value::as_bool) != Some(true) => {
                        json!({"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": r, "percent": percent})
                    }
                    _ => json!({"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": percent}),
                }
            })
            .collect();
        if !list.is_empty() {
            out.insert("traffic".into(), Value::Array(list));
        }
    }
    Ok(out)
}

fn status_word(state: &str) -> &'static str {
    match state {
        "CONDITION_SUCCEEDED" => "True",
        "CONDITION_FAILED" => "False",
        _ => "Unknown",
    }
}

fn timestamp_of(v: &Value, field: &str) -> Value {
    v.get(field).cloned().unwrap_or(Value::Null)
}

/// Cloud Run v2 Service (as rendered) -> Knative Service (v1).
fn to_v1(svc: &Value, namespace: &str, region: &str) -> Value {
    let name = svc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let mut labels = svc
        .get("labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert("cloud.googleapis.com/location".into(), json!(region));
    let ingress = str_of(svc, &["ingress"])
        .and_then(|i| INGRESS.iter().find(|(_, v)| *v == i))
        .map(|(k, _)| *k)
        .unwrap_or("all");
    let t = svc.get("template").cloned().unwrap_or_else(|| json!({}));
    let mut tann = Map::new();
    if let Some(n) = t.get("scaling").and_then(|s| s.get("maxInstanceCount")) {
        tann.insert("autoscaling.knative.dev/maxScale".into(), json!(n.to_string()));
    }
    if let Some(n) = t.get("scaling").and_then(|s| s.get("minInstanceCount")) {
        tann.insert("autoscaling.knative.dev/minScale".into(), json!(n.to_string()));
    }
    let mut tmeta = json!({"annotations": tann});
    if let Some(r) = t.get("revision") {
        tmeta["name"] = r.clone();
    }
    let containers = containers_to_v1(&t);
    let timeout = t
        .get("timeout")
        .and_then(Value::as_str)
        .and_then(wire::parse_duration)
        .map(|d| d.as_secs())
        .unwrap_or(300);
    let traffic: Vec<Value> = svc
        .get("traffic")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|tt| match tt.get("revision") {
            Some(r) => json!({"revisionName": r, "percent": tt.get("percent")}),
            None => json!({"latestRevision": true, "percent": tt.get("percent")}),
        })
        .collect();
    let short = |field: &str| {
        svc.get(field)
            .and_then(Value::as_str)
            .map(|r| r.rsplit('/').next().unwrap_or("").to_string())
    };
    let terminal = svc.get("terminalCondition").cloned().unwrap_or_else(|| json!({}));
    let ready_state = str_of(&terminal, &["state"]).unwrap_or("");
    let mut ready = json!({"type": "Ready", "status": status_word(ready_state), "lastTransitionTime": timestamp_of(&terminal, "lastTransitionTime")});
    if let Some(m) = terminal.get("message") {
        ready["message"] = m.clone();
        ready["reason"] = json!("RevisionFailed");
    }
    let mut conditions = vec![ready];
    for c in svc
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let state = str_of(&c, &["state"]).unwrap_or("");
        let mut v1 = json!({"type": c.get("type"), "status": status_word(state), "lastTransitionTime": timestamp_of(&c, "lastTransitionTime")});
        if let Some(m) = c.get("message") {
            v1["message"] = m.clone();
        }
        conditions.push(v1);
    }
    let traffic_status: Vec<Value> = svc
        .get("trafficStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|tt| {
            let rev = tt
                .get("revision")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| short("latestReadyRevision"));
            let mut v = json!({"revisionName": rev, "percent": tt.get("percent")});
            if tt.get("revision").is_none() {
                v["latestRevision"] = json!(true);
            }
            v
        })
        .collect();
    let generation: i64 = str_of(svc, &["generation"])
        .and_then(|g| g.parse().ok())
        .unwrap_or(1);
    // Knative's observedGeneration is the generation its controller has reconciled, served or failed (gcloud waits
    // for it); v2's advances only when a generation serves.
    let settled = !svc.get("reconciling").and_then(Value::as_bool).unwrap_or(false);
    let observed: i64 = if settled {
        generation
    } else {
        str_of(svc, &["observedGeneration"])
            .and_then(|g| g.parse().ok())
            .unwrap_or(0)
    };
    let mut status = json!({
        "observedGeneration": observed,
        "conditions": conditions,
        "url": svc.get("uri"),
        "address": {"url": svc.get("uri")},
        "traffic": traffic_status,
    });
    if let Some(r) = short("latestCreatedRevision") {
        status["latestCreatedRevisionName"] = json!(r);
    }
    if let Some(r) = short("latestReadyRevision") {
        status["latestReadyRevisionName"] = json!(r);
    }
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "selfLink": format!("/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}"),
            "uid": svc.get("uid"),
            "resourceVersion": svc.get("etag"),
            "generation": generation,
            "creationTimestamp": svc.get("createTime"),
            "labels": labels,
            "annotations": {"run.googleapis.com/ingress": ingress, "run.googleapis.com/ingress-status": ingress,
                            "serving.knative.dev/creator": "emulator@example.com", "serving.knative.dev/lastModifier": "emulator@example.com"},
        },
        "spec": {
            "template": {
                "metadata": tmeta,
                "spec": {
                    "containerConcurrency": t.get("maxInstanceRequestConcurrency").cloned().unwrap_or(json!(80)),
                    "timeoutSeconds": timeout,
                    "serviceAccountName": t.get("serviceAccount"),
                    "containers": containers,
                }
            },
            "traffic": traffic,
        },
        "status": status,
    })
}

/// v2 containers -> Knative containers (secret env vars become `valueFrom.secretKeyRef`).
fn containers_to_v1(t: &Value) -> Vec<Value> {
    t
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let mut out = Map::new();
            for field in ["name", "image", "command", "args", "ports", "workingDir"] {
                if let Some(v) = c.get(field) {
                    out.insert(field.into(), v.clone());
                }
            }
            if let Some(l) = c.get("resources").and_then(|r| r.get("limits")) {
                out.insert("resources".into(), json!({"limits": l}));
            }
            let env: Vec<Value> = c
                .get("env")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|e| match e.get("valueSource").and_then(|v| v.get("secretKeyRef")) {
                    Some(r) => json!({"name": e.get("name"), "valueFrom": {"secretKeyRef": {"name": r.get("secret"), "key": r.get("version").cloned().unwrap_or(json!("latest"))}}}),
                    None => json!({"name": e.get("name"), "value": e.get("value").cloned().unwrap_or(json!(""))}),
                })
                .collect();
            if !env.is_empty() {
                out.insert("env".into(), Value::Array(env));
            }
            Value::Object(out)
        })
        .collect()
}

/// One requirement of a Kubernetes label selector.
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Missing(String),
}

/// A Kubernetes label selector (`a=b,c!=d,e in (f,g),h,!i`), as `labelSelector` takes it.
struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    fn parse(text: &str) -> ApiResult<LabelSelector> {
        let mut terms = Vec::new();
        let mut depth = 0usize;
        let mut current = String::new();
        for c in text.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if c == ',' && depth == 0 {
                terms.push(std::mem::take(&mut current));
            } else {
                current.push(c);
            }
        }
        terms.push(current);
        let invalid = |t: &str| ApiError::invalid(format!("Unable to parse label selector term: '{t}'"));
        let values = |list: &str, t: &str| -> ApiResult<Vec<String>> {
            let inner = list
                .trim()
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| invalid(t))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let mut out = Vec::new();
        for term in terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::Missing(key.trim().to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, list)) = term.split_once(" notin ") {
                Requirement::NotIn(k.trim().to_string(), values(list, term)?)
            } else if let Some((k, list)) = term.split_once(" in ") {
                Requirement::In(k.trim().to_string(), values(list, term)?)
            } else if term.contains(char::is_whitespace) {
                return Err(invalid(term));
            } else {
                Requirement::Exists(term.to_string())
            };
            out.push(req);
        }
        Ok(LabelSelector(out))
    }

    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::Missing(k) => get(k).is_none(),
        })
    }
}

fn v2_name(namespace: &str, region: &str, name: &str) -> String {
    format!("projects/{namespace}/locations/{region}/services/{name}")
}

/// `GET .../namespaces/{ns}/services/{name}`.
pub fn get_service(
    run: &mut CloudRun<'_>,
    namespace: &str,
    region: &str,
    name: &str,
    now: DateTime<Utc>,
) -> ApiResult<Value> {
    let full = v2_name(namespace, region, name);
    let svc = run.get_service(&full, now)?;
    Ok(to_v1(&svc, namespace, region))
}

/// Lists services of one region, or of every region when `region` is `-` (`projects.locations.services.list`
/// with `locations/-`), keeping those whose labels match a Kubernetes `labelSelector`.
pub fn list_services(
    run: &mut CloudRun<'_>,
    namespace: &str,
    region: &str,
    label_selector: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<Value> {
    let selector = LabelSelector::parse(label_selector.unwrap_or(""))?;
    let parent = format!("projects/{namespace}/locations/{region}");
    let req = crate::wire::Request::parse(axum::http::Method::GET, "/", None, bytes::Bytes::new());
    let list = run.list_services(&parent, &req, now)?;
    let items: Vec<Value> = list
        .get("services")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let location = str_of(s, &["name"])
                .and_then(|n| n.split('/').nth(3))
                .unwrap_or(region)
                .to_string();
            to_v1(s, namespace, &location)
        })
        .filter(|s| {
            selector.matches(
                s.get("metadata")
                    .and_then(|m| m.get("labels"))
                    .and_then(Value::as_object),
            )
        })
        .collect();
    let mut out = json!({"apiVersion": "serving.knative.dev/v1", "kind": "ServiceList", "items": items,
        "metadata": {}});
    if region == "-" {
        out["unreachable"] = json!([]);
    }
    Ok(out)
}

/// Create (POST, `name` None) or replace (PUT) through the v2 machinery, answering the Knative object.
pub fn put_service(
    run: &mut CloudRun<'_>,
    namespace: &str,
    region: &str,
    name: Option<&str>,
    body: &Map<String, Value>,
    now: DateTime<Utc>,
) -> ApiResult<Value> {
    let meta_name = body
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let id = name.unwrap_or(meta_name);
    if region == "-" {
        return Err(ApiError::invalid(
            "A service must be created in a single region, not '-'.",
        ));
    }
    if id.is_empty() {
        return Err(ApiError::invalid("metadata.name must be set."));
    }
    let full = v2_name(namespace, region, id);
    let exists = run.store.services.contains_key(&full);
    if name.is_none() && exists {
        return Err(ApiError::new(
            crate::error::Code::AlreadyExists,
            format!("Resource '{id}' already exists."),
        ));
    }
    if name.is_some() && !exists {
        return Err(ApiError::not_found(format!(
            "Resource '{id}' of kind 'SERVICE' in region '{region}' in project '{namespace}' does not exist."
        )));
    }
    let v2 = to_v2(body)?;
    run.put_service_v1(&full, &v2, now)?;
    get_service(run, namespace, region, id, now)
}

/// `DELETE .../namespaces/{ns}/services/{name}`: the v2 delete, answered with a Kubernetes `Status`.
pub fn delete_service(
    run: &mut CloudRun<'_>,
    namespace: &str,
    region: &str,
    name: &str,
    now: DateTime<Utc>,
) -> ApiResult<Value> {
    let full = v2_name(namespace, region, name);
    let req = crate::wire::Request::parse(axum::http::Method::DELETE, "/", None, bytes::Bytes::new());
    run.delete_service(&full, &req, now)?;
    Ok(
        json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "details": {"name": name, "kind": "services"}}),
    )
}

fn revision_v1(run: &CloudRun<'_>, full: &str, namespace: &str, region: &str) -> Option<Value> {
    let r = run.store.revisions.get(full)?;
    let v2 = run.render_revision_json(r);
    let svc_short = r.service.rsplit('/').next().unwrap_or("").to_string();
    let serving = run
        .store
        .services
        .get(&r.service)
        .map(|s| run.serving_revisions(s))
        .unwrap_or_default()
        .contains(&r.name);
    let ready = v2
        .get("conditions")
        .and_then(|c| c.get(0))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut ready_v1 = json!({"type": "Ready", "status": status_word(str_of(&ready, &["state"]).unwrap_or("")),
        "lastTransitionTime": timestamp_of(&ready, "lastTransitionTime")});
    if let Some(m) = ready.get("message") {
        ready_v1["message"] = m.clone();
    }
    let short = full.rsplit('/').next().unwrap_or("");
    let timeout = v2
        .get("timeout")
        .and_then(Value::as_str)
        .and_then(wire::parse_duration)
        .map(|d| d.as_secs())
        .unwrap_or(300);
    Some(json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {
            "name": short,
            "namespace": namespace,
            "uid": v2.get("uid"),
            "generation": 1,
            "creationTimestamp": v2.get("createTime"),
            "labels": {
                "serving.knative.dev/service": svc_short,
                "serving.knative.dev/configuration": svc_short,
                "cloud.googleapis.com/location": region,
            },
            "annotations": {"serving.knative.dev/creator": "emulator@example.com"},
        },
        "spec": {
            "containerConcurrency": v2.get("maxInstanceRequestConcurrency").cloned().unwrap_or(json!(80)),
            "timeoutSeconds": timeout,
            "serviceAccountName": v2.get("serviceAccount"),
            "containers": containers_to_v1(&v2),
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [ready_v1, {"type": "Active", "status": if serving { "True" } else { "False" }, "severity": "Info"}],
            "logUrl": v2.get("logUri"),
        },
    }))
}

/// `GET .../namespaces/{ns}/revisions/{name}`.
pub fn get_revision(
    run: &mut CloudRun<'_>,
    namespace: &str,
    region: &str,
    name: &str,
    now: DateTime<Utc>,
) -> ApiResult<Value> {
    run.settle(now);
    let prefix = format!("projects/{namespace}/locations/{region}/services/");
    let suffix = format!("/revisions/{name}");
    let not_found = || ApiError::not_found(format!("Revision '{name}' does not exist."));
    let full = run
        .store
        .revisions
        .keys()
        .find(|k| k.starts_with(&prefix) && k.ends_with(&suffix))
        .cloned()
        .ok_or_else(not_found)?;
    revision_v1(run, &full, namespace, region).ok_or_else(not_found)
}

/// Lists revisions, newest first, honouring a `serving.knative.dev/service = NAME` label selector.
pub fn list_revisions(
    run: &mut CloudRun<'_>,
    namespace: &str,
    region: &str,
    selector: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<Value> {
    run.settle(now);
    let mut service = None;
    for term in selector.unwrap_or("").split(',').filter(|t| !t.trim().is_empty()) {
        let (k, v) = term
            .split_once('=')
            .ok_or_else(|| ApiError::invalid(format!("Unsupported label selector: {term}")))?;
        if k.trim() == "serving.knative.dev/service" {
            service = Some(v.trim().to_string());
        }
    }
    let prefix = match &service {
        Some(s) => format!("projects/{namespace}/locations/{region}/services/{s}/revisions/"),
        None => format!("projects/{namespace}/locations/{region}/services/"),
    };
    let names: Vec<String> = run
        .store
        .revisions_newest_first(&prefix)
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let items: Vec<Value> = names
        .iter()
        .filter_map(|n| revision_v1(run, n, namespace, region))
        .collect();
    Ok(
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "RevisionList", "items": items, "metadata": {}}),
    )
}
