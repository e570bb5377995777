//! IAM: resource policies (shared by Secret Manager, Cloud Run and service accounts),
//! `projects.serviceAccounts` (create, get, list, delete and the account's own IAM policy) and IAM Credentials'
//! `generateAccessToken`. [`Store`] holds IAM's data; custom roles are in `roles`, tokens in `auth`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::auth::Tokens;
use crate::error::{ApiError, ApiResult, Code};
use crate::model::{Policy, ServiceAccount};
use crate::roles::CustomRoles;
use crate::wire::{self, Request};
use crate::{resourcemanager, run};

/// IAM's data: which service accounts exist (and which were deleted), their own policies, custom roles, minted
/// tokens and GKE Workload Identity pools.
#[derive(Clone, Debug, Default)]
pub struct Store {
    /// Seeded or created service accounts by email (in the lenient mode, while empty, every well-formed account
    /// exists).
    pub service_accounts: BTreeMap<String, ServiceAccount>,
    /// Deleted service accounts by email, with the `uniqueId` each had. A deleted account does not exist (not even
    /// while none are seeded) until it is created or seeded again.
    pub deleted_service_accounts: BTreeMap<String, String>,
    /// IAM policies of service accounts (as resources), by email.
    pub service_account_policies: BTreeMap<String, Policy>,
    /// Custom roles by full name (`projects/P/roles/ID`).
    pub custom_roles: CustomRoles,
    /// Access tokens the emulator minted (admin API, `generateAccessToken`), by token.
    pub tokens: Tokens,
    /// Projects whose GKE Workload Identity pool (`PROJECT.svc.id.goog`) exists.
    pub identity_pools: BTreeSet<String>,
    /// The old lenient mode, from the configuration (not persisted): while no account is seeded or created, every
    /// well-formed account exists.
    pub any_account_exists: bool,
}

/// What IAM reads of other APIs to name the project of a default compute account
/// (`NUMBER-compute@developer.gserviceaccount.com`): project numbers, and the projects holding Cloud Run services,
/// among the projects the emulator has seen.
#[derive(Clone, Copy)]
pub struct KnownProjects<'a> {
    pub resourcemanager: &'a resourcemanager::Store,
    pub run: &'a run::Store,
}

/// A deleted account's member, and what policies name instead.
#[derive(Debug)]
pub struct DeletedAccount {
    /// `serviceAccount:EMAIL`.
    pub member: String,
    /// `deleted:serviceAccount:EMAIL?uid=UNIQUE_ID`.
    pub replacement: String,
}

/// The etag Google reports for a policy that was never set (base64 of 0x00 0x20 0x01).
const EMPTY_POLICY_ETAG: &str = "ACAB";

const MEMBER_PREFIXES: [&str; 7] = [
    "user:",
    "serviceAccount:",
    "group:",
    "domain:",
    "principal:",
    "principalSet:",
    "deleted:",
];

/// The requested policy version of a getIamPolicy call (query for GET, body `options` for POST).
pub fn requested_version(req: &Request) -> ApiResult<i64> {
    if let Some(v) = req.int_param("options.requestedPolicyVersion")? {
        return Ok(v);
    }
    let body = req.json()?;
    Ok(body
        .get("options")
        .and_then(|o| o.get("requestedPolicyVersion"))
        .and_then(wire::int64_value)
        .unwrap_or(0))
}

pub fn render_policy(policy: &Policy, requested_version: i64) -> ApiResult<Value> {
    if !(0..=3).contains(&requested_version) {
        return Err(ApiError::invalid(format!(
            "Invalid requested policy version: {requested_version}. Valid versions are 0, 1 and 3."
        )));
    }
    let conditional = has_conditions(&policy.bindings);
    if conditional && requested_version < 3 {
        return Err(ApiError::invalid(
            "The policy contains conditional role bindings; request policy version 3 to read it.",
        ));
    }
    let mut out = Map::new();
    out.insert("version".into(), json!(policy.version.max(1)));
    out.insert(
        "etag".into(),
        json!(if policy.etag.is_empty() {
            EMPTY_POLICY_ETAG.to_string()
        } else {
            wire::b64(&policy.etag)
        }),
    );
    if !policy.bindings.is_empty() {
        out.insert("bindings".into(), Value::Array(policy.bindings.clone()));
    }
    if !policy.audit_configs.is_empty() {
        out.insert("auditConfigs".into(), Value::Array(policy.audit_configs.clone()));
    }
    Ok(Value::Object(out))
}

fn has_conditions(bindings: &[Value]) -> bool {
    bindings
        .iter()
        .any(|b| b.get("condition").is_some_and(|c| !c.is_null()))
}

/// Validates and applies a setIamPolicy request to `policy`. A stale etag is 409 ABORTED, as Google answers.
pub fn set_policy(
    policy: &mut Policy,
    body: &Map<String, Value>,
    counter: &mut u64,
    known_accounts: &dyn Fn(&str) -> bool,
) -> ApiResult<()> {
    let new = match body.get("policy") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Request contains an invalid argument: policy is required.",
            ));
        }
        Some(_) => return Err(ApiError::invalid("Invalid value at 'policy', expected an object")),
    };
    if let Some(etag) = wire::str_field(new, "etag").filter(|e| !e.is_empty()) {
        let given = wire::b64_decode(etag).ok_or_else(|| {
            ApiError::invalid(format!("Invalid value at 'policy.etag' (TYPE_BYTES), \"{etag}\""))
        })?;
        let current = if policy.etag.is_empty() {
            wire::b64_decode(EMPTY_POLICY_ETAG).unwrap_or_default()
        } else {
            policy.etag.clone()
        };
        if given != current {
            return Err(ApiError::new(
                Code::Aborted,
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ));
        }
    }
    let version = new.get("version").and_then(wire::int64_value).unwrap_or(0);
    if !matches!(version, 0 | 1 | 3) {
        return Err(ApiError::invalid(format!(
            "Invalid policy version: {version}. Valid versions are 0, 1 and 3."
        )));
    }
    let mut bindings: Vec<Value> = Vec::new();
    match new.get("bindings") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, b) in list.iter().enumerate() {
                if let Some(binding) = validate_binding(i, b, known_accounts)? {
                    merge_binding(&mut bindings, binding);
                }
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid value at 'policy.bindings', expected a list",
            ));
        }
    }
    let conditional = has_conditions(&bindings);
    if conditional && version < 3 {
        return Err(ApiError::invalid(
            "Policy with conditional role bindings must have version 3.",
        ));
    }
    let audit_configs = match new.get("auditConfigs") {
        Some(Value::Array(list)) => list.clone(),
        _ => Vec::new(),
    };
    policy.version = if conditional { 3 } else { 1 };
    policy.bindings = bindings;
    policy.audit_configs = audit_configs;
    policy.etag = wire::etag_bytes(counter);
    Ok(())
}

/// Adds `member` to `role` in `policy` (unconditioned), as `gcloud ... add-iam-policy-binding` would.
pub fn add_binding(policy: &mut Policy, role: &str, member: &str, counter: &mut u64) {
    merge_binding(&mut policy.bindings, json!({"role": role, "members": [member]}));
    policy.version = policy.version.max(1);
    policy.etag = wire::etag_bytes(counter);
}

/// Google normalises a policy: bindings of the same role and condition become one, whose members are
/// deduplicated and sorted.
fn merge_binding(bindings: &mut Vec<Value>, binding: Value) {
    let same = |b: &Value| b["role"] == binding["role"] && b.get("condition") == binding.get("condition");
    let added: Vec<String> = binding["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let index = match bindings.iter().position(same) {
        Some(i) => i,
        None => {
            bindings.push(binding);
            bindings.len() - 1
        }
    };
    let target = &mut bindings[index];
    let mut members: Vec<String> = target["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .chain(added)
        .collect();
    members.sort();
    members.dedup();
    target["members"] = Value::from(members);
}

fn validate_binding(
    index: usize,
    binding: &Value,
    known_accounts: &dyn Fn(&str) -> bool,
) -> ApiResult<Option<Value>> {
    let obj = binding
        .as_object()
        .ok_or_else(|| ApiError::invalid(format!("Invalid value at 'policy.bindings[{index}]'")))?;
    let role = wire::str_field(obj, "role").unwrap_or("");
    if !(role.starts_with("roles/")
        || (role.starts_with("projects/") && role.contains("/roles/"))
        || (role.starts_with("organizations/") && role.contains("/roles/")))
    {
        return Err(ApiError::invalid(format!(
            "Role ({role}) does not exist in the resource's hierarchy."
        )));
    }
    let mut members = Vec::new();
    match obj.get("members") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for m in list {
                let m = m.as_str().ok_or_else(|| {
                    ApiError::invalid(format!("Invalid value at 'policy.bindings[{index}].members'"))
                })?;
                validate_member(m, known_accounts)?;
                if !members.iter().any(|x: &Value| x.as_str() == Some(m)) {
                    members.push(Value::String(m.to_string()));
                }
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "Invalid value at 'policy.bindings[{index}].members', expected a list"
            )));
        }
    }
    if members.is_empty() {
        // Google drops bindings without members.
        return Ok(None);
    }
    let mut out = Map::new();
    out.insert("role".into(), Value::String(role.to_string()));
    out.insert("members".into(), Value::Array(members));
    if let Some(condition) = obj.get("condition").filter(|c| !c.is_null()) {
        let expression = condition.get("expression").and_then(Value::as_str).unwrap_or("");
        if expression.is_empty() {
            return Err(ApiError::invalid("Condition expression must not be empty."));
        }
        if let Some(error) = crate::condition::syntax_error(expression) {
            return Err(ApiError::invalid(format!(
                "Invalid CEL expression in policy.bindings[{index}].condition: {error}."
            )));
        }
        out.insert("condition".into(), condition.clone());
    }
    Ok(Some(Value::Object(out)))
}

fn validate_member(member: &str, known_accounts: &dyn Fn(&str) -> bool) -> ApiResult<()> {
    if member == "allUsers" || member == "allAuthenticatedUsers" {
        return Ok(());
    }
    let Some(prefix) = MEMBER_PREFIXES.iter().find(|p| member.starts_with(**p)) else {
        return Err(ApiError::invalid(format!("Invalid member type in: {member}")));
    };
    let rest = &member[prefix.len()..];
    if rest.is_empty() {
        return Err(ApiError::invalid(format!("Invalid principal: {member}")));
    }
    if *prefix == "serviceAccount:" && workload_identity_member(rest) {
        // A Kubernetes ServiceAccount through GKE Workload Identity: its project's identity pool must exist.
        if known_accounts(rest) {
            return Ok(());
        }
        let pool = rest.split('[').next().unwrap_or_default();
        return Err(ApiError::invalid(format!(
            "Identity Pool does not exist ({pool}). Please check that you specified a valid resource name as returned in the `name` attribute in the configuration API."
        )));
    }
    if *prefix == "serviceAccount:" {
        if !well_formed_account(rest) {
            return Err(ApiError::invalid(format!("Invalid service account ({rest}).")));
        }
        if !known_accounts(rest) {
            return Err(ApiError::invalid(format!(
                "Service account {rest} does not exist."
            )));
        }
    }
    if (*prefix == "user:" || *prefix == "group:") && !rest.contains('@') {
        return Err(ApiError::invalid(format!("Invalid principal: {member}")));
    }
    Ok(())
}

/// `PROJECT.svc.id.goog[NAMESPACE/NAME]`, a Kubernetes ServiceAccount as GKE Workload Identity names it.
fn workload_identity_member(text: &str) -> bool {
    let Some((pool, rest)) = text.split_once(".svc.id.goog[") else {
        return false;
    };
    let Some((namespace, name)) = rest.strip_suffix(']').and_then(|r| r.split_once('/')) else {
        return false;
    };
    !pool.is_empty() && !namespace.is_empty() && !name.is_empty() && !name.contains('/')
}

/// The default compute account of project number `number`, which every project has.
pub(crate) fn compute_account(number: u64) -> String {
    format!("{number}-compute@developer.gserviceaccount.com")
}

/// `NUMBER-compute@developer.gserviceaccount.com`: every project has its default compute account.
pub(crate) fn default_compute_account(email: &str) -> bool {
    email
        .strip_suffix("-compute@developer.gserviceaccount.com")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Roughly Google's shape for a service-account email: `name@domain`, lowercase, with a Google-owned domain.
pub fn well_formed_account(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 63
        && local
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let domain_ok = domain.ends_with(".gserviceaccount.com")
        && domain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    local_ok && domain_ok
}

impl Store {
    /// Whether a service account exists: seeded ones only, or any well-formed one that was not deleted while none
    /// are seeded.
    pub fn account_exists(&self, email: &str) -> bool {
        if workload_identity_member(email) {
            // `PROJECT.svc.id.goog[NS/NAME]`: exists once the project's pool does (a GKE cluster with Workload
            // Identity made it), or in the lenient mode.
            let pool = email.split('[').next().unwrap_or_default();
            let project = pool.strip_suffix(".svc.id.goog").unwrap_or_default();
            return self.identity_pools.contains(project) || self.any_account_exists;
        }
        if default_compute_account(email) {
            return !self.deleted_service_accounts.contains_key(email);
        }
        if self.any_account_exists && self.service_accounts.is_empty() {
            well_formed_account(email) && !self.deleted_service_accounts.contains_key(email)
        } else {
            self.service_accounts.contains_key(email)
        }
    }

    /// Makes `email` exist, as a new account (a new `uniqueId`) even if one of that email existed before.
    pub fn seed_service_account(
        &mut self,
        email: &str,
        display_name: Option<&str>,
        counter: &mut u64,
    ) -> ApiResult<()> {
        if !well_formed_account(email) {
            return Err(ApiError::invalid(format!(
                "Invalid service account email: {email}"
            )));
        }
        *counter += 1;
        let unique_id = format!("1{:020}", *counter);
        let project_id = project_of_account(email);
        self.deleted_service_accounts.remove(email);
        self.service_accounts.insert(
            email.to_string(),
            ServiceAccount {
                email: email.to_string(),
                project_id,
                unique_id,
                display_name: display_name.unwrap_or("").to_string(),
                description: String::new(),
            },
        );
        Ok(())
    }

    /// The account `projects/{project}/serviceAccounts/{email}` addresses (`project` may be `-`), if it exists.
    /// Accounts that exist only because none are seeded get a stable made-up unique id.
    fn account(
        &self,
        project: &str,
        email: &str,
        known: KnownProjects<'_>,
    ) -> ApiResult<Option<ServiceAccount>> {
        if !email.contains('@') {
            // Google also accepts unique ids; the emulator does not.
            return Err(ApiError::invalid(format!(
                "Invalid form of account ID {email}. Should be [Gaia ID |Email |Unique ID |] of the account"
            )));
        }
        if !self.account_exists(email) {
            return Ok(None);
        }
        let account = match self.service_accounts.get(email) {
            Some(a) => a.clone(),
            None if default_compute_account(email) => self.compute_account_of(email, project, known),
            None => ServiceAccount {
                email: email.to_string(),
                project_id: project_of_account(email),
                unique_id: implicit_unique_id(email),
                display_name: String::new(),
                description: String::new(),
            },
        };
        if project != "-" && project != account.project_id {
            return Ok(None);
        }
        Ok(Some(account))
    }

    /// The default compute account `email` (`NUMBER-compute@developer...`) as Google renders it: it belongs to the
    /// project of that number, named by its id. `asked` is the project of the request (`-` for any); otherwise the id
    /// is looked up among the projects the emulator knows, and the number stands in for an unknown one.
    fn compute_account_of(&self, email: &str, asked: &str, known: KnownProjects<'_>) -> ServiceAccount {
        let number: u64 = email
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        let project_id = if asked != "-" && known.resourcemanager.project_number(asked) == number {
            asked.to_string()
        } else {
            self.project_of_number(number, known)
                .unwrap_or_else(|| number.to_string())
        };
        ServiceAccount {
            email: email.to_string(),
            project_id,
            unique_id: implicit_unique_id(email),
            display_name: "Compute Engine default service account".to_string(),
            description: String::new(),
        }
    }

    /// The id of the project numbered `number`, among the projects the emulator has seen: numbered through the
    /// admin API, holding services or custom roles, or owning created accounts.
    fn project_of_number(&self, number: u64, known: KnownProjects<'_>) -> Option<String> {
        let seen = known
            .resourcemanager
            .project_numbers
            .keys()
            .cloned()
            .chain(
                known
                    .run
                    .services
                    .keys()
                    .filter_map(|k| k.split('/').nth(1).map(str::to_string)),
            )
            .chain(
                self.custom_roles
                    .by_name()
                    .keys()
                    .filter_map(|k| k.split('/').nth(1).map(str::to_string)),
            )
            .chain(self.service_accounts.values().map(|a| a.project_id.clone()));
        let mut found = None;
        for project in seen {
            if project.parse::<u64>().is_err() && known.resourcemanager.project_number(&project) == number {
                found = Some(project);
                break;
            }
        }
        found
    }

    /// `GET /v1/projects/{p}/serviceAccounts/{email}`.
    pub fn get_service_account(
        &self,
        project: &str,
        email: &str,
        known: KnownProjects<'_>,
    ) -> ApiResult<Value> {
        match self.account(project, email, known)? {
            Some(account) => Ok(render_account(&account)),
            None => Err(ApiError::not_found("Unknown service account")),
        }
    }

    /// `POST /v1/projects/{p}/serviceAccounts` with `{"accountId", "serviceAccount": {"displayName",
    /// "description"}}`. The new account joins the accounts that exist, so from then on unknown ones do not.
    pub fn create_service_account(
        &mut self,
        project: &str,
        req: &Request,
        counter: &mut u64,
    ) -> ApiResult<Value> {
        let body = req.json()?;
        let account_id = wire::str_field(&body, "accountId").unwrap_or("");
        if account_id.is_empty() {
            return Err(ApiError::invalid("Account ID is required."));
        }
        if !(6..=30).contains(&account_id.len()) {
            return Err(ApiError::invalid(format!(
                "Invalid value for field 'accountId': '{account_id}'. Account ID must be between 6 and 30 characters."
            )));
        }
        let pattern_ok = account_id.starts_with(|c: char| c.is_ascii_lowercase())
            && !account_id.ends_with('-')
            && account_id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !pattern_ok {
            return Err(ApiError::invalid(format!(
                "Invalid value for field 'accountId': '{account_id}'. Account ID must start with a lower case \
                 letter, followed by one or more lower case alphanumerical characters that can be separated by \
                 hyphens."
            )));
        }
        let valid_project = project.starts_with(|c: char| c.is_ascii_lowercase())
            && project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_project {
            return Err(ApiError::invalid(format!(
                "Invalid project ID '{project}': give the project's id to create a service account in."
            )));
        }
        let details = match body.get("serviceAccount") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "Invalid value at 'service_account', expected an object",
                ));
            }
        };
        let display_name = wire::str_field(&details, "displayName").unwrap_or("");
        if display_name.chars().count() > 100 {
            return Err(ApiError::invalid("Display name must be at most 100 characters."));
        }
        let description = wire::str_field(&details, "description").unwrap_or("");
        if description.chars().count() > 256 {
            return Err(ApiError::invalid("Description must be at most 256 characters."));
        }
        let email = format!("{account_id}@{project}.iam.gserviceaccount.com");
        if self.service_accounts.contains_key(&email) {
            return Err(ApiError::new(
                Code::AlreadyExists,
                format!("Service account {account_id} already exists within project projects/{project}."),
            )
            .with_detail(json!({
                "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                "resourceName": format!("projects/{project}/serviceAccounts/{email}"),
            })));
        }
        self.seed_service_account(&email, Some(display_name), counter)?;
        // A new account starts with an empty policy, whatever an earlier account of that email had.
        self.service_account_policies.remove(&email);
        let account = self
            .service_accounts
            .get_mut(&email)
            .ok_or_else(|| ApiError::new(Code::Internal, "service account vanished"))?;
        account.description = description.to_string();
        Ok(render_account(account))
    }

    /// IAM's part of `DELETE /v1/projects/{p}/serviceAccounts/{email}` (the whole call is
    /// [`crate::model::State::delete_service_account`]): removes the account and its own policy and revokes the
    /// tokens minted for it; answers the member policies name it by, and the deleted account's member that replaces
    /// it. An account re-created with the same email gets a new unique id and none of the old grants. An account
    /// that exists only because none are seeded is remembered as deleted, so it stops existing without changing
    /// that mode.
    pub fn delete_service_account(
        &mut self,
        project: &str,
        email: &str,
        known: KnownProjects<'_>,
    ) -> ApiResult<DeletedAccount> {
        let account = self.account(project, email, known)?.ok_or_else(|| {
            ApiError::not_found(format!(
                "Service account projects/{project}/serviceAccounts/{email} does not exist."
            ))
        })?;
        let email = account.email.as_str();
        self.service_accounts.remove(email);
        self.service_account_policies.remove(email);
        self.deleted_service_accounts
            .insert(email.to_string(), account.unique_id.clone());
        let member = format!("serviceAccount:{email}");
        let replacement = format!("deleted:{member}?uid={}", account.unique_id);
        self.tokens.revoke(&member);
        Ok(DeletedAccount { member, replacement })
    }

    /// Names `replacement` instead of `member` in every service account's own policy (a deleted account).
    pub fn replace_member(&mut self, member: &str, replacement: &str, counter: &mut u64) {
        for policy in self.service_account_policies.values_mut() {
            replace_member(policy, member, replacement, counter);
        }
    }

    /// `GET /v1/projects/{p}/serviceAccounts`: the seeded and created accounts of the project, and its default
    /// compute account unless deleted, by email.
    pub fn list_service_accounts(
        &self,
        project: &str,
        req: &Request,
        known: KnownProjects<'_>,
    ) -> ApiResult<Value> {
        let compute = (project != "-")
            .then(|| compute_account(known.resourcemanager.project_number(project)))
            .filter(|email| {
                !self.deleted_service_accounts.contains_key(email)
                    && !self.service_accounts.contains_key(email)
            })
            .map(|email| self.compute_account_of(&email, project, known));
        let items: Vec<(String, Value)> = self
            .service_accounts
            .values()
            .filter(|a| project == "-" || a.project_id == project)
            .chain(compute.as_ref())
            .map(|a| (a.email.clone(), render_account(a)))
            .collect();
        wire::page_by_name("accounts", items, req, 100)
    }

    fn account_for_policy(
        &self,
        project: &str,
        email: &str,
        known: KnownProjects<'_>,
    ) -> ApiResult<ServiceAccount> {
        self.account(project, email, known)?.ok_or_else(|| {
            ApiError::not_found(format!(
                "Service account projects/{project}/serviceAccounts/{email} does not exist."
            ))
        })
    }

    /// `POST /v1/projects/{p}/serviceAccounts/{email}:getIamPolicy`.
    pub fn get_account_policy(
        &self,
        project: &str,
        email: &str,
        req: &Request,
        known: KnownProjects<'_>,
    ) -> ApiResult<Value> {
        let requested = requested_version(req)?;
        let account = self.account_for_policy(project, email, known)?;
        let empty = Policy::default();
        render_policy(
            self.service_account_policies
                .get(&account.email)
                .unwrap_or(&empty),
            requested,
        )
    }

    /// `POST /v1/projects/{p}/serviceAccounts/{email}:setIamPolicy`, etag-checked and normalised like every
    /// other policy.
    pub fn set_account_policy(
        &mut self,
        project: &str,
        email: &str,
        req: &Request,
        counter: &mut u64,
        known: KnownProjects<'_>,
    ) -> ApiResult<Value> {
        let body = req.json()?;
        let account = self.account_for_policy(project, email, known)?;
        let mut policy = self
            .service_account_policies
            .get(&account.email)
            .cloned()
            .unwrap_or_default();
        set_policy(&mut policy, &body, counter, &|e| self.account_exists(e))?;
        let out = render_policy(&policy, 3)?;
        self.service_account_policies.insert(account.email, policy);
        Ok(out)
    }

    /// `POST /v1/projects/{p}/serviceAccounts/{email}:testIamPermissions` (every permission is granted).
    pub fn test_account_permissions(
        &self,
        project: &str,
        email: &str,
        req: &Request,
        known: KnownProjects<'_>,
    ) -> ApiResult<Value> {
        self.account_for_policy(project, email, known)?;
        crate::secretmanager::test_permissions(req)
    }

    /// IAM Credentials `generateAccessToken` for service account `email`: a token acting as that account, for at
    /// most an hour (Google's limit without the organization policy that extends it).
    pub fn generate_access_token(
        &mut self,
        email: &str,
        req: &Request,
        now: DateTime<Utc>,
        counter: &mut u64,
    ) -> ApiResult<Value> {
        let body = req.json()?;
        let scopes = body.get("scope").and_then(Value::as_array).map_or(0, Vec::len);
        if scopes == 0 {
            return Err(ApiError::invalid("Scope required."));
        }
        let lifetime = match wire::str_field(&body, "lifetime") {
            None => 3600,
            Some(text) => text
                .strip_suffix('s')
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|n| (1.0..=3600.0).contains(n))
                .map(|n| n as i64)
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "The lifetime {text:?} is invalid: give seconds, at most 3600s, such as \"3600s\"."
                    ))
                })?,
        };
        if !self.account_exists(email) {
            return Err(ApiError::not_found(format!(
                "Service account projects/-/serviceAccounts/{email} does not exist."
            )));
        }
        let expire = now + chrono::Duration::seconds(lifetime);
        let token = self
            .tokens
            .mint_token(&format!("serviceAccount:{email}"), Some(expire), counter)?;
        Ok(json!({ "accessToken": token, "expireTime": wire::timestamp(expire) }))
    }
}

/// Replaces `member` by `replacement` in every binding of `policy`, keeping members sorted and deduplicated, and
/// gives the policy a new etag when it changed. Returns whether it did.
pub(crate) fn replace_member(
    policy: &mut Policy,
    member: &str,
    replacement: &str,
    counter: &mut u64,
) -> bool {
    let changed = replace_in_bindings(&mut policy.bindings, member, replacement);
    if changed {
        policy.etag = wire::etag_bytes(counter);
    }
    changed
}

/// Replaces `member` by `replacement` in `bindings`, keeping members sorted and deduplicated; whether any changed.
pub(crate) fn replace_in_bindings(bindings: &mut [Value], member: &str, replacement: &str) -> bool {
    let mut changed = false;
    for binding in bindings {
        let Some(list) = binding.get_mut("members").and_then(Value::as_array_mut) else {
            continue;
        };
        if !list.iter().any(|m| m.as_str() == Some(member)) {
            continue;
        }
        let mut members: Vec<String> = list
            .iter()
            .filter_map(Value::as_str)
            .map(|m| {
                let kept = if m == member { replacement } else { m };
                kept.to_string()
            })
            .collect();
        members.sort();
        members.dedup();
        *list = members.into_iter().map(Value::String).collect();
        changed = true;
    }
    changed
}

/// The stable made-up unique id of an account that exists only because none are seeded.
fn implicit_unique_id(email: &str) -> String {
    format!("1{:020}", fnv(email) % 100_000_000_000_000_000_000u128)
}

/// Google's JSON for a service account.
fn render_account(account: &ServiceAccount) -> Value {
    let mut out = json!({
        "name": format!("projects/{}/serviceAccounts/{}", account.project_id, account.email),
        "projectId": account.project_id,
        "uniqueId": account.unique_id,
        "email": account.email,
        "etag": "MDEwMjE5MjA=",
        "oauth2ClientId": account.unique_id,
    });
    if !account.display_name.is_empty() {
        out["displayName"] = json!(account.display_name);
    }
    if !account.description.is_empty() {
        out["description"] = json!(account.description);
    }
    out
}

pub(crate) fn project_of_account(email: &str) -> String {
    let domain = email.split_once('@').map(|(_, d)| d).unwrap_or("");
    match domain.strip_suffix(".iam.gserviceaccount.com") {
        Some(p) => p.to_string(),
        None => domain.split('.').next().unwrap_or("").to_string(),
    }
}

fn fnv(text: &str) -> u128 {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in text.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h
}

/// The bindings in force at `at`, from a history of changes ordered by time.
pub fn bindings_at(history: &[crate::model::PolicyChange], at: DateTime<Utc>) -> &[Value] {
    history
        .iter()
        .rev()
        .find(|c| c.at <= at)
        .map(|c| c.bindings.as_slice())
        .unwrap_or(&[])
}
