//! Errors in Google's JSON shape: `{"error": {"code", "message", "status", "details"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The canonical gRPC status codes Google's REST APIs report in `error.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The `google.rpc.Code` number (used inside long-running operation errors).
    pub fn number(self) -> i32 {
        match self {
            Code::Ok => 0,
            Code::Cancelled => 1,
            Code::Unknown => 2,
            Code::InvalidArgument => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::AlreadyExists => 6,
            Code::PermissionDenied => 7,
            Code::ResourceExhausted => 8,
            Code::FailedPrecondition => 9,
            Code::Aborted => 10,
            Code::OutOfRange => 11,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::DataLoss => 15,
            Code::Unauthenticated => 16,
        }
    }

    /// The HTTP status Google maps this code to.
    pub fn http(self) -> u16 {
        match self {
            Code::Ok => 200,
            Code::Cancelled => 499,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::Unauthenticated => 401,
        }
    }

    /// The name used in `error.status`, e.g. `NOT_FOUND`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// Parses a status name (`"UNAVAILABLE"`), a gRPC number (`"14"`) or an HTTP status (`"503"`).
    pub fn parse(text: &str) -> Option<Code> {
        let upper = text.trim().to_ascii_uppercase();
        if let Some(code) = Code::ALL.iter().find(|c| c.name() == upper) {
            return Some(*code);
        }
        let number: i64 = upper.parse().ok()?;
        if let Some(code) = Code::ALL.iter().find(|c| i64::from(c.number()) == number) {
            return Some(*code);
        }
        Code::ALL
            .iter()
            .find(|c| i64::from(c.http()) == number && **c != Code::Ok)
            .copied()
    }
}

/// An error answered to the client in Google's JSON error shape.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{} {}", code.name(), message)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub details: Vec<Value>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// A `400 INVALID_ARGUMENT` from request validation, with Google's `BadRequest` detail naming the field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let detail = json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": message}],
        });
        Self::invalid(message).with_detail(detail)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }

    /// The JSON body Google sends with an error.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "code": self.code.http(),
                "message": self.message,
                "status": self.code.name(),
                "details": self.details,
            }
        })
    }

    /// The `google.rpc.Status` form used inside a finished long-running operation.
    pub fn rpc_status(&self) -> Value {
        json!({ "code": self.code.number(), "message": self.message, "details": self.details })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(status, &self.body())
    }
}

/// A JSON response with Google's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=UTF-8",
        )],
        bytes,
    )
        .into_response()
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn codes_parse_from_names_numbers_and_http_statuses() {
        assert_eq!(Code::parse("unavailable"), Some(Code::Unavailable));
        assert_eq!(Code::parse("14"), Some(Code::Unavailable));
        assert_eq!(Code::parse("503"), Some(Code::Unavailable));
        assert_eq!(Code::parse("409"), Some(Code::AlreadyExists));
        assert_eq!(Code::parse("9"), Some(Code::FailedPrecondition));
        assert_eq!(Code::parse("nope"), None);
    }

    #[test]
    fn error_body_has_google_shape() {
        let e = ApiError::new(Code::Aborted, "stale");
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"code": 409, "message": "stale", "status": "ABORTED", "details": []}})
        );
        assert_eq!(e.rpc_status()["code"], 10);
        assert_eq!(Code::FailedPrecondition.http(), 400);
        assert_eq!(Code::ResourceExhausted.http(), 429);
    }
}
