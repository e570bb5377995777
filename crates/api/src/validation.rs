//! Checks the API server cannot make from the schema and CEL rules alone (or that must also hold for manifests
//! that never went through an API server, as with `litellm-operator plan -f`).
//!
//! [`validate`] returns every problem at once, each with its field path and a message a person can act on.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::names::{self, RESERVED_ENV};
use crate::resource::{ConfigSource, LiteLLMDeployment, ProbeType, Replication, SecretSource};

/// One problem with a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field, for example `spec.secrets[2].secretId`.
    pub field: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in one spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec(pub Vec<FieldError>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidSpec {}

macro_rules! pattern {
    ($name:ident, $re:expr) => {
        static $name: LazyLock<Regex> = LazyLock::new(|| {
            #[allow(clippy::unwrap_used)] // a constant pattern, covered by the tests below
            Regex::new($re).unwrap()
        });
    };
}

pattern!(
    PROJECT,
    r"^([a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$"
);
pattern!(REGION, r"^[a-z]+-[a-z]+[0-9]+$");
pattern!(SERVICE_NAME, r"^[a-z]([-a-z0-9]*[a-z0-9])?$");
pattern!(SECRET_ID, r"^[A-Za-z0-9_-]{1,255}$");
pattern!(ENV_NAME, r"^[A-Za-z_][A-Za-z0-9_]*$");
pattern!(
    SERVICE_ACCOUNT,
    r"^[a-zA-Z0-9._%+-]+@[a-z0-9.-]+\.gserviceaccount\.com$"
);
pattern!(LABEL_KEY, r"^[a-z][a-z0-9_-]{0,62}$");
pattern!(LABEL_VALUE, r"^[a-z0-9_-]{0,63}$");
pattern!(
    DNS_SUBDOMAIN,
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
);
pattern!(SECRET_KEY, r"^[-._a-zA-Z0-9]+$");
pattern!(VERSION, r"^(latest|[1-9][0-9]*)$");
pattern!(ROTATION, r"^[A-Za-z0-9_.:-]*$");

/// The env var of LiteLLM's salt key: it encrypts the credentials LiteLLM stores, so it never changes.
const SALT_KEY_ENV: &str = "LITELLM_SALT_KEY";

/// Longest Cloud Run service name.
const MAX_SERVICE_NAME: usize = 49;
/// Cloud Run's CPU range, in millicores.
const CPU_RANGE_MILLIS: (u64, u64) = (80, 8000);
/// Cloud Run's memory range, in MiB.
const MEMORY_RANGE_MIB: (u64, u64) = (128, 32 * 1024);

/// Validates a LiteLLMDeployment, returning every problem found.
pub fn validate(obj: &LiteLLMDeployment) -> Result<(), InvalidSpec> {
    let mut errors = Problems::default();
    let spec = &obj.spec;

    if !PROJECT.is_match(&spec.project) {
        errors.add("spec.project", format!("{:?} is not a Google Cloud project id (6-30 lower-case letters, digits or hyphens, starting with a letter)", spec.project));
    }
    if !REGION.is_match(&spec.region) {
        errors.add(
            "spec.region",
            format!("{:?} is not a Cloud Run region such as us-central1", spec.region),
        );
    }

    let service = &spec.service;
    let service_name = obj.service_name();
    let name_field = if service.name.is_some() {
        "spec.service.name"
    } else {
        "metadata.name"
    };
    if service_name.is_empty() {
        errors.add("spec.service.name", "set spec.service.name or metadata.name");
    } else if service_name.len() > MAX_SERVICE_NAME || !SERVICE_NAME.is_match(&service_name) {
        errors.add(
            name_field,
            format!(
                "{service_name:?} is not a valid Cloud Run service name (lower-case letters, digits and hyphens, \
                 starting with a letter, not ending with a hyphen, at most {MAX_SERVICE_NAME} characters); \
                 set spec.service.name"
            ),
        );
    }
    if service.image.trim().is_empty() {
        errors.add(
            "spec.service.image",
            "set the LiteLLM container image, e.g. ghcr.io/berriai/litellm:main-stable",
        );
    }
    if !(1..=65535).contains(&service.port) {
        errors.add(
            "spec.service.port",
            format!("{} is not a TCP port (1-65535)", service.port),
        );
    }
    if !SERVICE_ACCOUNT.is_match(&service.service_account) {
        errors.add(
            "spec.service.serviceAccount",
            format!(
                "{:?} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)",
                service.service_account
            ),
        );
    }
    validate_resources(obj, &mut errors);

    let scaling = &service.scaling;
    if scaling.min_instances < 0 {
        errors.add("spec.service.scaling.minInstances", "must not be negative");
    }
    if scaling.max_instances < 1 {
        errors.add("spec.service.scaling.maxInstances", "must be at least 1");
    }
    if scaling.min_instances > scaling.max_instances {
        errors.add(
            "spec.service.scaling.minInstances",
            format!(
                "{} exceeds maxInstances {}",
                scaling.min_instances, scaling.max_instances
            ),
        );
    }
    if !(1..=1000).contains(&scaling.concurrency) {
        errors.add("spec.service.scaling.concurrency", "must be between 1 and 1000");
    }
    if !(1..=3600).contains(&service.request_timeout_seconds) {
        errors.add("spec.service.requestTimeoutSeconds", "must be between 1 and 3600");
    }

    for key in service.env.keys() {
        let field = format!("spec.service.env.{key}");
        if !ENV_NAME.is_match(key) {
            errors.add(&field, "env names must match [A-Za-z_][A-Za-z0-9_]*");
        }
        if RESERVED_ENV.contains(&key.as_str()) {
            errors.add(&field, "is reserved by Cloud Run; remove it");
        }
    }
    validate_labels("spec.service.labels", &service.labels, &mut errors);
    if let Some(vpc) = &service.vpc_access
        && vpc.connector.is_some() == vpc.network_interfaces.is_some()
    {
        errors.add(
            "spec.service.vpcAccess",
            "set exactly one of connector or networkInterfaces",
        );
    }
    let paths = [
        (
            "liveness",
            service
                .probes
                .liveness
                .enabled
                .then_some(&service.probes.liveness.path),
        ),
        (
            "startup",
            (service.probes.startup.kind == ProbeType::Http).then_some(&service.probes.startup.path),
        ),
    ];
    for (probe, path) in paths {
        if path.is_some_and(|p| !p.starts_with('/')) {
            errors.add(&format!("spec.service.probes.{probe}.path"), "must start with /");
        }
    }

    validate_secrets(obj, &mut errors);
    validate_config(obj, &mut errors);

    let policy = &spec.secret_policy;
    match (policy.replication, &policy.replica_locations) {
        (Replication::UserManaged, None) => errors.add(
            "spec.secretPolicy.replicaLocations",
            "required when replication is UserManaged",
        ),
        (Replication::UserManaged, Some(l)) if l.is_empty() => errors.add(
            "spec.secretPolicy.replicaLocations",
            "required when replication is UserManaged",
        ),
        (Replication::Automatic, Some(_)) => errors.add(
            "spec.secretPolicy.replicaLocations",
            "only allowed with replication UserManaged; remove it or set replication: UserManaged",
        ),
        _ => {}
    }
    for (i, location) in policy.replica_locations.iter().flatten().enumerate() {
        if !REGION.is_match(location) {
            errors.add(
                &format!("spec.secretPolicy.replicaLocations[{i}]"),
                format!("{location:?} is not a region"),
            );
        }
    }
    if !(1..=100).contains(&policy.keep_enabled_versions) {
        errors.add(
            "spec.secretPolicy.keepEnabledVersions",
            "must be between 1 and 100",
        );
    }
    validate_labels("spec.secretPolicy.labels", &policy.labels, &mut errors);

    errors.finish()
}

fn validate_resources(obj: &LiteLLMDeployment, errors: &mut Problems) {
    let resources = &obj.spec.service.resources;
    let cpu = parse_cpu_millis(&resources.cpu);
    let memory = parse_memory_mib(&resources.memory);
    match cpu {
        None => errors.add(
            "spec.service.resources.cpu",
            format!("{:?} is not a CPU quantity such as 1, 2 or 500m", resources.cpu),
        ),
        Some(m) if !(CPU_RANGE_MILLIS.0..=CPU_RANGE_MILLIS.1).contains(&m) => {
            errors.add("spec.service.resources.cpu", "Cloud Run allows 80m to 8 CPUs")
        }
        Some(m) if m > 1000 && ![2000, 4000, 6000, 8000].contains(&m) => errors.add(
            "spec.service.resources.cpu",
            "above one CPU Cloud Run allows only 2, 4, 6 or 8",
        ),
        Some(_) => {}
    }
    match memory {
        None => errors.add(
            "spec.service.resources.memory",
            format!(
                "{:?} is not a memory quantity such as 512Mi or 4Gi",
                resources.memory
            ),
        ),
        Some(m) if !(MEMORY_RANGE_MIB.0..=MEMORY_RANGE_MIB.1).contains(&m) => {
            errors.add("spec.service.resources.memory", "Cloud Run allows 128Mi to 32Gi")
        }
        Some(_) => {}
    }
    if let (Some(cpu), Some(memory)) = (cpu, memory) {
        // Cloud Run's pairing rules: more memory needs more CPU, and more CPU needs a memory floor.
        let min_cpu_for_memory = match memory {
            m if m > 24 * 1024 => 8000,
            m if m > 16 * 1024 => 6000,
            m if m > 8 * 1024 => 4000,
            m if m > 4 * 1024 => 2000,
            m if m > 1024 => 1000,
            _ => 0,
        };
        if cpu < min_cpu_for_memory {
            errors.add(
                "spec.service.resources",
                format!(
                    "memory {} needs at least {} CPU on Cloud Run",
                    resources.memory,
                    min_cpu_for_memory / 1000
                ),
            );
        }
        let min_memory_for_cpu = match cpu {
            c if c >= 6000 => 4 * 1024,
            c if c >= 4000 => 2 * 1024,
            _ => 0,
        };
        if memory < min_memory_for_cpu {
            errors.add(
                "spec.service.resources",
                format!(
                    "{} CPU needs at least {}Gi memory on Cloud Run",
                    cpu / 1000,
                    min_memory_for_cpu / 1024
                ),
            );
        }
        if cpu < 1000 && obj.spec.service.scaling.concurrency > 1 {
            errors.add(
                "spec.service.scaling.concurrency",
                "Cloud Run allows concurrency above 1 only with at least 1 CPU",
            );
        }
    }
}

fn validate_secrets(obj: &LiteLLMDeployment, errors: &mut Problems) {
    let spec = &obj.spec;
    let mut envs: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for (i, secret) in spec.secrets.iter().enumerate() {
        let at = |f: &str| format!("spec.secrets[{i}].{f}");
        if !ENV_NAME.is_match(&secret.env) {
            errors.add(
                &at("env"),
                format!("{:?} is not an env var name ([A-Za-z_][A-Za-z0-9_]*)", secret.env),
            );
        }
        if RESERVED_ENV.contains(&secret.env.as_str()) {
            errors.add(&at("env"), "is reserved by Cloud Run");
        }
        if let Some(first) = envs.insert(&secret.env, i) {
            errors.add(
                &at("env"),
                format!("{} is already used by spec.secrets[{first}]", secret.env),
            );
        }
        if spec.service.env.contains_key(&secret.env) {
            errors.add(
                &format!("spec.service.env.{}", secret.env),
                "is also a secret: remove the plain env var so the credential comes only from Secret Manager",
            );
        }
        let id = secret.effective_secret_id(&obj.service_name());
        let id_field = if secret.secret_id.is_some() {
            at("secretId")
        } else {
            at("env")
        };
        if !SECRET_ID.is_match(&id) {
            errors.add(
                &id_field,
                format!("secret id {id:?} must match [A-Za-z0-9_-]{{1,255}}"),
            );
        }
        if let Some(first) = ids.insert(id.clone(), i) {
            errors.add(
                &id_field,
                format!("secret id {id:?} is already used by spec.secrets[{first}]; set a distinct secretId"),
            );
        }
        match secret.source() {
            None => errors.add(
                &format!("spec.secrets[{i}]"),
                "set exactly one of fromSecret, generate or external",
            ),
            Some(SecretSource::FromSecret(r)) => key_ref(
                errors,
                &at("fromSecret"),
                (&r.name, "Kubernetes Secret"),
                (&r.key, "Secret"),
            ),
            Some(SecretSource::Generate(g)) => {
                if !(16..=4096).contains(&g.length) {
                    errors.add(&at("generate.length"), "must be between 16 and 4096");
                }
                if g.prefix.len() > 32 {
                    errors.add(&at("generate.prefix"), "must be at most 32 characters");
                }
                if g.rotation.len() > 63 || !ROTATION.is_match(&g.rotation) {
                    errors.add(
                        &at("generate.rotation"),
                        "must be at most 63 letters, digits, '_', '.', ':' or '-'",
                    );
                }
                if !g.rotation.is_empty() && secret.env == SALT_KEY_ENV {
                    errors.add(
                        &at("generate.rotation"),
                        "LITELLM_SALT_KEY is never rotated: LiteLLM encrypts the credentials it stores with it, and \
                         a new value would make them unreadable",
                    );
                }
            }
            Some(SecretSource::External(e)) => {
                if !VERSION.is_match(&e.version) {
                    errors.add(
                        &at("external.version"),
                        format!("{:?} must be latest or a version number", e.version),
                    );
                }
            }
        }
    }
}

/// A reference to a key of a Kubernetes object at `field`: `name` must be an object name, `key` a data key; each
/// comes with what it names, for the message.
fn key_ref(errors: &mut Problems, field: &str, (name, object): (&str, &str), (key, data): (&str, &str)) {
    if name.len() > 253 || !DNS_SUBDOMAIN.is_match(name) {
        errors.add(
            &format!("{field}.name"),
            format!("{name:?} is not a {object} name"),
        );
    }
    if key.len() > 253 || !SECRET_KEY.is_match(key) {
        errors.add(
            &format!("{field}.key"),
            format!("{key:?} is not a {data} data key"),
        );
    }
}

fn validate_config(obj: &LiteLLMDeployment, errors: &mut Problems) {
    let Some(config) = &obj.spec.config else {
        return;
    };
    match config.source() {
        None => errors.add("spec.config", "set exactly one of inline or configMapKeyRef"),
        Some(ConfigSource::Inline(text)) => {
            if let Err(problems) = check_config(text) {
                for problem in problems {
                    errors.add("spec.config.inline", problem);
                }
            }
        }
        Some(ConfigSource::ConfigMap(r)) => key_ref(
            errors,
            "spec.config.configMapKeyRef",
            (&r.name, "ConfigMap"),
            (&r.key, "ConfigMap"),
        ),
    }
    let service = obj.service_name();
    let id = config.effective_secret_id(&service);
    let field = if config.secret_id.is_some() {
        "spec.config.secretId"
    } else {
        "spec.config"
    };
    if !SECRET_ID.is_match(&id) {
        errors.add(
            field,
            format!("secret id {id:?} must match [A-Za-z0-9_-]{{1,255}}"),
        );
    }
    if let Some(i) = obj
        .spec
        .secrets
        .iter()
        .position(|s| s.effective_secret_id(&service) == id)
    {
        errors.add(
            field,
            format!(
                "secret id {id:?} of the configuration is already used by spec.secrets[{i}]; set a distinct \
                 spec.config.secretId"
            ),
        );
    }
}

/// The most bytes Secret Manager keeps in one version, and so the largest LiteLLM configuration.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// The parser's own words for what is wrong with a YAML text. An error message is only ever one of these (with its
/// line and column): the parser's full message may quote the text (`invalid value: string "sk-..."`, `duplicate
/// entry with key "..."`), and a configuration may hold credentials.
const YAML_PROBLEMS: [(&str, &str); 19] = [
    (
        "mapping values are not allowed",
        "a `key: value` where no mapping may start",
    ),
    (
        "did not find expected key",
        "did not find the expected key (check the indentation)",
    ),
    (
        "did not find expected '-' indicator",
        "did not find the expected '-' of a list item (check the indentation)",
    ),
    (
        "did not find expected node content",
        "did not find the expected value",
    ),
    (
        "did not find expected ',' or ']'",
        "a flow list `[...]` is not closed",
    ),
    (
        "did not find expected ',' or '}'",
        "a flow mapping `{...}` is not closed",
    ),
    ("could not find expected ':'", "a key without ':'"),
    (
        "block sequence entries are not allowed",
        "a list item where none may start",
    ),
    (
        "found unexpected end of stream",
        "the text ends inside a value (an unclosed quote or bracket)",
    ),
    (
        "found character that cannot start any token",
        "a character that cannot start any token (a tab used for indentation?)",
    ),
    (
        "found a tab character",
        "a tab character that breaks the indentation",
    ),
    (
        "found unknown escape character",
        "an unknown escape sequence in a double-quoted string",
    ),
    ("found undefined tag handle", "an undefined tag"),
    (
        "found unexpected document indicator",
        "an unexpected document marker",
    ),
    (
        "found incompatible YAML document",
        "an unsupported YAML version directive",
    ),
    ("unknown anchor", "an alias to an anchor that is not defined"),
    ("duplicate entry", "a key that appears twice in one mapping"),
    (
        "more than one document",
        "more than one YAML document (`---`); give one",
    ),
    ("recursion limit exceeded", "nesting too deep"),
];

/// Checks LiteLLM configuration YAML as far as it can be checked without LiteLLM: it parses, it is a mapping, and each
/// `model_list` entry is a mapping with `model_name` and `litellm_params.model`. Returns every problem, each naming a
/// line and column or a `model_list` index, never any of the text (it may hold credentials).
pub fn check_config(text: &str) -> Result<(), Vec<String>> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(vec![format!(
            "is {} bytes; Secret Manager takes at most {MAX_CONFIG_BYTES} bytes per version",
            text.len()
        )]);
    }
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(vec![yaml_error(&e)]),
    };
    let Some(settings) = value.as_mapping() else {
        return Err(vec![format!(
            "is {}, not a mapping of LiteLLM settings such as model_list and general_settings",
            kind(&value)
        )]);
    };
    let mut problems = Vec::new();
    match settings.get("model_list") {
        None | Some(serde_yaml::Value::Null) => {}
        Some(serde_yaml::Value::Sequence(models)) => {
            for (i, model) in models.iter().enumerate() {
                let Some(model) = model.as_mapping() else {
                    problems.push(format!(
                        "model_list[{i}] is {}, not a mapping with model_name and litellm_params",
                        kind(model)
                    ));
                    continue;
                };
                if model.get("model_name").is_none_or(serde_yaml::Value::is_null) {
                    problems.push(format!("model_list[{i}] has no model_name"));
                }
                match model.get("litellm_params") {
                    Some(serde_yaml::Value::Mapping(params)) => {
                        if params.get("model").is_none_or(serde_yaml::Value::is_null) {
                            problems.push(format!(
                                "model_list[{i}].litellm_params has no model (for example openai/gpt-4o-mini)"
                            ));
                        }
                    }
                    _ => problems.push(format!(
                        "model_list[{i}] has no litellm_params mapping (with model, for example openai/gpt-4o-mini)"
                    )),
                }
            }
        }
        Some(other) => problems.push(format!("model_list is {}, not a list of models", kind(other))),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// `not valid YAML at line L column C: <what>`, in the words of [`YAML_PROBLEMS`] only.
fn yaml_error(e: &serde_yaml::Error) -> String {
    let message = e.to_string();
    let what = YAML_PROBLEMS
        .iter()
        .find(|(parser, _)| message.contains(parser))
        .map_or("the parser refused it", |(_, ours)| ours);
    match e.location() {
        Some(at) => format!(
            "not valid YAML at line {} column {}: {what}",
            at.line(),
            at.column()
        ),
        None => format!("not valid YAML: {what}"),
    }
}

/// What kind of YAML value `v` is, for messages (never its content).
fn kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "empty",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

fn validate_labels(field: &str, labels: &BTreeMap<String, String>, errors: &mut Problems) {
    for (key, value) in labels {
        let at = format!("{field}.{key}");
        if !LABEL_KEY.is_match(key) {
            errors.add(
                &at,
                "Google label keys are 1-63 lower-case letters, digits, _ or -, starting with a letter",
            );
        }
        if !LABEL_VALUE.is_match(value) {
            errors.add(
                &at,
                "Google label values are at most 63 lower-case letters, digits, _ or -",
            );
        }
        if key == names::MANAGED_BY_LABEL || key == names::OWNER_LABEL {
            errors.add(&at, "is set by the operator; remove it");
        }
    }
}

/// Parses a Kubernetes CPU quantity into millicores (`2` -> 2000, `500m` -> 500, `0.5` -> 500).
pub fn parse_cpu_millis(cpu: &str) -> Option<u64> {
    if let Some(m) = cpu.strip_suffix('m') {
        return m.parse().ok();
    }
    let (whole, frac) = cpu.split_once('.').unwrap_or((cpu, ""));
    if whole.is_empty() || frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    whole.checked_mul(1000)?.checked_add(frac)
}

/// Parses a Kubernetes memory quantity into MiB (`4Gi` -> 4096, `512Mi` -> 512, `1G` -> 953).
pub fn parse_memory_mib(memory: &str) -> Option<u64> {
    let split = memory.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = memory.split_at(split);
    let n: u64 = number.parse().ok()?;
    let bytes = match unit {
        "Mi" => n.checked_mul(1 << 20)?,
        "Gi" => n.checked_mul(1 << 30)?,
        "M" => n.checked_mul(1_000_000)?,
        "G" => n.checked_mul(1_000_000_000)?,
        _ => return None,
    };
    Some(bytes >> 20)
}

#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), InvalidSpec> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidSpec(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_cpu_millis("2"), Some(2000));
        assert_eq!(parse_cpu_millis("500m"), Some(500));
        assert_eq!(parse_cpu_millis("0.25"), Some(250));
        assert_eq!(parse_cpu_millis("1.5"), Some(1500));
        assert_eq!(parse_cpu_millis(""), None);
        assert_eq!(parse_cpu_millis("two"), None);
        assert_eq!(parse_cpu_millis("0.0001"), None);
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_memory_mib("4Gi"), Some(4096));
        assert_eq!(parse_memory_mib("512Mi"), Some(512));
        assert_eq!(parse_memory_mib("1G"), Some(953));
        assert_eq!(parse_memory_mib("4"), None);
        assert_eq!(parse_memory_mib("4Ti"), None);
    }

    const DEMO: &str = "model_list:\n  - model_name: demo\n    litellm_params:\n      model: openai/gpt-4o-mini\n      \
                        api_key: os.environ/OPENAI_API_KEY\ngeneral_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n";

    #[test]
    fn a_litellm_config_passes() {
        assert_eq!(check_config(DEMO), Ok(()));
        assert_eq!(check_config("general_settings: {}\n"), Ok(()));
        assert_eq!(
            check_config("model_list:\n"),
            Ok(()),
            "no models: LiteLLM may keep them in its database"
        );
    }

    #[test]
    fn yaml_that_does_not_parse_is_refused_with_line_and_column_only() {
        let secret = "sk-live-0123456789";
        for (text, at) in [
            (
                format!("general_settings:\n  master_key: {secret}\n bad: [\n"),
                "line 3 column 2",
            ),
            (format!("a: !!int {secret}\n"), "line 1 column 4"),
            (format!("{secret}: 1\n{secret}: 2\n"), "line 1 column 1"),
            (format!("key: \"{secret}\n"), "line 2 column 1"),
        ] {
            let problems = check_config(&text).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with("not valid YAML at "), "{problems:?}");
            assert!(problems[0].contains(at), "{text:?}: {problems:?}");
            assert!(!problems[0].contains(secret), "{problems:?}");
        }
        let two = check_config("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(
            two,
            ["not valid YAML: more than one YAML document (`---`); give one"]
        );
    }

    #[test]
    fn a_config_that_is_not_a_mapping_is_refused() {
        assert_eq!(
            check_config("- model_name: demo\n").unwrap_err(),
            ["is a list, not a mapping of LiteLLM settings such as model_list and general_settings"]
        );
        assert!(check_config("sk-just-a-key").unwrap_err()[0].starts_with("is a string, not a mapping"));
        assert!(check_config("# only a comment\n").unwrap_err()[0].starts_with("is empty, not a mapping"));
    }

    #[test]
    fn each_model_needs_model_name_and_litellm_params_model() {
        let text = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x}\n  - litellm_params: {model: x}\n  \
                    - model_name: c\n    litellm_params: {api_key: sk-hidden}\n  - model_name: d\n  - just-a-string\n";
        assert_eq!(
            check_config(text).unwrap_err(),
            [
                "model_list[1] has no model_name",
                "model_list[2].litellm_params has no model (for example openai/gpt-4o-mini)",
                "model_list[3] has no litellm_params mapping (with model, for example openai/gpt-4o-mini)",
                "model_list[4] is a string, not a mapping with model_name and litellm_params",
            ]
        );
        assert_eq!(
            check_config("model_list: {demo: x}\n").unwrap_err(),
            ["model_list is a mapping, not a list of models"]
        );
    }

    #[test]
    fn a_config_over_64_kib_is_refused() {
        let big = format!(
            "general_settings:\n  note: \"{}\"\n",
            "x".repeat(MAX_CONFIG_BYTES)
        );
        assert!(check_config(&big).unwrap_err()[0].contains("at most 65536 bytes"));
    }

    proptest::proptest! {
        /// Whatever the text, a problem never repeats any of it: a marker planted anywhere in generated YAML-ish
        /// text (keys, values, quotes, brackets, tabs, anchors) never shows in the messages.
        #[test]
        fn problems_never_contain_the_text(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "SECRETMARK", "SECRETMARK: ", ": SECRETMARK", "\n", "\n  ", "\t", "- ", "[", "]", "{", "}",
                    "\"SECRETMARK", "'", "!!int ", "&a ", "*b ", "? ", "---\n", "model_list:", "litellm_params:",
                    "model_name: SECRETMARK", "\\q", "%YAML 9.9\n", ",",
                ]),
                0..24,
            )
        ) {
            let text: String = parts.concat();
            if let Err(problems) = check_config(&text) {
                for p in problems {
                    proptest::prop_assert!(!p.contains("SECRETMARK"), "{:?} -> {:?}", text, p);
                }
            }
        }
    }

    #[test]
    fn patterns_compile_and_match_google_rules() {
        assert!(SECRET_ID.is_match("database-url") && !SECRET_ID.is_match("database.url"));
        assert!(SERVICE_NAME.is_match("litellm-proxy") && !SERVICE_NAME.is_match("1litellm"));
        assert!(PROJECT.is_match("my-project") && PROJECT.is_match("example.com:my-project"));
        assert!(REGION.is_match("europe-west4") && !REGION.is_match("europe"));
        assert!(ENV_NAME.is_match("_A1") && !ENV_NAME.is_match("A-B"));
        assert!(LABEL_KEY.is_match("team") && !LABEL_KEY.is_match("Team"));
        assert!(LABEL_VALUE.is_match("") && !LABEL_VALUE.is_match("A"));
        assert!(DNS_SUBDOMAIN.is_match("litellm.credentials") && !DNS_SUBDOMAIN.is_match("-x"));
        assert!(SECRET_KEY.is_match("database-url") && !SECRET_KEY.is_match("a/b"));
        assert!(VERSION.is_match("12") && !VERSION.is_match("01"));
        assert!(SERVICE_ACCOUNT.is_match("123-compute@developer.gserviceaccount.com"));
    }
}
