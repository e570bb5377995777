//! Google Cloud access for litellm-operator. Filled in by the gcp-access issue.
