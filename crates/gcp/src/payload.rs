//! The secret value type: it can be passed around and logged by accident without leaking.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use bytes::Bytes;

/// Secret Manager's limit on one version's payload.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// A secret value. `Debug` and `Display` never show the bytes; read them with [`SecretPayload::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPayload(Bytes);

impl SecretPayload {
    /// Wraps a value.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self(value.into())
    }

    /// The secret bytes. Call sites of this method are where the value can leak: keep them few.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// CRC32C of the value, as Secret Manager computes it (`dataCrc32c`).
    pub fn crc32c(&self) -> u32 {
        crc32c::crc32c(&self.0)
    }

    pub(crate) fn bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// Removes every occurrence of the value (raw text, standard and URL-safe base64) from `text`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if self.is_empty() {
            return out;
        }
        let mut needles = vec![STANDARD.encode(&self.0), URL_SAFE.encode(&self.0)];
        if let Ok(s) = std::str::from_utf8(&self.0) {
            needles.push(s.to_owned());
        }
        for needle in needles {
            let trimmed = needle.trim_end_matches('=');
            if !trimmed.is_empty() {
                out = out.replace(trimmed, "<redacted>");
            }
        }
        out
    }
}

impl std::fmt::Debug for SecretPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretPayload(<redacted {} bytes>)", self.0.len())
    }
}

impl std::fmt::Display for SecretPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<Vec<u8>> for SecretPayload {
    fn from(value: Vec<u8>) -> Self {
        Self::new(value)
    }
}

impl From<String> for SecretPayload {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretPayload {
    fn from(value: &str) -> Self {
        Self::new(Bytes::copy_from_slice(value.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let p = SecretPayload::from("hunter2-very-secret");
        assert_eq!(format!("{p:?}"), "SecretPayload(<redacted 19 bytes>)");
        assert_eq!(p.to_string(), "<redacted>");
        assert!(!format!("{p:#?}").contains("hunter2"));
    }

    #[test]
    fn scrub_removes_raw_and_encoded_value() {
        let p = SecretPayload::from("s3cr3t-value");
        let text = format!("bad value s3cr3t-value in {}", STANDARD.encode(b"s3cr3t-value"));
        let scrubbed = p.scrub(&text);
        assert!(!scrubbed.contains("s3cr3t-value"), "{scrubbed}");
        assert!(!scrubbed.contains("czNjcjN0LXZhbHVl"), "{scrubbed}");
        assert_eq!(scrubbed, "bad value <redacted> in <redacted>");
    }

    #[test]
    fn crc32c_matches_the_castagnoli_check_value() {
        assert_eq!(SecretPayload::from("123456789").crc32c(), 0xe306_9283);
    }
}
