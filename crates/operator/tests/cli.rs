//! `litellm-operator plan`, `apply` and `import`: the real binary against an in-process emulator.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use gcp_emulator::Emulator;
use litellm_operator_gcp::{
    CloudRun, CredentialsSource, Gcp, GcpConfig, IamPolicies, NewSecret, PolicyTarget, SecretName,
    SecretPayload, SecretStore, SecretVersionStore, ServiceName,
};
use serde_json::{Value, json};

/// Part of the database URL in the fixtures: it must never be printed.
const CANARY: &str = "canary-db-4f1d9e";
const SA: &str = "litellm-run@my-project.iam.gserviceaccount.com";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn cli(emu: &Emulator, args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::process::Command::new(env!("CARGO_BIN_EXE_litellm-operator"))
        .args(args)
        .args(state_args(emu, args))
        .arg("--gcp-endpoint")
        .arg(emu.url())
        .env_remove("LITELLM_GCP_ENDPOINT")
        .output()
        .await
        .unwrap();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    };
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(CANARY), "a secret value was printed:\n{text}");
    }
    run
}

/// The emulator of a CLI test: defaults, with the fixtures' runtime account existing.
fn emulator_config() -> gcp_emulator::Config {
    gcp_emulator::Config {
        service_accounts: vec![SA.to_owned()],
        ..gcp_emulator::Config::default()
    }
}

/// `plan` and `apply` keep their record in a state file: one per emulator (so per test), outside the tree.
fn state_args(emu: &Emulator, args: &[&str]) -> Vec<String> {
    if !matches!(args.first(), Some(&"plan") | Some(&"apply")) {
        return Vec::new();
    }
    vec!["--state".to_owned(), state_file(emu).display().to_string()]
}

fn state_file(emu: &Emulator) -> PathBuf {
    let port = emu.url().rsplit(':').next().unwrap_or_default().to_owned();
    // The process id too: an earlier run's emulator may have had the same port, and its record is not ours.
    let pid = std::process::id();
    std::env::temp_dir().join(format!("litellm-operator-cli-test-{pid}-{port}.state.json"))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Google writes the emulator has answered (any outcome).
fn writes(emu: &Emulator) -> u64 {
    emu.state()
        .calls()
        .iter()
        .filter(|(method, _)| {
            let verb = method.rsplit('.').next().unwrap_or_default();
            [
                "Create", "Update", "Delete", "Add", "Set", "Enable", "Disable", "Destroy",
            ]
            .iter()
            .any(|w| verb.starts_with(w))
        })
        .flat_map(|(_, codes)| codes.values())
        .sum()
}

fn all_calls(emu: &Emulator) -> u64 {
    emu.state().calls().values().flat_map(|c| c.values()).sum()
}

async fn google(emu: &Emulator) -> Gcp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = GcpConfig {
        endpoint: Some(emu.url().parse().unwrap()),
        credentials: CredentialsSource::Anonymous,
        ..GcpConfig::default()
    };
    Gcp::connect(&config, &mut prometheus_client::registry::Registry::default())
        .await
        .unwrap()
}

/// Lines that announce a change (`+` or `~`), trimmed.
fn changes(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("+ ") || l.starts_with("~ "))
        .map(str::to_owned)
        .collect()
}

/// An external secret someone else manages, with two versions.
async fn seed_external(gcp: &Gcp) {
    let name = SecretName::new("my-project", "tavily-api-key");
    gcp.create_secret(&name, &NewSecret::default()).await.unwrap();
    gcp.add_version(&name, &SecretPayload::from("tvly-1"))
        .await
        .unwrap();
    gcp.add_version(&name, &SecretPayload::from("tvly-2"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_changes_apply_makes_them_once_and_rotation_adds_one_version() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let gcp = google(&emu).await;
    seed_external(&gcp).await;
    let stack = fixture("stack.yaml");
    let before = writes(&emu);

    let plan = cli(&emu, &["plan", "-f", path(&stack)]).await;
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    let s = "projects/my-project/secrets";
    let member = format!("serviceAccount:{SA}");
    assert_eq!(
        changes(&plan.stdout),
        [
            format!("+ create secret {s}/database-url"),
            format!("+ create secret {s}/litellm-master-key"),
            format!("+ add version 1 to {s}/database-url (DATABASE_URL)"),
            format!(
                "+ generate version 1 of {s}/litellm-master-key (LITELLM_MASTER_KEY, 48 random characters)"
            ),
            format!("+ grant roles/secretmanager.secretAccessor to {member} on {s}/database-url"),
            format!("+ grant roles/secretmanager.secretAccessor to {member} on {s}/litellm-master-key"),
            format!("+ grant roles/secretmanager.secretAccessor to {member} on {s}/tavily-api-key"),
            "+ create service projects/my-project/locations/us-central1/services/litellm-proxy".to_owned(),
            "+ grant roles/run.invoker to allUsers on projects/my-project/locations/us-central1/services/litellm-proxy"
                .to_owned(),
        ]
    );
    assert!(
        plan.stdout
            .contains(&format!("= {s}/tavily-api-key version 2 (TAVILY_API_KEY)")),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.ends_with("9 changes to apply.\n"), "{}", plan.stdout);
    assert_eq!(writes(&emu), before, "plan wrote to Google");

    let json_plan = cli(&emu, &["plan", "-f", path(&stack), "-o", "json"]).await;
    assert_eq!(json_plan.code, 2);
    let doc: Value = serde_json::from_str(&json_plan.stdout).unwrap();
    assert_eq!(doc["changes"], 9);
    assert_eq!(doc["deployments"][0]["service"]["action"], "create");
    assert_eq!(doc["deployments"][0]["secrets"][2]["version"], "2");
    assert_eq!(writes(&emu), before, "plan -o json wrote to Google");

    let apply = cli(&emu, &["apply", "-f", path(&stack)]).await;
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(
        apply.stdout.contains("status: revision litellm-proxy-00001-"),
        "{}",
        apply.stdout
    );
    assert!(apply.stdout.contains(" Ready, url "), "{}", apply.stdout);
    assert!(apply.stderr.contains("Waiting for revision"), "{}", apply.stderr);
    let generated = emu
        .state()
        .secret_payload("projects/my-project/secrets/litellm-master-key", "latest")
        .unwrap();
    let generated = String::from_utf8(generated).unwrap();
    assert!(generated.starts_with("sk-") && generated.len() == 51);
    assert!(!apply.stdout.contains(&generated) && !apply.stderr.contains(&generated));
    let live = gcp
        .get_service(&ServiceName::new("my-project", "us-central1", "litellm-proxy"))
        .await
        .unwrap()
        .unwrap();
    let env = &live.template.unwrap().containers[0].env;
    let pinned: Vec<(String, String)> = env
        .iter()
        .filter_map(|e| {
            let r = e.value_source()?.secret_key_ref.as_ref()?;
            Some((e.name.clone(), r.version.clone()))
        })
        .collect();
    assert_eq!(
        pinned,
        [
            ("DATABASE_URL".to_owned(), "1".to_owned()),
            ("LITELLM_MASTER_KEY".to_owned(), "1".to_owned()),
            ("TAVILY_API_KEY".to_owned(), "2".to_owned())
        ]
    );

    // Converged: plan says so, and a second apply writes nothing.
    let plan = cli(&emu, &["plan", "-f", path(&stack)]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(changes(&plan.stdout).is_empty(), "{}", plan.stdout);
    assert!(plan.stdout.ends_with("No changes.\n"));
    let settled = writes(&emu);
    let again = cli(&emu, &["apply", "-f", path(&stack)]).await;
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.ends_with("No changes.\n"), "{}", again.stdout);
    assert_eq!(writes(&emu), settled, "a converged apply wrote to Google");
    assert_eq!(
        emu.state().call_count("SecretManagerService.AddSecretVersion"),
        4,
        "2 seeded + 2 applied"
    );

    // Rotation: a new value in the Kubernetes Secret adds exactly one version and re-pins the service.
    let dir = tempfile::tempdir().unwrap();
    let rotated = dir.path().join("stack.yaml");
    let text = std::fs::read_to_string(&stack).unwrap();
    std::fs::write(&rotated, text.replace("10.0.0.5", "10.0.0.7")).unwrap();
    let plan = cli(&emu, &["plan", "-f", path(&rotated)]).await;
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert_eq!(
        changes(&plan.stdout),
        [
            format!("+ add version 2 to {s}/database-url (DATABASE_URL)"),
            "~ update service projects/my-project/locations/us-central1/services/litellm-proxy (new revision): \
             template.containers[0].env[0].valueSource.secretKeyRef.version"
                .to_owned(),
        ]
    );
    let apply = cli(&emu, &["apply", "-f", path(&rotated)]).await;
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(
        apply.stdout.contains("status: revision litellm-proxy-00002-"),
        "{}",
        apply.stdout
    );
    assert_eq!(
        emu.state()
            .secret_payload("projects/my-project/secrets/database-url", "2")
            .unwrap(),
        b"postgresql://litellm:canary-db-4f1d9e@10.0.0.7:5432/litellm"
    );
    let plan = cli(&emu, &["plan", "-f", path(&rotated)]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);

    // A generated key rotates by its `rotation` text: one new value, and the state file records the text, so the
    // next plan has nothing to do.
    let text = std::fs::read_to_string(&rotated).unwrap();
    std::fs::write(
        &rotated,
        text.replace(
            r#"generate: {length: 48, prefix: "sk-"}"#,
            r#"generate: {length: 48, prefix: "sk-", rotation: "2026-12-01"}"#,
        ),
    )
    .unwrap();
    let plan = cli(&emu, &["plan", "-f", path(&rotated)]).await;
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert_eq!(
        changes(&plan.stdout),
        [
            format!(
                "+ generate version 2 of {s}/litellm-master-key (LITELLM_MASTER_KEY, 48 random characters, \
                 rotation 2026-12-01)"
            ),
            "~ update service projects/my-project/locations/us-central1/services/litellm-proxy (new revision): \
             template.containers[0].env[2].valueSource.secretKeyRef.version"
                .to_owned(),
        ]
    );
    let apply = cli(&emu, &["apply", "-f", path(&rotated)]).await;
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let second = emu
        .state()
        .secret_payload("projects/my-project/secrets/litellm-master-key", "2")
        .unwrap();
    assert_ne!(second, generated.as_bytes());
    let settled = writes(&emu);
    let plan = cli(&emu, &["plan", "-f", path(&rotated)]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    let again = cli(&emu, &["apply", "-f", path(&rotated)]).await;
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(writes(&emu), settled, "a rotation generates one value, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_per_problem_with_file_and_field_and_nothing_is_called() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let missing = fixture("no-such-file.yaml");
    let cases: [(PathBuf, &[&str]); 5] = [
        (missing.clone(), &["no-such-file.yaml: cannot read"]),
        (
            fixture("invalid-yaml.yaml"),
            &["invalid-yaml.yaml: document 1: invalid YAML"],
        ),
        (
            fixture("invalid-spec.yaml"),
            &[
                "invalid-spec.yaml: LiteLLMDeployment llm/litellm-proxy: spec.region",
                "spec.service.env.DATABASE_URL",
            ],
        ),
        (
            fixture("missing-secret.yaml"),
            &[
                "missing-secret.yaml: LiteLLMDeployment llm/litellm-proxy: spec.secrets[0].fromSecret: Kubernetes \
                 Secret llm/database is not in the given files",
                "missing-secret.yaml: LiteLLMDeployment llm/litellm-proxy: spec.secrets[1].fromSecret: Kubernetes \
                 Secret llm/litellm-credentials has no key \"ui-pass\"",
            ],
        ),
        (
            fixture("bad-secret-data.yaml"),
            &[
                "bad-secret-data.yaml: document 1: Secret llm/litellm-credentials: not a valid Kubernetes Secret",
            ],
        ),
    ];
    for (file, expected) in cases {
        for command in ["plan", "apply"] {
            let run = cli(&emu, &[command, "-f", path(&file)]).await;
            assert_eq!(run.code, 1, "{command} {file:?}: {}{}", run.stdout, run.stderr);
            for line in expected {
                assert!(
                    run.stderr.contains(line),
                    "{command} {file:?}: want {line:?} in\n{}",
                    run.stderr
                );
            }
            assert!(
                run.stderr.lines().all(|l| l.starts_with("error: ")),
                "{}",
                run.stderr
            );
            assert!(run.stdout.is_empty(), "{}", run.stdout);
        }
    }
    // Several files: every problem of every file at once.
    let run = cli(
        &emu,
        &[
            "plan",
            "-f",
            path(&fixture("invalid-spec.yaml")),
            path(&fixture("missing-secret.yaml")),
            path(&missing),
        ],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.lines().count() >= 5, "{}", run.stderr);
    assert_eq!(all_calls(&emu), 0, "bad input reached Google");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_adopts_a_runbook_service_without_touching_its_secrets() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let gcp = google(&emu).await;
    // The runbook: gcloud secrets create + versions add, add-iam-policy-binding, run deploy --set-secrets.
    let db = SecretName::new("my-project", "litellm-db-url");
    let master = SecretName::new("my-project", "litellm-master-key");
    for (name, values) in [
        (&db, ["postgresql://old", "postgresql://canary-db-4f1d9e"]),
        (&master, ["sk-1", "sk-2"]),
    ] {
        gcp.create_secret(name, &NewSecret::default()).await.unwrap();
        for v in values {
            gcp.add_version(name, &SecretPayload::from(v)).await.unwrap();
        }
        gcp.add_member(
            &PolicyTarget::Secret(name.clone()),
            "roles/secretmanager.secretAccessor",
            &format!("serviceAccount:{SA}"),
        )
        .await
        .unwrap();
    }
    let service = ServiceName::new("my-project", "us-central1", "litellm");
    let deployed = json!({
        "template": {
            "serviceAccount": SA,
            "scaling": {"minInstanceCount": 1, "maxInstanceCount": 5},
            "maxInstanceRequestConcurrency": 40,
            "containers": [{
                "image": "ghcr.io/berriai/litellm:main-v1.74.0",
                "ports": [{"containerPort": 4000}],
                "resources": {"limits": {"cpu": "2", "memory": "2Gi"}},
                "env": [
                    {"name": "DATABASE_URL", "valueSource": {"secretKeyRef": {"secret": "projects/my-project/secrets/litellm-db-url", "version": "2"}}},
                    {"name": "LITELLM_MASTER_KEY", "valueSource": {"secretKeyRef": {"secret": "litellm-master-key", "version": "latest"}}},
                    {"name": "LITELLM_LOG", "value": "INFO"},
                    {"name": "OPENAI_API_KEY", "value": "sk-proj-canary-db-4f1d9e"}
                ]
            }]
        }
    });
    gcp.create_service(&service, serde_json::from_value(deployed).unwrap())
        .await
        .unwrap();
    gcp.add_member(
        &PolicyTarget::Service(service.clone()),
        "roles/run.invoker",
        "allUsers",
    )
    .await
    .unwrap();
    let seeded_versions = emu.state().call_count("SecretManagerService.AddSecretVersion");

    let before = writes(&emu);
    let import = cli(
        &emu,
        &[
            "import",
            "--project",
            "my-project",
            "--region",
            "us-central1",
            "--service",
            "litellm",
            "--namespace",
            "llm",
        ],
    )
    .await;
    assert_eq!(import.code, 0, "{}", import.stderr);
    assert_eq!(writes(&emu), before, "import wrote to Google");
    assert!(
        import
            .stderr
            .contains("plain env var OPENAI_API_KEY looks like a credential")
            && import.stderr.contains(
                "{env: OPENAI_API_KEY, fromSecret: {name: litellm-credentials, key: openai-api-key}}"
            ),
        "{}",
        import.stderr
    );
    assert!(
        !import.stdout.contains("OPENAI_API_KEY") && !import.stdout.contains("sk-proj"),
        "{}",
        import.stdout
    );
    let manifest: Value = serde_yaml::from_str(&import.stdout).unwrap();
    assert_eq!(manifest["metadata"]["annotations"]["litellm.dev/adopt"], "true");
    assert_eq!(manifest["metadata"]["namespace"], "llm");
    let spec = &manifest["spec"];
    assert_eq!(
        spec["secrets"],
        json!([
            {"env": "DATABASE_URL", "secretId": "litellm-db-url", "external": {"version": "2"}},
            {"env": "LITELLM_MASTER_KEY", "external": {"version": "latest"}}
        ])
    );
    assert_eq!(spec["service"]["env"], json!({"LITELLM_LOG": "INFO"}));
    assert_eq!(spec["service"]["serviceAccount"], SA);
    assert_eq!(spec["service"]["allowUnauthenticated"], true);
    assert_eq!(
        spec["service"]["scaling"],
        json!({"minInstances": 1, "maxInstances": 5, "concurrency": 40})
    );
    assert_eq!(spec["service"]["resources"], json!({"cpu": "2", "memory": "2Gi"}));
    assert_eq!(spec["service"]["image"], "ghcr.io/berriai/litellm:main-v1.74.0");

    // A `latest` reference and a plaintext credential: the first apply must roll a revision, and import says so
    // once, naming every field and why. The missing probes are not among them: the manifest keeps them off.
    let restart = import
        .stderr
        .lines()
        .find(|l| l.contains("the first apply rolls a new revision of"))
        .unwrap_or_else(|| panic!("no restart warning:\n{}", import.stderr));
    assert!(!restart.contains("Probe"), "{restart}");
    assert_eq!(spec["service"]["probes"]["liveness"], json!({"enabled": false}));
    assert_eq!(spec["service"]["probes"]["startup"]["type"], "TCP");
    for part in [
        "projects/my-project/locations/us-central1/services/litellm:",
        "template.containers[0].env (removes OPENAI_API_KEY)",
        "reads LITELLM_MASTER_KEY as `latest`",
        "env vars left out of the manifest",
    ] {
        assert!(restart.contains(part), "want {part:?} in {restart}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("litellm.yaml");
    std::fs::write(&file, &import.stdout).unwrap();
    // Adopting never creates or adds to a secret; the pins stay where they were (latest resolves to 2).
    let plan = cli(&emu, &["plan", "-f", path(&file)]).await;
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    let planned = changes(&plan.stdout);
    // The plan names the plaintext variable the new revision drops (never its value).
    let update = planned
        .iter()
        .find(|l| l.starts_with("~ update service"))
        .unwrap_or_else(|| panic!("{planned:?}"));
    assert!(
        update.starts_with(
            "~ update service projects/my-project/locations/us-central1/services/litellm (new revision): "
        ) && update.contains("template.containers[0].env (removes OPENAI_API_KEY)")
            && !update.contains("Probe"),
        "{update}"
    );
    assert!(
        planned
            .iter()
            .all(|l| !l.contains("create secret") && !l.contains("add version") && !l.starts_with("+ grant")),
        "{planned:?}"
    );
    assert!(
        plan.stdout
            .contains("= projects/my-project/secrets/litellm-db-url version 2")
    );
    assert!(
        plan.stdout
            .contains("= projects/my-project/secrets/litellm-master-key version 2")
    );

    let apply = cli(&emu, &["apply", "-f", path(&file)]).await;
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(
        apply.stderr.contains("(new revision): ") && apply.stderr.contains("(removes OPENAI_API_KEY)"),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stdout.contains("status: revision litellm-00002-"),
        "{}",
        apply.stdout
    );
    let plan = cli(&emu, &["plan", "-f", path(&file)]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    let settled = writes(&emu);
    let again = cli(&emu, &["apply", "-f", path(&file)]).await;
    assert_eq!(again.code, 0);
    assert_eq!(writes(&emu), settled);
    assert_eq!(
        emu.state().call_count("SecretManagerService.AddSecretVersion"),
        seeded_versions
    );
    assert_eq!(emu.state().call_count("SecretManagerService.CreateSecret"), 2);
}

/// A runbook service that already has what a LiteLLMDeployment writes (HTTP probes, numbered secret versions, no
/// plaintext credential): import warns of no restart, `plan` shows only the ownership labels, and `apply` takes
/// it over without a new revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_a_matching_service_rolls_no_revision() {
    // `gcloud run deploy ... --liveness-probe ... --startup-probe ...`.
    takeover_rolls_no_revision(json!({
        "livenessProbe": {"httpGet": {"path": "/health/liveliness", "port": 4000}, "periodSeconds": 10,
                          "timeoutSeconds": 5, "failureThreshold": 3},
        "startupProbe": {"httpGet": {"path": "/health/readiness", "port": 4000}, "periodSeconds": 10,
                         "timeoutSeconds": 5, "failureThreshold": 24}
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_a_service_deployed_without_probes_rolls_no_revision() {
    // The usual runbook: no probes at all; Cloud Run gives the service its default TCP startup probe.
    takeover_rolls_no_revision(json!({})).await;
}

/// A runbook service whose container has `probes` (probe fields), imported, planned and applied: only the
/// ownership labels change, and no revision rolls.
async fn takeover_rolls_no_revision(probes: Value) {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let gcp = google(&emu).await;
    let db = SecretName::new("my-project", "litellm-db-url");
    gcp.create_secret(&db, &NewSecret::default()).await.unwrap();
    gcp.add_version(&db, &SecretPayload::from("postgresql://canary-db-4f1d9e"))
        .await
        .unwrap();
    gcp.add_member(
        &PolicyTarget::Secret(db.clone()),
        "roles/secretmanager.secretAccessor",
        &format!("serviceAccount:{SA}"),
    )
    .await
    .unwrap();
    // `gcloud run deploy --set-secrets DATABASE_URL=litellm-db-url:1`, with the probes given.
    let service = ServiceName::new("my-project", "us-central1", "litellm");
    let mut deployed = json!({
        "template": {
            "serviceAccount": SA,
            "timeout": "300s",
            "scaling": {"minInstanceCount": 1, "maxInstanceCount": 5},
            "maxInstanceRequestConcurrency": 40,
            "containers": [{
                "image": "ghcr.io/berriai/litellm:main-v1.74.0",
                "ports": [{"containerPort": 4000}],
                "resources": {"limits": {"cpu": "2", "memory": "2Gi"}},
                "env": [
                    {"name": "DATABASE_URL", "valueSource": {"secretKeyRef": {"secret": "litellm-db-url", "version": "1"}}},
                    {"name": "LITELLM_LOG", "value": "INFO"}
                ]
            }]
        }
    });
    for (field, probe) in probes.as_object().into_iter().flatten() {
        deployed["template"]["containers"][0][field] = probe.clone();
    }
    gcp.create_service(&service, serde_json::from_value(deployed).unwrap())
        .await
        .unwrap();
    let ready = |gcp: Gcp| {
        let service = service.clone();
        async move {
            for _ in 0..100 {
                let live = gcp.get_service(&service).await.unwrap().unwrap();
                if !live.latest_ready_revision.is_empty() && !live.reconciling {
                    return live;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the runbook's revision never became Ready");
        }
    };
    let before = ready(gcp.clone()).await;

    let import = cli(
        &emu,
        &[
            "import",
            "--project",
            "my-project",
            "--region",
            "us-central1",
            "--service",
            "litellm",
            "--namespace",
            "llm",
        ],
    )
    .await;
    assert_eq!(import.code, 0, "{}", import.stderr);
    assert!(
        !import.stderr.contains("rolls a new revision"),
        "{}",
        import.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("litellm.yaml");
    std::fs::write(&file, &import.stdout).unwrap();

    let plan = cli(&emu, &["plan", "-f", path(&file)]).await;
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert_eq!(
        changes(&plan.stdout),
        [
            "~ update service projects/my-project/locations/us-central1/services/litellm (no new revision): labels"
        ],
        "{}",
        plan.stdout
    );
    let apply = cli(&emu, &["apply", "-f", path(&file)]).await;
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let after = gcp.get_service(&service).await.unwrap().unwrap();
    assert_eq!(
        (&after.latest_created_revision, &after.latest_ready_revision),
        (&before.latest_created_revision, &before.latest_ready_revision),
        "the takeover rolled a revision:\n{}{}",
        apply.stdout,
        apply.stderr
    );
    assert_eq!(
        after.labels.get("managed-by").map(String::as_str),
        Some("litellm-operator")
    );
    let short = before
        .latest_ready_revision
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        apply.stdout.contains(&format!("status: revision {short} Ready")),
        "{}",
        apply.stdout
    );
    let plan = cli(&emu, &["plan", "-f", path(&file)]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_not_ours_is_refused_without_adoption() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let gcp = google(&emu).await;
    seed_external(&gcp).await;
    let service = ServiceName::new("my-project", "us-central1", "litellm-proxy");
    let other = json!({"template": {"containers": [{"image": "nginx"}]}});
    gcp.create_service(&service, serde_json::from_value(other).unwrap())
        .await
        .unwrap();
    let before = writes(&emu);
    let run = cli(&emu, &["apply", "-f", path(&fixture("stack.yaml"))]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("litellm-proxy exists but was not created for this LiteLLMDeployment"),
        "{}",
        run.stderr
    );
    assert_eq!(writes(&emu), before, "a refused apply wrote to Google");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_fails_when_the_new_revision_fails_and_says_where_traffic_stays() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let gcp = google(&emu).await;
    seed_external(&gcp).await;
    emu.state().add_crashing_image("ghcr.io/berriai/litellm:crashes");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.yaml");
    let text = std::fs::read_to_string(fixture("stack.yaml")).unwrap();
    std::fs::write(&file, text.replace("main-stable", "crashes")).unwrap();
    let run = cli(&emu, &["apply", "-f", path(&file)]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("error: ")
            && run.stderr.contains("litellm-proxy-00001-")
            && run.stderr.contains("failed, traffic stays on no revision"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_is_not_ours_stops_apply_before_any_write() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let gcp = google(&emu).await;
    seed_external(&gcp).await;
    // Created by hand (gcloud secrets create): no ownership labels. The emulator's REST API, as gcloud calls it.
    let url = format!(
        "{}/v1/projects/my-project/secrets?secretId=litellm-master-key",
        emu.url()
    );
    let created = http_post(&url, r#"{"replication": {"automatic": {}}}"#).await;
    assert!(created.contains("litellm-master-key"), "{created}");
    let before = writes(&emu);
    for command in ["plan", "apply"] {
        let run = cli(&emu, &[command, "-f", path(&fixture("stack.yaml"))]).await;
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(
                "secret projects/my-project/secrets/litellm-master-key exists but was not created for this \
                 LiteLLMDeployment"
            ),
            "{}",
            run.stderr
        );
    }
    // database-url comes first in the spec, yet nothing was created: apply plans before it writes.
    assert_eq!(writes(&emu), before, "a refused apply wrote to Google");
}

/// A plain HTTP/1.1 POST (the emulator speaks Google's REST API; no client library involved).
async fn http_post(url: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url::Url::parse(url).unwrap();
    let mut stream = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap();
    let request = format!(
        "POST {}?{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.path(),
        url.query().unwrap_or_default(),
        url.host_str().unwrap(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_google_resources_are_errors_naming_them() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    // No tavily-api-key: the external secret the fixture pins does not exist.
    let run = cli(&emu, &["plan", "-f", path(&fixture("stack.yaml"))]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "stack.yaml: LiteLLMDeployment llm/litellm-proxy: external secret \
             projects/my-project/secrets/tavily-api-key does not exist"
        ),
        "{}",
        run.stderr
    );
    let run = cli(
        &emu,
        &[
            "import",
            "--project",
            "my-project",
            "--region",
            "us-central1",
            "--service",
            "nope",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("projects/my-project/locations/us-central1/services/nope: service not found"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    assert_eq!(writes(&emu), 0);
}

/// Members holding `role` on the policy of `target`.
async fn members(gcp: &Gcp, target: PolicyTarget, role: &str) -> Vec<String> {
    gcp.get_policy(&target)
        .await
        .unwrap()
        .bindings
        .into_iter()
        .filter(|b| b.role == role && b.condition.is_none())
        .flat_map(|b| b.members)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_revokes_a_dropped_binding_it_added_and_retires_versions_like_the_controller() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let gcp = google(&emu).await;
    seed_external(&gcp).await;
    // The runbook already granted the runtime account on the external secret: that binding is not ours.
    let tavily = PolicyTarget::Secret(SecretName::new("my-project", "tavily-api-key"));
    let accessor = "roles/secretmanager.secretAccessor";
    let member = format!("serviceAccount:{SA}");
    gcp.add_member(&tavily, accessor, &member).await.unwrap();
    let stack = fixture("stack.yaml");
    let apply = cli(&emu, &["apply", "-f", path(&stack)]).await;
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);

    // The spec drops LITELLM_MASTER_KEY (granted by our apply) and TAVILY_API_KEY (granted by the runbook),
    // keeps one enabled version, and rotates DATABASE_URL twice.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&stack).unwrap();
    let dropped =
        text.replace(
            "    - env: LITELLM_MASTER_KEY\n      secretId: litellm-master-key\n      generate: {length: 48, prefix: \"sk-\"}\n",
            "",
        )
        .replace(
            "    - env: TAVILY_API_KEY\n      external: {version: latest}\n",
            "",
        ) + "  secretPolicy: {keepEnabledVersions: 1}\n";
    assert!(
        !dropped.contains("LITELLM_MASTER_KEY") && !dropped.contains("TAVILY"),
        "{dropped}"
    );
    for host in ["10.0.0.7", "10.0.0.8"] {
        let file = dir.path().join(format!("{host}.yaml"));
        std::fs::write(&file, dropped.replace("10.0.0.5", host)).unwrap();
        let apply = cli(&emu, &["apply", "-f", path(&file)]).await;
        assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    }
    let master = PolicyTarget::Secret(SecretName::new("my-project", "litellm-master-key"));
    assert!(
        !members(&gcp, master, accessor).await.contains(&member),
        "the binding our apply added is revoked once the spec drops it"
    );
    assert!(
        members(&gcp, tavily, accessor).await.contains(&member),
        "the runbook's binding is not ours: never revoked"
    );
    let db = SecretName::new("my-project", "database-url");
    let states: Vec<(u64, String)> = gcp
        .list_versions(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.number, format!("{:?}", v.state)))
        .collect();
    assert_eq!(
        states,
        [
            (3, "Enabled".into()),
            (2, "Disabled".into()),
            (1, "Disabled".into())
        ],
        "keepEnabledVersions: 1 once the revision pinned to 3 serves"
    );
    let last = dir.path().join("10.0.0.8.yaml");
    let plan = cli(&emu, &["plan", "-f", path(&last)]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    let record: Value = serde_json::from_str(&std::fs::read_to_string(state_file(&emu)).unwrap()).unwrap();
    let recorded = &record["deployments"]["llm/litellm-proxy"]["appliedBindings"];
    assert_eq!(recorded.as_array().unwrap().len(), 2, "{recorded}");
}

/// A refused call names the missing permission (Google's own message format) and the gcloud command that grants
/// the role of that permission's service, as the controller's conditions and Events do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_an_error_with_the_command_that_grants_it() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let gcp = google(&emu).await;
    seed_external(&gcp).await;
    let stack = fixture("stack.yaml");
    let grant = |role: &str| {
        format!(
            "gcloud projects add-iam-policy-binding my-project --member=serviceAccount:OPERATOR_SA --role={role}"
        )
    };

    // Secret Manager names the permission in its message: its first letter is kept.
    emu.state().add_fault(
        gcp_emulator::FaultRule::new("SecretManagerService.CreateSecret", Some(gcp_emulator::Code::PermissionDenied))
            .with_message(
                "Permission 'secretmanager.secrets.create' denied on resource 'projects/my-project' (or it may not \
                 exist).",
            ),
    );
    let run = cli(&emu, &["apply", "-f", path(&stack)]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        error.contains("(missing secretmanager.secrets.create)")
            && error.contains("secretmanager.secrets.create (role roles/secretmanager.admin")
            && error.ends_with(&grant("roles/secretmanager.admin")),
        "{}",
        run.stderr
    );
    assert!(!error.contains("roles/run."), "{error}");

    // Cloud Run refuses without naming the permission: the action's own (run.services.create) and the runtime
    // account's actAs, each with its command; never a Secret Manager role.
    emu.state().clear_faults();
    emu.state().add_fault(
        gcp_emulator::FaultRule::new(
            "Services.CreateService",
            Some(gcp_emulator::Code::PermissionDenied),
        )
        .with_message("Permission denied on resource project my-project."),
    );
    let run = cli(&emu, &["apply", "-f", path(&stack)]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        error.contains(
            "could not create service projects/my-project/locations/us-central1/services/litellm-proxy"
        ) && error.contains("run.services.create (role roles/run.admin")
            && error.contains(&grant("roles/run.admin"))
            && error.contains(&format!(
                "gcloud iam service-accounts add-iam-policy-binding {SA} --member=serviceAccount:OPERATOR_SA \
                 --role=roles/iam.serviceAccountUser"
            )),
        "{}",
        run.stderr
    );
    assert!(!error.contains("secretmanager.admin"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// The CLI in pipelines: exit codes, machine-readable output, progress, completions, version

/// The binary with these arguments and nothing else (no emulator: these never reach Google).
fn bare(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = std::process::Command::new(env!("CARGO_BIN_EXE_litellm-operator"))
        .args(args)
        .env_remove("LITELLM_GCP_ENDPOINT")
        .output()
        .unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

#[test]
fn usage_errors_exit_1_never_2_which_means_changes() {
    let stack = fixture("stack.yaml");
    let cases: [(&[&str], &str); 7] = [
        (
            &["plan", "-f", path(&stack), "--no-such-flag"],
            "unexpected argument '--no-such-flag'",
        ),
        (&["plan"], "required arguments were not provided"),
        (
            &["plan", "-f", path(&stack), "-o", "yaml"],
            "invalid value 'yaml'",
        ),
        (
            &["apply", "-f", path(&stack), "--timeout", "soon"],
            "invalid value 'soon'",
        ),
        (
            &["import", "--project", "p"],
            "required arguments were not provided",
        ),
        (&["pln", "-f", path(&stack)], "unrecognized subcommand 'pln'"),
        (&[], "Usage: litellm-operator"),
    ];
    for (args, message) in cases {
        let run = bare(args);
        assert_eq!(run.code, 1, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(message),
            "{args:?}: want {message:?} in\n{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    // Asking for help or the version is no error.
    for args in [&["--help"][..], &["plan", "--help"], &["help", "apply"], &["-h"]] {
        let run = bare(args);
        assert_eq!(run.code, 0, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains("Usage: litellm-operator"),
            "{args:?}: {}",
            run.stdout
        );
    }
}

#[test]
fn version_names_the_crate_version_and_the_source_revision() {
    let run = bare(&["--version"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = run.stdout.trim_end();
    let prefix = format!("litellm-operator {} (", env!("CARGO_PKG_VERSION"));
    let revision = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("want `{prefix}REVISION)`, got {line:?}"));
    assert!(
        !revision.is_empty() && !revision.contains(char::is_whitespace),
        "{line:?}"
    );
    // In a git checkout, with no revision given by the build, it is HEAD's: build.rs reran when HEAD moved.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match head {
        _ if std::env::var_os("LITELLM_OPERATOR_REVISION").is_some() => {}
        Ok(out) if out.status.success() => {
            assert_eq!(revision, String::from_utf8_lossy(&out.stdout).trim(), "{line:?}");
        }
        _ => assert_eq!(revision, "unknown", "{line:?}"),
    }
}

#[test]
fn completion_scripts_cover_every_subcommand_and_bash_loads_its_own() {
    for shell in ["bash", "zsh", "fish"] {
        let run = bare(&["completion", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        for word in [
            "run",
            "crd",
            "plan",
            "apply",
            "import",
            "completion",
            "filename",
            "timeout",
        ] {
            assert!(run.stdout.contains(word), "{shell} script lacks {word}");
        }
    }
    let run = bare(&["completion", "tcsh"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);

    let has_bash = std::process::Command::new("bash")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_bash {
        eprintln!("bash not found: not loading the bash script");
        return;
    }
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"source <("$BIN" completion bash) && complete -p litellm-operator"#)
        .env("BIN", env!("CARGO_BIN_EXE_litellm-operator"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("complete ") && stdout.trim_end().ends_with(" litellm-operator"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_import_print_json_and_apply_reports_progress_while_a_slow_revision_starts() {
    let startup = Duration::from_secs(7);
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        revision_startup: startup,
        service_accounts: vec![SA.to_owned()],
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    let gcp = google(&emu).await;
    seed_external(&gcp).await;

    let started = std::time::Instant::now();
    let apply = cli(&emu, &["apply", "-f", path(&fixture("stack.yaml")), "-o", "json"]).await;
    let took = started.elapsed();
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(
        took >= startup,
        "apply returned before the revision could be Ready ({took:?})"
    );

    // stdout is one JSON document; what was done and the progress are lines on stderr.
    let doc: Value = serde_json::from_str(&apply.stdout)
        .unwrap_or_else(|e| panic!("apply -o json is not JSON ({e}):\n{}", apply.stdout));
    assert_eq!(doc["mode"], "apply");
    assert_eq!(doc["changes"], 9);
    let deployment = &doc["deployments"][0];
    assert_eq!(deployment["name"], "llm/litellm-proxy");
    assert_eq!(deployment["service"]["action"], "create");
    let status = &deployment["status"];
    assert_eq!(status["ready"], true, "{status}");
    assert!(
        status["revision"]
            .as_str()
            .is_some_and(|r| r.starts_with("litellm-proxy-00001-")),
        "{status}"
    );
    assert!(
        status["url"].as_str().is_some_and(|u| u.starts_with("https://")),
        "{status}"
    );
    assert!(
        apply.stderr.contains("Created Cloud Run service "),
        "{}",
        apply.stderr
    );

    // A progress line every few seconds: which revision, what it is doing, how long it has taken.
    let progress: Vec<&str> = apply
        .stderr
        .lines()
        .filter(|l| l.starts_with("Still waiting for revision"))
        .collect();
    assert!(!progress.is_empty(), "no progress line in:\n{}", apply.stderr);
    for line in &progress {
        assert!(
            line.starts_with("Still waiting for revision litellm-proxy-00001-")
                && line.contains(": rolling out, ")
                && line.contains("s elapsed (timeout 5m00s)"),
            "{line}"
        );
    }
    assert!(
        progress.len() <= took.as_secs() as usize / 5 + 1,
        "too chatty: {progress:#?}"
    );

    // Polling backs off to one look every 2 s (9 reads in 7 s here; 200 ms polling made 21).
    let reads = emu.state().call_count("Services.GetService");
    assert!(reads <= 14, "{reads} service reads while waiting {took:?}");

    // import -o json: the same manifest as the YAML, as one JSON document.
    let args = [
        "import",
        "--project",
        "my-project",
        "--region",
        "us-central1",
        "--service",
        "litellm-proxy",
        "--namespace",
        "llm",
    ];
    let yaml = cli(&emu, &args).await;
    assert_eq!(yaml.code, 0, "{}", yaml.stderr);
    let json = cli(&emu, &[&args[..], &["-o", "json"]].concat()).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let manifest: Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("import -o json is not JSON ({e}):\n{}", json.stdout));
    assert_eq!(manifest["kind"], "LiteLLMDeployment");
    assert_eq!(manifest["spec"]["project"], "my-project");
    assert_eq!(
        manifest,
        serde_yaml::from_str::<Value>(&yaml.stdout).unwrap(),
        "JSON and YAML differ"
    );
    assert_eq!(json.stderr, yaml.stderr, "the warnings go to stderr either way");
}

/// A LiteLLMDeployment whose configuration comes from a ConfigMap in the same file; `answer` tells versions apart
/// and [`CANARY`] stands for a credential written in the YAML (never printed).
fn config_stack(answer: &str) -> String {
    format!(
        "apiVersion: v1
kind: ConfigMap
metadata: {{name: litellm-config, namespace: llm}}
data:
  config.yaml: |
    model_list:
      - model_name: demo
        litellm_params:
          model: openai/gpt-4o-mini
          api_key: {CANARY}
          mock_response: {answer}
---
apiVersion: litellm.dev/v1alpha1
kind: LiteLLMDeployment
metadata: {{name: cli-config, namespace: llm}}
spec:
  project: my-project
  region: us-central1
  service: {{image: ghcr.io/berriai/litellm:main-stable, serviceAccount: {SA}}}
  secrets:
    - env: LITELLM_MASTER_KEY
      generate: {{length: 32, prefix: sk-}}
  config:
    configMapKeyRef: {{name: litellm-config, key: config.yaml}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_apply_read_the_config_from_a_config_map_in_the_files_and_pin_it() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let gcp = google(&emu).await;
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("config.yaml");
    std::fs::write(&stack, config_stack("one")).unwrap();
    let s = "projects/my-project/secrets";
    let svc = "projects/my-project/locations/us-central1/services/cli-config";

    let plan = cli(&emu, &["plan", "-f", path(&stack)]).await;
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    let planned = changes(&plan.stdout);
    assert!(
        planned.contains(&format!("+ create secret {s}/cli-config-config")),
        "{planned:?}"
    );
    assert!(
        planned.contains(&format!(
            "+ add version 1 to {s}/cli-config-config (/etc/litellm/config.yaml)"
        )),
        "{planned:?}"
    );
    assert!(
        planned.contains(&format!("+ create service {svc}")),
        "{planned:?}"
    );

    let apply = cli(&emu, &["apply", "-f", path(&stack)]).await;
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let name = ServiceName::new("my-project", "us-central1", "cli-config");
    let live = serde_json::to_value(gcp.get_service(&name).await.unwrap().unwrap()).unwrap();
    assert_eq!(
        live["template"]["volumes"][0]["secret"]["items"][0]["version"], "1",
        "{live}"
    );
    assert_eq!(
        live["template"]["containers"][0]["args"],
        json!(["--config", "/etc/litellm/config.yaml"])
    );
    assert_eq!(
        emu.state()
            .secret_payload(&format!("{s}/cli-config-config"), "1")
            .map(|p| String::from_utf8(p).unwrap().contains("mock_response: one")),
        Some(true)
    );
    let plan = cli(&emu, &["plan", "-f", path(&stack)]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&format!(
            "= {s}/cli-config-config version 1 (/etc/litellm/config.yaml)"
        )),
        "{}",
        plan.stdout
    );

    // An edit of the ConfigMap: one version, one revision pinned to it.
    std::fs::write(&stack, config_stack("two")).unwrap();
    let plan = cli(&emu, &["plan", "-f", path(&stack)]).await;
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert_eq!(
        changes(&plan.stdout),
        [
            format!("+ add version 2 to {s}/cli-config-config (/etc/litellm/config.yaml)"),
            format!("~ update service {svc} (new revision): template.volumes[0].secret.items[0].version"),
        ]
    );
    let apply = cli(&emu, &["apply", "-f", path(&stack)]).await;
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(
        apply.stdout.contains("status: revision cli-config-00002-"),
        "{}",
        apply.stdout
    );
    let settled = writes(&emu);
    let again = cli(&emu, &["apply", "-f", path(&stack)]).await;
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(writes(&emu), settled, "a converged apply wrote to Google");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_map_or_invalid_config_yaml_stops_before_any_google_call() {
    let emu = gcp_emulator::spawn(emulator_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = config_stack("one");
    let deployment = stack.split("---\n").nth(1).unwrap().to_owned();
    let cases = [
        (
            deployment.clone(),
            "spec.config.configMapKeyRef: ConfigMap llm/litellm-config is not in the given files",
        ),
        (
            stack.replace("config.yaml: |", "other.yaml: |"),
            "spec.config.configMapKeyRef: ConfigMap llm/litellm-config has no key \"config.yaml\" in its data",
        ),
        (
            stack.replace("mock_response: one", "mock_response: [one"),
            "spec.config.configMapKeyRef: ConfigMap litellm-config key \"config.yaml\": not valid YAML at line 7",
        ),
        (
            stack.replace("model: openai/gpt-4o-mini", "provider: openai"),
            "ConfigMap litellm-config key \"config.yaml\": model_list[0].litellm_params has no model",
        ),
        (
            deployment.replace(
                "configMapKeyRef: {name: litellm-config, key: config.yaml}",
                "inline: \"general_settings: [\"",
            ),
            "LiteLLMDeployment llm/cli-config: spec.config.inline: not valid YAML at line",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case-{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        for command in ["plan", "apply"] {
            let run = cli(&emu, &[command, "-f", path(&file)]).await;
            assert_eq!(run.code, 1, "{command} case {i}: {}{}", run.stdout, run.stderr);
            assert!(
                run.stderr.contains(expected),
                "{command} case {i}: want {expected:?} in\n{}",
                run.stderr
            );
        }
    }
    assert_eq!(all_calls(&emu), 0, "bad input reached Google");
}
