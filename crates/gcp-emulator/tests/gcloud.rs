//! Conformance with the real gcloud CLI: each test starts the emulator in-process, points an isolated gcloud
//! configuration at it and asserts on what gcloud prints.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// The number project `p` is given in the tests that assert on Secret Manager names: Google returns names with
/// the project number (`projects/123456789/secrets/x`) even when called with the id, and gcloud prints them so.
const P_NUMBER: u64 = 123456789;

struct Gcloud {
    config: tempfile::TempDir,
    /// The emulator's settings for gcloud (`Emulator::gcloud_env`).
    env: Vec<(&'static str, String)>,
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Gcloud {
    fn new(emu: &gcp_emulator::Emulator) -> Gcloud {
        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("token"), "fake-token").unwrap();
        let env = emu.gcloud_env(config.path());
        Gcloud { config, env }
    }

    async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = tokio::process::Command::new("gcloud");
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("NO_COLOR", "1")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run gcloud ({e}); the gcloud CLI must be installed and on PATH for these tests"
            ),
        };
        if let Some(data) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(data).await.unwrap();
            drop(pipe);
        }
        let out = child.wait_with_output().await.unwrap();
        Output {
            ok: out.status.success(),
            stdout: strip_ansi(&String::from_utf8_lossy(&out.stdout)),
            stderr: strip_ansi(&String::from_utf8_lossy(&out.stderr)),
        }
    }

    async fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args, None).await;
        assert!(out.ok, "gcloud {args:?} failed:\n{}\n{}", out.stdout, out.stderr);
        out
    }

    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, None).await;
        assert!(!out.ok, "gcloud {args:?} should have failed:\n{}", out.stdout);
        out.stderr
    }
}

fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_secret_lifecycle() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config::default())
        .await
        .unwrap();
    emu.state().set_project_number("p", P_NUMBER).unwrap();
    let g = Gcloud::new(&emu);

    let out = g
        .run(
            &[
                "secrets",
                "create",
                "db-url",
                "--data-file=-",
                "--labels=env=prod",
                "--project=p",
            ],
            Some(b"postgres://u:pw@h/db"),
        )
        .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr.contains("Created version [1] of the secret [db-url]."),
        "{}",
        out.stderr
    );
    g.ok(&[
        "secrets",
        "create",
        "plain",
        "--project=p",
        "--replication-policy=user-managed",
        "--locations=us-east1,europe-west1",
    ])
    .await;

    let list = g.ok(&["secrets", "list", "--project=p"]).await.stdout;
    let table = rows(&list);
    assert!(list.starts_with("NAME"), "{list}");
    assert_eq!(table.len(), 2, "{list}");
    // Newest first, as Google lists secrets.
    assert_eq!(table[0][0], "plain");
    assert_eq!(table[0][2], "user_managed");
    assert!(
        table[0][3].contains("us-east1") && table[0][3].contains("europe-west1"),
        "{list}"
    );
    assert_eq!(table[1][0], "db-url");
    assert_eq!(table[1][2], "automatic");

    let filtered = g
        .ok(&[
            "secrets",
            "list",
            "--project=p",
            "--filter=labels.env=prod",
            "--format=value(name)",
        ])
        .await
        .stdout;
    assert_eq!(filtered.trim(), "db-url");

    let describe = g
        .ok(&["secrets", "describe", "db-url", "--project=p"])
        .await
        .stdout;
    assert!(
        describe.contains("name: projects/123456789/secrets/db-url"),
        "{describe}"
    );
    assert!(describe.contains("env: prod"), "{describe}");
    assert!(describe.contains("automatic: {}"), "{describe}");
    let json: serde_json::Value = serde_json::from_str(
        &g.ok(&["secrets", "describe", "db-url", "--project=p", "--format=json"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(json["name"], "projects/123456789/secrets/db-url");
    assert_eq!(json["labels"]["env"], "prod");
    // The printed name, with the number, is a name gcloud can use: the same secret.
    let by_number: serde_json::Value = serde_json::from_str(
        &g.ok(&[
            "secrets",
            "describe",
            "projects/123456789/secrets/db-url",
            "--format=json",
        ])
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(by_number, json);
    assert_eq!(
        g.ok(&[
            "secrets",
            "versions",
            "access",
            "projects/123456789/secrets/db-url/versions/1",
        ])
        .await
        .stdout,
        "postgres://u:pw@h/db"
    );

    let err = g.fails(&["secrets", "describe", "missing", "--project=p"]).await;
    assert!(
        err.contains("NOT_FOUND") && err.contains("Secret [projects/123456789/secrets/missing] not found."),
        "{err}"
    );
    let err = g
        .run(
            &["secrets", "create", "db-url", "--data-file=-", "--project=p"],
            Some(b"x"),
        )
        .await;
    assert!(
        !err.ok
            && err
                .stderr
                .contains("Secret [projects/123456789/secrets/db-url] already exists."),
        "{}",
        err.stderr
    );

    // Label updates are a PATCH with an update mask; a stale etag is refused as FAILED_PRECONDITION.
    let out = g
        .ok(&[
            "secrets",
            "update",
            "db-url",
            "--update-labels=team=ml",
            "--remove-labels=env",
            "--project=p",
        ])
        .await;
    assert!(out.stderr.contains("Updated secret [db-url]."), "{}", out.stderr);
    let labels = g
        .ok(&[
            "secrets",
            "describe",
            "db-url",
            "--project=p",
            "--format=value(labels)",
        ])
        .await
        .stdout;
    assert_eq!(labels.trim(), "team=ml");
    let err = g
        .fails(&[
            "secrets",
            "update",
            "db-url",
            "--update-labels=x=y",
            "--etag=AAAA",
            "--project=p",
        ])
        .await;
    assert!(
        err.contains("FAILED_PRECONDITION") && err.contains("etag"),
        "{err}"
    );

    let out = g.ok(&["secrets", "delete", "plain", "--project=p"]).await;
    assert!(out.stderr.contains("Deleted secret [plain]."), "{}", out.stderr);
    let list = g
        .ok(&["secrets", "list", "--project=p", "--format=value(name)"])
        .await
        .stdout;
    assert_eq!(list.trim(), "db-url");
    assert_eq!(
        emu.state()
            .secret_payload("projects/p/secrets/db-url", "1")
            .unwrap(),
        b"postgres://u:pw@h/db"
    );
    assert_eq!(
        emu.state()
            .secret_payload(&format!("projects/{P_NUMBER}/secrets/db-url"), "1")
            .unwrap(),
        b"postgres://u:pw@h/db"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_versions() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config::default())
        .await
        .unwrap();
    let g = Gcloud::new(&emu);
    assert!(
        g.run(
            &["secrets", "create", "key", "--data-file=-", "--project=p"],
            Some(b"one")
        )
        .await
        .ok
    );
    let out = g
        .run(
            &[
                "secrets",
                "versions",
                "add",
                "key",
                "--data-file=-",
                "--project=p",
            ],
            Some(b"two\nlines"),
        )
        .await;
    assert!(
        out.ok && out.stderr.contains("Created version [2] of the secret [key]."),
        "{}",
        out.stderr
    );

    assert_eq!(
        g.ok(&[
            "secrets",
            "versions",
            "access",
            "latest",
            "--secret=key",
            "--project=p"
        ])
        .await
        .stdout,
        "two\nlines"
    );
    assert_eq!(
        g.ok(&[
            "secrets",
            "versions",
            "access",
            "1",
            "--secret=key",
            "--project=p"
        ])
        .await
        .stdout,
        "one"
    );

    let out = g
        .ok(&[
            "secrets",
            "versions",
            "disable",
            "1",
            "--secret=key",
            "--project=p",
        ])
        .await;
    assert!(
        out.stderr.contains("Disabled version [1] of the secret [key]."),
        "{}",
        out.stderr
    );
    let err = g
        .fails(&[
            "secrets",
            "versions",
            "access",
            "1",
            "--secret=key",
            "--project=p",
        ])
        .await;
    assert!(
        err.contains("FAILED_PRECONDITION") && err.contains("is in DISABLED state"),
        "{err}"
    );
    let list = g
        .ok(&["secrets", "versions", "list", "key", "--project=p"])
        .await
        .stdout;
    let table = rows(&list);
    assert_eq!(
        table
            .iter()
            .map(|r| (r[0].as_str(), r[1].as_str()))
            .collect::<Vec<_>>(),
        [("2", "enabled"), ("1", "disabled")],
        "{list}"
    );

    let out = g
        .ok(&[
            "secrets",
            "versions",
            "enable",
            "1",
            "--secret=key",
            "--project=p",
        ])
        .await;
    assert!(
        out.stderr.contains("Enabled version [1] of the secret [key]."),
        "{}",
        out.stderr
    );
    let out = g
        .ok(&[
            "secrets",
            "versions",
            "destroy",
            "1",
            "--secret=key",
            "--project=p",
        ])
        .await;
    assert!(
        out.stderr.contains("Destroyed version [1] of the secret [key]."),
        "{}",
        out.stderr
    );
    let list = g
        .ok(&[
            "secrets",
            "versions",
            "list",
            "key",
            "--project=p",
            "--filter=state:destroyed",
            "--format=value(name)",
        ])
        .await
        .stdout;
    assert_eq!(list.trim(), "1");
    let describe = g
        .ok(&[
            "secrets",
            "versions",
            "describe",
            "1",
            "--secret=key",
            "--project=p",
        ])
        .await
        .stdout;
    assert!(
        describe.contains("state: DESTROYED") && describe.contains("destroyTime:"),
        "{describe}"
    );
    let err = g
        .fails(&[
            "secrets",
            "versions",
            "access",
            "1",
            "--secret=key",
            "--project=p",
        ])
        .await;
    assert!(err.contains("DESTROYED"), "{err}");
    let big = vec![b'x'; 65537];
    let out = g
        .run(
            &[
                "secrets",
                "versions",
                "add",
                "key",
                "--data-file=-",
                "--project=p",
            ],
            Some(&big),
        )
        .await;
    assert!(!out.ok, "a payload over 64 KiB must be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_iam_bindings_and_service_accounts() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        service_accounts: vec!["run@p.iam.gserviceaccount.com".into()],
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    let g = Gcloud::new(&emu);
    g.ok(&["secrets", "create", "key", "--project=p"]).await;
    let member = "--member=serviceAccount:run@p.iam.gserviceaccount.com";
    let role = "--role=roles/secretmanager.secretAccessor";
    let out = g
        .ok(&[
            "secrets",
            "add-iam-policy-binding",
            "key",
            member,
            role,
            "--project=p",
        ])
        .await;
    assert!(
        out.stderr.contains("Updated IAM policy for secret [key]."),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("- serviceAccount:run@p.iam.gserviceaccount.com"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("role: roles/secretmanager.secretAccessor"),
        "{}",
        out.stdout
    );

    let policy = g
        .ok(&["secrets", "get-iam-policy", "key", "--project=p", "--format=json"])
        .await
        .stdout;
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(
        policy["bindings"][0]["members"][0],
        "serviceAccount:run@p.iam.gserviceaccount.com"
    );
    assert_eq!(
        emu.state()
            .secret_bindings("projects/p/secrets/key")
            .unwrap()
            .len(),
        1
    );
    // No number was set for `p` here: the derived one names the same secret.
    let number = emu.state().project_number("p");
    assert_eq!(
        emu.state()
            .secret_bindings(&format!("projects/{number}/secrets/key")),
        emu.state().secret_bindings("projects/p/secrets/key")
    );

    let err = g
        .fails(&[
            "secrets",
            "add-iam-policy-binding",
            "key",
            "--member=serviceAccount:ghost@p.iam.gserviceaccount.com",
            role,
            "--project=p",
        ])
        .await;
    assert!(
        err.contains("Status code: 400") && err.contains("does not exist"),
        "{err}"
    );

    g.ok(&[
        "secrets",
        "remove-iam-policy-binding",
        "key",
        member,
        role,
        "--project=p",
    ])
    .await;
    let policy = g
        .ok(&["secrets", "get-iam-policy", "key", "--project=p"])
        .await
        .stdout;
    assert!(!policy.contains("bindings"), "{policy}");
    assert!(
        emu.state()
            .secret_bindings("projects/p/secrets/key")
            .unwrap()
            .is_empty()
    );

    let sa = g
        .ok(&[
            "iam",
            "service-accounts",
            "describe",
            "run@p.iam.gserviceaccount.com",
        ])
        .await
        .stdout;
    assert!(sa.contains("email: run@p.iam.gserviceaccount.com"), "{sa}");
    assert!(sa.contains("projectId: p"), "{sa}");
    let err = g
        .fails(&[
            "iam",
            "service-accounts",
            "describe",
            "ghost@p.iam.gserviceaccount.com",
        ])
        .await;
    assert!(err.contains("NOT_FOUND"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_run_deploy_describe_and_delete() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        revision_startup: std::time::Duration::from_millis(50),
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    emu.state().set_project_number("p", P_NUMBER).unwrap();
    let g = Gcloud::new(&emu);
    assert!(
        g.run(
            &["secrets", "create", "db", "--data-file=-", "--project=p"],
            Some(b"postgres://")
        )
        .await
        .ok
    );
    let deploy = [
        "run",
        "deploy",
        "llm",
        "--image=ghcr.io/berriai/litellm:main-stable",
        "--region=us-central1",
        "--project=p",
        "--service-account=litellm-run@p.iam.gserviceaccount.com",
        "--set-secrets=DATABASE_URL=db:1",
        "--allow-unauthenticated",
    ];
    // The runtime account does not exist until it is created (only created or seeded accounts do, as in
    // Google): the service is refused before any revision is made.
    let err = g.fails(&deploy).await;
    assert!(
        err.contains("INVALID_ARGUMENT")
            && err.contains("Service account litellm-run@p.iam.gserviceaccount.com does not exist."),
        "{err}"
    );
    g.ok(&["iam", "service-accounts", "create", "litellm-run", "--project=p"])
        .await;
    // Without access to the secret the revision fails, and gcloud shows Cloud Run's message.
    let err = g.fails(&deploy).await;
    assert!(err.contains("Revision 'llm-00001-"), "{err}");
    assert!(err.contains("Permission denied on secret: projects/123456789/secrets/db/versions/1 for Revision service account litellm-run@p.iam.gserviceaccount.com"), "{err}");

    g.ok(&[
        "secrets",
        "add-iam-policy-binding",
        "db",
        "--member=serviceAccount:litellm-run@p.iam.gserviceaccount.com",
        "--role=roles/secretmanager.secretAccessor",
        "--project=p",
    ])
    .await;
    let out = g.ok(&deploy).await;
    assert!(out.stderr.contains("revision [llm-00002-"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("has been deployed and is serving 100 percent of traffic."),
        "{}",
        out.stderr
    );

    let describe = g
        .ok(&[
            "run",
            "services",
            "describe",
            "llm",
            "--region=us-central1",
            "--project=p",
        ])
        .await
        .stdout;
    assert!(
        describe.contains("ghcr.io/berriai/litellm:main-stable"),
        "{describe}"
    );
    assert!(
        describe.contains("DATABASE_URL") && describe.contains("db:1"),
        "{describe}"
    );
    assert!(
        describe.contains("litellm-run@p.iam.gserviceaccount.com"),
        "{describe}"
    );
    let url = g
        .ok(&[
            "run",
            "services",
            "describe",
            "llm",
            "--region=us-central1",
            "--project=p",
            "--format=value(status.url)",
        ])
        .await
        .stdout;
    assert!(
        url.trim().starts_with("https://llm-") && url.trim().ends_with(".a.run.app"),
        "{url}"
    );
    let policy = g
        .ok(&[
            "run",
            "services",
            "get-iam-policy",
            "llm",
            "--region=us-central1",
            "--project=p",
        ])
        .await
        .stdout;
    assert!(
        policy.contains("allUsers") && policy.contains("roles/run.invoker"),
        "{policy}"
    );
    let list = g
        .ok(&[
            "run",
            "services",
            "list",
            "--region=us-central1",
            "--project=p",
            "--format=value(metadata.name)",
        ])
        .await
        .stdout;
    assert_eq!(list.trim(), "llm");

    let revisions = g
        .ok(&[
            "run",
            "revisions",
            "list",
            "--service=llm",
            "--region=us-central1",
            "--project=p",
        ])
        .await
        .stdout;
    let lines: Vec<&str> = revisions.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{revisions}");
    assert!(
        lines[0].contains("llm-00002-") && lines[0].contains(" yes "),
        "{revisions}"
    );
    assert!(
        lines[1].contains("llm-00001-") && !lines[1].contains(" yes "),
        "{revisions}"
    );
    let newest = lines[0]
        .split_whitespace()
        .find(|w| w.starts_with("llm-00002-"))
        .unwrap();
    let described = g
        .ok(&[
            "run",
            "revisions",
            "describe",
            newest,
            "--region=us-central1",
            "--project=p",
        ])
        .await
        .stdout;
    assert!(
        described.contains("ghcr.io/berriai/litellm:main-stable") && described.contains("DATABASE_URL"),
        "{described}"
    );

    // The same service through the v2 API.
    let v2 = reqwest::get(format!(
        "{}/v2/projects/p/locations/us-central1/services/llm",
        emu.url()
    ))
    .await
    .unwrap();
    let v2: serde_json::Value = v2.json().await.unwrap();
    assert_eq!(
        v2["template"]["containers"][0]["env"][0]["valueSource"]["secretKeyRef"],
        serde_json::json!({"secret": "db", "version": "1"})
    );
    assert_eq!(v2["terminalCondition"]["state"], "CONDITION_SUCCEEDED");

    let out = g
        .ok(&[
            "run",
            "services",
            "delete",
            "llm",
            "--region=us-central1",
            "--project=p",
        ])
        .await;
    assert!(out.stderr.contains("Deleted service [llm]."), "{}", out.stderr);
    let err = g
        .fails(&[
            "run",
            "services",
            "describe",
            "llm",
            "--region=us-central1",
            "--project=p",
        ])
        .await;
    assert!(err.contains("Cannot find service [llm]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_services_enable_and_list() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config::default())
        .await
        .unwrap();
    let g = Gcloud::new(&emu);

    // Several APIs go to services:batchEnable, one to services/NAME:enable. Every API is already enabled, so
    // Google answers a finished operation and gcloud does not poll.
    g.ok(&[
        "services",
        "enable",
        "secretmanager.googleapis.com",
        "run.googleapis.com",
        "--project",
        "my-project",
    ])
    .await;
    g.ok(&[
        "services",
        "enable",
        "example.googleapis.com",
        "--project",
        "my-project",
    ])
    .await;
    assert_eq!(emu.state().call_count("ServiceUsage.BatchEnableServices"), 1);
    assert_eq!(emu.state().call_count("ServiceUsage.EnableService"), 1);
    assert_eq!(emu.state().call_count("ServiceUsage.GetOperation"), 0);

    let json = g
        .ok(&[
            "services",
            "list",
            "--enabled",
            "--project",
            "my-project",
            "--format=json",
        ])
        .await
        .stdout;
    let services: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    for api in [
        "secretmanager.googleapis.com",
        "run.googleapis.com",
        "iam.googleapis.com",
        "example.googleapis.com",
    ] {
        let s = services
            .iter()
            .find(|s| s["config"]["name"] == api)
            .unwrap_or_else(|| panic!("{api} not listed: {json}"));
        assert_eq!(s["state"], "ENABLED", "{s}");
        let name = s["name"].as_str().unwrap();
        let number = name
            .strip_prefix("projects/")
            .and_then(|r| r.strip_suffix(&format!("/services/{api}")))
            .unwrap_or_else(|| panic!("unexpected name {name}"));
        assert!(number.chars().all(|c| c.is_ascii_digit()), "{name}");
        assert_eq!(s["parent"], format!("projects/{number}"));
    }

    // What the troubleshooting guide greps for.
    let table = g
        .ok(&["services", "list", "--enabled", "--project", "my-project"])
        .await
        .stdout;
    assert!(table.starts_with("NAME"), "{table}");
    let listed: Vec<String> = rows(&table).into_iter().map(|r| r[0].clone()).collect();
    assert!(
        listed.contains(&"secretmanager.googleapis.com".to_string())
            && listed.contains(&"run.googleapis.com".to_string()),
        "{table}"
    );
    assert!(
        table.contains("Secret Manager API") && table.contains("Cloud Run Admin API"),
        "{table}"
    );
    let requests = emu.state().requests();
    let list = requests
        .iter()
        .find(|r| r.method == "ServiceUsage.ListServices")
        .unwrap();
    assert_eq!(list.path, "/v1/projects/my-project/services");
    assert!(list.query.contains("filter=state%3AENABLED"), "{}", list.query);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_service_account_create_and_iam_policy() {
    // No accounts seeded: only the ones created below exist (besides each project's default compute account).
    let emu = gcp_emulator::spawn(gcp_emulator::Config::default())
        .await
        .unwrap();
    let g = Gcloud::new(&emu);
    let run_sa = "litellm-run@my-project.iam.gserviceaccount.com";
    let operator = "--member=serviceAccount:litellm-operator@my-project.iam.gserviceaccount.com";
    let role = "--role=roles/iam.serviceAccountUser";

    let err = g
        .fails(&[
            "iam",
            "service-accounts",
            "describe",
            run_sa,
            "--project=my-project",
        ])
        .await;
    assert!(err.contains("NOT_FOUND"), "{err}");
    let out = g
        .ok(&[
            "iam",
            "service-accounts",
            "create",
            "litellm-run",
            "--project=my-project",
            "--display-name=LiteLLM on Cloud Run",
        ])
        .await;
    assert!(
        out.stderr.contains("Created service account [litellm-run]."),
        "{}",
        out.stderr
    );
    let sa: serde_json::Value = serde_json::from_str(
        &g.ok(&[
            "iam",
            "service-accounts",
            "describe",
            run_sa,
            "--project=my-project",
            "--format=json",
        ])
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(sa["email"], run_sa);
    assert_eq!(sa["displayName"], "LiteLLM on Cloud Run");
    assert_eq!(sa["projectId"], "my-project");
    assert_eq!(
        sa["name"],
        format!("projects/my-project/serviceAccounts/{run_sa}")
    );
    let unique_id = sa["uniqueId"].as_str().unwrap();
    assert!(
        unique_id.len() == 21 && unique_id.chars().all(|c| c.is_ascii_digit()),
        "{sa}"
    );

    let err = g
        .fails(&[
            "iam",
            "service-accounts",
            "create",
            "litellm-run",
            "--project=my-project",
        ])
        .await;
    assert!(
        err.contains("Service account litellm-run already exists within project projects/my-project."),
        "{err}"
    );
    let err = g
        .fails(&["iam", "service-accounts", "create", "ab", "--project=my-project"])
        .await;
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("between 6 and 30 characters"),
        "{err}"
    );

    let list = g
        .ok(&[
            "iam",
            "service-accounts",
            "list",
            "--project=my-project",
            "--format=value(email)",
        ])
        .await
        .stdout;
    // The created account, and the project's default compute account that every project has.
    let listed: Vec<&str> = list.lines().collect();
    assert_eq!(listed.len(), 2, "{list}");
    assert!(listed.contains(&run_sa), "{list}");
    assert!(
        listed
            .iter()
            .any(|e| e.ends_with("-compute@developer.gserviceaccount.com")),
        "{list}"
    );

    // The operator's account does not exist until it is created: binding it is refused.
    let binding = [
        "iam",
        "service-accounts",
        "add-iam-policy-binding",
        run_sa,
        "--project",
        "my-project",
        operator,
        role,
    ];
    let err = g.fails(&binding).await;
    assert!(
        err.contains("Service account litellm-operator@my-project.iam.gserviceaccount.com does not exist."),
        "{err}"
    );
    g.ok(&[
        "iam",
        "service-accounts",
        "create",
        "litellm-operator",
        "--project=my-project",
    ])
    .await;
    let out = g.ok(&binding).await;
    assert!(
        out.stderr
            .contains(&format!("Updated IAM policy for serviceAccount [{run_sa}].")),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("- serviceAccount:litellm-operator@my-project.iam.gserviceaccount.com")
            && out.stdout.contains("role: roles/iam.serviceAccountUser"),
        "{}",
        out.stdout
    );
    // Adding it again changes nothing: the policy is normalised (one binding, members deduplicated).
    g.ok(&binding).await;
    let policy: serde_json::Value = serde_json::from_str(
        &g.ok(&[
            "iam",
            "service-accounts",
            "get-iam-policy",
            run_sa,
            "--project",
            "my-project",
            "--format=json",
        ])
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(
        policy["bindings"],
        serde_json::json!([{
            "members": ["serviceAccount:litellm-operator@my-project.iam.gserviceaccount.com"],
            "role": "roles/iam.serviceAccountUser",
        }])
    );
    // The operator's own account has a separate, empty policy.
    let other = g
        .ok(&[
            "iam",
            "service-accounts",
            "get-iam-policy",
            "litellm-operator@my-project.iam.gserviceaccount.com",
            "--project",
            "my-project",
        ])
        .await
        .stdout;
    assert!(!other.contains("bindings"), "{other}");

    // A stale etag is refused as for every other policy.
    let stale = g.config.path().join("stale.json");
    std::fs::write(&stale, r#"{"bindings": [], "etag": "ACAB"}"#).unwrap();
    let err = g
        .fails(&[
            "iam",
            "service-accounts",
            "set-iam-policy",
            run_sa,
            stale.to_str().unwrap(),
            "--project",
            "my-project",
        ])
        .await;
    assert!(err.contains("ABORTED"), "{err}");

    let err = g
        .fails(&[
            "iam",
            "service-accounts",
            "get-iam-policy",
            "ghost-account@my-project.iam.gserviceaccount.com",
            "--project",
            "my-project",
        ])
        .await;
    assert!(
        err.contains("NOT_FOUND")
            && err.contains(
                "Service account projects/-/serviceAccounts/ghost-account@my-project.iam.gserviceaccount.com does not exist."
            ),
        "{err}"
    );
    let err = g
        .fails(&[
            "iam",
            "service-accounts",
            "describe",
            "ghost-account@my-project.iam.gserviceaccount.com",
        ])
        .await;
    assert!(err.contains("NOT_FOUND"), "{err}");
    assert_eq!(emu.state().with(|st| st.iam.service_accounts.len()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_run_services_list_every_region() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        revision_startup: std::time::Duration::from_millis(10),
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    let g = Gcloud::new(&emu);
    let http = reqwest::Client::new();
    let image = "ghcr.io/berriai/litellm:main-stable";
    for (region, id, deployment) in [
        ("us-central1", "llm-x", "llm_x"),
        ("europe-west1", "llm-x-eu", "llm_x"),
        ("europe-west1", "other", "other_y"),
    ] {
        let resp = http
            .post(format!(
                "{}/v2/projects/my-project/locations/{region}/services?serviceId={id}",
                emu.url()
            ))
            .json(&serde_json::json!({
                "labels": {"litellm-deployment": deployment},
                "template": {"containers": [{"image": image, "ports": [{"containerPort": 4000}]}]},
            }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }

    // Without --region gcloud lists locations/- and shows each service's region.
    let all = g
        .ok(&[
            "run",
            "services",
            "list",
            "--project",
            "my-project",
            "--format=value(metadata.name,region)",
        ])
        .await
        .stdout;
    let all: Vec<&str> = all.lines().collect();
    assert_eq!(
        all,
        [
            "llm-x\tus-central1",
            "llm-x-eu\teurope-west1",
            "other\teurope-west1"
        ],
        "{all:?}"
    );
    let requests = emu.state().requests();
    assert!(
        requests.iter().any(|r| r.method == "KnativeServices.ListServices"
            && r.path == "/v1/projects/my-project/locations/-/services"),
        "{requests:?}"
    );

    let filtered = g
        .ok(&[
            "run",
            "services",
            "list",
            "--project",
            "my-project",
            "--filter=metadata.labels.litellm-deployment=llm_x",
            "--format=value(metadata.name)",
        ])
        .await
        .stdout;
    assert_eq!(filtered.lines().collect::<Vec<_>>(), ["llm-x", "llm-x-eu"]);
    let table = g
        .ok(&[
            "run",
            "services",
            "list",
            "--project",
            "my-project",
            "--region",
            "europe-west1",
            "--filter=metadata.labels.litellm-deployment=llm_x",
        ])
        .await
        .stdout;
    let table = rows(&table);
    assert_eq!(table.len(), 1, "{table:?}");
    assert!(
        table[0].contains(&"llm-x-eu".to_string()) && table[0].contains(&"europe-west1".to_string()),
        "{table:?}"
    );

    // The same list server-side, with a Kubernetes label selector.
    let v1: serde_json::Value = http
        .get(format!(
            "{}/v1/projects/my-project/locations/-/services?labelSelector=litellm-deployment%3Dother_y",
            emu.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = v1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other"], "{v1}");

    // A service created with the v2 API describes with its image. Its container has no name, and gcloud then
    // prints `Container None` as it does against Google.
    let describe = g
        .ok(&[
            "run",
            "services",
            "describe",
            "llm-x",
            "--region",
            "us-central1",
            "--project",
            "my-project",
        ])
        .await
        .stdout;
    let image_line = describe
        .lines()
        .find(|l| l.trim_start().starts_with("Image:"))
        .unwrap_or_else(|| panic!("no Image line: {describe}"));
    assert!(image_line.contains(image), "{describe}");
    assert!(
        describe.contains("Port:") && describe.contains("4000"),
        "{describe}"
    );
}

/// The member Google writes for a deleted account.
fn deleted(email: &str, uid: &str) -> String {
    format!("deleted:serviceAccount:{email}?uid={uid}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_service_accounts_delete() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config::default())
        .await
        .unwrap();
    let g = Gcloud::new(&emu);
    let email = "litellm-run@my-project.iam.gserviceaccount.com";
    g.ok(&[
        "iam",
        "service-accounts",
        "create",
        "litellm-run",
        "--project=my-project",
    ])
    .await;
    let sa: Value = serde_json::from_str(
        &g.ok(&[
            "iam",
            "service-accounts",
            "describe",
            email,
            "--project=my-project",
            "--format=json",
        ])
        .await
        .stdout,
    )
    .unwrap();
    let uid = sa["uniqueId"].as_str().unwrap().to_string();
    g.ok(&["secrets", "create", "db", "--project=my-project"]).await;
    g.ok(&[
        "secrets",
        "add-iam-policy-binding",
        "db",
        "--project=my-project",
        &format!("--member=serviceAccount:{email}"),
        "--role=roles/secretmanager.secretAccessor",
    ])
    .await;

    let out = g
        .ok(&["iam", "service-accounts", "delete", email, "--project=my-project"])
        .await;
    assert!(
        out.stderr.contains(&format!("deleted service account [{email}]")),
        "{}",
        out.stderr
    );
    let err = g
        .fails(&[
            "iam",
            "service-accounts",
            "describe",
            email,
            "--project=my-project",
        ])
        .await;
    assert!(err.contains("NOT_FOUND"), "{err}");
    let err = g
        .fails(&["iam", "service-accounts", "delete", email, "--project=my-project"])
        .await;
    assert!(
        err.contains("NOT_FOUND") && err.contains("does not exist"),
        "{err}"
    );

    let policy: Value = serde_json::from_str(
        &g.ok(&[
            "secrets",
            "get-iam-policy",
            "db",
            "--project=my-project",
            "--format=json",
        ])
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(
        policy["bindings"],
        json!([{"members": [deleted(email, &uid)], "role": "roles/secretmanager.secretAccessor"}])
    );
    // gcloud writes a policy with the deleted member back unchanged.
    let file = g.config.path().join("policy.json");
    std::fs::write(&file, serde_json::to_vec(&policy).unwrap()).unwrap();
    g.ok(&[
        "secrets",
        "set-iam-policy",
        "db",
        file.to_str().unwrap(),
        "--project=my-project",
    ])
    .await;
    let again: Value = serde_json::from_str(
        &g.ok(&[
            "secrets",
            "get-iam-policy",
            "db",
            "--project=my-project",
            "--format=json",
        ])
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(again["bindings"], policy["bindings"]);
    assert_eq!(emu.state().call_count("IAM.DeleteServiceAccount"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_custom_roles_and_project_bindings() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        service_accounts: vec!["litellm-operator@my-project.iam.gserviceaccount.com".to_owned()],
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    let g = Gcloud::new(&emu);
    g.ok(&[
        "iam",
        "roles",
        "create",
        "litellmOperator",
        "--project=my-project",
        "--title=LiteLLM operator",
        "--stage=GA",
        "--permissions=secretmanager.secrets.get,run.services.get",
    ])
    .await;
    let role: Value = serde_json::from_str(
        &g.ok(&[
            "iam",
            "roles",
            "describe",
            "litellmOperator",
            "--project=my-project",
            "--format=json",
        ])
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(role["name"], "projects/my-project/roles/litellmOperator");
    assert_eq!(
        role["includedPermissions"],
        json!(["run.services.get", "secretmanager.secrets.get"])
    );
    let member = "serviceAccount:litellm-operator@my-project.iam.gserviceaccount.com";
    g.ok(&[
        "projects",
        "add-iam-policy-binding",
        "my-project",
        &format!("--member={member}"),
        "--role=projects/my-project/roles/litellmOperator",
    ])
    .await;
    let policy: Value = serde_json::from_str(
        &g.ok(&["projects", "get-iam-policy", "my-project", "--format=json"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(
        policy["bindings"],
        json!([{"members": [member], "role": "projects/my-project/roles/litellmOperator"}])
    );
    // The binding grants what the role lists, and nothing else.
    let token = emu.state().mint_token(member).unwrap();
    let http = reqwest::Client::new();
    let check = |permissions: Value| {
        let http = http.clone();
        let token = token.clone();
        let url = format!("{}/v3/projects/my-project:testIamPermissions", emu.url());
        async move {
            let answer: Value = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"permissions": permissions}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer
        }
    };
    let held = check(json!(["secretmanager.secrets.get", "run.services.get"])).await;
    assert_eq!(held["permissions"].as_array().unwrap().len(), 2, "{held}");
    // An unknown permission is refused by gcloud's own check against the catalogue.
    let err = g
        .fails(&[
            "iam",
            "roles",
            "create",
            "other",
            "--project=my-project",
            "--permissions=secretmanager.secrets.teleport",
        ])
        .await;
    assert!(err.contains("secretmanager.secrets.teleport"), "{err}");
}
