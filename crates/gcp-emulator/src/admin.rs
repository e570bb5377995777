//! The admin API under `/_emulator/`: reset, seeding, fault rules, call counters, the request log and the logs of
//! revision processes.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

pub use crate::faults::{FaultDecision, FaultRule, LogEntry, glob_match};

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::wire::{self, Request};

/// Prefix of every admin endpoint.
pub const PREFIX: &str = "_emulator";
/// The request log keeps this many entries, oldest dropped first.
pub const LOG_CAPACITY: usize = 10_000;

/// Serves `/_emulator/...`; `segments` excludes the prefix.
pub fn handle(
    app: &App,
    method: &Method,
    segments: &[String],
    req: &Request,
) -> ApiResult<(StatusCode, Value)> {
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let ok = |v: Value| Ok((StatusCode::OK, v));
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["health"]) => ok(json!({"status": "ok"})),
        ("POST", ["reset"]) => {
            app.reset();
            ok(json!({}))
        }
        ("GET", ["service-accounts"]) => {
            let st = app.lock();
            let list: Vec<&String> = st.iam.service_accounts.keys().collect();
            ok(json!({"serviceAccounts": list}))
        }
        ("POST", ["service-accounts"]) => {
            let body = req.json()?;
            let mut emails: Vec<String> = Vec::new();
            if let Some(e) = wire::str_field(&body, "email") {
                emails.push(e.to_string());
            }
            if let Some(Value::Array(list)) = body.get("emails") {
                emails.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
            }
            if emails.is_empty() {
                return Err(ApiError::invalid("Give \"email\" or \"emails\"."));
            }
            let display = wire::str_field(&body, "displayName");
            let mut guard = app.lock();
            let st = &mut *guard;
            for e in &emails {
                st.iam.seed_service_account(e, display, &mut st.counter)?;
            }
            drop(guard);
            app.mark_dirty();
            ok(json!({"serviceAccounts": emails}))
        }
        ("DELETE", ["service-accounts"]) => {
            app.lock().iam.service_accounts.clear();
            app.mark_dirty();
            ok(json!({}))
        }
        ("DELETE", ["service-accounts", email]) => {
            let removed = app.lock().iam.service_accounts.remove(*email).is_some();
            if !removed {
                return Err(ApiError::not_found(format!(
                    "Service account {email} is not seeded."
                )));
            }
            app.mark_dirty();
            ok(json!({}))
        }
        ("GET", ["projects", project]) => {
            let number = app.lock().resourcemanager.project_number(project);
            ok(json!({ "projectId": project, "projectNumber": number.to_string() }))
        }
        ("PUT", ["projects", project]) => {
            let body = req.json()?;
            let number = body
                .get("projectNumber")
                .and_then(wire::int64_value)
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::invalid("Give \"projectNumber\", a positive number."))?;
            let mut guard = app.lock();
            let st = &mut *guard;
            st.resourcemanager
                .set_project_number(project, number, &st.secretmanager)?;
            drop(guard);
            app.mark_dirty();
            ok(json!({ "projectId": project, "projectNumber": number.to_string() }))
        }
        ("POST", ["workload-identity-pools"]) => {
            let body = req.json()?;
            let project = wire::str_field(&body, "project").unwrap_or("");
            if project.is_empty() {
                return Err(ApiError::invalid("Give \"project\"."));
            }
            app.lock().iam.identity_pools.insert(project.to_string());
            app.mark_dirty();
            ok(json!({ "pool": format!("{project}.svc.id.goog") }))
        }
        ("POST", ["tokens"]) => {
            let body = req.json()?;
            let principal = wire::str_field(&body, "principal").unwrap_or("");
            let token = {
                let mut guard = app.lock();
                let st = &mut *guard;
                st.iam.tokens.mint_token(principal, None, &mut st.counter)?
            };
            app.mark_dirty();
            ok(json!({ "token": token, "principal": principal }))
        }
        ("GET", ["faults"]) => {
            let st = app.lock();
            ok(json!({"faults": st.runtime.faults}))
        }
        ("POST", ["faults"]) => {
            let rule = FaultRule::from_json(&req.json()?)?;
            let id = app.lock().runtime.add_fault(rule);
            ok(json!({"id": id}))
        }
        ("DELETE", ["faults"]) => {
            app.lock().runtime.faults.clear();
            ok(json!({}))
        }
        ("DELETE", ["faults", id]) => {
            let id: u64 = id
                .parse()
                .map_err(|_| ApiError::invalid("fault id must be a number"))?;
            let mut st = app.lock();
            let before = st.runtime.faults.len();
            st.runtime.faults.retain(|r| r.id != id);
            if st.runtime.faults.len() == before {
                return Err(ApiError::not_found(format!("No fault rule {id}.")));
            }
            ok(json!({}))
        }
        ("GET", ["calls"]) => {
            let st = app.lock();
            ok(json!({"calls": st.runtime.calls}))
        }
        ("DELETE", ["calls"]) => {
            app.lock().runtime.calls.clear();
            ok(json!({}))
        }
        ("GET", ["requests"]) => {
            let limit = req
                .int_param("limit")?
                .map(|n| usize::try_from(n).unwrap_or(0))
                .unwrap_or(LOG_CAPACITY);
            let st = app.lock();
            let skip = st.runtime.log.len().saturating_sub(limit);
            let list: Vec<&LogEntry> = st.runtime.log.iter().skip(skip).collect();
            ok(json!({"requests": list}))
        }
        ("DELETE", ["requests"]) => {
            app.lock().runtime.log.clear();
            ok(json!({}))
        }
        ("GET", ["logs"]) => {
            let revision = req.param("revision").filter(|r| !r.is_empty());
            let service = req.param("service").filter(|s| !s.is_empty());
            let limit = req
                .int_param("limit")?
                .map(|n| usize::try_from(n).unwrap_or(0))
                .unwrap_or(crate::run::LOG_LINES);
            let mut entries = app
                .live
                .as_ref()
                .map(|l| l.logs(revision, service))
                .unwrap_or_default();
            let skip = entries.len().saturating_sub(limit);
            entries.drain(..skip);
            ok(json!({ "entries": entries }))
        }
        ("GET", ["crashing-images"]) => {
            let st = app.lock();
            ok(json!({"images": st.run.crashing_images}))
        }
        ("POST", ["crashing-images"]) => {
            let body = req.json()?;
            let image =
                wire::str_field(&body, "image").ok_or_else(|| ApiError::invalid("Give \"image\"."))?;
            app.lock().run.crashing_images.insert(image.to_string());
            app.mark_dirty();
            ok(json!({}))
        }
        ("DELETE", ["crashing-images"]) => {
            app.lock().run.crashing_images.clear();
            app.mark_dirty();
            ok(json!({}))
        }
        _ => Err(ApiError::not_found(format!(
            "No admin endpoint {} /{PREFIX}/{}",
            method,
            parts.join("/")
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::time::Duration;

    use super::*;
    use crate::error::Code;
    use crate::model::State;

    #[test]
    fn glob_matches_prefixes_suffixes_and_middles() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match(
            "SecretManagerService.*",
            "SecretManagerService.GetSecret"
        ));
        assert!(glob_match("*.GetSecret", "SecretManagerService.GetSecret"));
        assert!(glob_match(
            "*Secret*Version",
            "SecretManagerService.AddSecretVersion"
        ));
        assert!(glob_match("Services.GetService", "Services.GetService"));
        assert!(!glob_match("Services.GetService", "Services.GetServices"));
        assert!(!glob_match(
            "*.GetSecret",
            "SecretManagerService.GetSecretVersion"
        ));
        assert!(!glob_match("Revisions.*", "Services.GetService"));
    }

    #[test]
    fn counted_rules_stop_and_latency_only_rules_do_not_fail() {
        let mut st = State::default();
        st.runtime
            .add_fault(FaultRule::new("*", None).with_latency(Duration::from_millis(5)));
        st.runtime.add_fault(
            FaultRule::new("A.*", Some(Code::Unavailable))
                .times(1)
                .after_commit(),
        );
        let mut roll = || 0.5;
        let first = st.runtime.decide_faults("A.B", &mut roll);
        assert_eq!(first.delay, Duration::from_millis(5));
        assert_eq!(first.fail.unwrap().code, Code::Unavailable);
        assert!(first.after_commit);
        let second = st.runtime.decide_faults("A.B", &mut roll);
        assert!(second.fail.is_none());
        assert_eq!(second.delay, Duration::from_millis(5));
    }

    #[test]
    fn probability_is_compared_with_the_roll() {
        let mut st = State::default();
        st.runtime
            .add_fault(FaultRule::new("*", Some(Code::Internal)).with_probability(0.3));
        assert!(st.runtime.decide_faults("X", &mut || 0.29).fail.is_some());
        assert!(st.runtime.decide_faults("X", &mut || 0.3).fail.is_none());
    }
}
