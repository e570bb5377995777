//! A secret value passed through a failing call never appears in the error or in the logs, even when the
//! server echoes it back. In its own test binary: the log capture is a thread-scoped tracing subscriber,
//! and tracing caches per-callsite interest process-wide, so other tests running at once could hide events.
#![allow(clippy::unwrap_used, clippy::panic)]

mod fake;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fake::{Fake, error};
use litellm_operator_gcp::{Error, Gcp, GcpConfig, SecretName, SecretPayload, SecretVersionStore};
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_secret_value_never_reaches_errors_or_logs() {
    const VALUE: &str = "sk-live-do-not-leak-0123456789";
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A hostile server that echoes the request body (base64 of the value) in its error message.
    let fake =
        Fake::start(|seen| error(400, "INVALID_ARGUMENT", &format!("bad request: {}", seen.body))).await;
    let mut registry = Registry::default();
    let gcp = Gcp::connect(&GcpConfig::emulator(fake.url.parse().unwrap()), &mut registry)
        .await
        .unwrap();
    let err = gcp
        .add_version(&SecretName::new("p", "x"), &SecretPayload::from(VALUE))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(
        fake.seen()[0].body.contains(&STANDARD.encode(VALUE)),
        "the fake did receive the value"
    );

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("gcp_call"), "spans should be logged: {logs}");
    let encoded = STANDARD.encode(VALUE);
    let encoded = encoded.trim_end_matches('=');
    for text in [err.to_string(), format!("{err:?}"), logs] {
        assert!(!text.contains(VALUE), "value leaked: {text}");
        assert!(!text.contains(encoded), "encoded value leaked: {text}");
    }
}
