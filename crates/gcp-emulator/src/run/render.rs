//! Rendering services, revisions and where their traffic goes as Cloud Run v2 JSON.

use serde_json::{Map, Value, json};

use super::spec::split_service;
use super::{BY_REVISION, CloudRun, LATEST};
use crate::model::{Outcome, Revision, Service};
use crate::wire;

pub(super) fn with_type(mut v: Value, type_url: &str) -> Value {
    if let Value::Object(map) = &mut v {
        let mut out = Map::new();
        out.insert("@type".into(), json!(type_url));
        out.append(map);
        return Value::Object(out);
    }
    v
}

fn region_code(location: &str) -> String {
    location.split('-').filter_map(|p| p.chars().next()).collect()
}

impl CloudRun<'_> {
    pub(super) fn render_service(&self, s: &Service) -> Value {
        let pending = s
            .latest_created
            .as_ref()
            .and_then(|r| self.store.revisions.get(r))
            .is_some_and(|r| r.outcome == Outcome::Pending);
        let mut out = Map::new();
        out.insert("name".into(), json!(s.name));
        out.insert("uid".into(), json!(s.uid));
        out.insert("generation".into(), json!(s.generation.to_string()));
        for (k, v) in &s.spec {
            out.insert(k.clone(), v.clone());
        }
        out.insert("createTime".into(), json!(wire::timestamp(s.create_time)));
        out.insert("updateTime".into(), json!(wire::timestamp(s.update_time)));
        out.insert("creator".into(), json!("emulator@example.com"));
        out.insert("lastModifier".into(), json!("emulator@example.com"));
        if s.observed_generation > 0 {
            out.insert(
                "observedGeneration".into(),
                json!(s.observed_generation.to_string()),
            );
        }
        let ts = wire::timestamp(s.last_transition);
        let terminal = if pending {
            json!({"type": "Ready", "state": "CONDITION_RECONCILING", "lastTransitionTime": ts})
        } else if let Some(message) = &s.failure {
            json!({"type": "Ready", "state": "CONDITION_FAILED", "message": message, "lastTransitionTime": ts, "severity": "ERROR"})
        } else {
            json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": ts})
        };
        let routes_state = if pending && s.latest_ready.is_none() {
            "CONDITION_RECONCILING"
        } else if s.latest_ready.is_some() {
            "CONDITION_SUCCEEDED"
        } else {
            "CONDITION_FAILED"
        };
        let config_state = terminal.get("state").cloned().unwrap_or(Value::Null);
        out.insert("terminalCondition".into(), terminal);
        let mut configurations =
            json!({"type": "ConfigurationsReady", "state": config_state, "lastTransitionTime": ts});
        if let Some(message) = &s.failure {
            configurations["message"] = json!(message);
        }
        let mut routes = json!({"type": "RoutesReady", "state": routes_state, "lastTransitionTime": ts});
        if let (Some(message), "CONDITION_FAILED") = (&s.failure, routes_state) {
            routes["message"] = json!(message);
        }
        out.insert("conditions".into(), json!([routes, configurations]));
        if let Some(r) = &s.latest_ready {
            out.insert("latestReadyRevision".into(), json!(r));
        }
        if let Some(r) = &s.latest_created {
            out.insert("latestCreatedRevision".into(), json!(r));
        }
        out.insert("trafficStatuses".into(), Value::Array(self.traffic_statuses(s)));
        let [primary, deterministic] = self.service_hosts(s);
        let uri = self.public_url(&primary);
        out.insert("urls".into(), json!([self.public_url(&deterministic), uri]));
        out.insert("uri".into(), json!(uri));
        out.insert("reconciling".into(), json!(pending || s.delete_time.is_some()));
        if let Some(t) = s.delete_time {
            out.insert("deleteTime".into(), json!(wire::timestamp(t)));
        }
        out.insert("etag".into(), json!(s.etag));
        Value::Object(out)
    }

    /// A service's hosts as Google names them: `ID-HASH-REGIONCODE.a.run.app` (its `uri`) and the deterministic
    /// `ID-PROJECTNUMBER.REGION.run.app`.
    pub(super) fn service_hosts(&self, s: &Service) -> [String; 2] {
        let n = split_service(&s.name).ok();
        let (project, location, id) = n.map(|n| (n.project, n.location, n.id)).unwrap_or(("", "", ""));
        let number = self.resourcemanager.project_number(project);
        let hash = format!("{:010x}", number % 0xff_ffff_ffff);
        [
            format!("{id}-{hash}-{}.a.run.app", region_code(location)),
            format!("{id}-{number}.{location}.run.app"),
        ]
    }

    /// The URL a Cloud Run host is reached at: Google's `https://HOST`, or, when the live runtime serves traffic,
    /// the emulator's `http://ADDR/_run/HOST`.
    pub(super) fn public_url(&self, host: &str) -> String {
        match &self.store.live {
            Some(live) => format!("{}/_run/{host}", live.base_url),
            None => format!("https://{host}"),
        }
    }

    /// Where traffic actually goes: a LATEST target stays on the last ready revision when the newest failed.
    /// Tagged targets carry their URL (`TAG---HOST`).
    pub(super) fn traffic_statuses(&self, s: &Service) -> Vec<Value> {
        let traffic = s
            .spec
            .get("traffic")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let latest_is_ready = s.latest_ready.is_some() && s.latest_ready == s.latest_created;
        let tagged = |mut v: Value, t: &Value| {
            if let Some(tag) = t.get("tag") {
                v["tag"] = tag.clone();
                if let Some(tag) = tag.as_str().filter(|t| !t.is_empty()) {
                    let [host, _] = self.service_hosts(s);
                    v["uri"] = json!(self.public_url(&format!("{tag}---{host}")));
                }
            }
            v
        };
        traffic
            .iter()
            .filter_map(|t| {
                let percent = t.get("percent").cloned().unwrap_or(json!(0));
                let kind = t.get("type").and_then(Value::as_str).unwrap_or(LATEST);
                if kind == BY_REVISION {
                    let v = json!({"type": BY_REVISION, "revision": t.get("revision").cloned().unwrap_or(Value::Null), "percent": percent});
                    return Some(tagged(v, t));
                }
                if latest_is_ready {
                    Some(tagged(json!({"type": LATEST, "percent": percent}), t))
                } else {
                    s.latest_ready.as_ref().map(|r| {
                        let v = json!({"type": BY_REVISION, "revision": r.rsplit('/').next().unwrap_or(""), "percent": percent});
                        tagged(v, t)
                    })
                }
            })
            .collect()
    }

    pub(crate) fn render_revision_json(&self, r: &Revision) -> Value {
        self.render_revision(r)
    }

    /// Full names of the revisions that receive traffic.
    pub(crate) fn serving_revisions(&self, s: &Service) -> Vec<String> {
        self.traffic_statuses(s)
            .iter()
            .filter_map(|t| match t.get("revision").and_then(Value::as_str) {
                Some(r) => Some(format!("{}/revisions/{r}", s.name)),
                None => s.latest_ready.clone(),
            })
            .collect()
    }

    pub(super) fn render_revision(&self, r: &Revision) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), json!(r.name));
        out.insert("uid".into(), json!(r.uid));
        out.insert("generation".into(), json!(r.generation.to_string()));
        if !r.labels.is_null() {
            out.insert("labels".into(), r.labels.clone());
        }
        if !r.annotations.is_null() {
            out.insert("annotations".into(), r.annotations.clone());
        }
        out.insert("createTime".into(), json!(wire::timestamp(r.create_time)));
        out.insert(
            "updateTime".into(),
            json!(wire::timestamp(r.settled_at.unwrap_or(r.create_time))),
        );
        if !r.launch_stage.is_null() {
            out.insert("launchStage".into(), r.launch_stage.clone());
        }
        out.insert("service".into(), json!(r.service));
        if let Value::Object(t) = &r.template {
            for (k, v) in t {
                if !matches!(k.as_str(), "revision" | "labels" | "annotations") {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        let ts = wire::timestamp(r.settled_at.unwrap_or(r.create_time));
        let ready = match &r.outcome {
            Outcome::Pending => {
                json!({"type": "Ready", "state": "CONDITION_RECONCILING", "lastTransitionTime": ts})
            }
            Outcome::Ready => {
                json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": ts})
            }
            Outcome::Failed { reason, message } => {
                let mut c = json!({"type": "Ready", "state": "CONDITION_FAILED", "message": message, "lastTransitionTime": ts, "severity": "ERROR"});
                if reason == "HEALTH_CHECK_CONTAINER_ERROR" {
                    c["revisionReason"] = json!(reason);
                } else {
                    c["reason"] = json!(reason);
                }
                c
            }
        };
        let healthy = match &r.outcome {
            Outcome::Pending => "CONDITION_RECONCILING",
            Outcome::Ready => "CONDITION_SUCCEEDED",
            Outcome::Failed { .. } => "CONDITION_FAILED",
        };
        out.insert(
            "conditions".into(),
            json!([ready, {"type": "ContainerHealthy", "state": healthy, "lastTransitionTime": ts}]),
        );
        out.insert("observedGeneration".into(), json!(r.generation.to_string()));
        out.insert("reconciling".into(), json!(r.outcome == Outcome::Pending));
        let log_uri = match &self.store.live {
            Some(live) => live.logs_url(&r.name),
            None => format!("https://console.cloud.google.com/logs/viewer?resource={}", r.name),
        };
        out.insert("logUri".into(), json!(log_uri));
        out.insert("etag".into(), json!(format!("\"{}\"", r.uid)));
        Value::Object(out)
    }
}
