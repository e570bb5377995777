//! Long-running operations of Cloud Run: creating and rendering them, and `projects.locations.operations`
//! list, get, wait and delete.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::render::with_type;
use super::spec::operation_id;
use super::{CloudRun, MAX_PAGE_SIZE};
use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::model::{Operation, Outcome};
use crate::wire::{self, Request};

impl CloudRun<'_> {
    pub(super) fn new_operation(
        &mut self,
        location_parent: &str,
        type_url: &str,
        target: &str,
        metadata: Value,
        now: DateTime<Utc>,
    ) -> String {
        let name = format!("{location_parent}/operations/{}", operation_id());
        self.store.operations.insert(
            name.clone(),
            Operation {
                name: name.clone(),
                create_time: now,
                type_url: type_url.to_string(),
                metadata: with_type(metadata, type_url),
                awaits_revision: None,
                target: target.to_string(),
                done: false,
                response: None,
                error: None,
            },
        );
        name
    }

    pub(super) fn render_operation(&self, op: &Operation) -> Value {
        let mut out = json!({"name": op.name, "metadata": op.metadata, "done": op.done});
        if let Some(r) = &op.response {
            out["response"] = r.clone();
        }
        if let Some(e) = &op.error {
            out["error"] = e.clone();
        }
        out
    }

    pub fn list_operations(&mut self, parent: &str, req: &Request, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let prefix = format!("{parent}/operations/");
        let mut ops: Vec<&Operation> = self
            .store
            .operations
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, o)| o)
            .collect();
        ops.sort_by(|a, b| a.create_time.cmp(&b.create_time).then(a.name.cmp(&b.name)));
        let items = ops.iter().map(|o| self.render_operation(o)).collect();
        wire::page_in_order("operations", items, req, MAX_PAGE_SIZE)
    }

    pub fn get_operation(&mut self, name: &str, now: DateTime<Utc>) -> ApiResult<Value> {
        self.settle(now);
        let op = self
            .store
            .operations
            .get(name)
            .ok_or_else(|| operation_not_found(name))?;
        Ok(self.render_operation(op))
    }

    pub fn delete_operation(&mut self, name: &str) -> ApiResult<Value> {
        self.store
            .operations
            .remove(name)
            .ok_or_else(|| operation_not_found(name))?;
        Ok(json!({}))
    }
}

fn operation_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Operation {name} not found."))
}

/// `operations:wait`: polls without holding the lock until the operation is done or the timeout passes.
pub async fn wait_operation(app: &App, name: &str, req: &Request) -> ApiResult<Value> {
    let body = req.json()?;
    let timeout = wire::str_field(&body, "timeout")
        .and_then(wire::parse_duration)
        .unwrap_or(Duration::from_secs(60))
        .min(Duration::from_secs(600));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (op, next_due) = {
            let mut st = app.lock();
            let op = st.cloud_run().get_operation(name, Utc::now())?;
            let next_due = st
                .run
                .revisions
                .values()
                .filter(|r| r.outcome == Outcome::Pending)
                .map(|r| r.ready_at)
                .min();
            (op, next_due)
        };
        let done = op.get("done").and_then(Value::as_bool).unwrap_or(false);
        let now = tokio::time::Instant::now();
        if done || now >= deadline {
            return Ok(op);
        }
        let until_due = next_due
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_millis(10));
        let pause = until_due
            .max(Duration::from_millis(1))
            .min(deadline - now)
            .min(Duration::from_millis(50));
        tokio::time::sleep(pause).await;
    }
}
