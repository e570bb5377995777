//! Conformance with the real gcloud CLI: each test starts the emulator in-process, points an isolated gcloud
//! configuration at it and asserts on what gcloud prints.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

struct Gcloud {
    config: tempfile::TempDir,
    url: String,
    port: u16,
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
        Gcloud {
            config,
            url: format!("{}/", emu.url()),
            port: emu.addr().port(),
        }
    }

    async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let dir = self.config.path();
        let mut cmd = tokio::process::Command::new("gcloud");
        cmd.args(args)
            .env("CLOUDSDK_CONFIG", dir)
            .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", dir.join("token"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
            .env("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false")
            .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER", &self.url)
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM", &self.url)
            .env("NO_COLOR", "1")
            // `gcloud run` speaks Cloud Run v1 on a regional host (REGION-run.fake) that only a proxy can reach:
            // the emulator serves absolute-form requests as that proxy. Service Usage says every API is enabled.
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN", "http://run.fake/")
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_SERVICEUSAGE", &self.url)
            .env("CLOUDSDK_PROXY_TYPE", "http")
            .env("CLOUDSDK_PROXY_ADDRESS", "127.0.0.1")
            .env("CLOUDSDK_PROXY_PORT", self.port.to_string())
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
    assert_eq!(table[0][0], "db-url");
    assert_eq!(table[0][2], "automatic");
    assert_eq!(table[1][0], "plain");
    assert_eq!(table[1][2], "user_managed");
    assert!(
        table[1][3].contains("us-east1") && table[1][3].contains("europe-west1"),
        "{list}"
    );

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
    assert!(describe.contains("name: projects/p/secrets/db-url"), "{describe}");
    assert!(describe.contains("env: prod"), "{describe}");
    assert!(describe.contains("automatic: {}"), "{describe}");
    let json: serde_json::Value = serde_json::from_str(
        &g.ok(&["secrets", "describe", "db-url", "--project=p", "--format=json"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(json["name"], "projects/p/secrets/db-url");
    assert_eq!(json["labels"]["env"], "prod");

    let err = g.fails(&["secrets", "describe", "missing", "--project=p"]).await;
    assert!(
        err.contains("NOT_FOUND") && err.contains("Secret [projects/p/secrets/missing] not found."),
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
                .contains("Secret [projects/p/secrets/db-url] already exists."),
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
        "--service-account=run@p.iam.gserviceaccount.com",
        "--set-secrets=DATABASE_URL=db:1",
        "--allow-unauthenticated",
    ];
    // Without access to the secret the revision fails, and gcloud shows Cloud Run's message.
    let err = g.fails(&deploy).await;
    assert!(err.contains("Revision 'llm-00001-"), "{err}");
    assert!(err.contains("Permission denied on secret: projects/p/secrets/db/versions/1 for Revision service account run@p.iam.gserviceaccount.com"), "{err}");

    g.ok(&[
        "secrets",
        "add-iam-policy-binding",
        "db",
        "--member=serviceAccount:run@p.iam.gserviceaccount.com",
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
    assert!(describe.contains("run@p.iam.gserviceaccount.com"), "{describe}");
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
