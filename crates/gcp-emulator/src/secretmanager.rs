//! Secret Manager v1 REST: secrets, versions, payload access, version states and the secret IAM policy.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, Code};
use crate::iam;
use crate::model::{Policy, PolicyChange, Secret, SecretVersion, VersionState};
use crate::wire::{self, Request};

/// Secret Manager's data: secrets by full name (`projects/NUMBER/secrets/x`), each with its versions, its IAM policy
/// and that policy's history.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub secrets: BTreeMap<String, Secret>,
}

/// Secret Manager refuses payloads over 64 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 65536;
const MAX_PAGE_SIZE: i64 = 25000;
const UPDATABLE: [&str; 8] = [
    "labels",
    "annotations",
    "versionAliases",
    "topics",
    "rotation",
    "expireTime",
    "ttl",
    "versionDestroyTtl",
];

fn secret_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Secret [{name}] not found."))
}

fn version_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Secret Version [{name}] not found."))
}

fn etag_mismatch() -> ApiError {
    ApiError::precondition(
        "The etag provided in the request does not match the current etag of the resource.",
    )
}

pub fn valid_secret_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn validate_labels(labels: &BTreeMap<String, String>) -> ApiResult<()> {
    if labels.len() > 64 {
        return Err(ApiError::field(
            "secret.labels",
            "A secret may have at most 64 labels.",
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    for (k, v) in labels {
        let key_ok =
            k.len() <= 63 && k.starts_with(|c: char| c.is_ascii_lowercase()) && k.chars().all(ok_char);
        if !key_ok {
            return Err(ApiError::field(
                "secret.labels",
                format!(
                    "Label key [{k}] is invalid: keys must start with a lowercase letter and contain only lowercase letters, digits, underscores and dashes (at most 63 characters)."
                ),
            ));
        }
        if v.len() > 63 || !v.chars().all(ok_char) {
            return Err(ApiError::field(
                "secret.labels",
                format!(
                    "Label value [{v}] of key [{k}] is invalid: values may contain only lowercase letters, digits, underscores and dashes (at most 63 characters)."
                ),
            ));
        }
    }
    Ok(())
}

fn validate_replication(replication: Option<&Value>) -> ApiResult<Value> {
    let Some(Value::Object(r)) = replication else {
        return Err(ApiError::field(
            "secret.replication",
            "Secret.replication must be specified.",
        ));
    };
    match (r.get("automatic"), r.get("userManaged")) {
        (Some(a), None) if a.is_object() => Ok(Value::Object(r.clone())),
        (None, Some(Value::Object(u))) => {
            let replicas = u
                .get("replicas")
                .and_then(Value::as_array)
                .filter(|l| !l.is_empty());
            let Some(replicas) = replicas else {
                return Err(ApiError::field(
                    "secret.replication.user_managed.replicas",
                    "Secret.replication.user_managed.replicas must contain at least one replica.",
                ));
            };
            for replica in replicas {
                let location = replica.get("location").and_then(Value::as_str).unwrap_or("");
                if location.is_empty() {
                    return Err(ApiError::field(
                        "secret.replication.user_managed.replicas.location",
                        "Every replica must have a location.",
                    ));
                }
            }
            Ok(Value::Object(r.clone()))
        }
        _ => Err(ApiError::field(
            "secret.replication",
            "Secret.replication must have exactly one of automatic or user_managed.",
        )),
    }
}

fn version_aliases(body: &Map<String, Value>) -> ApiResult<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(map)) = body.get("versionAliases") {
        for (k, v) in map {
            let n = wire::int64_value(v).ok_or_else(|| {
                ApiError::invalid(format!(
                    "Invalid value at 'secret.version_aliases[{k}]' (TYPE_INT64)"
                ))
            })?;
            out.insert(k.clone(), n);
        }
    }
    Ok(out)
}

/// A simple reading of Google's list filter: space- or AND-separated `field:value`, `field=value`,
/// `field:*` terms, each optionally negated with `-` or `NOT`.
struct Filter {
    terms: Vec<(bool, String, char, String)>,
}

impl Filter {
    fn parse(text: Option<&str>, fields: &[&str]) -> ApiResult<Filter> {
        let mut terms = Vec::new();
        let mut negate_next = false;
        for word in text.unwrap_or("").split_whitespace() {
            if word == "AND" {
                continue;
            }
            if word == "NOT" {
                negate_next = true;
                continue;
            }
            let (negated, word) = match word.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (negate_next, word),
            };
            negate_next = false;
            let at = word
                .find([':', '='])
                .ok_or_else(|| ApiError::invalid(format!("Invalid filter term: {word}")))?;
            let field = word[..at].to_string();
            let op = word[at..].chars().next().unwrap_or(':');
            let value = word[at + 1..].trim_matches('"').to_string();
            let known = fields
                .iter()
                .any(|f| *f == field || (f.ends_with('.') && field.starts_with(*f)));
            if !known {
                return Err(ApiError::invalid(format!("Invalid filter field: {field}")));
            }
            terms.push((negated, field, op, value));
        }
        Ok(Filter { terms })
    }

    fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|(negated, field, op, value)| {
            let actual = lookup(field);
            let hit = match (actual, *op, value.as_str()) {
                (None, _, _) => false,
                (Some(_), ':', "*") => true,
                (Some(a), '=', v) => a == v,
                (Some(a), _, v) => a.to_ascii_lowercase().contains(&v.to_ascii_lowercase()),
            };
            hit != *negated
        })
    }
}

impl Secret {
    fn render(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), json!(self.name));
        out.insert("replication".into(), self.replication.clone());
        out.insert("createTime".into(), json!(wire::timestamp(self.create_time)));
        if !self.labels.is_empty() {
            out.insert("labels".into(), wire::map_to_value(&self.labels));
        }
        out.insert("etag".into(), json!(self.etag));
        if !self.annotations.is_empty() {
            out.insert("annotations".into(), wire::map_to_value(&self.annotations));
        }
        if !self.version_aliases.is_empty() {
            let aliases: Map<String, Value> = self
                .version_aliases
                .iter()
                .map(|(k, v)| (k.clone(), json!(v.to_string())))
                .collect();
            out.insert("versionAliases".into(), Value::Object(aliases));
        }
        for (k, v) in &self.extra {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }

    fn replication_status(&self) -> Value {
        match self.replication.get("userManaged") {
            Some(u) => {
                let replicas: Vec<Value> = u
                    .get("replicas")
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .map(|r| json!({"location": r.get("location").cloned().unwrap_or(Value::Null)}))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({"userManaged": {"replicas": replicas}})
            }
            None => json!({"automatic": {}}),
        }
    }

    fn render_version(&self, v: &SecretVersion) -> Value {
        let mut out = json!({
            "name": format!("{}/versions/{}", self.name, v.id),
            "createTime": wire::timestamp(v.create_time),
            "state": v.state.name(),
            "replicationStatus": self.replication_status(),
            "etag": v.etag,
            "clientSpecifiedPayloadChecksum": v.client_checksum,
        });
        if let Some(t) = v.destroy_time {
            out["destroyTime"] = json!(wire::timestamp(t));
        }
        out
    }

    /// Resolves `latest` (the most recently created version), an alias or a number.
    pub fn resolve_version(&self, version: &str) -> ApiResult<u64> {
        if version == "latest" {
            return self.versions.keys().next_back().copied().ok_or_else(|| {
                ApiError::not_found(format!("Secret [{}] not found or has no versions.", self.name))
            });
        }
        let id = match version.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => match self.version_aliases.get(version) {
                Some(n) => u64::try_from(*n).unwrap_or(0),
                None => return Err(version_not_found(&format!("{}/versions/{version}", self.name))),
            },
        };
        if self.versions.contains_key(&id) {
            Ok(id)
        } else {
            Err(version_not_found(&format!("{}/versions/{id}", self.name)))
        }
    }
}

fn check_etag(given: Option<&str>, current: &str) -> ApiResult<()> {
    match given {
        Some(e) if !e.is_empty() && e != current => Err(etag_mismatch()),
        _ => Ok(()),
    }
}

fn next_etag(counter: &mut u64) -> String {
    wire::b64(&wire::etag_bytes(counter))
}

impl Store {
    fn secret(&self, name: &str) -> ApiResult<&Secret> {
        self.secrets.get(name).ok_or_else(|| secret_not_found(name))
    }

    fn secret_mut(&mut self, name: &str) -> ApiResult<&mut Secret> {
        self.secrets.get_mut(name).ok_or_else(|| secret_not_found(name))
    }

    pub fn create_secret(
        &mut self,
        project: &str,
        req: &Request,
        now: DateTime<Utc>,
        counter: &mut u64,
    ) -> ApiResult<Value> {
        let id = req.param("secretId").unwrap_or("");
        if id.is_empty() {
            return Err(ApiError::field(
                "secret_id",
                "The secret_id field must be specified.",
            ));
        }
        if !valid_secret_id(id) {
            return Err(ApiError::field(
                "secret_id",
                format!("Secret ID [{id}] is invalid: it must match [a-zA-Z0-9_-]{{1,255}}."),
            ));
        }
        let body = req.json()?;
        let name = format!("projects/{project}/secrets/{id}");
        let replication = validate_replication(body.get("replication"))?;
        let labels = wire::string_map(&body, "labels")?;
        validate_labels(&labels)?;
        let annotations = wire::string_map(&body, "annotations")?;
        let aliases = version_aliases(&body)?;
        if self.secrets.contains_key(&name) {
            return Err(ApiError::new(
                Code::AlreadyExists,
                format!("Secret [{name}] already exists."),
            ));
        }
        let mut extra = Map::new();
        for field in [
            "topics",
            "rotation",
            "expireTime",
            "ttl",
            "versionDestroyTtl",
            "customerManagedEncryption",
            "tags",
        ] {
            if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
                extra.insert(field.to_string(), v.clone());
            }
        }
        if let Some(ttl) = extra.remove("ttl") {
            let ttl = ttl.as_str().and_then(wire::parse_duration).ok_or_else(|| {
                ApiError::invalid(
                    "Invalid value at 'secret.ttl' (type.googleapis.com/google.protobuf.Duration)",
                )
            })?;
            let expire = now + chrono::Duration::from_std(ttl).unwrap_or_default();
            extra.insert("expireTime".into(), json!(wire::timestamp(expire)));
        }
        let secret = Secret {
            name: name.clone(),
            create_time: now,
            replication,
            labels,
            annotations,
            version_aliases: aliases,
            extra,
            etag: next_etag(counter),
            versions: BTreeMap::new(),
            policy: Policy::default(),
            policy_history: Vec::new(),
        };
        let out = secret.render();
        self.secrets.insert(name, secret);
        Ok(out)
    }

    pub fn get_secret(&self, name: &str) -> ApiResult<Value> {
        Ok(self.secret(name)?.render())
    }

    pub fn list_secrets(&self, project: &str, req: &Request) -> ApiResult<Value> {
        let filter = Filter::parse(
            req.param("filter"),
            &["name", "labels.", "replication", "create_time", "createTime"],
        )?;
        let prefix = format!("projects/{project}/secrets/");
        let mut items: Vec<((DateTime<Utc>, String), Value)> = self
            .secrets
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, s)| {
                filter.matches(|field| match field {
                    "name" => Some(s.name.clone()),
                    "create_time" | "createTime" => Some(wire::timestamp(s.create_time)),
                    "replication" => Some(if s.replication.get("automatic").is_some() {
                        "automatic".into()
                    } else {
                        "user_managed".into()
                    }),
                    f => f.strip_prefix("labels.").and_then(|k| s.labels.get(k).cloned()),
                })
            })
            // Newest first, as Google lists secrets; the name orders secrets created in the same instant.
            .map(|(k, s)| ((s.create_time, k.clone()), s.render()))
            .collect();
        items.sort_by(|a, b| b.0.cmp(&a.0));
        let total = items.len();
        let (page, next) = wire::paginate(
            items,
            req.int_param("pageSize")?,
            req.param("pageToken"),
            MAX_PAGE_SIZE,
            |(time, name)| format!("{}|{name}", time.timestamp_nanos_opt().unwrap_or_default()),
            |t| {
                let (nanos, name) = t.split_once('|')?;
                Some((
                    DateTime::from_timestamp_nanos(nanos.parse().ok()?),
                    name.to_owned(),
                ))
            },
            false,
        )?;
        let mut out = wire::list_response("secrets", page, next);
        out.insert("totalSize".into(), json!(total));
        Ok(Value::Object(out))
    }

    pub fn update_secret(
        &mut self,
        name: &str,
        req: &Request,
        now: DateTime<Utc>,
        counter: &mut u64,
    ) -> ApiResult<Value> {
        let body = req.json()?;
        let mask = req.param("updateMask").unwrap_or("");
        if mask.is_empty() {
            return Err(ApiError::invalid("The update_mask field must be specified."));
        }
        let mut fields = Vec::new();
        for path in mask.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let camel = match path {
                "version_aliases" => "versionAliases",
                "expire_time" => "expireTime",
                "version_destroy_ttl" => "versionDestroyTtl",
                other => other,
            };
            if !UPDATABLE.contains(&camel) {
                return Err(ApiError::invalid(format!(
                    "The update_mask path [{path}] is not supported or the field is immutable."
                )));
            }
            fields.push(camel);
        }
        let labels = wire::string_map(&body, "labels")?;
        validate_labels(&labels)?;
        let annotations = wire::string_map(&body, "annotations")?;
        let aliases = version_aliases(&body)?;
        let etag = next_etag(counter);
        let secret = self.secret_mut(name)?;
        check_etag(wire::str_field(&body, "etag"), &secret.etag)?;
        for (alias, version) in &aliases {
            if !secret
                .versions
                .contains_key(&u64::try_from(*version).unwrap_or(0))
            {
                return Err(ApiError::invalid(format!(
                    "Version alias [{alias}] refers to version {version}, which does not exist."
                )));
            }
        }
        for field in fields {
            match field {
                "labels" => secret.labels = labels.clone(),
                "annotations" => secret.annotations = annotations.clone(),
                "versionAliases" => secret.version_aliases = aliases.clone(),
                "ttl" => {
                    let ttl = wire::str_field(&body, "ttl").and_then(wire::parse_duration);
                    match ttl {
                        Some(d) => {
                            let expire = now + chrono::Duration::from_std(d).unwrap_or_default();
                            secret
                                .extra
                                .insert("expireTime".into(), json!(wire::timestamp(expire)));
                        }
                        None => {
                            secret.extra.remove("expireTime");
                        }
                    }
                }
                other => match body.get(other).filter(|v| !v.is_null()) {
                    Some(v) => {
                        secret.extra.insert(other.to_string(), v.clone());
                    }
                    None => {
                        secret.extra.remove(other);
                    }
                },
            }
        }
        secret.etag = etag;
        Ok(secret.render())
    }

    pub fn delete_secret(&mut self, name: &str, req: &Request) -> ApiResult<Value> {
        let secret = self.secret(name)?;
        check_etag(req.param("etag"), &secret.etag)?;
        self.secrets.remove(name);
        Ok(json!({}))
    }

    pub fn add_version(
        &mut self,
        name: &str,
        req: &Request,
        now: DateTime<Utc>,
        counter: &mut u64,
    ) -> ApiResult<Value> {
        let body = req.json()?;
        let payload = match body.get("payload") {
            Some(Value::Object(p)) => p,
            _ => return Err(ApiError::field("payload", "The payload field must be specified.")),
        };
        let data = match payload.get("data") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(text)) => wire::b64_decode(text).ok_or_else(|| {
                ApiError::invalid("Invalid value at 'payload.data' (TYPE_BYTES), not valid base64")
            })?,
            Some(_) => return Err(ApiError::invalid("Invalid value at 'payload.data' (TYPE_BYTES)")),
        };
        // Google refuses a version without a value.
        if data.is_empty() {
            return Err(ApiError::field("payload", "Field [payload] is required"));
        }
        if data.len() > MAX_PAYLOAD_BYTES {
            return Err(ApiError::field(
                "payload.data",
                format!(
                    "Secret payload data is {} bytes, larger than the maximum of {MAX_PAYLOAD_BYTES} bytes.",
                    data.len()
                ),
            ));
        }
        let crc = crc32c::crc32c(&data);
        let client_checksum = match payload.get("dataCrc32c") {
            None | Some(Value::Null) => false,
            Some(v) => {
                let given = wire::int64_value(v).ok_or_else(|| {
                    ApiError::invalid("Invalid value at 'payload.data_crc32c' (TYPE_INT64)")
                })?;
                if given != i64::from(crc) {
                    return Err(ApiError::field(
                        "payload.data_crc32c",
                        "Checksum mismatch: payload.data_crc32c does not match the CRC32C of payload.data.",
                    ));
                }
                true
            }
        };
        let etag = next_etag(counter);
        let secret = self.secret_mut(name)?;
        let id = secret.versions.keys().next_back().copied().unwrap_or(0) + 1;
        let version = SecretVersion {
            id,
            create_time: now,
            state: VersionState::Enabled,
            destroy_time: None,
            data,
            crc32c: crc,
            client_checksum,
            etag,
        };
        let out = secret.render_version(&version);
        secret.versions.insert(id, version);
        Ok(out)
    }

    pub fn get_version(&self, secret: &str, version: &str) -> ApiResult<Value> {
        let s = self.secret(secret)?;
        let id = s.resolve_version(version)?;
        let v = s.versions.get(&id).ok_or_else(|| version_not_found(secret))?;
        Ok(s.render_version(v))
    }

    pub fn list_versions(&self, secret: &str, req: &Request) -> ApiResult<Value> {
        let filter = Filter::parse(
            req.param("filter"),
            &["state", "name", "create_time", "createTime"],
        )?;
        let s = self.secret(secret)?;
        let items: Vec<(u64, Value)> = s
            .versions
            .values()
            .rev()
            .filter(|v| {
                filter.matches(|field| match field {
                    "state" => Some(v.state.name().to_string()),
                    "name" => Some(format!("{}/versions/{}", s.name, v.id)),
                    _ => Some(wire::timestamp(v.create_time)),
                })
            })
            .map(|v| (v.id, s.render_version(v)))
            .collect();
        let total = items.len();
        let (page, next) = wire::paginate(
            items,
            req.int_param("pageSize")?,
            req.param("pageToken"),
            MAX_PAGE_SIZE,
            u64::to_string,
            |t| t.parse().ok(),
            false,
        )?;
        let mut out = wire::list_response("versions", page, next);
        out.insert("totalSize".into(), json!(total));
        Ok(Value::Object(out))
    }

    pub fn access_version(&self, secret: &str, version: &str) -> ApiResult<Value> {
        let s = self.secret(secret)?;
        let id = s.resolve_version(version)?;
        let v = s.versions.get(&id).ok_or_else(|| version_not_found(secret))?;
        let name = format!("{}/versions/{}", s.name, v.id);
        if v.state != VersionState::Enabled {
            return Err(ApiError::precondition(format!(
                "Secret Version [{name}] is in {} state.",
                v.state.name()
            )));
        }
        Ok(json!({
            "name": name,
            "payload": { "data": wire::b64(&v.data), "dataCrc32c": v.crc32c.to_string() },
        }))
    }

    /// `:enable`, `:disable` and `:destroy`, each guarded by the version's etag when one is given.
    pub fn set_version_state(
        &mut self,
        secret: &str,
        version: &str,
        verb: &str,
        req: &Request,
        now: DateTime<Utc>,
        counter: &mut u64,
    ) -> ApiResult<Value> {
        let body = req.json()?;
        let etag = next_etag(counter);
        let s = self.secret_mut(secret)?;
        let id = s.resolve_version(version)?;
        let name = format!("{}/versions/{id}", s.name);
        let v = s.versions.get_mut(&id).ok_or_else(|| version_not_found(&name))?;
        check_etag(wire::str_field(&body, "etag"), &v.etag)?;
        if v.state == VersionState::Destroyed {
            return Err(ApiError::precondition(format!(
                "Secret Version [{name}] is in DESTROYED state."
            )));
        }
        match verb {
            "enable" => v.state = VersionState::Enabled,
            "disable" => v.state = VersionState::Disabled,
            _ => {
                v.state = VersionState::Destroyed;
                v.destroy_time = Some(now);
                v.data = Vec::new();
            }
        }
        v.etag = etag;
        let v = v.clone();
        // Aliases pointing at a destroyed version are removed, as Google does.
        if v.state == VersionState::Destroyed {
            let numeric = i64::try_from(id).unwrap_or(0);
            s.version_aliases.retain(|_, n| *n != numeric);
        }
        Ok(s.render_version(&v))
    }

    pub fn get_policy(&self, secret: &str, req: &Request) -> ApiResult<Value> {
        let requested = iam::requested_version(req)?;
        iam::render_policy(&self.secret(secret)?.policy, requested)
    }

    /// `:setIamPolicy`; its members must be accounts that exist.
    pub fn set_policy(
        &mut self,
        secret: &str,
        req: &Request,
        now: DateTime<Utc>,
        counter: &mut u64,
        accounts: &iam::Store,
    ) -> ApiResult<Value> {
        let body = req.json()?;
        let mut policy = self.secret(secret)?.policy.clone();
        iam::set_policy(&mut policy, &body, counter, &|e| accounts.account_exists(e))?;
        let s = self.secret_mut(secret)?;
        s.policy = policy;
        s.policy_history.push(PolicyChange {
            at: now,
            bindings: s.policy.bindings.clone(),
        });
        iam::render_policy(&s.policy, 3)
    }

    /// Names `replacement` instead of `member` in every secret's policy (a deleted service account), and in the
    /// policies each had before: a re-created account never held their grants, and revision start-up judges access
    /// by the policy as it stood up to `iam_propagation` ago.
    pub fn replace_member(&mut self, member: &str, replacement: &str, now: DateTime<Utc>, counter: &mut u64) {
        for secret in self.secrets.values_mut() {
            for change in &mut secret.policy_history {
                iam::replace_in_bindings(&mut change.bindings, member, replacement);
            }
            if iam::replace_member(&mut secret.policy, member, replacement, counter) {
                secret.policy_history.push(PolicyChange {
                    at: now,
                    bindings: secret.policy.bindings.clone(),
                });
            }
        }
    }

    /// Renames every secret (its key and its name) with `rename`: state files written before names carried project
    /// numbers name secrets by project id.
    pub fn rename(&mut self, rename: impl Fn(&str) -> String) {
        let secrets = std::mem::take(&mut self.secrets);
        for (key, mut secret) in secrets {
            secret.name = rename(&secret.name);
            self.secrets.insert(rename(&key), secret);
        }
    }

    /// The payload of a secret version (`latest`, an alias or a number), if it exists and was not destroyed.
    pub fn payload(&self, secret: &str, version: &str) -> Option<Vec<u8>> {
        let s = self.secrets.get(secret)?;
        let id = s.resolve_version(version).ok()?;
        let v = s.versions.get(&id)?;
        (v.state != VersionState::Destroyed).then(|| v.data.clone())
    }
}

/// `testIamPermissions`: the emulator has no caller identity, so every requested permission is granted.
pub fn test_permissions(req: &Request) -> ApiResult<Value> {
    let body = req.json()?;
    let permissions = body.get("permissions").cloned().unwrap_or_else(|| json!([]));
    Ok(json!({ "permissions": permissions }))
}
