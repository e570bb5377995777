//! `make demo`: the operator's main job on this machine, no cloud account needed.
//!
//! Starts a real etcd + kube-apiserver and the Google emulator, installs the CRD, runs the real
//! `litellm-operator run` binary against both, applies `examples/litellm-deployment.yaml`, waits for Ready and
//! shows what the operator did — through `kubectl` and through `gcloud` pointed at the emulator. Then it stays up
//! until Ctrl-C (or exits at once with `--once`), stopping every process it started.
#![allow(clippy::print_stdout)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use litellm_operator_gcp::{Gcp, GcpConfig, SecretName, SecretPayload, SecretStore, SecretVersionStore};
use litellm_operator_tests::{ControlPlane, install_litellm_crd, live, repo_path, tools};
use tokio::process::Command;

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() {
    let once = std::env::args().any(|a| a == "--once");
    if let Err(e) = run(once).await {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

async fn run(once: bool) -> Result<(), Failure> {
    // `make demo` builds it next to this binary.
    let operator_bin = tools::operator_binary()?;

    step("Starting etcd and kube-apiserver (real binaries, loopback only)");
    let cp = ControlPlane::start().await?;
    println!(
        "    kube-apiserver {} ready in {:.1}s",
        cp.server(),
        cp.startup().as_secs_f64()
    );

    step("Starting the Google emulator (Secret Manager, IAM, Cloud Run v2)");
    // Revisions of the live demo's image run the real LiteLLM proxy (`make litellm`); the runbook's image keeps the
    // emulator's timer runtime (its DATABASE_URL would stop a real LiteLLM here: no database engines).
    let litellm = live::litellm_bin();
    if !litellm.exists() {
        return Err(format!("no LiteLLM at {}: run `make litellm`", litellm.display()).into());
    }
    let emulator = gcp_emulator::spawn(gcp_emulator::Config {
        run_images: [(live::LIVE_IMAGE.to_owned(), live::run_command())].into(),
        revision_startup: Duration::from_secs(2),
        iam_propagation: Duration::from_secs(0),
        // The example's runtime account, which exists in the reader's project.
        service_accounts: vec![litellm_operator_tests::fixtures::RUNTIME_SA.to_owned()],
        ..gcp_emulator::Config::default()
    })
    .await?;
    let endpoint = emulator.url();
    println!("    emulator at {endpoint}");
    let gcp = Gcp::connect(&GcpConfig::emulator(endpoint.parse()?), &mut Default::default()).await?;
    // TAVILY_API_KEY is `external` in the example: another team owns it and added a version.
    let tavily = SecretName::new("my-project", "tavily-api-key");
    gcp.create_secret(&tavily, &Default::default()).await?;
    gcp.add_version(&tavily, &SecretPayload::new(b"tvly-demo-value".to_vec()))
        .await?;

    step("Installing the LiteLLMDeployment CRD");
    let client = cp.client()?;
    install_litellm_crd(&client).await?;

    step("Running `litellm-operator run` against both");
    // The tenancy policy a cluster admin would set through the chart's `tenancy` values: namespace llm may use
    // the other team's tavily-api-key as an external secret (the safe default allows no external secret).
    let tenancy_path = cp.dir().join("tenancy.yaml");
    std::fs::write(
        &tenancy_path,
        "tenants:\n  - name: platform\n    namespaces: [llm]\n    projects: [my-project]\n    \
         externalSecrets: [tavily-api-key]\n",
    )?;
    let log_path = cp.dir().join("operator.log");
    let log = std::fs::File::create(&log_path)?;
    let mut operator = Command::new(&operator_bin)
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--resync-interval",
            "1m",
            "--gcp-endpoint",
            &endpoint,
            "--tenancy-policy",
            &tenancy_path.display().to_string(),
        ])
        .env("KUBECONFIG", cp.kubeconfig())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()?;
    println!("    operator log: {}", log_path.display());

    step("Applying examples/litellm-deployment.yaml (11 credentials, the whole gcloud runbook)");
    kubectl(
        &cp,
        &[
            "apply",
            "-f",
            &repo_path("examples/litellm-deployment.yaml")
                .display()
                .to_string(),
        ],
    )
    .await?;

    step("Waiting for Ready");
    let took = wait_ready(&cp, &mut operator, "litellm-proxy", &log_path).await?;
    println!("    Ready in {:.1}s", took.as_secs_f64());

    step("kubectl get llmd -n llm");
    kubectl(&cp, &["get", "llmd", "-n", "llm"]).await?;
    step("Pinned secret versions (status.secrets)");
    kubectl(
        &cp,
        &[
            "get",
            "llmd",
            "litellm-proxy",
            "-n",
            "llm",
            "-o",
            "jsonpath={range .status.secrets[*]}{.env}{\"\\t\"}{.secret}{\"\\t\"}{.version}{\"\\n\"}{end}",
        ],
    )
    .await?;

    let gcloud = Gcloud::new(&emulator)?;
    step("gcloud secrets list --project my-project   (gcloud talking to the emulator)");
    gcloud
        .run(&["secrets", "list", "--project", "my-project"])
        .await?;
    step("gcloud secrets versions list database-url");
    gcloud
        .run(&[
            "secrets",
            "versions",
            "list",
            "database-url",
            "--project",
            "my-project",
        ])
        .await?;
    step("gcloud secrets get-iam-policy database-url");
    gcloud
        .run(&[
            "secrets",
            "get-iam-policy",
            "database-url",
            "--project",
            "my-project",
        ])
        .await?;
    step("The Cloud Run service's secret references (GET .../v2/.../services/litellm-proxy)");
    let service: serde_json::Value = reqwest_json(&format!(
        "{endpoint}/v2/projects/my-project/locations/us-central1/services/litellm-proxy"
    ))
    .await?;
    for env in service["template"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match env["valueSource"]["secretKeyRef"].as_object() {
            Some(r) => println!(
                "    {:<22} -> {}:{}",
                env["name"].as_str().unwrap_or_default(),
                r["secret"].as_str().unwrap_or_default(),
                r["version"].as_str().unwrap_or_default()
            ),
            None => println!(
                "    {:<22} = {}",
                env["name"].as_str().unwrap_or_default(),
                env["value"].as_str().unwrap_or_default()
            ),
        }
    }
    println!(
        "    latest ready revision: {}",
        service["latestReadyRevision"].as_str().unwrap_or_default()
    );

    step(
        "Applying examples/live-demo.yaml (the real LiteLLM proxy, a mock model in spec.config, no database)",
    );
    kubectl(
        &cp,
        &[
            "apply",
            "-f",
            &repo_path("examples/live-demo.yaml").display().to_string(),
        ],
    )
    .await?;
    let took = wait_ready(&cp, &mut operator, "litellm-demo", &log_path).await?;
    println!(
        "    Ready in {:.1}s: a LiteLLM process serves its revision",
        took.as_secs_f64()
    );
    let url = kubectl_output(
        &cp,
        &[
            "get",
            "llmd",
            "litellm-demo",
            "-n",
            "llm",
            "-o",
            "jsonpath={.status.url}",
        ],
    )
    .await?;
    step("A chat completion through the service URL, with the master key read from Secret Manager by gcloud");
    let curl = format!(
        "curl -s {url}/v1/chat/completions \\\n      -H \"Authorization: Bearer $(gcloud secrets versions access latest \
         --secret=litellm-demo-litellm-master-key --project=my-project)\" \\\n      -H 'Content-Type: application/json' \
         -d '{{\"model\": \"demo\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'",
        url = url.trim()
    );
    println!("    $ {curl}");
    let answer = gcloud.shell(&curl).await?;
    let reply: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| format!("the proxy's answer is not JSON ({e}): {answer}"))?;
    println!("    {answer}");
    match live::answer(&reply) {
        Some(text) => println!("    the proxy answered: {text}"),
        None => return Err(format!("no chat completion in the proxy's answer: {answer}").into()),
    }

    if once {
        step("Done (--once): stopping everything");
        return Ok(());
    }
    println!(
        "\nEverything stays up until Ctrl-C. Try, in another shell:\n\
         \n  export KUBECONFIG={kubeconfig}\
         \n  kubectl -n llm edit secret litellm-credentials     # change database-url: a new version and revision roll out\
         \n  kubectl -n llm get llmd -w\
         \n  kubectl -n llm describe llmd litellm-proxy         # Events: every Google write\
         \n  kubectl -n llm edit llmd litellm-demo              # change mock_response in spec.config: a new LiteLLM revision\
         \n  curl {url}/health/readiness                        # the live demo's proxy, through the emulator\
         \n\n  gcloud against the emulator (`gcloud run` speaks Cloud Run v1 on a regional host, REGION-run.fake,\
         \n  that only the emulator acting as gcloud's HTTP proxy can answer):\
         \n{exports}\
         \n  gcloud secrets versions list database-url --project my-project\
         \n  gcloud run services describe litellm-proxy --region us-central1 --project my-project\n",
        kubeconfig = cp.kubeconfig().display(),
        exports = gcloud.exports(),
        url = url.trim(),
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => step("Ctrl-C: stopping the operator, the emulator, kube-apiserver and etcd"),
        status = operator.wait() => step(&format!("The operator exited ({status:?}); stopping everything")),
    }
    Ok(())
}

/// Waits (up to 180 s) until LiteLLMDeployment `name` in namespace llm is Ready, and says how long it took.
async fn wait_ready(
    cp: &ControlPlane,
    operator: &mut tokio::process::Child,
    name: &str,
    log_path: &std::path::Path,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    loop {
        let out = kubectl_output(
            cp,
            &[
                "get",
                "llmd",
                name,
                "-n",
                "llm",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .await?;
        if out.trim() == "True" {
            return Ok(started.elapsed());
        }
        if let Some(status) = operator.try_wait()? {
            return Err(format!("the operator exited ({status}); see {}", log_path.display()).into());
        }
        if started.elapsed() > Duration::from_secs(180) {
            kubectl(cp, &["get", "llmd", name, "-n", "llm", "-o", "yaml"]).await?;
            return Err(format!("{name} not Ready after 180 s").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn kubectl(cp: &ControlPlane, args: &[&str]) -> Result<(), Failure> {
    let status = cp.kubectl().args(args).status().await?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kubectl {} failed", args.join(" ")).into())
    }
}

async fn kubectl_output(cp: &ControlPlane, args: &[&str]) -> Result<String, Failure> {
    let out = cp.kubectl().args(args).output().await?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn reqwest_json(url: &str) -> Result<serde_json::Value, Failure> {
    Ok(reqwest::get(url).await?.error_for_status()?.json().await?)
}

/// gcloud with an isolated config pointed at the emulator.
struct Gcloud {
    /// Every setting that points gcloud at the emulator (`Emulator::gcloud_env`); the demo runs gcloud with
    /// exactly these and prints them.
    env: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

impl Gcloud {
    fn new(emulator: &gcp_emulator::Emulator) -> Result<Self, Failure> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("token"), "demo-token\n")?;
        Ok(Self {
            env: emulator.gcloud_env(dir.path()),
            _dir: dir,
        })
    }

    /// [`Gcloud::env`] as `export` lines for another shell.
    fn exports(&self) -> String {
        self.env
            .iter()
            .map(|(k, v)| format!("  export {k}={v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs `script` with bash, gcloud pointed at the emulator, and returns its standard output.
    async fn shell(&self, script: &str) -> Result<String, Failure> {
        let out = Command::new("bash")
            .args(["-c", script])
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(Stdio::inherit())
            .output()
            .await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!("`{script}` failed ({})", out.status).into())
        }
    }

    async fn run(&self, args: &[&str]) -> Result<(), Failure> {
        let status = Command::new("gcloud")
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .await?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("gcloud {} failed", args.join(" ")).into())
        }
    }
}
