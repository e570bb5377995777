//! Values the operator generates (`generate:` secrets such as LiteLLM's master and salt keys).

use litellm_operator_api::GeneratedValue;
use rand::Rng;
use rand::distr::Alphanumeric;

/// `prefix` followed by `length` letters and digits from the thread-local CSPRNG (ChaCha, seeded by the OS).
pub fn value(generate: &GeneratedValue) -> Vec<u8> {
    let length = usize::try_from(generate.length).unwrap_or(48);
    let mut value = generate.prefix.clone().into_bytes();
    value.extend(rand::rng().sample_iter(Alphanumeric).take(length));
    value
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn generated_values_have_prefix_length_and_differ() {
        let spec = GeneratedValue {
            length: 48,
            prefix: "sk-".into(),
            rotation: String::new(),
        };
        let a = value(&spec);
        let b = value(&spec);
        assert_eq!(a.len(), 51);
        assert!(a.starts_with(b"sk-"));
        assert!(a[3..].iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a, b);
    }
}
