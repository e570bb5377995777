//! The live runtime: revisions of images given a command run as local processes (a small Python HTTP server
//! here), with their env, secrets and files, a start-up probe, logs, and traffic served through the emulator.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Api;
use serde_json::{Value, json};

const PARENT: &str = "/v2/projects/p/locations/us-central1";
const SA: &str = "run@p.iam.gserviceaccount.com";
/// An image the emulator runs (the script below); `TIMER` is one whose start-up is only simulated.
const PY: &str = "apps/py-server:1.0@sha256:abc";
const TIMER: &str = "img:timer";

/// The "image": answers what the container sees. Exits at once with `CRASH=1` (a bad configuration), and
/// `/ready` answers 200 only `READY_AFTER` seconds after start.
const SERVER: &str = r#"
import http.server, json, os, stat, sys, time, urllib.parse

if os.environ.get("CRASH") == "1":
    print("starting", flush=True)
    print("crashing on purpose: bad config", file=sys.stderr, flush=True)
    sys.exit(3)

STARTED = time.time()
READY_AFTER = float(os.environ.get("READY_AFTER", "0"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path.startswith("/env/"):
            value = os.environ.get(url.path[len("/env/"):])
            return self.answer(404, "unset") if value is None else self.answer(200, value)
        if url.path == "/environ":
            return self.answer(200, json.dumps(sorted(os.environ)))
        if url.path == "/file":
            try:
                with open(query["path"][0]) as f:
                    return self.answer(200, f.read())
            except OSError as e:
                return self.answer(404, str(e))
        if url.path == "/mode":
            return self.answer(200, oct(stat.S_IMODE(os.stat(query["path"][0]).st_mode)))
        if url.path == "/args":
            return self.answer(200, json.dumps(sys.argv[1:]))
        if url.path == "/whoami":
            return self.answer(200, os.environ["K_REVISION"])
        if url.path == "/pid":
            return self.answer(200, str(os.getpid()))
        if url.path == "/sleep":
            time.sleep(float(query["seconds"][0]))
            return self.answer(200, str(os.getpid()))
        if url.path == "/headers":
            return self.answer(200, json.dumps({k.lower(): v for k, v in self.headers.items()}))
        if url.path == "/ready":
            ready = time.time() - STARTED >= READY_AFTER
            return self.answer(200 if ready else 503, "ready" if ready else "not yet")
        self.answer(404, "no such path")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.answer(201, "got " + body.decode())

    def answer(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("request " + (fmt % args) + "\n")
        sys.stderr.flush()


print("listening on", os.environ["PORT"], flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// An emulator that runs [`PY`] revisions, with its run directory in a throw-away directory.
struct Live {
    api: Api,
    dir: tempfile::TempDir,
}

impl Live {
    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn revision_dir(&self, revision: &str) -> PathBuf {
        let short = revision.rsplit('/').next().unwrap();
        self.run_dir().join(format!("p_us-central1_{short}"))
    }
}

async fn live(enforce_auth: bool) -> Live {
    live_with(|c| c.enforce_auth = enforce_auth).await
}

/// [`live`], with `adjust` applied to its configuration.
async fn live_with(adjust: impl FnOnce(&mut gcp_emulator::Config)) -> Live {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("server.py");
    std::fs::write(&script, SERVER).unwrap();
    let command = format!("python3 -u {}", script.display());
    let mut config = gcp_emulator::Config {
        revision_startup: Duration::ZERO,
        service_accounts: vec![SA.into()],
        run_images: [(PY.to_string(), command)].into_iter().collect(),
        run_dir: Some(dir.path().join("run")),
        ..gcp_emulator::Config::default()
    };
    adjust(&mut config);
    let api = Api::start(config).await;
    Live { api, dir }
}

async fn wait(api: &Api, op: &Value) -> Value {
    let name = op["name"].as_str().unwrap();
    let done = api
        .ok(
            "POST",
            &format!("/v2/{name}:wait"),
            Some(json!({"timeout": "30s"})),
        )
        .await;
    assert_eq!(done["done"], true, "{done}");
    done
}

async fn grant(api: &Api, secret: &str, member: &str) {
    let path = format!("/v1/projects/p/secrets/{secret}");
    let policy = api.ok("GET", &format!("{path}:getIamPolicy"), None).await;
    let mut bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
    bindings.push(json!({"role": "roles/secretmanager.secretAccessor", "members": [member]}));
    api.ok(
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": {"etag": policy["etag"], "bindings": bindings}})),
    )
    .await;
}

fn container(image: &str, env: Value) -> Value {
    json!({"image": image, "env": env})
}

fn service_of(container: Value) -> Value {
    json!({"template": {"serviceAccount": SA, "containers": [container]}})
}

/// GET through the emulator: status and body text.
async fn fetch(api: &Api, url: &str) -> (u16, String) {
    let resp = api.http.get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn text(api: &Api, url: &str) -> String {
    let (status, body) = fetch(api, url).await;
    assert_eq!(status, 200, "GET {url} -> {body}");
    body
}

/// Whether a process runs: it exists and is not a zombie (a killed child not yet reaped runs no more).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create(api: &Api, id: &str, body: Value) -> Value {
    api.ok("POST", &format!("{PARENT}/services?serviceId={id}"), Some(body))
        .await
}

async fn get_service(api: &Api, id: &str) -> Value {
    api.ok("GET", &format!("{PARENT}/services/{id}"), None).await
}

fn short(revision: &str) -> &str {
    revision.rsplit('/').next().unwrap()
}

#[tokio::test]
async fn a_revision_gets_its_env_secrets_and_files_and_its_uri_answers() {
    let live = live(false).await;
    let api = &live.api;
    api.create_secret("p", "db").await;
    api.add_version(&common::p_name("secrets/db"), b"one").await;
    api.add_version(&common::p_name("secrets/db"), b"two").await;
    api.create_secret("p", "cfg").await;
    api.add_version(&common::p_name("secrets/cfg"), b"model_list: []\n")
        .await;
    api.create_secret("p", "whole").await;
    api.add_version(&common::p_name("secrets/whole"), b"all of it")
        .await;
    for secret in ["db", "cfg", "whole"] {
        grant(api, secret, &format!("serviceAccount:{SA}")).await;
    }
    let mut c = container(
        PY,
        json!([
            {"name": "PLAIN", "value": "hello"},
            {"name": "CONFIG_PATH", "value": "/etc/app/config.yaml"},
            {"name": "DB", "valueSource": {"secretKeyRef": {"secret": "db", "version": "1"}}},
            {"name": "DB_LATEST", "valueSource": {"secretKeyRef": {"secret": "db", "version": "latest"}}},
        ]),
    );
    c["args"] = json!(["--config", "/etc/app/config.yaml", "--other", "/etc/application"]);
    c["command"] = json!(["ignored"]);
    c["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/etc/app"},
        {"name": "whole", "mountPath": "/secrets/whole"},
    ]);
    let mut body = service_of(c);
    body["template"]["volumes"] = json!([
        {"name": "cfg", "secret": {"secret": "cfg", "items": [{"path": "config.yaml", "version": "1"}]}},
        {"name": "whole", "secret": {"secret": "whole"}},
    ]);
    let op = create(api, "llm", body).await;
    let done = wait(api, &op).await;
    assert!(done.get("error").is_none(), "{done}");
    let svc = get_service(api, "llm").await;
    let rev = svc["latestReadyRevision"].as_str().unwrap().to_string();
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");

    // Live mode: the service is reached through the emulator, at the host Google would give it.
    let uri = svc["uri"].as_str().unwrap().to_string();
    let prefix = format!("{}/_run/llm-", api.emu.url());
    assert!(
        uri.starts_with(&prefix) && uri.ends_with("-uc.a.run.app"),
        "{uri}"
    );
    assert_eq!(svc["urls"][1], json!(uri));
    assert!(
        svc["urls"][0]
            .as_str()
            .unwrap()
            .ends_with("/_run/llm-123456789.us-central1.run.app"),
        "{svc}"
    );

    assert_eq!(text(api, &format!("{uri}/env/PLAIN")).await, "hello");
    // Pinned to version 1 though version 2 exists; `latest` resolved at start.
    assert_eq!(text(api, &format!("{uri}/env/DB")).await, "one");
    assert_eq!(text(api, &format!("{uri}/env/DB_LATEST")).await, "two");
    assert_eq!(text(api, &format!("{uri}/whoami")).await, short(&rev));
    assert_eq!(text(api, &format!("{uri}/env/K_SERVICE")).await, "llm");
    assert_eq!(text(api, &format!("{uri}/env/K_CONFIGURATION")).await, "llm");
    let port: u16 = text(api, &format!("{uri}/env/PORT")).await.parse().unwrap();
    assert_ne!(port, 8080);

    // Paths under a mount are mapped into the revision's root; others are left alone.
    let root = live.revision_dir(&rev).join("root");
    let config = root.join("etc/app/config.yaml").display().to_string();
    let args: Vec<String> = serde_json::from_str(&text(api, &format!("{uri}/args")).await).unwrap();
    assert_eq!(args, ["--config", config.as_str(), "--other", "/etc/application"]);
    assert_eq!(text(api, &format!("{uri}/env/CONFIG_PATH")).await, config);
    assert_eq!(
        text(api, &format!("{uri}/file?path={config}")).await,
        "model_list: []\n"
    );
    assert_eq!(text(api, &format!("{uri}/mode?path={config}")).await, "0o400");
    // Without items: one file named after the secret, holding its latest version.
    let whole = root.join("secrets/whole/whole").display().to_string();
    assert_eq!(text(api, &format!("{uri}/file?path={whole}")).await, "all of it");
    let home = text(api, &format!("{uri}/env/HOME")).await;
    assert!(Path::new(&home).starts_with(live.revision_dir(&rev)), "{home}");

    // A minimal environment: nothing of the emulator's own beyond PATH and LANG.
    let names: Vec<String> = serde_json::from_str(&text(api, &format!("{uri}/environ")).await).unwrap();
    let expected = [
        "CONFIG_PATH",
        "DB",
        "DB_LATEST",
        "HOME",
        "K_CONFIGURATION",
        "K_REVISION",
        "K_SERVICE",
        "LANG",
        "PATH",
        "PLAIN",
        "PORT",
    ];
    // What the shell and the interpreter's launcher (a version manager's shim, say) add by themselves.
    let by_themselves = std::process::Command::new("sh")
        .arg("-c")
        .arg("python3 -c 'import os; print(\"\\n\".join(os.environ))'")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .output()
        .unwrap();
    let by_themselves = String::from_utf8(by_themselves.stdout).unwrap();
    let by_themselves: Vec<&str> = by_themselves.lines().collect();
    for name in &names {
        assert!(
            expected.contains(&name.as_str()) || by_themselves.contains(&name.as_str()),
            "unexpected {name} in {names:?}"
        );
    }
    for name in expected {
        assert!(names.iter().any(|n| n == name), "{name} missing in {names:?}");
    }

    // Methods, bodies and status codes go through; the request log and counters do not see traffic.
    let posted = api
        .http
        .post(format!("{uri}/anything?x=1"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 201);
    assert_eq!(posted.text().await.unwrap(), "got payload");
    assert_eq!(fetch(api, &format!("{uri}/missing")).await.0, 404);
    assert!(
        api.emu
            .state()
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/_run/")),
    );

    // The revision's logs: its output, and its logUri points at them. Payloads never reach the emulator's logs.
    let revision = api.ok("GET", &format!("/v2/{rev}"), None).await;
    let logs_url = revision["logUri"].as_str().unwrap().to_string();
    assert_eq!(
        logs_url,
        format!("{}/_emulator/logs?revision={rev}", api.emu.url())
    );
    let logs: Value = api
        .http
        .get(&logs_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = logs["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["stream"] == "stdout"
            && e["text"] == format!("listening on {port}")
            && e["revision"] == json!(rev)
            && e["time"].is_string()),
        "{logs}"
    );
    let by_service = api
        .ok(
            "GET",
            "/_emulator/logs?service=projects/p/locations/us-central1/services/llm",
            None,
        )
        .await;
    assert_eq!(by_service["entries"].as_array().unwrap().len(), entries.len());
    let requests = serde_json::to_string(&api.emu.state().requests()).unwrap();
    assert!(!requests.contains("one") && !requests.contains("all of it"));
}

#[tokio::test]
async fn a_runtime_account_without_access_fails_and_starts_nothing() {
    let live = live(false).await;
    let api = &live.api;
    api.create_secret("p", "db").await;
    api.add_version(&common::p_name("secrets/db"), b"one").await;
    let body = service_of(container(
        PY,
        json!([{"name": "DB", "valueSource": {"secretKeyRef": {"secret": "db", "version": "1"}}}]),
    ));
    let op = create(api, "llm", body).await;
    let done = wait(api, &op).await;
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("Permission denied on secret"), "{done}");
    let svc = get_service(api, "llm").await;
    let rev = svc["latestCreatedRevision"].as_str().unwrap().to_string();
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");

    // No process was ever started: no pid, no output, no directory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.emu.state().revision_pid(&rev), None);
    assert!(api.emu.state().revision_logs(&rev).is_empty());
    let logs = api
        .ok("GET", &format!("/_emulator/logs?revision={rev}"), None)
        .await;
    assert_eq!(logs["entries"], json!([]));
    assert!(!live.revision_dir(&rev).exists());
    // Nothing serves the service.
    let (status, body) = fetch(api, svc["uri"].as_str().unwrap()).await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test]
async fn a_container_that_exits_at_start_fails_with_its_logs_and_traffic_stays() {
    let live = live(false).await;
    let api = &live.api;
    let op = create(api, "llm", service_of(container(PY, json!([])))).await;
    wait(api, &op).await;
    let svc = get_service(api, "llm").await;
    let first = svc["latestReadyRevision"].as_str().unwrap().to_string();
    let uri = svc["uri"].as_str().unwrap().to_string();
    assert_eq!(text(api, &format!("{uri}/whoami")).await, short(&first));

    let bad = service_of(container(PY, json!([{"name": "CRASH", "value": "1"}])));
    let op = api
        .ok("PATCH", &format!("{PARENT}/services/llm"), Some(bad))
        .await;
    let done = wait(api, &op).await;
    let svc = get_service(api, "llm").await;
    let second = svc["latestCreatedRevision"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(done["error"]["code"], 9, "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    let logs_url = format!("{}/_emulator/logs?revision={second}", api.emu.url());
    assert!(
        message.starts_with(&format!(
            "Revision '{}' is not ready and cannot serve traffic. The user-provided container failed to start and listen on the port defined provided by the PORT=",
            short(&second)
        )),
        "{message}"
    );
    assert!(message.ends_with(&format!(" Logs URL: {logs_url}")), "{message}");
    // Never the log content itself.
    assert!(!message.contains("crashing on purpose"), "{message}");

    let revision = api.ok("GET", &format!("/v2/{second}"), None).await;
    assert_eq!(revision["conditions"][0]["state"], "CONDITION_FAILED");
    assert_eq!(
        revision["conditions"][0]["revisionReason"],
        "HEALTH_CHECK_CONTAINER_ERROR"
    );

    // The logs API has the container's output and its exit.
    let logs: Value = api
        .http
        .get(&logs_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = logs["entries"].as_array().unwrap();
    let has = |stream: &str, text: &str| {
        entries
            .iter()
            .any(|e| e["stream"] == stream && e["text"] == text && e["revision"] == json!(second))
    };
    assert!(has("stderr", "crashing on purpose: bad config"), "{logs}");
    assert!(has("stdout", "starting"), "{logs}");
    assert!(has("system", "Container called exit(3)."), "{logs}");
    assert_eq!(api.emu.state().revision_logs(&second).len(), entries.len());

    // Traffic stays on the last ready revision, and it still answers.
    assert_eq!(svc["latestReadyRevision"], json!(first));
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_FAILED");
    assert_eq!(svc["trafficStatuses"][0]["revision"], short(&first));
    for _ in 0..3 {
        assert_eq!(text(api, &format!("{uri}/whoami")).await, short(&first));
    }
    assert!(!live.revision_dir(&second).exists());
}

#[tokio::test]
async fn an_http_startup_probe_waits_for_its_path_and_gives_up_after_its_failures() {
    let live = live(false).await;
    let api = &live.api;
    let probe = |threshold: u32| json!({"httpGet": {"path": "/ready"}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": threshold});
    let mut slow = container(PY, json!([{"name": "READY_AFTER", "value": "1.5"}]));
    slow["startupProbe"] = probe(5);
    let created = Instant::now();
    let op = create(api, "slow", service_of(slow)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let svc = get_service(api, "slow").await;
    let rev = svc["latestCreatedRevision"].as_str().unwrap().to_string();
    assert_eq!(svc["reconciling"], true, "{svc}");
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_RECONCILING");
    // The process runs while its probe has not passed.
    let pid = api.emu.state().revision_pid(&rev).unwrap();
    assert!(alive(pid));
    let done = wait(api, &op).await;
    assert!(done.get("error").is_none(), "{done}");
    assert!(created.elapsed() >= Duration::from_millis(1500));
    let svc = get_service(api, "slow").await;
    assert_eq!(svc["latestReadyRevision"], json!(rev));
    assert_eq!(
        text(api, &format!("{}/ready", svc["uri"].as_str().unwrap())).await,
        "ready"
    );

    // A path that never passes: the revision fails after its allowed failures and the process is killed.
    let mut never = container(PY, json!([{"name": "READY_AFTER", "value": "1000"}]));
    never["startupProbe"] = probe(2);
    let op = create(api, "never", service_of(never)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rev = get_service(api, "never").await["latestCreatedRevision"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = api.emu.state().revision_pid(&rev).unwrap();
    let done = wait(api, &op).await;
    let message = done["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("failed to start and listen on the port"),
        "{message}"
    );
    let logs = api.emu.state().revision_logs(&rev);
    assert!(
        logs.iter().any(|e| e.stream == "system"
            && e.text
                .starts_with("STARTUP HTTP probe failed 2 times consecutively for container")
            && e.text
                .ends_with("on path \"/ready\". The instance was not started.")),
        "{logs:?}"
    );
    eventually("the failed revision's process is gone", || !alive(pid)).await;
    assert!(!live.revision_dir(&rev).exists());
}

#[tokio::test]
async fn tags_and_splits_reach_their_revisions_and_unreferenced_processes_stop() {
    let live = live(false).await;
    let api = &live.api;
    let op = create(
        api,
        "llm",
        service_of(container(PY, json!([{"name": "GEN", "value": "1"}]))),
    )
    .await;
    wait(api, &op).await;
    let first = get_service(api, "llm").await["latestReadyRevision"]
        .as_str()
        .unwrap()
        .to_string();

    // A new revision tagged "new" with no share; everything stays on the first, tagged "old".
    let mut body = service_of(container(PY, json!([{"name": "GEN", "value": "2"}])));
    body["traffic"] = json!([
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": short(&first), "percent": 100, "tag": "old"},
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "tag": "new"},
    ]);
    let op = api
        .ok("PATCH", &format!("{PARENT}/services/llm"), Some(body))
        .await;
    wait(api, &op).await;
    let svc = get_service(api, "llm").await;
    let second = svc["latestReadyRevision"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    let uri = svc["uri"].as_str().unwrap().to_string();
    let host = uri.rsplit("/_run/").next().unwrap().to_string();
    let statuses = svc["trafficStatuses"].as_array().unwrap();
    let tag_uri = |tag: &str| {
        statuses
            .iter()
            .find(|t| t["tag"] == tag)
            .and_then(|t| t["uri"].as_str())
            .unwrap_or_else(|| panic!("no uri for tag {tag}: {svc}"))
            .to_string()
    };
    assert_eq!(tag_uri("new"), format!("{}/_run/new---{host}", api.emu.url()));
    for _ in 0..10 {
        assert_eq!(text(api, &format!("{uri}/whoami")).await, short(&first));
    }
    assert_eq!(
        text(api, &format!("{}/whoami", tag_uri("old"))).await,
        short(&first)
    );
    assert_eq!(
        text(api, &format!("{}/whoami", tag_uri("new"))).await,
        short(&second)
    );
    // A Cloud Run host in the Host header reaches the service at any path.
    let by_host = api
        .http
        .get(format!("{}/whoami", api.emu.url()))
        .header("host", format!("new---{host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_host.text().await.unwrap(), short(&second));
    // The container sees that host.
    let headers: Value = serde_json::from_str(&text(api, &format!("{uri}/headers")).await).unwrap();
    assert_eq!(headers["host"], json!(host));
    let (status, page) = fetch(api, &format!("{}/_run/nope---{host}/", api.emu.url())).await;
    assert_eq!(status, 404, "{page}");

    // All traffic to the latest, no tags: the first revision is referenced no more, and its process stops.
    let first_pid = api.emu.state().revision_pid(&first).unwrap();
    let second_pid = api.emu.state().revision_pid(&second).unwrap();
    let op = api
        .ok(
            "PATCH",
            &format!("{PARENT}/services/llm?updateMask=traffic"),
            Some(json!({"traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]})),
        )
        .await;
    assert_eq!(op["done"], true, "{op}");
    eventually("the unreferenced revision's process is gone", || {
        !alive(first_pid) && api.emu.state().revision_pid(&first).is_none()
    })
    .await;
    assert!(!live.revision_dir(&first).exists());
    assert!(alive(second_pid));
    for _ in 0..5 {
        assert_eq!(text(api, &format!("{uri}/whoami")).await, short(&second));
    }
    let logs = api.emu.state().revision_logs(&first);
    assert!(!logs.is_empty(), "the logs of a stopped revision stay");

    // Deleting the service stops the rest.
    api.ok("DELETE", &format!("{PARENT}/services/llm"), None).await;
    eventually("the deleted service's process is gone", || !alive(second_pid)).await;
}

#[tokio::test]
async fn invoking_needs_run_routes_invoke_unless_all_users_may() {
    let live = live(true).await;
    let api = &live.api;
    let owner = "user:owner@example.com";
    api.emu.state().grant_on_project("p", "roles/owner", owner);
    api.use_token(Some(&api.emu.state().mint_token(owner).unwrap()));
    let op = create(api, "llm", service_of(container(PY, json!([])))).await;
    wait(api, &op).await;
    let uri = get_service(api, "llm").await["uri"].as_str().unwrap().to_string();

    // Anonymous, or a caller without the permission: Cloud Run's 403 page.
    let (status, page) = fetch(api, &format!("{uri}/whoami")).await;
    assert_eq!(status, 403);
    assert!(page.contains("<h1>Error: Forbidden</h1>"), "{page}");
    assert!(page.contains("<code>/whoami</code>"), "{page}");
    let caller = "serviceAccount:caller@p.iam.gserviceaccount.com";
    api.emu
        .state()
        .seed_service_account("caller@p.iam.gserviceaccount.com");
    let token = api.emu.state().mint_token(caller).unwrap();
    let as_caller = |path: &str| api.http.get(format!("{uri}{path}")).bearer_auth(&token);
    assert_eq!(as_caller("/whoami").send().await.unwrap().status().as_u16(), 403);

    // Granted roles/run.invoker on the service: it may.
    api.ok(
        "POST",
        &format!("{PARENT}/services/llm:setIamPolicy"),
        Some(json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": [caller]}]}})),
    )
    .await;
    assert_eq!(as_caller("/whoami").send().await.unwrap().status().as_u16(), 200);
    // The IAM token may travel in X-Serverless-Authorization, leaving Authorization to the application.
    let resp = api
        .http
        .get(format!("{uri}/headers"))
        .header("x-serverless-authorization", format!("Bearer {token}"))
        .header("authorization", "Bearer app-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let headers: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(headers["authorization"], "Bearer app-key");
    assert!(headers.get("x-serverless-authorization").is_none(), "{headers}");

    // allUsers as invoker: anyone.
    api.ok(
        "POST",
        &format!("{PARENT}/services/llm:setIamPolicy"),
        Some(json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}})),
    )
    .await;
    assert_eq!(fetch(api, &format!("{uri}/whoami")).await.0, 200);
}

#[tokio::test]
async fn a_timer_revision_has_no_process_and_a_ready_one_starts_cold() {
    let live = live(false).await;
    let api = &live.api;
    let op = create(api, "sim", service_of(container(TIMER, json!([])))).await;
    wait(api, &op).await;
    let svc = get_service(api, "sim").await;
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    let (status, body) = fetch(api, &format!("{}/", svc["uri"].as_str().unwrap())).await;
    assert_eq!(status, 503);
    assert!(body.contains("has no process"), "{body}");

    // A Ready revision whose process died starts again on the next request.
    let op = create(api, "llm", service_of(container(PY, json!([])))).await;
    wait(api, &op).await;
    let svc = get_service(api, "llm").await;
    let rev = svc["latestReadyRevision"].as_str().unwrap().to_string();
    let uri = svc["uri"].as_str().unwrap().to_string();
    let pid: u32 = text(api, &format!("{uri}/pid")).await.parse().unwrap();
    let killed = std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    eventually("the killed process is noticed", || {
        api.emu.state().revision_pid(&rev).is_none()
    })
    .await;
    let again: u32 = text(api, &format!("{uri}/pid")).await.parse().unwrap();
    assert_ne!(again, pid);
    let logs = api.emu.state().revision_logs(&rev);
    // The shell running the command reports its child's death (or is the child, when it execs).
    assert!(
        logs.iter().any(|e| e.stream == "system"
            && (e.text == "Container terminated on signal 9." || e.text == "Container called exit(137).")),
        "{logs:?}"
    );
    // The revision stayed Ready throughout.
    let revision = api.ok("GET", &format!("/v2/{rev}"), None).await;
    assert_eq!(revision["conditions"][0]["state"], "CONDITION_SUCCEEDED");
}

/// A service's latest ready revision, its URI, and the process id of the instance a request reaches.
async fn serving(api: &Api, id: &str) -> (String, String, u32) {
    let svc = get_service(api, id).await;
    let rev = svc["latestReadyRevision"].as_str().unwrap().to_string();
    let uri = svc["uri"].as_str().unwrap().to_string();
    let pid: u32 = text(api, &format!("{uri}/pid")).await.parse().unwrap();
    (rev, uri, pid)
}

#[tokio::test]
async fn an_idle_instance_without_min_instances_stops_and_the_next_request_starts_one() {
    let live = live_with(|c| c.stop_idle_after = Some(Duration::from_secs(1))).await;
    let api = &live.api;
    let op = create(api, "idle", service_of(container(PY, json!([])))).await;
    wait(api, &op).await;
    let mut warm = service_of(container(PY, json!([])));
    warm["template"]["scaling"] = json!({"minInstanceCount": 1});
    let op = create(api, "warm", warm).await;
    wait(api, &op).await;
    let (warm_rev, _, warm_pid) = serving(api, "warm").await;
    let (idle_rev, idle_uri, idle_pid) = serving(api, "idle").await;

    // A request that lasts longer than the idle time keeps its instance.
    let answered = text(api, &format!("{idle_uri}/sleep?seconds=2")).await;
    assert_eq!(answered, idle_pid.to_string());
    assert!(alive(idle_pid), "an instance answering a request is not idle");

    eventually("the idle instance is stopped", || {
        api.emu.state().revision_pid(&idle_rev).is_none() && !alive(idle_pid)
    })
    .await;
    assert!(
        api.emu
            .state()
            .revision_logs(&idle_rev)
            .iter()
            .any(|e| e.stream == "system"
                && e.text
                    .starts_with("Shutting down the instance: no request for 1 s")),
        "the runtime logs why"
    );
    // Minimum instances keep the other one, idle as long.
    assert!(alive(warm_pid) && api.emu.state().revision_pid(&warm_rev).is_some());

    // The revision stays Ready, and the next request starts an instance.
    let again: u32 = text(api, &format!("{idle_uri}/pid")).await.parse().unwrap();
    assert_ne!(again, idle_pid);
    let revision = api.ok("GET", &format!("/v2/{idle_rev}"), None).await;
    assert_eq!(revision["conditions"][0]["state"], "CONDITION_SUCCEEDED");
}

/// A serving revision's processes (the Python server, and the shell leading its process group) and directory.
struct Serving {
    server_pid: u32,
    leader: u32,
    dir: std::path::PathBuf,
}

/// A live emulator with one service whose revision serves, and that revision's processes, all alive.
async fn one_serving_revision() -> (Live, Serving) {
    let live = live(false).await;
    let op = create(&live.api, "llm", service_of(container(PY, json!([])))).await;
    wait(&live.api, &op).await;
    let svc = get_service(&live.api, "llm").await;
    let rev = svc["latestReadyRevision"].as_str().unwrap().to_string();
    let uri = svc["uri"].as_str().unwrap().to_string();
    let server_pid: u32 = text(&live.api, &format!("{uri}/pid")).await.parse().unwrap();
    let leader = live.api.emu.state().revision_pid(&rev).unwrap();
    let dir = live.revision_dir(&rev);
    assert!(alive(server_pid) && alive(leader) && dir.exists());
    (
        live,
        Serving {
            server_pid,
            leader,
            dir,
        },
    )
}

#[tokio::test]
async fn dropping_the_emulator_stops_its_processes() {
    let (
        live,
        Serving {
            server_pid,
            leader,
            dir,
        },
    ) = one_serving_revision().await;
    let Live { api, dir: keep } = live;
    drop(api);
    eventually("the revision's processes are gone", || {
        !alive(server_pid) && !alive(leader)
    })
    .await;
    assert!(!dir.exists());
    drop(keep);
}

#[tokio::test]
async fn shutting_the_emulator_down_stops_its_processes_before_it_returns() {
    let (
        live,
        Serving {
            server_pid,
            leader,
            dir,
        },
    ) = one_serving_revision().await;
    let Live { api, dir: keep } = live;
    // The binary's SIGTERM path: SIGTERM to each process group, waited for, before the emulator is gone.
    api.emu.shutdown().await;
    assert!(!alive(leader), "the revision's shell was stopped and reaped");
    eventually("the server process is gone", || !alive(server_pid)).await;
    assert!(!dir.exists());
    drop(keep);
}

#[tokio::test]
async fn without_run_images_urls_stay_googles() {
    let api = Api::start(gcp_emulator::Config {
        revision_startup: Duration::ZERO,
        service_accounts: vec![SA.into()],
        ..gcp_emulator::Config::default()
    })
    .await;
    let mut body = service_of(container(TIMER, json!([])));
    body["traffic"] =
        json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "tag": "blue"}]);
    let op = create(&api, "llm", body).await;
    wait(&api, &op).await;
    let svc = get_service(&api, "llm").await;
    let uri = svc["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("https://llm-") && uri.ends_with("-uc.a.run.app"),
        "{svc}"
    );
    let host = uri.trim_start_matches("https://");
    assert_eq!(
        svc["trafficStatuses"][0]["uri"],
        json!(format!("https://blue---{host}"))
    );
    let revision = api
        .ok(
            "GET",
            &format!("/v2/{}", svc["latestReadyRevision"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(
        revision["logUri"]
            .as_str()
            .unwrap()
            .starts_with("https://console.cloud.google.com/"),
        "{revision}"
    );
    let logs = api.ok("GET", "/_emulator/logs", None).await;
    assert_eq!(logs["entries"], json!([]));
}

/// The binary, running [`PY`] revisions with the script in `dir`, plus `args`; returns it with its base URL.
async fn start_binary(dir: &Path, tmp: &Path, args: &[&str]) -> (tokio::process::Child, String) {
    let script = dir.join("server.py");
    std::fs::write(&script, SERVER).unwrap();
    let mut all: Vec<String> = ["--revision-startup", "0s", "--service-account", SA, "--run-image"]
        .map(str::to_owned)
        .to_vec();
    all.push(format!("{PY}=python3 -u {}", script.display()));
    all.extend(args.iter().map(|a| (*a).to_owned()));
    common::start_binary(&all, Some(tmp)).await
}

/// Deploys a [`PY`] service through the binary at `url`; returns the server's process id and its revision
/// directory's name.
async fn serve_through_binary(url: &str) -> (u32, String) {
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let request = http.request(method, format!("{url}{path}"));
        let request = match body {
            Some(b) => request.json(&b),
            None => request,
        };
        async move {
            let resp = request.send().await.unwrap();
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            resp.json::<Value>().await.unwrap()
        }
    };
    let op = call(
        reqwest::Method::POST,
        format!("{PARENT}/services?serviceId=llm"),
        Some(service_of(container(PY, json!([])))),
    )
    .await;
    let name = op["name"].as_str().unwrap().to_string();
    let done = call(
        reqwest::Method::POST,
        format!("/v2/{name}:wait"),
        Some(json!({"timeout": "30s"})),
    )
    .await;
    assert_eq!(done["done"], true, "{done}");
    let svc = call(reqwest::Method::GET, format!("{PARENT}/services/llm"), None).await;
    let pid = http
        .get(format!("{}/pid", svc["uri"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    let revision = short(svc["latestReadyRevision"].as_str().unwrap());
    (pid, format!("p_us-central1_{revision}"))
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_killed_emulator_left_is_cleared_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&tmp).unwrap();
    let run_arg = run.display().to_string();

    for given in [true, false] {
        let args: &[&str] = if given { &["--run-dir", &run_arg] } else { &[] };
        let (mut emulator, url) = start_binary(dir.path(), &tmp, args).await;
        let (server, revision) = serve_through_binary(&url).await;
        let emulator_pid = emulator.id().unwrap();
        let revision_dir = if given {
            run.join(&revision)
        } else {
            tmp.read_dir()
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.to_string_lossy()
                        .contains(&format!("gcp-emulator-{emulator_pid}-"))
                })
                .unwrap()
                .join(&revision)
        };
        assert!(revision_dir.join("root").is_dir(), "{}", revision_dir.display());
        if given {
            // A run directory is one running emulator's.
            let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_gcp-emulator"))
                .args(["--listen", "127.0.0.1:0", "--run-dir", &run_arg, "--run-image"])
                .arg(format!("{PY}=true"))
                .output();
            let second = tokio::time::timeout(Duration::from_secs(20), second)
                .await
                .unwrap()
                .unwrap();
            assert!(!second.status.success());
            let stderr = String::from_utf8_lossy(&second.stderr);
            assert!(
                stderr.contains("another running emulator uses this run directory"),
                "{stderr}"
            );
            assert!(alive(server));
        }

        // SIGKILL: the emulator cannot stop its children.
        emulator.start_kill().unwrap();
        emulator.wait().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(alive(server), "the revision's process outlived its emulator");
        assert!(revision_dir.exists());

        // The next emulator clears both before it starts anything.
        let (next, _) = start_binary(dir.path(), &tmp, args).await;
        eventually("the left process is gone", || !alive(server)).await;
        assert!(!revision_dir.exists(), "{}", revision_dir.display());
        drop(next);
    }
}
