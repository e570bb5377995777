//! The planner's decisions, table by table, and its invariants as properties over generated specs, observed
//! states, records and peers.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use litellm_operator_api::names::{RUN_INVOKER_ROLE, SECRET_ACCESSOR_ROLE};
use litellm_operator_api::{AppliedBinding, LiteLLMDeployment, PinnedSecret};
use litellm_operator_gcp::{SecretPayload, VersionState};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::cleanup::{self, Teardown};
use super::ownership::Ownership;
use super::*;

const SA: &str = "run@p-proj.iam.gserviceaccount.com";
const OURS: &str = "llm_proxy";
const THEIRS: &str = "other_stack";

/// Which source a generated secret has.
#[derive(Clone, Copy, Debug)]
enum Kind {
    FromSecret,
    Generate,
    /// Generated, with `rotation: r2`.
    Rotated,
    External,
    /// LiteLLM's configuration from a ConfigMap (`spec.config`), at most one and always last: it is the last
    /// desired secret.
    Config,
}

fn object(kinds: &[Kind], public: bool) -> LiteLLMDeployment {
    let secrets: Vec<Value> = kinds
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            let env = format!("SECRET_{i}");
            Some(match k {
                Kind::FromSecret => {
                    json!({"env": env, "fromSecret": {"name": "creds", "key": format!("k{i}")}})
                }
                Kind::Generate => json!({"env": env, "generate": {"length": 32, "prefix": "sk-"}}),
                Kind::Rotated => json!({"env": env, "generate": {"length": 32, "rotation": "r2"}}),
                Kind::External => json!({"env": env, "external": {"version": "latest"}}),
                Kind::Config => return None,
            })
        })
        .collect();
    let config = kinds
        .iter()
        .any(|k| matches!(k, Kind::Config))
        .then(|| json!({"configMapKeyRef": {"name": "litellm", "key": "config.yaml"}}));
    serde_json::from_value(json!({
        "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
        "metadata": {"name": "proxy", "namespace": "llm", "generation": 1},
        "spec": {
            "project": "p-proj", "region": "us-central1",
            "service": {"image": "litellm:1", "serviceAccount": SA, "allowUnauthenticated": public},
            "secrets": secrets,
            "config": config,
            "secretPolicy": {"keepEnabledVersions": 2}
        }
    }))
    .unwrap()
}

fn desired(kinds: &[Kind], public: bool) -> DesiredState {
    desired_state(&object(kinds, public)).unwrap()
}

fn value(i: usize, generation: u8) -> SecretPayload {
    SecretPayload::new(format!("value-{i}-{generation}").into_bytes())
}

fn sources(d: &DesiredState, generation: u8) -> BTreeMap<String, Source> {
    d.secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            matches!(
                s.source,
                DesiredSource::FromSecret(_) | DesiredSource::FromConfigMap(_)
            )
        })
        .map(|(i, s)| {
            (
                s.key().to_owned(),
                Source::Value {
                    payload: value(i, generation),
                    revision: Some(format!("rv-{generation}")),
                },
            )
        })
        .collect()
}

fn labels(owner: Option<&str>) -> BTreeMap<String, String> {
    match owner {
        Some(o) => [
            ("managed-by".to_owned(), "litellm-operator".to_owned()),
            ("litellm-deployment".to_owned(), o.to_owned()),
        ]
        .into(),
        None => [("team".to_owned(), "platform".to_owned())].into(),
    }
}

fn clock() -> Clock {
    Clock {
        now: 1_000_000,
        iam_retry_delay: Duration::from_secs(30),
        iam_propagation_timeout: Duration::from_secs(600),
    }
}

fn inputs<'a>(
    d: &'a DesiredState,
    s: &'a BTreeMap<String, Source>,
    adopt: bool,
    peers: &'a PeerSet,
) -> Inputs<'a> {
    Inputs {
        desired: d,
        sources: s,
        adopt,
        spec_changed: false,
        clock: clock(),
        peers,
    }
}

/// A service as Cloud Run reports it once the latest revision serves.
fn serving(body: Value) -> Value {
    let mut live = body;
    live["generation"] = json!("2");
    live["observedGeneration"] = json!("2");
    live["reconciling"] = json!(false);
    live["terminalCondition"] = json!({"state": "CONDITION_SUCCEEDED"});
    live["latestCreatedRevision"] = json!("proxy-00002-abc");
    live["latestReadyRevision"] = json!("proxy-00002-abc");
    live["uri"] = json!("https://proxy.example");
    live
}

/// Runs every apply phase with predicted effects, then lets Cloud Run finish the rollout.
/// The front ends record the pins after each pass, as this does.
fn converge(inputs: &Inputs<'_>, model: Model) -> Model {
    let (_, mut model) = predict(inputs, model, &Phase::APPLY);
    model.record.pins = plan(inputs, &model).pinned(&model);
    if let Some(live) = model.service.take() {
        model.service = Some(serving(live));
    }
    let (_, mut model) = predict(inputs, model, &Phase::APPLY);
    model.record.pins = plan(inputs, &model).pinned(&model);
    model
}

fn bindings_only(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Revoke(_) | Action::ForgetBinding(_)))
        .cloned()
        .collect()
}

fn accessor(secret: &str, member: &str) -> AppliedBinding {
    AppliedBinding {
        resource: format!("projects/p-proj/secrets/{secret}"),
        role: SECRET_ACCESSOR_ROLE.into(),
        member: member.into(),
    }
}

fn sa() -> String {
    format!("serviceAccount:{SA}")
}

/// An external secret with one enabled version, whose policy already grants the runtime account (someone else did).
fn granted_external(resource: String) -> Model {
    Model {
        secrets: [(
            resource.clone(),
            SecretView::Present(SecretState {
                versions: vec![VersionView {
                    number: 1,
                    state: VersionState::Enabled,
                    created: None,
                }],
                ..SecretState::default()
            }),
        )]
        .into(),
        policies: [(
            resource,
            PolicyView([(SECRET_ACCESSOR_ROLE.to_owned(), sa())].into()),
        )]
        .into(),
        ..Model::default()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Decisions, example by example.

#[test]
fn a_fresh_project_gets_every_resource_once_and_then_an_empty_plan() {
    let d = desired(&[Kind::FromSecret, Kind::Generate], true);
    let s = sources(&d, 1);
    let peers = PeerSet::default();
    let i = inputs(&d, &s, false, &peers);
    let (actions, model) = predict(&i, Model::default(), &Phase::APPLY);
    let kinds: Vec<ActionKind> = actions.iter().map(Action::kind).collect();
    assert_eq!(
        kinds,
        [
            ActionKind::CreateSecret,
            ActionKind::CreateSecret,
            ActionKind::AddVersion,
            ActionKind::GenerateVersion,
            ActionKind::Grant,
            ActionKind::Grant,
            ActionKind::CreateService,
            ActionKind::GrantInvoker,
        ]
    );
    assert!(plan(&i, &model).is_empty());
    let converged = converge(&i, model);
    let last = plan(&i, &converged);
    assert!(last.is_empty() && last.converged(), "{last:?}");
    assert_eq!(
        converged.record.bindings.len(),
        3,
        "every grant our write added is recorded"
    );
}

#[test]
fn an_unchanged_source_with_a_fresh_record_needs_no_value_read_and_adds_nothing() {
    let d = desired(&[Kind::FromSecret], false);
    let s = sources(&d, 1);
    let peers = PeerSet::default();
    let i = inputs(&d, &s, false, &peers);
    let model = converge(&i, Model::default());
    let secret = &d.secrets[0];
    let SecretView::Present(state) = model.secret(&secret.resource) else {
        panic!()
    };
    let mut unread = state.clone();
    unread.newest_payload = None;
    let mut record = model.record.clone();
    record.pins = plan(&i, &model).pinned(&model);
    assert!(!secrets::needs_payload(
        secret,
        s.get(secret.key()),
        &unread,
        &record
    ));
    // A new resourceVersion (an edit, even to the same value) needs the value read before deciding.
    let edited = sources(&d, 2);
    assert!(secrets::needs_payload(
        secret,
        edited.get(secret.key()),
        &unread,
        &record
    ));
}

#[test]
fn a_rotated_source_adds_one_version_repins_and_retires_beyond_keep_once_serving() {
    let d = desired(&[Kind::FromSecret], false);
    let peers = PeerSet::default();
    let first = sources(&d, 1);
    let mut model = converge(&inputs(&d, &first, false, &peers), Model::default());
    for generation in 2..=4 {
        let s = sources(&d, generation);
        let i = inputs(&d, &s, false, &peers);
        let p = plan(&i, &model);
        assert_eq!(
            p.actions.iter().map(Action::kind).collect::<Vec<_>>(),
            [ActionKind::AddVersion, ActionKind::UpdateService],
            "rotation {generation}"
        );
        model = converge(&i, model);
    }
    let SecretView::Present(state) = model.secret(&d.secrets[0].resource) else {
        panic!()
    };
    let enabled: Vec<u64> = state
        .versions
        .iter()
        .filter(|v| v.state == VersionState::Enabled)
        .map(|v| v.number)
        .collect();
    assert_eq!(
        enabled,
        [4, 3],
        "keepEnabledVersions: 2, the pinned one among them"
    );
}

#[test]
fn a_pin_carries_its_versions_creation_time_from_google_or_from_the_record() {
    let d = desired(&[Kind::Generate], false);
    let s = BTreeMap::new();
    let peers = PeerSet::default();
    let i = inputs(&d, &s, false, &peers);
    let mut model = converge(&i, Model::default());
    let resource = d.secrets[0].resource.clone();
    // The version this pass added has no time yet; the next full pass reads it from Google.
    assert_eq!(model.record.pins[0].version.as_deref(), Some("1"));
    assert_eq!(model.record.pins[0].version_create_time, None);
    if let Some(SecretView::Present(state)) = model.secrets.get_mut(&resource) {
        state.versions[0].created = Some(1_767_225_600);
    }
    let pinned = plan(&i, &model).pinned(&model);
    assert_eq!(
        pinned[0].version_create_time.as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
    // A light pass reads no versions: the record's time for the same version stands.
    model.record.pins = pinned;
    model.secrets.insert(resource, SecretView::Trusted);
    let light = plan(&i, &model).pinned(&model);
    assert_eq!(
        light[0].version_create_time.as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
}

#[test]
fn retire_runs_on_every_full_pass_while_serving_not_only_on_the_transition() {
    // Defect 3: a disable that failed once is planned again on the next pass.
    let d = desired(&[Kind::Generate], false);
    let s = BTreeMap::new();
    let peers = PeerSet::default();
    let i = inputs(&d, &s, false, &peers);
    let mut model = converge(&i, Model::default());
    let resource = d.secrets[0].resource.clone();
    if let Some(SecretView::Present(state)) = model.secrets.get_mut(&resource) {
        for n in [2, 3] {
            state.versions.insert(0, version(n, VersionState::Enabled));
        }
    }
    model.record.pins = vec![recorded(&resource, 1)];
    // Pinned to 1 (an old revision someone rolled back to): 1 stays, with the newest (3); 2 goes.
    let mut live = model.service.clone().unwrap();
    live["template"]["containers"][0]["env"][0]["valueSource"]["secretKeyRef"]["version"] = json!("1");
    model.service = Some(live);
    let p = plan(&i, &model);
    let disabled: Vec<u64> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DisableVersion { number, .. } => Some(*number),
            _ => None,
        })
        .collect();
    assert_eq!(disabled, [2]);
    assert!(
        plan(&i, &model) == p,
        "the same state plans the same retire again"
    );
}

#[test]
fn a_service_of_another_deployment_stops_everything_before_any_write() {
    // Defect 4, and defect 2 for services: adoption never takes another deployment's service.
    let d = desired(&[Kind::FromSecret, Kind::Generate], true);
    let s = sources(&d, 1);
    let peers = PeerSet::default();
    for adopt in [false, true] {
        let model = Model {
            service: Some(json!({"labels": labels(Some(THEIRS)), "template": {}})),
            ..Model::default()
        };
        let p = plan(&inputs(&d, &s, adopt, &peers), &model);
        assert!(p.actions.is_empty(), "adopt={adopt}: {:?}", p.actions);
        let conflict = p.conflict.unwrap();
        assert_eq!(conflict.kind, ProblemKind::Conflict);
        assert!(conflict.message.contains(THEIRS), "{}", conflict.message);
    }
    // Unlabelled: refused without adoption, relabelled (an update carrying our labels) with it.
    let model = Model {
        service: Some(json!({"labels": labels(None), "template": {}})),
        ..Model::default()
    };
    assert!(plan(&inputs(&d, &s, false, &peers), &model).conflict.is_some());
    let adopted = plan(&inputs(&d, &s, true, &peers), &model);
    assert!(adopted.conflict.is_none());
}

#[test]
fn adoption_takes_unlabelled_secrets_only() {
    let d = desired(&[Kind::FromSecret], false);
    let s = sources(&d, 1);
    let peers = PeerSet::default();
    let resource = d.secrets[0].resource.clone();
    let with = |owner: Option<&str>| Model {
        secrets: [(
            resource.clone(),
            SecretView::Present(SecretState {
                labels: labels(owner),
                etag: "e1".into(),
                ..SecretState::default()
            }),
        )]
        .into(),
        ..Model::default()
    };
    let theirs = plan(&inputs(&d, &s, true, &peers), &with(Some(THEIRS)));
    assert!(theirs.actions.is_empty());
    assert_eq!(
        theirs.secrets[0].pin.as_ref().unwrap_err().kind,
        ProblemKind::Conflict
    );
    let unlabelled = plan(&inputs(&d, &s, true, &peers), &with(None));
    match &unlabelled.actions[0] {
        Action::AdoptSecret { labels, etag, .. } => {
            assert_eq!(etag, "e1");
            assert_eq!(labels["litellm-deployment"], OURS);
            assert_eq!(labels["team"], "platform", "its own labels are kept");
        }
        other => panic!("{other:?}"),
    }
    let refused = plan(&inputs(&d, &s, false, &peers), &with(None));
    assert!(refused.actions.is_empty());
}

#[test]
fn a_payload_over_64_kib_or_empty_is_invalid_before_any_call() {
    // Defect 6.
    let d = desired(&[Kind::FromSecret], false);
    let peers = PeerSet::default();
    for (bytes, fragment) in [
        (vec![b'x'; 64 * 1024 + 1], "at most 65536 bytes"),
        (Vec::new(), "is empty"),
    ] {
        let s: BTreeMap<String, Source> = [(
            "SECRET_0".to_owned(),
            Source::Value {
                payload: SecretPayload::new(bytes),
                revision: None,
            },
        )]
        .into();
        let problem = secrets::source_problem(&d.secrets[0], s.get("SECRET_0")).unwrap();
        assert_eq!(problem.kind, ProblemKind::InvalidSpec);
        assert!(problem.message.contains(fragment), "{}", problem.message);
        let p = plan(&inputs(&d, &s, false, &peers), &Model::default());
        assert!(p.actions.is_empty(), "{:?}", p.actions);
    }
}

/// A model holding one secret of ours, `resource`, with `versions` (newest first).
fn ours_with(resource: &str, versions: Vec<VersionView>) -> Model {
    Model {
        secrets: [(
            resource.to_owned(),
            SecretView::Present(SecretState {
                labels: labels(Some(OURS)),
                versions,
                ..SecretState::default()
            }),
        )]
        .into(),
        ..Model::default()
    }
}

fn version(number: u64, state: VersionState) -> VersionView {
    VersionView {
        number,
        state,
        created: None,
    }
}

/// The record's pin of `SECRET_0` on `resource` to `version`, with no source revision.
fn recorded(resource: &str, version: u64) -> PinnedSecret {
    PinnedSecret {
        env: "SECRET_0".into(),
        secret: resource.to_owned(),
        version: Some(version.to_string()),
        source_resource_version: None,
        version_create_time: None,
    }
}

/// One generated secret with `rotation: text`.
fn rotated_to(text: &str) -> DesiredState {
    let mut obj = object(&[Kind::Rotated], false);
    obj.spec.secrets[0].generate.as_mut().unwrap().rotation = text.into();
    desired_state(&obj).unwrap()
}

#[test]
fn a_generated_secret_never_gets_a_second_value() {
    let d = desired(&[Kind::Generate], false);
    let s = BTreeMap::new();
    let peers = PeerSet::default();
    let model = ours_with(&d.secrets[0].resource, vec![version(1, VersionState::Disabled)]);
    let p = plan(&inputs(&d, &s, false, &peers), &model);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(
        p.secrets[0]
            .pin
            .as_ref()
            .unwrap_err()
            .message
            .contains("never generated twice")
    );
}

/// The numbers of the versions `actions` generate.
fn generated(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::AddVersion {
                value: NewValue::Generate(_),
                expected,
                ..
            } => Some(*expected),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_rotation_generates_one_new_value_pins_it_and_retires_the_old_one() {
    let before = desired(&[Kind::Generate], false);
    let s = BTreeMap::new();
    let peers = PeerSet::default();
    let model = converge(&inputs(&before, &s, false, &peers), Model::default());
    assert_eq!(model.record.pins[0].version.as_deref(), Some("1"));
    assert_eq!(model.record.pins[0].source_resource_version, None);

    let after = desired(&[Kind::Rotated], false);
    let i = inputs(&after, &s, false, &peers);
    let (actions, predicted) = predict(&i, model.clone(), &Phase::APPLY);
    assert_eq!(generated(&actions), [2], "{actions:?}");
    assert!(
        actions.iter().any(|a| a
            .to_string()
            .ends_with("(SECRET_0, 32 random characters, rotation r2)")),
        "the plan says why: {actions:?}"
    );
    let p = plan(&i, &predicted);
    assert_eq!(generated(&p.actions), Vec::<u64>::new(), "one value per rotation");
    let pinned = p.pinned(&predicted);
    assert_eq!(pinned[0].version.as_deref(), Some("2"));
    assert_eq!(pinned[0].source_resource_version.as_deref(), Some("rotation:r2"));
    assert!(
        actions.iter().any(|a| matches!(a, Action::UpdateService { .. })),
        "a revision pinned to the new value rolls out: {actions:?}"
    );

    // Served and recorded: nothing more to do. The old value stays enabled (keepEnabledVersions: 2) until the
    // next rotation retires it.
    let converged = converge(&i, model);
    assert_eq!(converged.record.pins[0].version.as_deref(), Some("2"));
    assert!(plan(&i, &converged).is_empty());
    let enabled = |m: &Model| match m.secrets.get(&after.secrets[0].resource) {
        Some(SecretView::Present(state)) => (1..=3).filter(|n| state.enabled(*n)).collect::<Vec<u64>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(enabled(&converged), [1, 2]);
    let next = rotated_to("r3");
    let rotated_again = converge(&inputs(&next, &s, false, &peers), converged);
    assert_eq!(rotated_again.record.pins[0].version.as_deref(), Some("3"));
    assert_eq!(enabled(&rotated_again), [2, 3]);
}

/// A secret of ours with `rotation: r2` whose versions have `states` (version 1 first), and the record's pin of
/// version `pinned` with `mark`.
fn rotated_secret(states: &[VersionState], pinned: u64, mark: Option<&str>) -> (DesiredState, Model) {
    let d = desired(&[Kind::Rotated], false);
    let resource = &d.secrets[0].resource;
    let mut versions: Vec<VersionView> = (1u64..).zip(states).map(|(n, s)| version(n, *s)).collect();
    versions.reverse();
    let mut model = ours_with(resource, versions);
    let mut pin = recorded(resource, pinned);
    pin.source_resource_version = mark.map(str::to_owned);
    model.record.pins = vec![pin];
    (d, model)
}

#[test]
fn a_version_whose_add_failed_is_not_recorded_so_the_rotation_is_planned_again() {
    let (d, mut model) = rotated_secret(&[VersionState::Enabled], 1, None);
    let s = BTreeMap::new();
    let peers = PeerSet::default();
    let i = inputs(&d, &s, false, &peers);
    let p = plan(&i, &model);
    assert_eq!(generated(&p.actions), [2]);
    // The add failed: nothing was absorbed, and the front end records what the plan says.
    let before = model.record.pins.clone();
    model.record.pins = p.pinned(&model);
    assert_eq!(model.record.pins, before);
    assert_eq!(
        generated(&plan(&i, &model).actions),
        [2],
        "the rotation is not lost"
    );
}

#[test]
fn a_rotation_that_stopped_after_adding_pins_the_added_value_and_adds_no_other() {
    // A pass added version 2 and stopped before recording it: the record still pins 1 without the mark.
    let (d, model) = rotated_secret(&[VersionState::Enabled, VersionState::Enabled], 1, None);
    let s = BTreeMap::new();
    let peers = PeerSet::default();
    let p = plan(&inputs(&d, &s, false, &peers), &model);
    assert_eq!(generated(&p.actions), Vec::<u64>::new(), "{:?}", p.actions);
    let pin = p.secrets[0].pin.as_ref().unwrap();
    assert_eq!(
        (pin.version, pin.source_revision.as_deref()),
        (2, Some("rotation:r2"))
    );
}

#[test]
fn a_rotation_after_disabling_the_pinned_value_generates_a_new_one_rather_than_pin_an_older_one() {
    // A leaked key: version 2 was disabled at once, and the rotation asks for a new value. Version 1 is older.
    let (d, model) = rotated_secret(&[VersionState::Enabled, VersionState::Disabled], 2, None);
    let s = BTreeMap::new();
    let peers = PeerSet::default();
    let p = plan(&inputs(&d, &s, false, &peers), &model);
    assert_eq!(generated(&p.actions), [3], "{:?}", p.actions);
    assert_eq!(p.secrets[0].pin.as_ref().unwrap().version, 3);

    // Without a rotation, the operator falls back to the newest enabled version, and makes no value.
    let unrotated = desired(&[Kind::Generate], false);
    let p = plan(&inputs(&unrotated, &s, false, &peers), &model);
    assert_eq!(generated(&p.actions), Vec::<u64>::new());
    assert_eq!(p.secrets[0].pin.as_ref().unwrap().version, 1);
}

#[test]
fn a_rotated_value_disabled_later_is_refused_not_replaced_by_the_older_one() {
    let (d, model) = rotated_secret(
        &[VersionState::Enabled, VersionState::Disabled],
        2,
        Some("rotation:r2"),
    );
    let s = BTreeMap::new();
    let peers = PeerSet::default();
    let p = plan(&inputs(&d, &s, false, &peers), &model);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    let problem = p.secrets[0].pin.as_ref().unwrap_err();
    assert_eq!(problem.kind, ProblemKind::SourceMissing);
    assert!(
        problem.message.contains("an older value is never put back")
            && problem.message.contains("set a new generate.rotation"),
        "{}",
        problem.message
    );
}

#[test]
fn an_unchanged_or_emptied_rotation_keeps_the_value_in_full_and_light_passes() {
    let d = desired(&[Kind::Rotated], false);
    let s = BTreeMap::new();
    let peers = PeerSet::default();
    let converged = converge(&inputs(&d, &s, false, &peers), Model::default());
    assert_eq!(
        converged.record.pins[0].source_resource_version.as_deref(),
        Some("rotation:r2"),
        "the first value carries the rotation: setting it on a new deployment generates one value"
    );
    let resource = d.secrets[0].resource.clone();
    let emptied = desired(&[Kind::Generate], false);
    for spec in [&d, &emptied] {
        let i = inputs(spec, &s, false, &peers);
        let p = plan(&i, &converged);
        assert!(p.is_empty(), "{:?}", p.actions);
        assert_eq!(
            p.pinned(&converged)[0].source_resource_version.as_deref(),
            Some("rotation:r2")
        );
        assert!(secrets::trusted(&spec.secrets[0], None, &converged.record));
        let mut light = converged.clone();
        light.secrets.insert(resource.clone(), SecretView::Trusted);
        assert!(plan(&i, &light).is_empty());
    }
    // Another text rotates again, and a light pass does not trust the record then.
    let again = rotated_to("r3");
    assert!(!secrets::trusted(&again.secrets[0], None, &converged.record));
    let (actions, _) = predict(&inputs(&again, &s, false, &peers), converged, &Phase::APPLY);
    assert_eq!(generated(&actions), [2]);
}

#[test]
fn a_binding_in_place_that_nobody_granted_is_never_recorded_nor_revoked() {
    // Defect 1: a second deployment found the first one's binding in place; it must not become its own.
    let d = desired(&[Kind::External], false);
    let peers = PeerSet::default();
    let s = BTreeMap::new();
    let resource = d.secrets[0].resource.clone();
    let binding = accessor("secret-0", &sa());
    let model = granted_external(resource);
    let i = inputs(&d, &s, false, &peers);
    let converged = converge(&i, model);
    assert!(!converged.record.bindings.contains(&binding));
    // Deleted: nothing recorded, nothing revoked.
    let teardown = Teardown::of(&object(&[Kind::External], false));
    let c = cleanup::plan(&teardown, &converged, &peers);
    assert!(
        !c.actions.iter().any(|a| matches!(a, Action::Revoke(_))),
        "{:?}",
        c.actions
    );
}

#[test]
fn a_light_pass_trusts_the_record_and_plans_nothing_for_a_converged_deployment() {
    // A light pass reads neither secrets nor the policies the record vouches for; one binding was in place
    // before (the runbook's, not recorded), so its policy is read: nothing to do, no grant in a loop.
    let d = desired(&[Kind::FromSecret, Kind::Generate], false);
    let s = sources(&d, 1);
    let peers = PeerSet::default();
    let i = inputs(&d, &s, false, &peers);
    let full = converge(&i, Model::default());
    let runbook = d.bindings[0].clone();
    let mut light = Model {
        secrets: d
            .secrets
            .iter()
            .map(|x| (x.resource.clone(), SecretView::Trusted))
            .collect(),
        service: full.service.clone(),
        record: full.record.clone(),
        ..Model::default()
    };
    light.record.bindings.remove(&runbook);
    light.policies.insert(
        runbook.resource.clone(),
        PolicyView([(runbook.role.clone(), runbook.member.clone())].into()),
    );
    for secret in &d.secrets {
        assert!(
            secrets::trusted(secret, s.get(secret.key()), &light.record),
            "{}",
            secret.key()
        );
    }
    let p = plan(&i, &light);
    assert!(p.is_empty(), "{:?}", p.actions);
    assert!(p.converged(), "{:?}", p.service);
}

#[test]
fn a_binding_granted_by_a_peer_is_shared_then_handed_over_not_revoked() {
    let d = desired(&[Kind::External], false);
    let s = BTreeMap::new();
    let binding = accessor("secret-0", &sa());
    let peer_granted = PeerSet {
        needs: [binding.clone()].into(),
        records: [binding.clone()].into(),
    };
    let resource = d.secrets[0].resource.clone();
    let model = granted_external(resource);
    let converged = converge(&inputs(&d, &s, false, &peer_granted), model);
    assert!(
        converged.record.bindings.contains(&binding),
        "shared ownership recorded"
    );
    let teardown = Teardown::of(&object(&[Kind::External], false));
    // The peer still needs and records it: forgotten, not revoked.
    let c = cleanup::plan(&teardown, &converged, &peer_granted);
    assert_eq!(
        bindings_only(&c.actions),
        [Action::ForgetBinding(binding.clone())]
    );
    // The peer needs it but its record does not hold it yet: kept until it does (no leak, no revoke).
    let needs_only = PeerSet {
        needs: [binding.clone()].into(),
        records: BTreeSet::new(),
    };
    let c = cleanup::plan(&teardown, &converged, &needs_only);
    assert!(bindings_only(&c.actions).is_empty());
    assert_eq!(c.handover, std::slice::from_ref(&binding));
    // Nobody else needs it: the last one revokes it.
    let c = cleanup::plan(&teardown, &converged, &PeerSet::default());
    assert_eq!(bindings_only(&c.actions), [Action::Revoke(binding)]);
}

#[test]
fn dropping_public_access_revokes_the_invoker_at_once_and_an_accessor_once_serving() {
    let peers = PeerSet::default();
    let before = desired(&[Kind::Generate, Kind::Generate], true);
    let s = BTreeMap::new();
    let model = converge(&inputs(&before, &s, false, &peers), Model::default());
    let after = desired(&[Kind::Generate], false);
    let p = plan(&inputs(&after, &s, false, &peers), &model);
    let revoked: Vec<&str> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Revoke(b) => Some(b.role.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        revoked,
        [RUN_INVOKER_ROLE],
        "the accessor waits for the new revision"
    );
    let model = converge(&inputs(&after, &s, false, &peers), model);
    assert!(
        !model
            .record
            .bindings
            .iter()
            .any(|b| b.resource.ends_with("secret-1")),
        "{:?}",
        model.record.bindings
    );
}

#[test]
fn cleanup_deletes_only_what_is_ours() {
    let mut obj = object(&[Kind::Generate, Kind::Generate], false);
    obj.spec.deletion_policy.service = litellm_operator_api::Deletion::Delete;
    obj.spec.deletion_policy.secrets = litellm_operator_api::Deletion::Delete;
    let teardown = Teardown::of(&obj);
    let model = Model {
        secrets: [
            (
                "projects/p-proj/secrets/proxy-secret-0".to_owned(),
                SecretView::Present(SecretState {
                    labels: labels(Some(OURS)),
                    etag: "a".into(),
                    ..SecretState::default()
                }),
            ),
            (
                "projects/p-proj/secrets/proxy-secret-1".to_owned(),
                SecretView::Present(SecretState {
                    labels: labels(Some(THEIRS)),
                    etag: "b".into(),
                    ..SecretState::default()
                }),
            ),
        ]
        .into(),
        service: Some(json!({"labels": labels(None)})),
        ..Model::default()
    };
    let c = cleanup::plan(&teardown, &model, &PeerSet::default());
    assert_eq!(c.actions.len(), 1, "{:?}", c.actions);
    assert!(
        matches!(&c.actions[0], Action::DeleteSecret { secret, .. } if secret.secret == "proxy-secret-0")
    );
    assert_eq!(c.kept.len(), 2, "{:?}", c.kept);
}

// ---------------------------------------------------------------------------------------------------------------
// Invariants, over generated worlds.

/// Whose a generated Google resource is.
#[derive(Clone, Copy, Debug)]
enum Whose {
    Ours,
    Unlabelled,
    Theirs,
}

fn whose() -> impl Strategy<Value = Whose> {
    prop_oneof![Just(Whose::Ours), Just(Whose::Unlabelled), Just(Whose::Theirs)]
}

fn owner_of(w: Whose) -> Option<&'static str> {
    match w {
        Whose::Ours => Some(OURS),
        Whose::Unlabelled => None,
        Whose::Theirs => Some(THEIRS),
    }
}

#[derive(Clone, Debug)]
struct ObservedSecret {
    exists: bool,
    whose: Whose,
    states: Vec<u8>,
    newest_is_source: bool,
    /// The record's pin: an index into `states`, and its mark (none, `rotation:r1`, `rotation:r2`).
    pin: Option<(usize, u8)>,
}

#[derive(Clone, Debug)]
struct World {
    kinds: Vec<Kind>,
    public: bool,
    adopt: bool,
    secrets: Vec<ObservedSecret>,
    service: Option<(Whose, bool)>,
    present: Vec<bool>,
    recorded: Vec<bool>,
    peer_needs: Vec<bool>,
    peer_records: Vec<bool>,
}

fn world() -> impl Strategy<Value = World> {
    let kind = prop_oneof![
        Just(Kind::FromSecret),
        Just(Kind::Generate),
        Just(Kind::Rotated),
        Just(Kind::External)
    ];
    (
        proptest::collection::vec(kind, 1..5),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(mut kinds, config, public, adopt)| {
            if config {
                kinds.push(Kind::Config);
            }
            let n = kinds.len();
            let secret = (
                any::<bool>(),
                whose(),
                proptest::collection::vec(0u8..3, 0..5),
                any::<bool>(),
                proptest::option::of((0usize..5, 0u8..3)),
            )
                .prop_map(|(exists, whose, states, newest_is_source, pin)| ObservedSecret {
                    exists,
                    whose,
                    states,
                    newest_is_source,
                    pin,
                });
            // Bindings: the desired ones (n accessors + the invoker) and two foreign ones.
            let b = n + 3;
            (
                Just(kinds),
                Just(public),
                Just(adopt),
                proptest::collection::vec(secret, n),
                proptest::option::of((whose(), any::<bool>())),
                proptest::collection::vec(any::<bool>(), b),
                proptest::collection::vec(any::<bool>(), b),
                proptest::collection::vec(any::<bool>(), b),
                proptest::collection::vec(any::<bool>(), b),
            )
                .prop_map(
                    |(
                        kinds,
                        public,
                        adopt,
                        secrets,
                        service,
                        present,
                        recorded,
                        peer_needs,
                        peer_records,
                    )| World {
                        kinds,
                        public,
                        adopt,
                        secrets,
                        service,
                        present,
                        recorded,
                        peer_needs,
                        peer_records,
                    },
                )
        })
}

/// Every binding the world talks about: the desired accessors, the invoker, and two that are not ours.
fn all_bindings(d: &DesiredState) -> Vec<AppliedBinding> {
    let mut all: Vec<AppliedBinding> = d
        .secrets
        .iter()
        .map(|s| AppliedBinding {
            resource: s.resource.clone(),
            role: SECRET_ACCESSOR_ROLE.into(),
            member: sa(),
        })
        .collect();
    all.push(AppliedBinding {
        resource: d.service_resource.clone(),
        role: RUN_INVOKER_ROLE.into(),
        member: "allUsers".into(),
    });
    all.push(accessor(
        "secret-0",
        "serviceAccount:other@p-proj.iam.gserviceaccount.com",
    ));
    all.push(accessor("runbook-secret", &sa()));
    all
}

struct Built {
    desired: DesiredState,
    sources: BTreeMap<String, Source>,
    model: Model,
    peers: PeerSet,
}

fn build(w: &World) -> Built {
    let d = desired(&w.kinds, w.public);
    let sources = sources(&d, 1);
    let all = all_bindings(&d);
    let mut model = Model::default();
    for (i, (secret, observed)) in d.secrets.iter().zip(&w.secrets).enumerate() {
        if !observed.exists {
            continue;
        }
        let versions: Vec<VersionView> = observed
            .states
            .iter()
            .enumerate()
            .rev()
            .map(|(n, s)| VersionView {
                number: n as u64 + 1,
                state: match s {
                    0 => VersionState::Enabled,
                    1 => VersionState::Disabled,
                    _ => VersionState::Destroyed,
                },
                created: Some(1_700_000_000 + n as i64 * 86_400),
            })
            .collect();
        if let Some((at, mark)) = observed.pin.filter(|(at, _)| *at < observed.states.len()) {
            model.record.pins.push(PinnedSecret {
                env: secret.key().to_owned(),
                secret: secret.resource.clone(),
                version: Some((at + 1).to_string()),
                source_resource_version: match mark {
                    0 => None,
                    m => Some(format!("rotation:r{m}")),
                },
                version_create_time: None,
            });
        }
        let state = SecretState {
            labels: if matches!(secret.source, DesiredSource::External { .. }) {
                BTreeMap::new()
            } else {
                labels(owner_of(observed.whose))
            },
            etag: format!("etag-{i}"),
            newest_payload: versions
                .iter()
                .any(|v| v.state == VersionState::Enabled)
                .then(|| {
                    if observed.newest_is_source {
                        value(i, 1)
                    } else {
                        value(i, 0)
                    }
                }),
            versions,
        };
        model
            .secrets
            .insert(secret.resource.clone(), SecretView::Present(state));
        model
            .policies
            .insert(secret.resource.clone(), PolicyView::default());
    }
    if let Some((whose, ready)) = w.service {
        let body = json!({"labels": labels(owner_of(whose)), "template": {"containers": [{"image": "old"}]}});
        model.service = Some(if ready { serving(body) } else { body });
        model
            .policies
            .insert(d.service_resource.clone(), PolicyView::default());
    }
    let mut peers = PeerSet::default();
    for (i, b) in all.iter().enumerate() {
        if w.present[i]
            && let Some(p) = model.policies.get_mut(&b.resource)
        {
            p.0.insert((b.role.clone(), b.member.clone()));
        }
        if w.recorded[i] {
            model.record.bindings.insert(b.clone());
        }
        if w.peer_needs[i] {
            peers.needs.insert(b.clone());
        }
        if w.peer_records[i] {
            peers.records.insert(b.clone());
        }
    }
    Built {
        desired: d,
        sources,
        model,
        peers,
    }
}

/// Whose the resource an action writes is, in the model it was planned from.
fn owner_in(model: &Model, resource: &str) -> Option<Ownership> {
    if resource.contains("/services/") {
        let live = model.service.as_ref()?;
        let labels: BTreeMap<String, String> =
            serde_json::from_value(live["labels"].clone()).unwrap_or_default();
        return Some(Ownership::of(&labels, OURS));
    }
    match model.secret(resource) {
        SecretView::Present(s) => Some(Ownership::of(&s.labels, OURS)),
        _ => None,
    }
}

/// Checks one plan's invariants against the model it was planned from.
fn check(b: &Built, adopt: bool, model: &Model, p: &Plan) -> Result<(), TestCaseError> {
    let adopting: BTreeSet<String> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::AdoptSecret { secret, .. } => Some(secret.to_string()),
            _ => None,
        })
        .collect();
    for action in &p.actions {
        let resource = action.resource();
        let is_binding = matches!(
            action,
            Action::Grant(_) | Action::Revoke(_) | Action::RecordBinding(_) | Action::ForgetBinding(_)
        );
        if !is_binding {
            match owner_in(model, &resource) {
                Some(Ownership::Theirs(_)) => {
                    return Err(TestCaseError::fail(format!(
                        "{action:?} writes another deployment's {resource}"
                    )));
                }
                Some(Ownership::Unlabelled) => {
                    let external = b.desired.secrets.iter().any(|s| {
                        s.resource == resource && matches!(s.source, DesiredSource::External { .. })
                    });
                    prop_assert!(!external, "external secrets are never written: {action:?}");
                    prop_assert!(
                        adopt && (adopting.contains(&resource) || resource.contains("/services/")),
                        "{action:?} writes unlabelled {resource} without adoption"
                    );
                }
                _ => {}
            }
        }
        match action {
            Action::Revoke(binding) => {
                prop_assert!(
                    model.record.bindings.contains(binding),
                    "revoked what the record does not hold"
                );
                prop_assert!(!b.peers.needs.contains(binding), "revoked what a peer needs");
            }
            Action::AddVersion {
                secret, env, value, ..
            } => {
                let SecretView::Present(state) = model.secret(&secret.to_string()) else {
                    continue;
                };
                match value {
                    NewValue::Source(payload) => {
                        let same = state.newest_enabled().is_some()
                            && state.newest_payload.as_ref() == Some(payload);
                        prop_assert!(!same, "added the value the newest enabled version holds");
                    }
                    NewValue::Generate(g) => {
                        // A first value, or one per rotation: the recorded pin's mark is not the rotation asked
                        // for, and no enabled version is newer than the pin (one a stopped pass added).
                        let wanted = format!("rotation:{}", g.rotation);
                        let rotation = !g.rotation.is_empty()
                            && model
                                .record
                                .pin(env, &secret.to_string())
                                .is_some_and(|(n, mark)| {
                                    mark != Some(wanted.as_str())
                                        && state.newest_enabled().is_none_or(|v| v <= n)
                                });
                        prop_assert!(state.versions.is_empty() || rotation, "a second generated value");
                    }
                }
            }
            Action::DisableVersion { secret, number, .. } => {
                let line = p
                    .secrets
                    .iter()
                    .find(|s| s.resource == secret.to_string())
                    .unwrap();
                prop_assert_ne!(
                    line.pin.as_ref().ok().map(|p| p.version),
                    Some(*number),
                    "disabled the pin"
                );
                let live = model.service.as_ref().unwrap();
                prop_assert!(
                    !serving_refs(live).contains(&(secret.to_string(), number.to_string())),
                    "disabled the version the serving revision uses"
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// `(secret, version)` of every secret the service reads: env vars and the configuration's volume.
fn serving_refs(live: &Value) -> Vec<(String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut refs: Vec<(String, String)> = live["template"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["valueSource"]["secretKeyRef"])
        .filter(|r| r.is_object())
        .map(|r| (text(&r["secret"]), text(&r["version"])))
        .collect();
    for volume in live["template"]["volumes"].as_array().into_iter().flatten() {
        for item in volume["secret"]["items"].as_array().into_iter().flatten() {
            refs.push((text(&volume["secret"]["secret"]), text(&item["version"])));
        }
    }
    refs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_plan_touches_what_is_not_ours(w in world()) {
        let b = build(&w);
        let i = inputs(&b.desired, &b.sources, w.adopt, &b.peers);
        let mut model = b.model.clone();
        for phase in Phase::APPLY {
            let p = plan(&i, &model);
            check(&b, w.adopt, &model, &p)?;
            for action in p.phase(phase).cloned().collect::<Vec<_>>() {
                model.absorb(&action, &Effect::predicted(&action));
            }
        }
    }

    #[test]
    fn executing_a_plan_and_planning_again_gives_an_empty_plan(w in world()) {
        let b = build(&w);
        let i = inputs(&b.desired, &b.sources, w.adopt, &b.peers);
        let (_, after) = predict(&i, b.model.clone(), &Phase::APPLY);
        let again = plan(&i, &after);
        prop_assert!(again.is_empty(), "{:?}", again.actions);
    }

    #[test]
    fn a_converged_state_plans_nothing(w in world()) {
        let b = build(&w);
        let i = inputs(&b.desired, &b.sources, w.adopt, &b.peers);
        let model = converge(&i, b.model.clone());
        let p = plan(&i, &model);
        prop_assert!(p.is_empty(), "{:?}", p.actions);
        if p.conflict.is_none() && p.secrets.iter().all(|s| s.pin.is_ok()) {
            prop_assert!(p.converged(), "{:?}", p.service);
        }
    }

    #[test]
    fn cleanup_never_deletes_or_revokes_what_is_not_ours(w in world(), delete in any::<bool>()) {
        let b = build(&w);
        let mut obj = object(&w.kinds, w.public);
        if delete {
            obj.spec.deletion_policy.service = litellm_operator_api::Deletion::Delete;
            obj.spec.deletion_policy.secrets = litellm_operator_api::Deletion::Delete;
        }
        let c = cleanup::plan(&Teardown::of(&obj), &b.model, &b.peers);
        for action in &c.actions {
            match action {
                Action::Revoke(binding) => {
                    prop_assert!(b.model.record.bindings.contains(binding));
                    prop_assert!(!b.peers.needs.contains(binding));
                }
                Action::DeleteSecret { .. } | Action::DeleteService { .. } => {
                    prop_assert_eq!(owner_in(&b.model, &action.resource()), Some(Ownership::Ours));
                }
                Action::ForgetBinding(binding) => {
                    prop_assert!(b.peers.needs.contains(binding) && b.peers.records.contains(binding));
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}

/// The planner stays pure: no Kubernetes or Google client, no runtime, no clock; of `crates/gcp` only plain names
/// and values.
#[test]
fn the_planner_imports_neither_kube_nor_google_clients() {
    let sources = [
        ("mod.rs", include_str!("mod.rs")),
        ("action.rs", include_str!("action.rs")),
        ("cleanup.rs", include_str!("cleanup.rs")),
        ("desired.rs", include_str!("desired.rs")),
        ("iam.rs", include_str!("iam.rs")),
        ("model.rs", include_str!("model.rs")),
        ("outcome.rs", include_str!("outcome.rs")),
        ("ownership.rs", include_str!("ownership.rs")),
        ("rollout.rs", include_str!("rollout.rs")),
        ("secrets.rs", include_str!("secrets.rs")),
        ("service.rs", include_str!("service.rs")),
        ("service_diff.rs", include_str!("service_diff.rs")),
    ];
    let allowed_from_gcp = [
        "SecretName",
        "ServiceName",
        "SecretPayload",
        "VersionState",
        "MAX_PAYLOAD_BYTES",
        "self",
    ];
    for (file, text) in sources {
        for forbidden in [
            "kube",
            "k8s_openapi",
            "google_cloud",
            "tokio",
            "reqwest",
            "SystemTime",
            "Instant::now",
        ] {
            assert!(!text.contains(forbidden), "plan/{file} uses {forbidden}");
        }
        for (at, _) in text.match_indices("litellm_operator_gcp::") {
            let rest = &text[at + "litellm_operator_gcp::".len()..];
            let names: Vec<&str> = if let Some(list) = rest.strip_prefix('{') {
                list[..list.find('}').unwrap()]
                    .split(',')
                    .map(str::trim)
                    .collect()
            } else {
                vec![
                    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap(),
                ]
            };
            for name in names.into_iter().filter(|n| !n.is_empty()) {
                assert!(
                    allowed_from_gcp.contains(&name),
                    "plan/{file} uses litellm_operator_gcp::{name}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// LiteLLM's configuration (`spec.config`): one more owned secret, given by the spec or a ConfigMap.

const CONFIG_KEY: &str = "/etc/litellm/config.yaml";

fn config_yaml(answer: &str) -> String {
    format!(
        "model_list:\n  - model_name: demo\n    litellm_params:\n      model: openai/x\n      mock_response: {answer}\n"
    )
}

/// `kinds` with `config` as `spec.config`, at `generation`.
fn with_config(kinds: &[Kind], config: Value, generation: i64) -> DesiredState {
    let mut obj = object(kinds, false);
    obj.metadata.generation = Some(generation);
    obj.spec.config = Some(serde_json::from_value(config).unwrap());
    desired_state(&obj).unwrap()
}

/// The given values as a front end hands them over: `fromSecret` values of `generation`, and the spec's own.
fn given(d: &DesiredState, generation: u8) -> BTreeMap<String, Source> {
    let mut s = sources(d, generation);
    s.extend(
        d.secrets
            .iter()
            .filter_map(|x| Some((x.key().to_owned(), x.source.spec_value()?))),
    );
    s
}

fn config_versions(model: &Model, d: &DesiredState) -> Vec<u64> {
    let SecretView::Present(state) = model.secret(&d.secrets.last().unwrap().resource) else {
        panic!("no config secret")
    };
    state.versions.iter().map(|v| v.number).collect()
}

#[test]
fn a_config_is_created_versioned_granted_and_mounted_like_a_from_secret_value() {
    let d = with_config(&[Kind::Generate], json!({"inline": config_yaml("one")}), 1);
    let s = given(&d, 1);
    let peers = PeerSet::default();
    let i = inputs(&d, &s, false, &peers);
    let (actions, model) = predict(&i, Model::default(), &Phase::APPLY);
    let kinds: Vec<ActionKind> = actions.iter().map(Action::kind).collect();
    assert_eq!(
        kinds,
        [
            ActionKind::CreateSecret,
            ActionKind::CreateSecret,
            ActionKind::GenerateVersion,
            ActionKind::AddVersion,
            ActionKind::Grant,
            ActionKind::Grant,
            ActionKind::CreateService,
        ]
    );
    let Some(Action::AddVersion {
        secret, env, value, ..
    }) = actions.iter().find(|a| a.kind() == ActionKind::AddVersion)
    else {
        panic!()
    };
    assert_eq!(secret.to_string(), "projects/p-proj/secrets/proxy-config");
    assert_eq!(env, CONFIG_KEY);
    assert_eq!(value.payload().unwrap().expose(), config_yaml("one").as_bytes());
    // The plan's lines name the secret and the file, never the YAML.
    assert!(actions.iter().all(|a| !a.to_string().contains("mock_response")));
    let Some(Action::CreateService { body, .. }) = actions.last() else {
        panic!()
    };
    assert_eq!(
        body["template"]["volumes"][0]["secret"]["items"],
        json!([{"version": "1", "path": "config.yaml"}])
    );
    assert_eq!(body["template"]["containers"][0]["args"][1], CONFIG_KEY);

    let converged = converge(&i, model);
    let last = plan(&i, &converged);
    assert!(last.is_empty() && last.converged(), "{last:?}");
    let pin = converged
        .record
        .pins
        .iter()
        .find(|p| p.env == CONFIG_KEY)
        .unwrap();
    assert_eq!(pin.version.as_deref(), Some("1"));
    assert_eq!(pin.source_resource_version.as_deref(), Some("generation-1"));
}

#[test]
fn a_changed_config_adds_a_version_and_rolls_a_revision_an_unchanged_one_nothing() {
    let peers = PeerSet::default();
    let d1 = with_config(&[Kind::FromSecret], json!({"inline": config_yaml("one")}), 1);
    let s1 = given(&d1, 1);
    let model = converge(&inputs(&d1, &s1, false, &peers), Model::default());

    // Unchanged: nothing, and nothing to read either.
    let p = plan(&inputs(&d1, &s1, false, &peers), &model);
    assert!(p.is_empty(), "{:?}", p.actions);
    let config = d1.secrets.last().unwrap();
    let SecretView::Present(state) = model.secret(&config.resource) else {
        panic!()
    };
    assert!(!secrets::needs_payload(
        config,
        s1.get(CONFIG_KEY),
        state,
        &model.record
    ));

    // Another spec edit (a new generation), same YAML: the value is compared, nothing is written.
    let d2 = with_config(&[Kind::FromSecret], json!({"inline": config_yaml("one")}), 2);
    let s2 = given(&d2, 1);
    let config = d2.secrets.last().unwrap();
    assert!(secrets::needs_payload(
        config,
        s2.get(CONFIG_KEY),
        state,
        &model.record
    ));
    let p = plan(&inputs(&d2, &s2, false, &peers), &model);
    assert!(p.is_empty(), "{:?}", p.actions);
    let model = converge(&inputs(&d2, &s2, false, &peers), model);
    assert_eq!(config_versions(&model, &d2), [1]);

    // A changed YAML: one new version of the config only, and a revision pinned to it.
    let d3 = with_config(&[Kind::FromSecret], json!({"inline": config_yaml("two")}), 3);
    let s3 = given(&d3, 1);
    let i3 = inputs(&d3, &s3, false, &peers);
    let p = plan(&i3, &model);
    assert_eq!(
        p.actions.iter().map(Action::kind).collect::<Vec<_>>(),
        [ActionKind::AddVersion, ActionKind::UpdateService]
    );
    let Action::UpdateService { body, change, .. } = &p.actions[1] else {
        panic!()
    };
    assert!(change.rolls_revision(), "{change:?}");
    assert_eq!(
        body["template"]["volumes"][0]["secret"]["items"][0]["version"],
        "2"
    );
    let model = converge(&i3, model);
    assert_eq!(config_versions(&model, &d3), [2, 1]);
    assert!(plan(&i3, &model).converged());
    // The other secret kept its version.
    assert_eq!(model.record.pins[0].version.as_deref(), Some("1"));
}

#[test]
fn a_config_map_value_is_checked_before_any_call_and_never_quoted() {
    let d = with_config(
        &[Kind::Generate],
        json!({"configMapKeyRef": {"name": "litellm", "key": "config.yaml"}}),
        1,
    );
    let peers = PeerSet::default();
    let missing: BTreeMap<String, Source> = BTreeMap::new();
    let p = plan(&inputs(&d, &missing, false, &peers), &Model::default());
    let problem = p.secrets[1].pin.as_ref().unwrap_err();
    assert_eq!(problem.kind, ProblemKind::SourceMissing);
    assert!(
        problem.message.contains("ConfigMap litellm key \"config.yaml\""),
        "{}",
        problem.message
    );
    assert!(matches!(p.service, ServiceState::WaitingForSecrets));

    let bad: BTreeMap<String, Source> = [(
        CONFIG_KEY.to_owned(),
        Source::Value {
            payload: SecretPayload::new(b"general_settings:\n  master_key: sk-hidden\n bad: [\n".to_vec()),
            revision: Some("7".into()),
        },
    )]
    .into();
    let p = plan(&inputs(&d, &bad, false, &peers), &Model::default());
    let problem = p.secrets[1].pin.as_ref().unwrap_err();
    assert_eq!(problem.kind, ProblemKind::InvalidSpec);
    assert!(
        problem
            .message
            .starts_with("ConfigMap litellm key \"config.yaml\": not valid YAML at line 3 column 2"),
        "{}",
        problem.message
    );
    assert!(!problem.message.contains("sk-hidden"));
    assert!(
        !p.actions.iter().any(|a| a.resource().ends_with("/proxy-config")),
        "{:?}",
        p.actions
    );
}

#[test]
fn dropping_the_config_rolls_a_revision_without_it_and_then_revokes_its_access() {
    let peers = PeerSet::default();
    let d = with_config(&[Kind::Generate], json!({"inline": config_yaml("one")}), 1);
    let s = given(&d, 1);
    let model = converge(&inputs(&d, &s, false, &peers), Model::default());

    let mut obj = object(&[Kind::Generate], false);
    obj.metadata.generation = Some(2);
    let plain = desired_state(&obj).unwrap();
    let none = BTreeMap::new();
    let i = inputs(&plain, &none, false, &peers);
    let p = plan(&i, &model);
    let Some(Action::UpdateService { body, change, .. }) = p.actions.first() else {
        panic!("{:?}", p.actions)
    };
    assert!(change.rolls_revision());
    assert!(body["template"].get("volumes").is_none(), "{body}");
    assert!(body["template"]["containers"][0].get("args").is_none(), "{body}");
    let converged = converge(&i, model);
    let config_access = accessor("proxy-config", &sa());
    assert!(!converged.record.bindings.contains(&config_access));
    assert!(converged.record.pins.iter().all(|p| p.env != CONFIG_KEY));
    assert!(plan(&i, &converged).converged());
}
