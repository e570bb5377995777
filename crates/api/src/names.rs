//! Names, labels, annotations and other constants shared by the operator, the CLI and the emulator.

/// API group of the custom resource.
pub const GROUP: &str = "litellm.dev";

/// Field manager used for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "litellm-operator";

/// Finalizer that lets the operator clean up Google resources before the object goes away.
pub const FINALIZER: &str = "litellm.dev/cleanup";

/// Label key and value the operator puts on every Google resource it creates. Google label keys must be lower
/// case, so this is not a Kubernetes-style prefixed key.
pub const MANAGED_BY_LABEL: &str = "managed-by";
/// See [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "litellm-operator";

/// Label naming the owning LiteLLMDeployment (`<namespace>_<name>`, shortened to fit Google's 63 characters),
/// so two deployments in one project never take each other's secrets.
pub const OWNER_LABEL: &str = "litellm-deployment";

/// Annotation overriding the periodic resync interval of one resource, e.g. `"5m"`.
pub const RESYNC_INTERVAL_ANNOTATION: &str = "litellm.dev/resync-interval";

/// Annotation that, set to `"true"`, stops every Google write for the resource.
pub const PAUSED_ANNOTATION: &str = "litellm.dev/paused";

/// Annotation that, set to `"true"`, lets the operator adopt existing Google resources that lack its label.
pub const ADOPT_ANNOTATION: &str = "litellm.dev/adopt";

/// Annotation that, set to `"Abandon"`, makes deletion leave every Google resource untouched: the escape hatch
/// for a LiteLLMDeployment whose project is gone or whose permissions were revoked.
pub const DELETION_POLICY_ANNOTATION: &str = "litellm.dev/deletion-policy";

/// Role granted to the runtime service account on each secret.
pub const SECRET_ACCESSOR_ROLE: &str = "roles/secretmanager.secretAccessor";

/// Role granted to `allUsers` on the service when `allowUnauthenticated` is true.
pub const RUN_INVOKER_ROLE: &str = "roles/run.invoker";

/// Member that stands for everyone on the internet.
pub const ALL_USERS: &str = "allUsers";

/// Environment variables Cloud Run sets itself and refuses in a container spec.
pub const RESERVED_ENV: [&str; 4] = ["PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"];

/// Directory where the service mounts LiteLLM's configuration (`spec.config`).
pub const CONFIG_MOUNT_PATH: &str = "/etc/litellm";

/// File name of LiteLLM's configuration within [`CONFIG_MOUNT_PATH`].
pub const CONFIG_FILE: &str = "config.yaml";

/// The path LiteLLM reads its configuration from (`--config`). It is also the key of the configuration's pin in
/// `status.secrets` (whose `env` names where each secret is delivered), which no env var name can be.
pub const CONFIG_PATH: &str = "/etc/litellm/config.yaml";

/// Name of the Cloud Run volume holding LiteLLM's configuration.
pub const CONFIG_VOLUME: &str = "litellm-config";

/// Condition types reported in `status.conditions`.
pub mod condition {
    /// Everything below is true and the latest revision serves the spec's generation.
    pub const READY: &str = "Ready";
    /// Every secret exists and has the version the service should pin.
    pub const SECRETS_READY: &str = "SecretsReady";
    /// Every accessor and invoker binding is in place.
    pub const IAM_READY: &str = "IamReady";
    /// The Cloud Run service matches the spec and its latest revision is Ready.
    pub const SERVICE_READY: &str = "ServiceReady";
}

/// Condition reasons (CamelCase, as Kubernetes conventions ask).
pub mod reason {
    /// The condition holds.
    pub const READY: &str = "Ready";
    /// The spec breaks a rule the API server could not check.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A referenced Kubernetes Secret or ConfigMap, or its key, is missing.
    pub const SECRET_SOURCE_MISSING: &str = "SecretSourceMissing";
    /// Google refused a call for lack of a permission.
    pub const PERMISSION_DENIED: &str = "PermissionDenied";
    /// A new binding has not reached every Google server yet.
    pub const IAM_PROPAGATING: &str = "IamPropagating";
    /// Work is in progress (a revision is starting, a change is being applied).
    pub const RECONCILING: &str = "Reconciling";
    /// The latest revision failed to become Ready; traffic stays on the last Ready one.
    pub const REVISION_FAILED: &str = "RevisionFailed";
    /// Writes are stopped by the paused annotation.
    pub const PAUSED: &str = "Paused";
    /// A Google resource exists but belongs to someone else (no label of ours, or another LiteLLMDeployment's).
    pub const CONFLICT: &str = "Conflict";
    /// Google answered 429 RESOURCE_EXHAUSTED; the operator backs off.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// The tenancy policy does not let the resource's namespace use what it asks for.
    pub const FORBIDDEN: &str = "Forbidden";
    /// Google answered with an error the operator retries.
    pub const GOOGLE_API_ERROR: &str = "GoogleApiError";
    /// The resource is being deleted: the operator applies its `deletionPolicy` in Google before releasing the
    /// finalizer (a failing cleanup shows its own reason instead).
    pub const DELETING: &str = "Deleting";
}

/// The default Secret Manager secret id for an env name: lower case, `_` replaced by `-`
/// (`DATABASE_URL` -> `database-url`).
pub fn default_secret_id(env: &str) -> String {
    env.to_ascii_lowercase().replace('_', "-")
}

/// The default id of a secret the operator owns (`fromSecret`, `generate`): the service name, then
/// [`default_secret_id`] (`litellm-proxy` + `DATABASE_URL` -> `litellm-proxy-database-url`). Unique per
/// deployment, so deployments sharing a project never collide on defaults.
pub fn owned_secret_id(service: &str, env: &str) -> String {
    format!("{service}-{}", default_secret_id(env))
}

/// The default id of the secret holding LiteLLM's configuration: the service name and `-config`
/// (`litellm-proxy` -> `litellm-proxy-config`).
pub fn config_secret_id(service: &str) -> String {
    format!("{service}-config")
}

/// `projects/P/secrets/ID`.
pub fn secret_resource(project: &str, secret_id: &str) -> String {
    format!("projects/{project}/secrets/{secret_id}")
}

/// `projects/P/locations/R/services/S`.
pub fn service_resource(project: &str, region: &str, service: &str) -> String {
    format!("projects/{project}/locations/{region}/services/{service}")
}

/// `serviceAccount:EMAIL`.
pub fn service_account_member(email: &str) -> String {
    format!("serviceAccount:{email}")
}

/// Value of [`OWNER_LABEL`] for a LiteLLMDeployment: Google label values allow lower-case letters, digits, `_`
/// and `-`, at most 63 characters. Long names keep a stable hash suffix so they stay distinct.
pub fn owner_label_value(namespace: &str, name: &str) -> String {
    let raw = format!("{namespace}_{name}");
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.len() <= 63 {
        return cleaned;
    }
    // FNV-1a: stable across releases and platforms, unlike std's hasher.
    let hash = raw.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{}-{:012x}", &cleaned[..50], hash & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_secret_id_follows_the_runbook_names() {
        assert_eq!(default_secret_id("DATABASE_URL"), "database-url");
        assert_eq!(default_secret_id("LITELLM_MASTER_KEY"), "litellm-master-key");
        assert_eq!(
            owned_secret_id("litellm-proxy", "LITELLM_MASTER_KEY"),
            "litellm-proxy-litellm-master-key"
        );
    }

    #[test]
    fn the_config_path_is_its_directory_and_file_and_no_env_name() {
        assert_eq!(CONFIG_PATH, format!("{CONFIG_MOUNT_PATH}/{CONFIG_FILE}"));
        assert!(CONFIG_PATH.contains('/'), "an env var name never contains '/'");
        assert_eq!(config_secret_id("litellm-proxy"), "litellm-proxy-config");
    }

    #[test]
    fn owner_label_fits_google_label_rules() {
        assert_eq!(owner_label_value("llm", "litellm-proxy"), "llm_litellm-proxy");
        let long = owner_label_value(&"n".repeat(63), &"x".repeat(253));
        assert_eq!(long.len(), 63);
        assert_ne!(long, owner_label_value(&"n".repeat(63), &"y".repeat(253)));
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        );
        assert_eq!(owner_label_value("a.b", "C"), "a-b_c");
    }
}
