//! Resource Manager (v1 and v3): a project's metadata and its IAM policy, the top of the emulated hierarchy.

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::iam::{render_policy, requested_version, set_policy};
use crate::model::State;
use crate::wire::Request;

impl State {
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

    /// Renames secrets kept under a project id (state files written before names carried numbers).
    pub fn number_secret_names(&mut self) {
        let secrets = std::mem::take(&mut self.secrets);
        for (key, mut secret) in secrets {
            secret.name = self.numbered(&secret.name);
            self.secrets.insert(self.numbered(&key), secret);
        }
    }

    /// Sets the number of project `project` (an id), refused once resources are named by its current number:
    /// Google never renumbers a project.
    pub fn set_project_number(&mut self, project: &str, number: u64) -> ApiResult<()> {
        if project.parse::<u64>().is_ok() {
            return Err(ApiError::invalid("A project id is not a number."));
        }
        let current = self.project_number(project);
        let prefix = format!("projects/{current}/");
        let in_use = self.secrets.keys().any(|k| k.starts_with(&prefix))
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

    /// `GET /v1/projects/{p}` or `/v3/projects/{p}`: every project exists, with a stable number.
    pub fn rm_get_project(&self, project: &str, api_version: &str) -> Value {
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
    pub fn rm_get_policy(&self, project: &str, req: &Request) -> ApiResult<Value> {
        render_policy(&self.project_policy(project), requested_version(req)?)
    }

    /// `POST /v{1,3}/projects/{p}:setIamPolicy`, etag-checked and normalised like every other policy.
    pub fn rm_set_policy(&mut self, project: &str, req: &Request) -> ApiResult<Value> {
        let body = req.json()?;
        let mut counter = self.counter;
        let mut policy = self.project_policy(project);
        set_policy(&mut policy, &body, &mut counter, &|e| self.account_exists(e))?;
        let out = render_policy(&policy, 3)?;
        self.project_policies
            .insert(self.project_number(project).to_string(), policy);
        self.counter = counter;
        Ok(out)
    }
}
