//! The `litellm-operator` binary.

fn main() {}
