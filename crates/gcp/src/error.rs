//! One error type for every Google call, classified the way the operator's error policy needs it.
//!
//! Errors carry the resource name and Google's (scrubbed, bounded) message, never a request or response
//! payload: the message of a call that carried a secret value is scrubbed of that value before it is stored.

use std::time::Duration;

use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::{Code, Status, StatusDetails};

use crate::payload::SecretPayload;

/// The longest Google message kept in an error; longer ones are cut (they are for humans, not parsing).
const MAX_MESSAGE_LEN: usize = 512;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to Google, classified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The resource (or its parent) does not exist.
    #[error("{resource} not found: {message}")]
    NotFound {
        /// Full resource name, e.g. `projects/p/secrets/x`.
        resource: String,
        /// Google's message.
        message: String,
    },
    /// A create found the resource already there.
    #[error("{resource} already exists")]
    AlreadyExists {
        /// Full resource name.
        resource: String,
    },
    /// The caller's identity lacks a permission.
    #[error("permission denied on {resource}{}: {message}", permission.as_ref().map(|p| format!(" (missing {p})")).unwrap_or_default())]
    PermissionDenied {
        /// Full resource name.
        resource: String,
        /// The missing IAM permission, when Google names it (e.g. `secretmanager.secrets.create`).
        permission: Option<String>,
        /// Google's message.
        message: String,
    },
    /// The API is not enabled in the project.
    #[error(
        "{service} is not enabled in project {project}; enable it with `{}`",
        enable_command(service, project)
    )]
    ServiceDisabled {
        /// Full resource name of the call that failed.
        resource: String,
        /// API service name, e.g. `secretmanager.googleapis.com`.
        service: String,
        /// Project id or number the API must be enabled in.
        project: String,
    },
    /// The resource is not in a state that allows the call (e.g. a stale etag on a secret, accessing a
    /// disabled version).
    #[error("failed precondition on {resource}: {message}")]
    FailedPrecondition {
        /// Full resource name.
        resource: String,
        /// Google's message.
        message: String,
    },
    /// A concurrent modification won (e.g. a stale IAM policy etag).
    #[error("concurrent modification of {resource}: {message}")]
    Aborted {
        /// Full resource name.
        resource: String,
        /// Google's message.
        message: String,
    },
    /// A quota or rate limit was hit (HTTP 429 / RESOURCE_EXHAUSTED).
    #[error("quota exceeded calling Google for {resource}: {message}")]
    QuotaExceeded {
        /// Full resource name.
        resource: String,
        /// Google's message.
        message: String,
        /// How long Google asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// Google (or the network to it) is temporarily unavailable: 5xx, timeouts, connection failures.
    #[error("Google unavailable for {resource}: {message}")]
    Unavailable {
        /// Full resource name.
        resource: String,
        /// What failed.
        message: String,
    },
    /// The request was malformed or refused as invalid (including local checks such as payload size).
    #[error("invalid argument for {resource}: {message}")]
    InvalidArgument {
        /// Full resource name.
        resource: String,
        /// Google's (or our) message.
        message: String,
    },
    /// No valid credentials: the token was missing, expired or refused, or could not be obtained.
    #[error("unauthenticated calling Google for {resource}: {message}")]
    Unauthenticated {
        /// Full resource name.
        resource: String,
        /// What failed.
        message: String,
    },
    /// Anything else Google returned.
    #[error("Google error {code} for {resource}: {message}")]
    Other {
        /// Full resource name.
        resource: String,
        /// Canonical code name (`INTERNAL`, `UNKNOWN`, ...) or `HTTP_<status>`.
        code: String,
        /// Google's message.
        message: String,
    },
    /// A client for a Google service could not be built (bad endpoint, credentials unavailable).
    #[error("cannot build the {service} client")]
    Client {
        /// Which client.
        service: &'static str,
        /// Why.
        #[source]
        source: google_cloud_gax::client_builder::Error,
    },
    /// Application Default Credentials could not be loaded.
    #[error("cannot load Application Default Credentials")]
    Credentials {
        /// Why.
        #[source]
        source: google_cloud_auth::build_errors::Error,
    },
    /// The configuration cannot work (or would be unsafe).
    #[error("invalid Google Cloud access configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// Google answered with something this crate cannot interpret (e.g. a version name without a number).
    #[error("unexpected response for {resource}: {message}")]
    UnexpectedResponse {
        /// Full resource name.
        resource: String,
        /// What was unexpected.
        message: String,
    },
}

fn enable_command(service: &str, project: &str) -> String {
    format!("gcloud services enable {service} --project={project}")
}

impl Error {
    /// The resource the failed call was about (empty for client construction errors).
    pub fn resource(&self) -> &str {
        match self {
            Error::NotFound { resource, .. }
            | Error::AlreadyExists { resource }
            | Error::PermissionDenied { resource, .. }
            | Error::ServiceDisabled { resource, .. }
            | Error::FailedPrecondition { resource, .. }
            | Error::Aborted { resource, .. }
            | Error::QuotaExceeded { resource, .. }
            | Error::Unavailable { resource, .. }
            | Error::InvalidArgument { resource, .. }
            | Error::Unauthenticated { resource, .. }
            | Error::Other { resource, .. }
            | Error::UnexpectedResponse { resource, .. } => resource,
            Error::Client { .. } | Error::Credentials { .. } | Error::Config { .. } => "",
        }
    }

    /// A short, stable name of the error class (used as a metric label and in logs).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "NOT_FOUND",
            Error::AlreadyExists { .. } => "ALREADY_EXISTS",
            Error::PermissionDenied { .. } => "PERMISSION_DENIED",
            Error::ServiceDisabled { .. } => "SERVICE_DISABLED",
            Error::FailedPrecondition { .. } => "FAILED_PRECONDITION",
            Error::Aborted { .. } => "ABORTED",
            Error::QuotaExceeded { .. } => "RESOURCE_EXHAUSTED",
            Error::Unavailable { .. } => "UNAVAILABLE",
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::Unauthenticated { .. } => "UNAUTHENTICATED",
            Error::Other { .. } => "OTHER",
            Error::Client { .. } => "CLIENT",
            Error::Credentials { .. } => "CREDENTIALS",
            Error::Config { .. } => "CONFIG",
            Error::UnexpectedResponse { .. } => "UNEXPECTED_RESPONSE",
        }
    }

    /// True when the same call may succeed later without any change on our side (quota, unavailability).
    /// Whether retrying is *safe* is a separate question the caller of the API answers.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::QuotaExceeded { .. })
    }

    /// The wait Google asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::QuotaExceeded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Classifies an error from a google-cloud-rust client.
    ///
    /// `payload` is the secret value the call carried, if any: it is scrubbed from every message.
    pub(crate) fn from_gax(err: &GaxError, resource: &str, payload: Option<&SecretPayload>) -> Self {
        let resource = resource.to_owned();
        if let Some(status) = err.status() {
            return Self::from_status(status, err.http_status_code(), resource, payload);
        }
        if let Some(http) = err.http_status_code() {
            // An error body that is not Google's JSON error: classify by HTTP status alone. The body is
            // deliberately not kept: it is not Google's structured message and could echo anything.
            let code = code_from_http(http);
            let status = Status::default()
                .set_code(code)
                .set_message(format!("HTTP {http}"));
            return Self::from_status(&status, Some(http), resource, None);
        }
        if err.is_authentication() {
            let message = bounded(&err.to_string(), payload);
            return if err.is_transient_and_before_rpc() {
                Error::Unavailable { resource, message }
            } else {
                Error::Unauthenticated { resource, message }
            };
        }
        if err.is_deserialization() {
            // serde messages can quote the offending value, which may be a secret: keep none of it.
            return Error::UnexpectedResponse {
                resource,
                message: "cannot deserialize the response".to_owned(),
            };
        }
        if err.is_serialization() || err.is_binding() {
            return Error::InvalidArgument {
                resource,
                message: "cannot build the request".to_owned(),
            };
        }
        // Timeouts, connection failures, I/O and transport errors, exhausted retry budgets.
        Error::Unavailable {
            resource,
            message: bounded(&err.to_string(), payload),
        }
    }

    pub(crate) fn from_status(
        status: &Status,
        http: Option<u16>,
        resource: String,
        payload: Option<&SecretPayload>,
    ) -> Self {
        let message = bounded(&status.message, payload);
        let info = error_info(status);
        // A body without Google's `status` string parses as UNKNOWN; the HTTP status still says what it was.
        let code = match (status.code, http) {
            (Code::Unknown, Some(http)) => code_from_http(http),
            (code, _) => code,
        };
        match code {
            Code::NotFound => Error::NotFound { resource, message },
            Code::AlreadyExists => Error::AlreadyExists { resource },
            Code::PermissionDenied => {
                if let Some((service, project)) = service_disabled(status, info, &resource) {
                    return Error::ServiceDisabled {
                        resource,
                        service,
                        project,
                    };
                }
                let permission = info
                    .and_then(|(_, metadata)| metadata.get("permission").cloned())
                    .or_else(|| permission_from_message(&status.message));
                Error::PermissionDenied {
                    resource,
                    permission,
                    message,
                }
            }
            Code::FailedPrecondition => Error::FailedPrecondition { resource, message },
            Code::Aborted => Error::Aborted { resource, message },
            Code::ResourceExhausted => Error::QuotaExceeded {
                resource,
                message,
                retry_after: retry_delay(status),
            },
            Code::Unavailable | Code::DeadlineExceeded => Error::Unavailable { resource, message },
            Code::InvalidArgument | Code::OutOfRange => Error::InvalidArgument { resource, message },
            Code::Unauthenticated => Error::Unauthenticated { resource, message },
            code => {
                // Some servers answer 5xx with a code Google would not use for it; a gateway error is
                // still an outage.
                if matches!(http, Some(502..=504)) {
                    return Error::Unavailable { resource, message };
                }
                Error::Other {
                    resource,
                    code: code.name().to_owned(),
                    message,
                }
            }
        }
    }
}

fn code_from_http(http: u16) -> Code {
    match http {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        412 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        501 => Code::Unimplemented,
        502..=504 => Code::Unavailable,
        500..=599 => Code::Internal,
        _ => Code::Unknown,
    }
}

type Metadata = std::collections::HashMap<String, String>;

/// The `ErrorInfo` detail of a status: its reason and metadata.
fn error_info(status: &Status) -> Option<(&str, &Metadata)> {
    status.details.iter().find_map(|d| match d {
        StatusDetails::ErrorInfo(i) => Some((i.reason.as_str(), &i.metadata)),
        _ => None,
    })
}

/// The delay from a `RetryInfo` detail.
fn retry_delay(status: &Status) -> Option<Duration> {
    status.details.iter().find_map(|d| match d {
        StatusDetails::RetryInfo(r) => r.retry_delay.as_ref().and_then(|d| Duration::try_from(*d).ok()),
        _ => None,
    })
}

/// Detects "API not enabled": Google says `PERMISSION_DENIED` with an `ErrorInfo` whose reason is
/// `SERVICE_DISABLED` (metadata `service`, `consumer: projects/NUMBER`), or only says so in the message.
fn service_disabled(
    status: &Status,
    info: Option<(&str, &Metadata)>,
    resource: &str,
) -> Option<(String, String)> {
    let project_of_resource = || crate::names::project_of(resource).unwrap_or("PROJECT").to_owned();
    if let Some((reason, metadata)) = info
        && reason == "SERVICE_DISABLED"
    {
        let service = metadata
            .get("service")
            .cloned()
            .unwrap_or_else(|| "the API".to_owned());
        let project = metadata
            .get("consumer")
            .map(|c| c.trim_start_matches("projects/").to_owned())
            .unwrap_or_else(project_of_resource);
        return Some((service, project));
    }
    let m = &status.message;
    if m.contains("has not been used in project") || m.contains("it is disabled") {
        let service = m
            .split(|c: char| c.is_whitespace() || c == '/' || c == '=' || c == '?' || c == '&')
            .find(|w| w.ends_with(".googleapis.com") && !w.starts_with("console."))
            .map(str::to_owned)
            .unwrap_or_else(|| "the API".to_owned());
        let project = m
            .split("in project ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|p| {
                p.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                    .to_owned()
            })
            .filter(|p| !p.is_empty())
            .unwrap_or_else(project_of_resource);
        return Some((service, project));
    }
    None
}

/// Pulls `secretmanager.versions.add` out of Google's "Permission 'secretmanager.versions.add' denied on resource
/// 'projects/p/secrets/x' (or it may not exist)." (also "Permission denied: ..." with the name after it, and
/// "permissions: ..."). A message without a dotted permission name ("Permission denied on resource ...") gives
/// `None`.
fn permission_from_message(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    lower.match_indices("permission").find_map(|(at, word)| {
        let rest = &message[at + word.len()..];
        // "permissions" is the same word; strip its `s` only, never a letter of the name after it.
        let rest = rest.strip_prefix(['s', 'S']).unwrap_or(rest);
        let rest = rest.trim_start_matches([' ', '\'', '"', '`', ':', '[', '(']);
        let token: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
            .collect();
        looks_like_permission(&token).then_some(token)
    })
}

/// `service.resource.verb`: at least two dots, no empty part, starting with a letter.
fn looks_like_permission(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && token.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Keeps at most [`MAX_MESSAGE_LEN`] characters of a message, with any trace of `payload` removed.
pub(crate) fn bounded(message: &str, payload: Option<&SecretPayload>) -> String {
    let mut message = message.to_owned();
    if let Some(p) = payload {
        message = p.scrub(&message);
    }
    if message.chars().count() > MAX_MESSAGE_LEN {
        message = message.chars().take(MAX_MESSAGE_LEN).collect::<String>() + "...";
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const RES: &str = "projects/p/secrets/x";

    /// Classifies an error body exactly as the client would receive it from Google.
    fn google(http: u16, body: &str) -> Error {
        let status = Status::try_from(&bytes::Bytes::from(body.to_owned())).unwrap();
        Error::from_gax(
            &GaxError::service_with_http_metadata(status, Some(http), None),
            RES,
            None,
        )
    }

    #[test]
    fn not_found_and_already_exists() {
        let e = google(
            404,
            r#"{"error":{"code":404,"message":"Secret [projects/1/secrets/x] not found.","status":"NOT_FOUND"}}"#,
        );
        assert!(
            matches!(&e, Error::NotFound { resource, .. } if resource == RES),
            "{e:?}"
        );
        let e = google(
            409,
            r#"{"error":{"code":409,"message":"Secret [x] already exists.","status":"ALREADY_EXISTS"}}"#,
        );
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
        assert_eq!(e.to_string(), "projects/p/secrets/x already exists");
    }

    #[test]
    fn permission_denied_names_the_permission_from_error_info() {
        let e = google(
            403,
            r#"{"error":{"code":403,"message":"Permission 'secretmanager.secrets.create' denied for resource 'projects/p' (or it may not exist).","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"secretmanager.googleapis.com","metadata":{"permission":"secretmanager.secrets.create","resource":"projects/p"}}]}}"#,
        );
        let Error::PermissionDenied { permission, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(permission.as_deref(), Some("secretmanager.secrets.create"));
        assert!(
            e.to_string().contains("(missing secretmanager.secrets.create)"),
            "{e}"
        );
    }

    #[test]
    fn permission_denied_names_the_permission_from_the_message() {
        let e = google(
            403,
            r#"{"error":{"code":403,"message":"Permission 'run.services.get' denied on resource 'projects/p/locations/r/services/s' (or resource may not exist).","status":"PERMISSION_DENIED"}}"#,
        );
        let Error::PermissionDenied { permission, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(permission.as_deref(), Some("run.services.get"));
        let e = google(
            403,
            r#"{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}"#,
        );
        assert!(
            matches!(e, Error::PermissionDenied { permission: None, .. }),
            "{e:?}"
        );
    }

    /// Google's own wording: the permission in quotes after "Permission", its first letter kept (it used to lose
    /// the `s` of `secretmanager`).
    #[test]
    fn permission_denied_in_googles_message_format_keeps_the_whole_permission() {
        let e = google(
            403,
            r#"{"error":{"code":403,"message":"Permission 'secretmanager.versions.add' denied on resource 'projects/p/secrets/x' (or it may not exist).","status":"PERMISSION_DENIED"}}"#,
        );
        let Error::PermissionDenied { permission, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(permission.as_deref(), Some("secretmanager.versions.add"));
        assert!(
            e.to_string().contains("(missing secretmanager.versions.add)"),
            "{e}"
        );
        for name in [
            "secretmanager.secrets.create",
            "secretmanager.secrets.delete",
            "secretmanager.secrets.setIamPolicy",
            "secretmanager.versions.access",
            "run.services.delete",
            "iam.serviceAccounts.actAs",
        ] {
            for message in [
                format!(
                    "Permission '{name}' denied on resource 'projects/p/secrets/x' (or it may not exist)."
                ),
                format!("Permission \"{name}\" denied on resource"),
                format!("permission {name} denied"),
                format!("Caller is missing permissions: [{name}]"),
            ] {
                assert_eq!(
                    permission_from_message(&message).as_deref(),
                    Some(name),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn permission_denied_without_a_named_permission_names_none() {
        for message in [
            "Permission denied on resource 'projects/p/secrets/x' (or it may not exist).",
            "Permission denied on resource project p.",
            "The caller does not have permission",
            "Permission 'secretmanager' denied",
        ] {
            let body = serde_json::json!({"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}});
            let e = google(403, &body.to_string());
            assert!(
                matches!(e, Error::PermissionDenied { permission: None, .. }),
                "{message}: {e:?}"
            );
            assert!(!e.to_string().contains("(missing"), "{e}");
        }
    }

    /// `IAM_PERMISSION_DENIED` carries the permission in its `ErrorInfo` metadata: that wins over the message,
    /// which may not name it at all.
    #[test]
    fn permission_denied_takes_the_permission_from_iam_error_info() {
        let e = google(
            403,
            r#"{"error":{"code":403,"message":"Permission denied on resource 'projects/p/secrets/x' (or it may not exist).","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"iam.googleapis.com","metadata":{"permission":"secretmanager.secrets.delete","resource":"projects/p/secrets/x"}}]}}"#,
        );
        let Error::PermissionDenied {
            permission, resource, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(permission.as_deref(), Some("secretmanager.secrets.delete"));
        assert_eq!(resource, RES);
        assert_eq!(e.code(), "PERMISSION_DENIED");
        assert!(
            e.to_string().contains("(missing secretmanager.secrets.delete)"),
            "{e}"
        );
    }

    #[test]
    fn service_disabled_gives_the_enable_command() {
        let e = google(
            403,
            r#"{"error":{"code":403,"message":"Secret Manager API has not been used in project 123456789 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/secretmanager.googleapis.com/overview?project=123456789 then retry.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED","domain":"googleapis.com","metadata":{"service":"secretmanager.googleapis.com","consumer":"projects/123456789"}}]}}"#,
        );
        let Error::ServiceDisabled { service, project, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (service.as_str(), project.as_str()),
            ("secretmanager.googleapis.com", "123456789")
        );
        assert!(
            e.to_string()
                .contains("gcloud services enable secretmanager.googleapis.com --project=123456789")
        );
        // Without ErrorInfo, from the message alone.
        let e = google(
            403,
            r#"{"error":{"code":403,"message":"Cloud Run Admin API has not been used in project my-proj before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/run.googleapis.com/overview?project=my-proj then retry.","status":"PERMISSION_DENIED"}}"#,
        );
        let Error::ServiceDisabled { service, project, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (service.as_str(), project.as_str()),
            ("run.googleapis.com", "my-proj")
        );
    }

    #[test]
    fn concurrency_precondition_and_argument_errors() {
        let e = google(
            409,
            r#"{"error":{"code":409,"message":"There were concurrent policy changes.","status":"ABORTED"}}"#,
        );
        assert!(matches!(e, Error::Aborted { .. }), "{e:?}");
        let e = google(
            400,
            r#"{"error":{"code":400,"message":"etag mismatch","status":"FAILED_PRECONDITION"}}"#,
        );
        assert!(matches!(e, Error::FailedPrecondition { .. }), "{e:?}");
        let e = google(
            400,
            r#"{"error":{"code":400,"message":"bad secret id","status":"INVALID_ARGUMENT"}}"#,
        );
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        let e = google(
            401,
            r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#,
        );
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e:?}");
        assert!(!e.is_transient());
    }

    #[test]
    fn quota_and_unavailability_are_transient() {
        let e = google(
            429,
            r#"{"error":{"code":429,"message":"Quota exceeded for quota metric 'Read requests'","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"3s"}]}}"#,
        );
        assert!(matches!(e, Error::QuotaExceeded { .. }), "{e:?}");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(e.is_transient());
        let e = google(
            503,
            r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#,
        );
        assert!(
            matches!(e, Error::Unavailable { .. }) && e.is_transient(),
            "{e:?}"
        );
        let e = google(
            500,
            r#"{"error":{"code":500,"message":"Internal error","status":"INTERNAL"}}"#,
        );
        assert!(
            matches!(&e, Error::Other { code, .. } if code == "INTERNAL"),
            "{e:?}"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn non_google_bodies_are_classified_by_http_status() {
        let e = Error::from_gax(
            &GaxError::http(502, http::HeaderMap::new(), "<html>Bad Gateway</html>".into()),
            RES,
            None,
        );
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        assert!(!e.to_string().contains("html"));
        let e = Error::from_gax(
            &GaxError::http(429, http::HeaderMap::new(), "slow down".into()),
            RES,
            None,
        );
        assert!(matches!(e, Error::QuotaExceeded { .. }), "{e:?}");
        // Google JSON without the `status` string.
        let e = google(404, r#"{"error":{"code":404,"message":"nope"}}"#);
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    }

    #[test]
    fn transport_failures_are_unavailable_and_decoding_failures_keep_no_text() {
        let e = Error::from_gax(&GaxError::io("connection reset by peer"), RES, None);
        assert!(
            matches!(e, Error::Unavailable { .. }) && e.is_transient(),
            "{e:?}"
        );
        let e = Error::from_gax(&GaxError::timeout("deadline"), RES, None);
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        let e = Error::from_gax(
            &GaxError::deser("invalid type: string \"hunter2\", expected bytes"),
            RES,
            None,
        );
        assert!(matches!(e, Error::UnexpectedResponse { .. }), "{e:?}");
        assert!(!e.to_string().contains("hunter2"));
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn a_payload_echoed_by_google_is_scrubbed_and_long_messages_are_cut() {
        let payload = SecretPayload::from("sk-live-0123456789abcdef");
        let body = r#"{"error":{"code":400,"message":"value sk-live-0123456789abcdef (c2stbGl2ZS0wMTIzNDU2Nzg5YWJjZGVm) rejected","status":"INVALID_ARGUMENT"}}"#;
        let status = Status::try_from(&bytes::Bytes::from(body)).unwrap();
        let e = Error::from_gax(&GaxError::service(status), RES, Some(&payload));
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains("sk-live-0123456789abcdef"), "{text}");
            assert!(!text.contains("c2stbGl2ZS0wMTIzNDU2Nzg5YWJjZGVm"), "{text}");
        }
        let long = "x".repeat(5000);
        let status = Status::default()
            .set_code(Code::InvalidArgument)
            .set_message(long);
        let e = Error::from_gax(&GaxError::service(status), RES, None);
        assert!(e.to_string().len() < 700, "{}", e.to_string().len());
    }

    #[test]
    fn codes_and_resources_are_reported() {
        let e = google(
            404,
            r#"{"error":{"code":404,"message":"x","status":"NOT_FOUND"}}"#,
        );
        assert_eq!((e.code(), e.resource()), ("NOT_FOUND", RES));
    }
}
