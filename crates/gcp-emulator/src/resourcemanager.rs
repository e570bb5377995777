//! Resource Manager (v1 and v3): a project's metadata and its IAM policy, the top of the emulated hierarchy.

use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::iam::{render_policy, requested_version, set_policy};
use crate::model::State;
use crate::run::project_number;
use crate::wire::Request;

impl State {
    /// `GET /v1/projects/{p}` or `/v3/projects/{p}`: every project exists, with a stable number.
    pub fn rm_get_project(&self, project: &str, api_version: &str) -> Value {
        let number = project_number(project);
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
        let seeded: std::collections::BTreeSet<String> = self.service_accounts.keys().cloned().collect();
        let exists = move |email: &str| seeded.is_empty() || seeded.contains(email);
        let mut counter = self.counter;
        let mut policy = self.project_policy(project);
        set_policy(&mut policy, &body, &mut counter, &exists)?;
        let out = render_policy(&policy, 3)?;
        self.project_policies.insert(project.to_string(), policy);
        self.counter = counter;
        Ok(out)
    }
}
