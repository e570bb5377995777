//! The reconciling controller: watches LiteLLMDeployments and the Kubernetes Secrets and ConfigMaps they reference,
//! and runs the pipeline `desired -> secrets -> iam -> service -> retire -> status` under a finalizer.

mod deletion;
mod pipeline;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::{Predicate, predicates};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource, ResourceExt};
use litellm_operator_api::names::{FIELD_MANAGER, FINALIZER, PAUSED_ANNOTATION, condition, reason};
use litellm_operator_api::{ConfigSource, LiteLLMDeployment, LiteLLMDeploymentStatus, SecretSource};
use litellm_operator_gcp::Gcp;
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use crate::conditions::{self, Outcome};
use crate::error::{Error, ErrorClass};
use crate::metrics::{Health, Metrics, ResultLabels};
use crate::plan::tenancy::TenancyPolicy;
use crate::plan::{Clock, PeerSet, desired_state};
use crate::resync;

/// How often a resource that waits for a person (missing source, conflict, failed revision) is looked at again.
const WAITING_FOR_A_PERSON: Duration = Duration::from_secs(30);

/// Settings of one controller instance.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Watch only LiteLLMDeployments matching this label selector (for sharding).
    pub selector: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Default periodic resync, jittered ±10 %.
    pub resync: Duration,
    /// How soon to look again while a rollout or IAM propagation is in progress.
    pub progress_poll: Duration,
    /// How long to wait before rolling a new revision after one failed on secret access while a grant propagates.
    pub iam_retry_delay: Duration,
    /// How long after a change such failures are retried (Google documents up to 7 minutes of propagation).
    pub iam_propagation_timeout: Duration,
    /// What each namespace may use; checked before any Google call.
    pub tenancy: TenancyPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: None,
            selector: None,
            concurrency: 8,
            resync: Duration::from_secs(600),
            progress_poll: Duration::from_secs(1),
            iam_retry_delay: Duration::from_secs(30),
            iam_propagation_timeout: Duration::from_secs(600),
            tenancy: TenancyPolicy::default(),
        }
    }
}

/// Shared state of every reconcile.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Google Cloud access, as the operator's own account.
    pub gcp: Gcp,
    /// Google Cloud access acting as the accounts the tenancy policy names, by email (built on first use).
    impersonated: tokio::sync::Mutex<std::collections::HashMap<String, Gcp>>,
    /// Event reporter identity.
    pub reporter: Reporter,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// When each resource (by uid) last had a full pass that read every secret and policy from Google.
    full_passes: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Consecutive failed reconciles per resource (by uid), for exponential backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// One recorder for every Event, so a repeated Event becomes a series on one object instead of a new one.
    recorder: Recorder,
    /// Every LiteLLMDeployment the controller watches (set once it runs): the peers of IAM decisions.
    store: std::sync::OnceLock<Store<LiteLLMDeployment>>,
    /// Reconciles asked for by another resource (a binding to take over before it is released).
    triggers: tokio::sync::mpsc::UnboundedSender<ObjectRef<LiteLLMDeployment>>,
    triggered: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ObjectRef<LiteLLMDeployment>>>>,
}

impl Context {
    /// A context for one controller instance.
    pub fn new(
        client: Client,
        gcp: Gcp,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let (triggers, triggered) = tokio::sync::mpsc::unbounded_channel();
        let recorder = Recorder::new(client.clone(), reporter.clone());
        Self {
            recorder,
            client,
            gcp,
            impersonated: Default::default(),
            reporter,
            metrics,
            settings,
            full_passes: Default::default(),
            failures: Default::default(),
            store: std::sync::OnceLock::new(),
            triggers,
            triggered: std::sync::Mutex::new(Some(triggered)),
        }
    }

    /// The other LiteLLMDeployments of the same project, as the planner's peers: what their specs need and what
    /// their records hold. One being deleted needs nothing any more; one whose spec is invalid still needs what
    /// its record holds (its revision keeps running).
    pub(crate) fn peers(&self, obj: &LiteLLMDeployment) -> PeerSet {
        let mut peers = PeerSet::default();
        let Some(store) = self.store.get() else {
            return peers;
        };
        for other in store.state() {
            if other.metadata.uid == obj.metadata.uid || other.spec.project != obj.spec.project {
                continue;
            }
            let record = other
                .status
                .as_ref()
                .map(|s| s.applied_bindings.clone())
                .unwrap_or_default();
            if other.metadata.deletion_timestamp.is_none() {
                match desired_state(&other) {
                    Ok(d) => peers.needs.extend(d.bindings),
                    Err(_) => peers.needs.extend(record.iter().cloned()),
                }
            }
            peers.records.extend(record);
        }
        peers
    }

    /// Asks the deployments that need `bindings` to reconcile, so they take them over before `obj` lets go.
    pub(crate) fn hand_over(
        &self,
        obj: &LiteLLMDeployment,
        bindings: &[litellm_operator_api::AppliedBinding],
    ) {
        let Some(store) = self.store.get() else {
            return;
        };
        for other in store.state() {
            if other.metadata.uid == obj.metadata.uid || other.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let needs = desired_state(&other).is_ok_and(|d| d.bindings.iter().any(|b| bindings.contains(b)));
            if needs {
                let _ = self.triggers.send(ObjectRef::from_obj(&*other));
            }
        }
    }

    /// The Google access for deployments in `namespace`: acting as the account the tenancy policy names for it,
    /// else the operator's own.
    pub(crate) async fn gcp_for(&self, namespace: &str) -> Result<Gcp, Error> {
        let Some(account) = self
            .settings
            .tenancy
            .rules_for(namespace)
            .1
            .impersonate
            .as_deref()
        else {
            return Ok(self.gcp.clone());
        };
        let mut built = self.impersonated.lock().await;
        if let Some(gcp) = built.get(account) {
            return Ok(gcp.clone());
        }
        let gcp = self
            .gcp
            .impersonating(account)
            .await
            .map_err(|source| Error::Observe {
                resource: format!("projects/-/serviceAccounts/{account}"),
                source,
            })?;
        built.insert(account.to_owned(), gcp.clone());
        Ok(gcp)
    }

    /// The planner's clock.
    pub(crate) fn clock(&self) -> Clock {
        Clock {
            now: k8s_openapi::jiff::Timestamp::now().as_second(),
            iam_retry_delay: self.settings.iam_retry_delay,
            iam_propagation_timeout: self.settings.iam_propagation_timeout,
        }
    }

    /// Whether `obj` had a full pass recently enough that this one may trust status for unchanged inputs.
    /// The periodic resync (every `resync`, jittered by at most 10 %) always finds the record older than this.
    pub(crate) fn recently_fully_checked(&self, obj: &LiteLLMDeployment) -> bool {
        let Some(uid) = obj.metadata.uid.as_deref() else {
            return false;
        };
        let passes = self
            .full_passes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        passes
            .get(uid)
            .is_some_and(|t| t.elapsed() < self.settings.resync.mul_f64(0.8))
    }

    /// Records a full pass of `obj` now.
    pub(crate) fn record_full_pass(&self, obj: &LiteLLMDeployment) {
        if let Some(uid) = obj.metadata.uid.clone() {
            let mut passes = self
                .full_passes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            passes.insert(uid, std::time::Instant::now());
        }
    }

    /// Forgets `obj` (deleted).
    pub(crate) fn forget(&self, obj: &LiteLLMDeployment) {
        if let Some(uid) = obj.metadata.uid.as_deref() {
            self.full_passes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(uid);
        }
    }

    /// One Event per action performed that changed something in Google (or in the record).
    pub(crate) async fn report(&self, obj: &LiteLLMDeployment, performed: &[crate::execute::Performed]) {
        for p in performed.iter().filter(|p| p.effect.changed()) {
            let kind = p.action.kind();
            let type_ = if kind.warns() {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.event(
                obj,
                type_,
                kind.reason(),
                crate::report::done(&p.action, &p.effect),
            )
            .await;
        }
    }

    /// Publishes an Event on `obj`; failure to publish is logged, never fatal.
    pub(crate) async fn event(
        &self,
        obj: &LiteLLMDeployment,
        type_: EventType,
        reason: &str,
        mut note: String,
    ) {
        // The API server refuses a longer note; `permissions::explain` already keeps its command within it.
        if note.len() > crate::permissions::NOTE_LIMIT {
            let mut cut = crate::permissions::NOTE_LIMIT - 3;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, "Could not publish event");
        }
    }
}

/// Runs the controller until SIGTERM / Ctrl-C.
pub async fn run(ctx: Arc<Context>, health: Health) {
    let settings = ctx.settings.clone();
    let (deployments, secrets, config_maps): (
        Api<LiteLLMDeployment>,
        Api<PartialObjectMeta<Secret>>,
        Api<PartialObjectMeta<ConfigMap>>,
    ) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (
            Api::all(ctx.client.clone()),
            Api::all(ctx.client.clone()),
            Api::all(ctx.client.clone()),
        ),
    };
    if let Err(e) = deployments.list(&ListParams::default().limit(1)).await {
        warn!(error = %e, "Could not list LiteLLMDeployments; is the CRD installed and RBAC granted?");
    }
    let mut wc = watcher::Config::default().any_semantic();
    if let Some(selector) = &settings.selector {
        wc = wc.labels(selector);
    }
    // A pass runs when the spec (generation), an annotation, a label or the finalizers change, not when only status
    // does: the operator's own status write must not repeat a pass (and its Google calls) that just failed.
    // Deletion bumps the generation; resync, Secret changes and hand-overs trigger the rest.
    let (store, writer) = reflector::store();
    let deployment_changes = watcher(deployments, wc)
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::labels)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let controller = Controller::for_stream(deployment_changes, store.clone());
    let _ = ctx.store.set(store.clone());
    let triggered = ctx
        .triggered
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let triggers = futures::stream::unfold(triggered, |rx| async move {
        let mut rx = rx?;
        let next = rx.recv().await?;
        Some((next, Some(rx)))
    });
    // Secrets are watched by metadata only: their values never enter the watch cache. ConfigMaps too: the ones a
    // `spec.config` names are read when it is reconciled, the others never.
    let secret_changes = watcher(secrets, watcher::Config::default()).touched_objects();
    let config_map_changes = watcher(config_maps, watcher::Config::default()).touched_objects();
    let secret_store = store.clone();
    let controller = controller
        .watches_stream(secret_changes, move |secret: PartialObjectMeta<Secret>| {
            let ns = secret.namespace();
            let name = secret.name_any();
            secret_store
                .state()
                .into_iter()
                .filter(|d| d.namespace() == ns && references(d, &name))
                .map(|d| ObjectRef::from_obj(&*d))
                .collect::<Vec<_>>()
        })
        .watches_stream(
            config_map_changes,
            move |config_map: PartialObjectMeta<ConfigMap>| {
                let ns = config_map.namespace();
                let name = config_map.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|d| d.namespace() == ns && references_config_map(d, &name))
                    .map(|d| ObjectRef::from_obj(&*d))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_on(triggers)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .shutdown_on_signal();
    health.set_ready();
    info!(
        namespace = settings.namespace.as_deref().unwrap_or("*"),
        "Started controller"
    );
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "Reconcile failed");
            }
        })
        .await;
    info!("Stopped controller");
}

/// Whether `obj` reads a key of the Kubernetes Secret `name` (same namespace).
fn references(obj: &LiteLLMDeployment, name: &str) -> bool {
    obj.spec
        .secrets
        .iter()
        .any(|s| matches!(s.source(), Some(SecretSource::FromSecret(r)) if r.name == name))
}

/// Whether `obj` takes its configuration from the ConfigMap `name` (same namespace).
fn references_config_map(obj: &LiteLLMDeployment, name: &str) -> bool {
    obj.spec
        .config
        .as_ref()
        .and_then(|c| c.source())
        .is_some_and(|s| matches!(s, ConfigSource::ConfigMap(r) if r.name == name))
}

async fn reconcile(obj: Arc<LiteLLMDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let ns = obj.namespace().unwrap_or_default();
    let _timer = ctx.metrics.reconcile_timer(&format!("{ns}/{}", obj.name_any()));
    let span = info_span!("reconcile", namespace = %ns, name = %obj.name_any());
    let api: Api<LiteLLMDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(obj) => apply(&obj, &ctx).await,
            Finalizer::Cleanup(obj) => {
                ctx.forget(&obj);
                // Say so before touching Google, unless the status already reports this deletion.
                let obj = if deletion::reported(&obj) {
                    (*obj).clone()
                } else {
                    deletion::report(&obj, &deletion::deleting(&obj), &ctx).await
                };
                let result = pipeline::cleanup(&obj, &ctx).await;
                if result.is_ok() {
                    // The finalizer goes next, and the deployment with it.
                    ctx.metrics
                        .forget(&obj.namespace().unwrap_or_default(), &obj.name_any());
                }
                if let Err(error) = &result {
                    let outcome = deletion::after_cleanup(&obj, error);
                    deletion::report(&obj, &outcome, &ctx).await;
                    if error.class() != ErrorClass::InProgress {
                        ctx.event(&obj, EventType::Warning, error.reason(), outcome.message)
                            .await;
                    }
                }
                result
            }
        }
    })
    .instrument(span)
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    let label = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.class().as_str().to_owned(),
    };
    if result.is_ok() {
        ctx.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&uid);
    }
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabels { result: label })
        .inc();
    result
}

fn error_policy(obj: Arc<LiteLLMDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    let base = match error.class() {
        ErrorClass::InvalidSpec => return Action::await_change(),
        ErrorClass::InProgress => return Action::requeue(Duration::from_secs(2)),
        ErrorClass::PermissionDenied => Duration::from_secs(300),
        ErrorClass::NotFound | ErrorClass::Conflict => Duration::from_secs(5),
        ErrorClass::Transient | ErrorClass::Kubernetes | ErrorClass::Other => Duration::from_secs(5),
    };
    // Per resource: doubles with each consecutive failure, reset by a successful reconcile.
    let failures = {
        let mut all = ctx
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = all
            .entry(obj.metadata.uid.clone().unwrap_or_default())
            .or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(base, failures);
    warn!(name = %obj.name_any(), class = error.class().as_str(), failures, retry_in = ?delay, error = %error, "Reconcile will be retried");
    Action::requeue(resync::jittered(delay))
}

/// Longest wait between retries of a failing resource.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// `base` doubled for each consecutive failure after the first, at most [`MAX_BACKOFF`].
fn backoff(base: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    base.saturating_mul(factor)
        .min(MAX_BACKOFF)
        .max(base.min(MAX_BACKOFF))
}

async fn apply(obj: &LiteLLMDeployment, ctx: &Context) -> Result<Action, Error> {
    let generation = obj.metadata.generation;
    let mut status = obj.status.clone().unwrap_or_default();
    let resync = resync::interval(obj.metadata.annotations.as_ref(), ctx.settings.resync);

    let desired = match desired_state(obj) {
        Ok(d) => d,
        Err(invalid) => {
            stop(obj, status, reason::INVALID_SPEC, invalid.to_string(), true, ctx).await?;
            return Ok(Action::await_change());
        }
    };

    // Tenancy: a deployment its namespace may not make is refused before any Google call, and waits for a
    // change (of the spec, or of the policy, which restarts the operator).
    let adopt = obj.adopts();
    if let Err(forbidden) = ctx
        .settings
        .tenancy
        .check(&obj.namespace().unwrap_or_default(), &desired, adopt)
    {
        stop(obj, status, reason::FORBIDDEN, forbidden.to_string(), true, ctx).await?;
        return Ok(Action::await_change());
    }

    if obj.annotations().get(PAUSED_ANNOTATION).map(String::as_str) == Some("true") {
        let message = format!("{PAUSED_ANNOTATION} is \"true\": no Google writes until it is removed");
        stop(obj, status, reason::PAUSED, message, false, ctx).await?;
        return Ok(Action::requeue(resync::jittered(resync)));
    }

    let (progress, failure) = pipeline::apply(obj, &desired, &mut status, ctx).await;
    status.observed_generation = generation;
    write_status(obj, status, ctx).await?;
    if let Some(error) = failure {
        let note = crate::permissions::explain(&error, &obj.spec.service.service_account);
        ctx.event(obj, EventType::Warning, error.reason(), note).await;
        return Err(error);
    }
    Ok(if progress.converged {
        Action::requeue(resync::jittered(resync))
    } else if progress.in_flight {
        Action::requeue(ctx.settings.progress_poll)
    } else {
        Action::requeue(resync::jittered(WAITING_FOR_A_PERSON.min(resync)))
    })
}

/// No step runs (invalid spec, forbidden by tenancy, paused): every condition false for `reason`, no Google call.
/// With `warn`, a Warning Event says why, once per change (when the status write changed something).
async fn stop(
    obj: &LiteLLMDeployment,
    mut status: LiteLLMDeploymentStatus,
    reason: &str,
    message: String,
    warn: bool,
    ctx: &Context,
) -> Result<(), Error> {
    let outcome = Outcome::not_ready(reason, message.clone());
    conditions::set_all_blocked(&mut status.conditions, &outcome, obj.metadata.generation, &now());
    status.observed_generation = obj.metadata.generation;
    if write_status(obj, status, ctx).await? && warn {
        ctx.event(obj, EventType::Warning, reason, message).await;
    }
    Ok(())
}

/// Writes `status` with server-side apply, unless it equals what is already there. Returns whether it wrote.
async fn write_status(
    obj: &LiteLLMDeployment,
    status: LiteLLMDeploymentStatus,
    ctx: &Context,
) -> Result<bool, Error> {
    if let Some(ready) = status.conditions.iter().find(|c| c.type_ == condition::READY) {
        ctx.metrics.set_ready(
            &obj.namespace().unwrap_or_default(),
            &obj.name_any(),
            &ready.reason,
            ready.status == "True",
        );
    }
    let pins: Vec<(String, i64)> = status
        .secrets
        .iter()
        .filter_map(|p| {
            let created = chrono::DateTime::parse_from_rfc3339(p.version_create_time.as_deref()?).ok()?;
            Some((p.env.clone(), created.timestamp()))
        })
        .collect();
    ctx.metrics
        .set_pinned(&obj.namespace().unwrap_or_default(), &obj.name_any(), &pins);
    if obj.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let api: Api<LiteLLMDeployment> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": LiteLLMDeployment::api_version(&()),
        "kind": LiteLLMDeployment::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map_err(Error::Kubernetes)?;
    ctx.metrics.status_writes.inc();
    Ok(true)
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_failure_and_is_capped() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 1), Duration::from_secs(5));
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 4), Duration::from_secs(40));
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
        assert_eq!(backoff(Duration::from_secs(300), 3), MAX_BACKOFF);
    }
}
