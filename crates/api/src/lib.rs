//! LiteLLMDeployment API types.
