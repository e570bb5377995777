//! Logs: human-readable text, or one JSON object per line in the shape Cloud Logging reads from a container's
//! stdout (`severity`, `message`, `timestamp`, and every field of the event and of its spans at the top level, so
//! `jsonPayload.namespace` and `jsonPayload.name` filter one LiteLLMDeployment's reconciles).
//!
//! The level comes from `--log-level` (a level such as `debug`, or a `RUST_LOG`-style filter such as
//! `info,litellm_operator=debug`), else `RUST_LOG`, else [`DEFAULT_FILTER`]. Every command logs to stderr, so the
//! CLI's stdout stays its output (a plan, JSON, a manifest).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The filter when neither `--log-level` nor `RUST_LOG` says otherwise: the operator's own info, the clients'
/// warnings.
pub const DEFAULT_FILTER: &str = "info,kube=warn,hyper=warn";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: one line per event with its span fields.
    Text,
    /// For Cloud Logging (and any JSON log pipeline): one object per line.
    Json,
}

/// The filter for `level` (`--log-level`), else `RUST_LOG`, else `default`. An unparsable `--log-level` is an
/// error naming it; an unparsable `RUST_LOG` falls back to `default`.
pub fn filter(level: Option<&str>, default: &str) -> Result<EnvFilter, String> {
    match level {
        Some(level) => EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}")),
        None => Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))),
    }
}

/// Installs the process-wide subscriber, writing to stderr.
pub fn init(format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(CloudLogging)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// Cloud Logging's structured-log severity for a tracing level.
pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// One JSON object per event: `timestamp`, `severity`, `message`, `target`, then the fields of its spans (outermost
/// first) and its own fields, all at the top level.
pub struct CloudLogging;

impl<S, N> FormatEvent<S, N> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut entry = Map::new();
        entry.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        entry.insert(
            "severity".into(),
            Value::String(severity(event.metadata().level()).into()),
        );
        entry.insert("target".into(), Value::String(event.metadata().target().into()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                // With `JsonFields`, a span's recorded fields are a JSON object.
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields)
                {
                    entry.extend(fields);
                }
            }
        }
        let mut visitor = Fields(Map::new());
        event.record(&mut visitor);
        entry.extend(visitor.0);
        entry
            .entry("message")
            .or_insert_with(|| Value::String(String::new()));
        let line = serde_json::to_string(&Value::Object(entry)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// An event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing::{info, info_span, warn};
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(filter: &str, emit: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_writer(buffer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(CloudLogging)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn json_lines_have_cloud_loggings_keys_and_the_span_fields_at_the_top() {
        let out = lines("info", || {
            let span = info_span!("reconcile", namespace = "llm", name = "litellm-proxy");
            let _in = span.enter();
            warn!(
                secret = "projects/p/secrets/x",
                version = 3_u64,
                "Version disabled"
            );
        });
        assert_eq!(out.len(), 1, "{out:?}");
        let line = &out[0];
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "Version disabled");
        assert_eq!(line["namespace"], "llm");
        assert_eq!(line["name"], "litellm-proxy");
        assert_eq!(line["secret"], "projects/p/secrets/x");
        assert_eq!(line["version"], 3);
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
    }

    #[test]
    fn the_level_filter_decides_what_is_written() {
        let out = lines("warn", || {
            info!("quiet");
            warn!("loud");
        });
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["message"], "loud");
        assert_eq!(severity(&Level::ERROR), "ERROR");
        assert_eq!(severity(&Level::DEBUG), "DEBUG");
    }

    #[test]
    fn a_bad_log_level_is_an_error_naming_it() {
        let error = filter(Some("info,litellm_operator=loud"), DEFAULT_FILTER).unwrap_err();
        assert!(error.contains("--log-level"), "{error}");
        assert!(filter(Some("debug"), DEFAULT_FILTER).is_ok());
        assert!(filter(None, DEFAULT_FILTER).is_ok());
    }
}
