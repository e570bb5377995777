//! Cloud Run Admin API v2: services, revisions and their long-running operations.
//!
//! Writes return the operation as Google reported it and never wait for it: a reconcile requeues and looks
//! at the service (`reconciling`, `observedGeneration`, `terminalCondition`) or the operation later.

use std::future::Future;

use google_cloud_gax::error::rpc::Code;
use google_cloud_longrunning::model as lro;
use google_cloud_run_v2::model::{Revision, Service};

use crate::Gcp;
use crate::call::Call;
use crate::error::{Error, Result};
use crate::limits::QuotaClass;
use crate::names::ServiceName;

/// A long-running operation as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Its name, for [`CloudRun::get_operation`].
    pub name: String,
    /// True when it finished (successfully or not).
    pub done: bool,
    /// Why it failed, when it finished with an error.
    pub error: Option<OperationError>,
}

/// The error a finished operation reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationError {
    /// Canonical code name, e.g. `FAILED_PRECONDITION`.
    pub code: String,
    /// Google's message.
    pub message: String,
}

impl From<lro::Operation> for Operation {
    fn from(op: lro::Operation) -> Self {
        let error = match op.result {
            Some(lro::operation::Result::Error(status)) => Some(OperationError {
                code: Code::from(status.code).name().to_owned(),
                message: crate::error::bounded(&status.message, None),
            }),
            _ => None,
        };
        Self {
            name: op.name,
            done: op.done,
            error,
        }
    }
}

/// Cloud Run v2 services and revisions.
pub trait CloudRun {
    /// The service, or `None` when it does not exist.
    fn get_service(&self, name: &ServiceName) -> impl Future<Output = Result<Option<Service>>> + Send;

    /// Creates the service (its `name` is ignored; `name` decides). Returns the operation without waiting.
    /// Never retried: after a transient failure, [`CloudRun::get_service`] tells whether it was created.
    fn create_service(
        &self,
        name: &ServiceName,
        service: Service,
    ) -> impl Future<Output = Result<Operation>> + Send;

    /// Replaces the service's spec (a template change creates a revision). Returns the operation without
    /// waiting. Set `service.etag` to the etag last read to make the write conditional: only then is it
    /// retried after a transient failure.
    fn update_service(
        &self,
        name: &ServiceName,
        service: Service,
    ) -> impl Future<Output = Result<Operation>> + Send;

    /// Deletes the service. `Ok(None)` when it was already gone; otherwise the operation, not awaited.
    fn delete_service(&self, name: &ServiceName) -> impl Future<Output = Result<Option<Operation>>> + Send;

    /// The revision with this full name, or `None`.
    fn get_revision(&self, name: &str) -> impl Future<Output = Result<Option<Revision>>> + Send;

    /// All revisions of a service.
    fn list_revisions(&self, service: &ServiceName) -> impl Future<Output = Result<Vec<Revision>>> + Send;

    /// The current state of an operation returned by a write.
    fn get_operation(&self, name: &str) -> impl Future<Output = Result<Operation>> + Send;
}

fn found<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl CloudRun for Gcp {
    async fn get_service(&self, name: &ServiceName) -> Result<Option<Service>> {
        let resource = name.to_string();
        let client = &self.inner.services;
        let r = self
            .inner
            .caller
            .call(Call::run("GetService", &resource, QuotaClass::RunRead), || {
                client.get_service().set_name(&resource).send()
            })
            .await;
        found(r)
    }

    async fn create_service(&self, name: &ServiceName, mut service: Service) -> Result<Operation> {
        let resource = name.to_string();
        service.name.clear();
        let client = &self.inner.services;
        let call = Call::run("CreateService", &resource, QuotaClass::RunWrite).never_repeat();
        let op = self
            .inner
            .caller
            .call(call, || {
                client
                    .create_service()
                    .set_parent(name.parent())
                    .set_service_id(&name.service)
                    .set_service(service.clone())
                    .send()
            })
            .await?;
        tracing::info!(service = %resource, operation = %op.name, "Created Cloud Run service");
        Ok(op.into())
    }

    async fn update_service(&self, name: &ServiceName, mut service: Service) -> Result<Operation> {
        let resource = name.to_string();
        service.name.clone_from(&resource);
        let guarded = !service.etag.is_empty();
        let client = &self.inner.services;
        let call = Call::run("UpdateService", &resource, QuotaClass::RunWrite).repeat_if(guarded);
        let op = self
            .inner
            .caller
            .call(call, || {
                client.update_service().set_service(service.clone()).send()
            })
            .await?;
        tracing::info!(service = %resource, operation = %op.name, "Updated Cloud Run service");
        Ok(op.into())
    }

    async fn delete_service(&self, name: &ServiceName) -> Result<Option<Operation>> {
        let resource = name.to_string();
        let client = &self.inner.services;
        // Safe to repeat: a repeated delete finds the service gone (or already being deleted).
        let r = self
            .inner
            .caller
            .call(
                Call::run("DeleteService", &resource, QuotaClass::RunWrite),
                || client.delete_service().set_name(&resource).send(),
            )
            .await;
        let op = found(r)?.map(Operation::from);
        if let Some(op) = &op {
            tracing::info!(service = %resource, operation = %op.name, "Deleted Cloud Run service");
        }
        Ok(op)
    }

    async fn get_revision(&self, name: &str) -> Result<Option<Revision>> {
        let client = &self.inner.revisions;
        let r = self
            .inner
            .caller
            .call(Call::run("GetRevision", name, QuotaClass::RunRead), || {
                client.get_revision().set_name(name).send()
            })
            .await;
        found(r)
    }

    async fn list_revisions(&self, service: &ServiceName) -> Result<Vec<Revision>> {
        let resource = service.to_string();
        let client = &self.inner.revisions;
        let mut revisions = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .inner
                .caller
                .call(Call::run("ListRevisions", &resource, QuotaClass::RunRead), || {
                    client
                        .list_revisions()
                        .set_parent(&resource)
                        .set_page_size(100)
                        .set_page_token(&page_token)
                        .send()
                })
                .await?;
            revisions.extend(page.revisions);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(revisions)
    }

    async fn get_operation(&self, name: &str) -> Result<Operation> {
        let client = &self.inner.services;
        let op = self
            .inner
            .caller
            .call(Call::run("GetOperation", name, QuotaClass::RunRead), || {
                client.get_operation().set_name(name).send()
            })
            .await?;
        Ok(op.into())
    }
}
