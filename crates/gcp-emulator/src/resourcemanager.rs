//! Resource Manager (v1 and v3): a project's metadata and its IAM policy, the top of the emulated hierarchy, and the
//! project numbers every other API names projects by.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::iam::{self, render_policy, requested_version, set_policy};
use crate::model::Policy;
use crate::secretmanager;
use crate::wire::Request;

/// Resource Manager's data: project numbers and project IAM policies.
#[derive(Clone, Debug, Default)]
pub struct Store {
    /// Project numbers set through the admin API, by project id; other projects get a stable hashed number.
    pub project_numbers: BTreeMap<String, u64>,
    /// IAM policies of projects, by project number.
    pub project_policies: BTreeMap<String, Policy>,
}

impl Store {
    /// The number of `project` (an id, or already a number): the one set through the admin API, else a stable
    /// number derived from the id. Secret Manager names, policies and the default compute account use it.
    pub fn project_number(&self, project: &str) -> u64 {
        if let Ok(number) = project.parse::<u64>() {
            return number;
        }
        self.project_numbers
            .get(project)
            .copied()
            .unwrap_or_else(|| crate::run::hashed_project_number(project))
    }

    /// Sets the number of project `project` (an id), refused once resources are named by its current number:
    /// Google never renumbers a project. Secrets are the resources named by number, besides the project's policy.
    pub fn set_project_number(
        &mut self,
        project: &str,
        number: u64,
        secrets: &secretmanager::Store,
    ) -> ApiResult<()> {
        if project.parse::<u64>().is_ok() {
            return Err(ApiError::invalid("A project id is not a number."));
        }
        let current = self.project_number(project);
        let prefix = format!("projects/{current}/");
        let in_use = secrets.secrets.keys().any(|k| k.starts_with(&prefix))
            || self.project_policies.contains_key(&current.to_string());
        if in_use && current != number {
            return Err(ApiError::precondition(format!(
                "Project {project} already has resources under its number {current}; set its number before creating any."
            )));
        }
        self.project_numbers.insert(project.to_string(), number);
        Ok(())
    }

    /// `name` (`projects/P/...`) with its project as a number, the form Google returns.
    pub fn numbered(&self, name: &str) -> String {
        match name.strip_prefix("projects/").and_then(|r| r.split_once('/')) {
            Some((project, rest)) => format!("projects/{}/{rest}", self.project_number(project)),
            None => name.to_string(),
        }
    }

    /// The name IAM conditions see for `resource`: Secret Manager names by project number, as Google does in
    /// `resource.name`; other names as they are.
    pub fn condition_name(&self, resource: &str) -> String {
        if resource.contains("/secrets/") || resource.ends_with("/secrets") {
            self.numbered(resource)
        } else {
            resource.to_string()
        }
    }

    /// The IAM policy of project `project` (its id or number), empty when never set.
    pub fn project_policy(&self, project: &str) -> Policy {
        self.project_policies
            .get(&self.project_number(project).to_string())
            .cloned()
            .unwrap_or_default()
    }

    /// Makes `policy` the IAM policy of project `project` (its id or number).
    pub fn put_project_policy(&mut self, project: &str, policy: Policy) {
        let key = self.project_number(project).to_string();
        self.project_policies.insert(key, policy);
    }

    /// `GET /v1/projects/{p}` or `/v3/projects/{p}`: every project exists, with a stable number.
    pub fn get_project(&self, project: &str, api_version: &str) -> Value {
        let number = self.project_number(project);
        if api_version == "v1" {
            json!({
                "projectNumber": number.to_string(),
                "projectId": project,
                "lifecycleState": "ACTIVE",
                "name": project,
            })
        } else {
            json!({
                "name": format!("projects/{number}"),
                "projectId": project,
                "state": "ACTIVE",
                "displayName": project,
            })
        }
    }

    /// `POST /v{1,3}/projects/{p}:getIamPolicy`.
    pub fn get_policy(&self, project: &str, req: &Request) -> ApiResult<Value> {
        render_policy(&self.project_policy(project), requested_version(req)?)
    }

    /// `POST /v{1,3}/projects/{p}:setIamPolicy`, etag-checked and normalised like every other policy; its members
    /// must be accounts that exist.
    pub fn set_policy(
        &mut self,
        project: &str,
        req: &Request,
        counter: &mut u64,
        accounts: &iam::Store,
    ) -> ApiResult<Value> {
        let body = req.json()?;
        let mut policy = self.project_policy(project);
        set_policy(&mut policy, &body, counter, &|e| accounts.account_exists(e))?;
        let out = render_policy(&policy, 3)?;
        self.put_project_policy(project, policy);
        Ok(out)
    }

    /// Names `replacement` instead of `member` in every project's policy (a deleted service account).
    pub fn replace_member(&mut self, member: &str, replacement: &str, counter: &mut u64) {
        for policy in self.project_policies.values_mut() {
            iam::replace_member(policy, member, replacement, counter);
        }
    }
}
