//! Fault rules (calls made to fail, slow down or fail after their effect), the decision for one call, and the
//! request log's entries: the per-process data of the admin API, free of any state.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, Code};
use crate::wire;

/// A rule that makes matching calls fail, slow down, or fail after their effect was committed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    pub id: u64,
    /// Method pattern, `*` matching any run of characters, e.g. `SecretManagerService.*` or `*.GetService`.
    pub method: String,
    /// The status to answer; `None` only adds latency.
    pub status: Option<Code>,
    pub message: Option<String>,
    /// Fire this many more times (`None`: unlimited).
    pub count: Option<u64>,
    /// Fire with this probability (`None`: always).
    pub probability: Option<f64>,
    pub latency_ms: u64,
    /// Run the call (its effect is kept) and then answer the error, like a lost response.
    pub commit_then_fail: bool,
}

impl FaultRule {
    /// A rule answering `status` to calls matching `method` (`None`: only add latency).
    pub fn new(method: &str, status: Option<Code>) -> FaultRule {
        FaultRule {
            id: 0,
            method: method.to_string(),
            status,
            message: None,
            count: None,
            probability: None,
            latency_ms: 0,
            commit_then_fail: false,
        }
    }

    /// Fire only this many times.
    pub fn times(mut self, count: u64) -> FaultRule {
        self.count = Some(count);
        self
    }

    /// Fire with this probability (0 to 1).
    pub fn with_probability(mut self, probability: f64) -> FaultRule {
        self.probability = Some(probability);
        self
    }

    /// Add this delay when the rule fires.
    pub fn with_latency(mut self, latency: Duration) -> FaultRule {
        self.latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self
    }

    pub fn with_message(mut self, message: &str) -> FaultRule {
        self.message = Some(message.to_string());
        self
    }

    /// Perform the call, keep its effect, then answer the error (a lost response).
    pub fn after_commit(mut self) -> FaultRule {
        self.commit_then_fail = true;
        self
    }

    pub fn from_json(body: &Map<String, Value>) -> ApiResult<FaultRule> {
        let method = wire::str_field(body, "method").unwrap_or("*").to_string();
        let status = match body.get("status") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(Code::parse(s).ok_or_else(|| ApiError::invalid(format!("Unknown status {s}")))?)
            }
            Some(Value::Number(n)) => Some(
                Code::parse(&n.to_string())
                    .ok_or_else(|| ApiError::invalid(format!("Unknown status {n}")))?,
            ),
            Some(_) => return Err(ApiError::invalid("status must be a name or a number")),
        };
        let probability = body.get("probability").and_then(Value::as_f64);
        if probability.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
            return Err(ApiError::invalid("probability must be between 0 and 1"));
        }
        Ok(FaultRule {
            id: 0,
            method,
            status,
            message: wire::str_field(body, "message").map(str::to_string),
            count: body.get("count").and_then(Value::as_u64),
            probability,
            latency_ms: body.get("latencyMs").and_then(Value::as_u64).unwrap_or(0),
            commit_then_fail: body
                .get("commitThenFail")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// What the fault rules decided for one call.
#[derive(Debug, Default)]
pub struct FaultDecision {
    pub delay: Duration,
    pub fail: Option<ApiError>,
    pub after_commit: bool,
}

/// One line of the request log. Never carries payloads: only method, path, query, status and timing.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub time: String,
    pub http_method: String,
    pub path: String,
    pub query: String,
    pub method: String,
    pub status: String,
    pub http_status: u16,
    pub latency_ms: f64,
    /// The caller's IAM member (`serviceAccount:...`), empty for calls without a token the emulator minted.
    pub caller: String,
}

/// Glob match where `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}
