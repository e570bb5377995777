//! IAM custom roles of a project (`projects.roles`): create, get, list, update and delete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::CustomRole;
use crate::error::{ApiError, ApiResult, Code};
use crate::wire::{self, Request};

/// The custom roles of every project by full name (`projects/P/roles/ID`), deleted ones included; kept in
/// [`crate::iam::Store`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomRoles(BTreeMap<String, CustomRole>);

/// Google's limits: role ids are 3 to 64 of `[a-zA-Z0-9_.]`; a role holds at most 3,000 permissions.
fn valid_role_id(id: &str) -> bool {
    (3..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// The services the emulator knows every permission of.
const EMULATED_SERVICES: [&str; 5] = ["secretmanager", "run", "iam", "resourcemanager", "serviceusage"];

/// A permission's shape: `service.resource.verb`, lowercase service; of an emulated service, one that exists.
fn valid_permission(p: &str) -> bool {
    let parts: Vec<&str> = p.split('.').collect();
    let shaped = parts.len() >= 3
        && parts
            .iter()
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
        && parts[0]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    shaped && (!EMULATED_SERVICES.contains(&parts[0]) || crate::auth::PERMISSIONS.contains(&p))
}

fn render_role(name: &str, role: &CustomRole) -> Value {
    let mut out = json!({
        "name": name,
        "title": role.title,
        "description": role.description,
        "includedPermissions": role.included_permissions,
        "stage": if role.stage.is_empty() { "ALPHA" } else { role.stage.as_str() },
        "etag": role.etag,
    });
    if role.deleted {
        out["deleted"] = json!(true);
    }
    out
}

/// Reads the role fields of a create or update body, checking every permission.
fn apply_fields(role: &mut CustomRole, fields: &Map<String, Value>, mask: Option<&[&str]>) -> ApiResult<()> {
    let wanted = |f: &str| mask.is_none_or(|m| m.contains(&f));
    if wanted("title")
        && let Some(t) = wire::str_field(fields, "title")
    {
        role.title = t.to_string();
    }
    if wanted("description")
        && let Some(d) = wire::str_field(fields, "description")
    {
        role.description = d.to_string();
    }
    if wanted("stage")
        && let Some(s) = wire::str_field(fields, "stage")
    {
        role.stage = s.to_string();
    }
    if (wanted("includedPermissions") || wanted("included_permissions"))
        && let Some(list) = fields.get("includedPermissions")
    {
        let list = list.as_array().ok_or_else(|| {
            ApiError::invalid("Invalid value at 'role.included_permissions', expected a list")
        })?;
        let mut permissions = Vec::new();
        for p in list {
            let p = p.as_str().unwrap_or("");
            if !valid_permission(p) {
                return Err(ApiError::invalid(format!("Permission {p} is not valid.")));
            }
            if !permissions.iter().any(|x: &String| x == p) {
                permissions.push(p.to_string());
            }
        }
        if permissions.len() > 3000 {
            return Err(ApiError::invalid("A role may contain at most 3000 permissions."));
        }
        permissions.sort();
        role.included_permissions = permissions;
    }
    Ok(())
}

impl CustomRoles {
    /// Every role by full name, for permission checks.
    pub fn by_name(&self) -> &BTreeMap<String, CustomRole> {
        &self.0
    }

    /// Creates or replaces role `name` as it is, as an admin would have set it up.
    pub fn put(&mut self, name: &str, role: CustomRole) {
        self.0.insert(name.to_string(), role);
    }

    /// `POST /v1/projects/{p}/roles` with `{roleId, role}`.
    pub fn create_role(&mut self, project: &str, req: &Request, counter: &mut u64) -> ApiResult<Value> {
        let body = req.json()?;
        let id = wire::str_field(&body, "roleId").unwrap_or("");
        if !valid_role_id(id) {
            return Err(ApiError::invalid(format!(
                "The role id {id:?} is invalid: use 3 to 64 letters, digits, '_' and '.'."
            )));
        }
        let name = format!("projects/{project}/roles/{id}");
        if self.0.contains_key(&name) {
            return Err(ApiError::new(
                Code::AlreadyExists,
                format!("A role named {id} in projects/{project} already exists."),
            ));
        }
        let empty = Map::new();
        let fields = body.get("role").and_then(Value::as_object).unwrap_or(&empty);
        let mut role = CustomRole::default();
        apply_fields(&mut role, fields, None)?;
        role.etag = wire::b64(&wire::etag_bytes(counter));
        let out = render_role(&name, &role);
        self.0.insert(name, role);
        Ok(out)
    }

    fn role(&self, name: &str) -> ApiResult<&CustomRole> {
        self.0
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("The role named {name} was not found.")))
    }

    /// `GET /v1/projects/{p}/roles/{id}`.
    pub fn get_role(&self, name: &str) -> ApiResult<Value> {
        Ok(render_role(name, self.role(name)?))
    }

    /// `GET /v1/projects/{p}/roles` (deleted roles only with `showDeleted=true`).
    pub fn list_roles(&self, project: &str, req: &Request) -> Value {
        let prefix = format!("projects/{project}/roles/");
        let show_deleted = req.param("showDeleted") == Some("true");
        let roles: Vec<Value> = self
            .0
            .iter()
            .filter(|(n, r)| n.starts_with(&prefix) && (show_deleted || !r.deleted))
            .map(|(n, r)| render_role(n, r))
            .collect();
        if roles.is_empty() {
            json!({})
        } else {
            json!({ "roles": roles })
        }
    }

    /// `PATCH /v1/projects/{p}/roles/{id}?updateMask=...`, etag-checked when the body carries one.
    pub fn update_role(&mut self, name: &str, req: &Request, counter: &mut u64) -> ApiResult<Value> {
        let body = req.json()?;
        let current = self.role(name)?.clone();
        if let Some(etag) = wire::str_field(&body, "etag").filter(|e| !e.is_empty())
            && etag != current.etag
        {
            return Err(ApiError::new(
                Code::Aborted,
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ));
        }
        let mask: Option<Vec<&str>> = req.param("updateMask").map(|m| m.split(',').collect());
        let mut role = current;
        apply_fields(&mut role, &body, mask.as_deref())?;
        role.etag = wire::b64(&wire::etag_bytes(counter));
        let out = render_role(name, &role);
        self.0.insert(name.to_string(), role);
        Ok(out)
    }

    /// `DELETE /v1/projects/{p}/roles/{id}`: the role is marked deleted and stops granting at once.
    pub fn delete_role(&mut self, name: &str, counter: &mut u64) -> ApiResult<Value> {
        let mut role = self.role(name)?.clone();
        role.deleted = true;
        role.etag = wire::b64(&wire::etag_bytes(counter));
        let out = render_role(name, &role);
        self.0.insert(name.to_string(), role);
        Ok(out)
    }
}
