//! The `litellm-operator` binary.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use litellm_operator::controller::{self, Context, Settings};
use litellm_operator::leader::Election;
use litellm_operator::logging::{self, LogFormat};
use litellm_operator::metrics::{self, Health, Metrics};
use litellm_operator::{gcp_config, resync};
use tracing::{error, info};

/// `--version`: the crate version and the source revision (`build.rs`), e.g. `0.1.0 (abc1234)`.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LITELLM_OPERATOR_REVISION"),
    ")"
);

/// Exit code of a usage error (an unknown flag, a missing argument): 1 like any error, since clap's own 2 is what
/// `plan` means by "changes".
const EXIT_USAGE: u8 = 1;

/// Runs the LiteLLM proxy on Google Cloud Run with every credential in Google Secret Manager.
#[derive(Parser)]
#[command(name = "litellm-operator", version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format, on stderr: `text`, or `json` (one object per line, as Cloud Logging reads it).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`) or a RUST_LOG-style filter such as
    /// `info,litellm_operator=debug`. Default: RUST_LOG, else `info` for `run` and `warn` for the other commands.
    #[arg(long, global = true)]
    log_level: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller: watch LiteLLMDeployments and keep Google converged with them.
    Run(Box<RunArgs>),
    /// Print the LiteLLMDeployment CustomResourceDefinition (YAML) generated from the Rust types.
    Crd {
        /// Print the Markdown field reference (docs/crd-reference.md) instead of the YAML.
        #[arg(long)]
        reference: bool,
    },
    /// Show what `apply` would change in Google for the LiteLLMDeployments in these files, without writing.
    /// Exit code 0: no changes, 2: changes, 1: error.
    Plan(litellm_operator::cli::PlanArgs),
    /// Converge Google once with the LiteLLMDeployments in these files (no cluster needed) and wait for the
    /// revision.
    Apply(litellm_operator::cli::ApplyArgs),
    /// Print a LiteLLMDeployment that adopts a Cloud Run service deployed with gcloud.
    Import(litellm_operator::cli::ImportArgs),
    /// Print a shell completion script (`source <(litellm-operator completion bash)`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "LITELLM_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Watch only LiteLLMDeployments matching this label selector (sharding).
    #[arg(long)]
    selector: Option<String>,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Periodic resync that finds drift made on Google's side (jittered ±10 %; per-resource annotation
    /// `litellm.dev/resync-interval` overrides it).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Address of the metrics and health server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so only one replica writes.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "litellm-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the election.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Tenancy policy (YAML: which projects, regions, runtime accounts and external secrets each namespace may
    /// use; the chart renders it from its `tenancy` values). Without it the safe default applies everywhere.
    #[arg(long, env = "LITELLM_TENANCY_POLICY")]
    tenancy_policy: Option<std::path::PathBuf>,
    #[command(flatten)]
    gcp: gcp_config::GcpArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    resync::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration such as 90s, 10m or 1h"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    let default_filter = match cli.command {
        Command::Run(_) => logging::DEFAULT_FILTER,
        _ => "warn",
    };
    match logging::filter(cli.log_level.as_deref(), default_filter) {
        Ok(filter) => logging::init(cli.log_format, filter),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    match cli.command {
        Command::Crd { reference } => print_crd(reference),
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "litellm-operator",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Plan(args) => litellm_operator::cli::plan(args),
        Command::Apply(args) => litellm_operator::cli::apply(args),
        Command::Import(args) => litellm_operator::cli::import(args),
        Command::Run(args) => {
            // The Kubernetes client links rustls with ring and Google's clients with aws-lc-rs; rustls refuses to
            // choose between two providers, so pick one for the whole process.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: could not start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "Operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `--help` and `--version` print to stdout and succeed; a usage error prints clap's message and exits
/// [`EXIT_USAGE`].
fn usage(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_crd(reference: bool) -> ExitCode {
    let rendered = if reference {
        litellm_operator_api::reference::markdown().map_err(|e| e.to_string())
    } else {
        litellm_operator_api::crd_yaml().map_err(|e| e.to_string())
    };
    match rendered {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: could not render the CRD: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    // First: a port that cannot be served stops the process here, not later as probes that never pass.
    let listener = metrics::bind(args.metrics_addr).await?;
    let tenancy = match &args.tenancy_policy {
        Some(path) => litellm_operator::plan::tenancy::load(path)?,
        None => litellm_operator::plan::tenancy::TenancyPolicy::default(),
    };
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("no Kubernetes client configuration: {e}"))?;
    let mut metrics = Metrics::new();
    let gcp = args
        .gcp
        .connect(metrics.gcp_registry())
        .await
        .map_err(|e| format!("Google Cloud access: {e}"))?;
    let metrics = Arc::new(metrics);
    let health = Health::default();
    let server = tokio::spawn(metrics::serve(listener, metrics.clone(), health.clone()));
    info!(addr = %args.metrics_addr, "Serving metrics and health");

    let identity = args.identity.clone().unwrap_or_else(|| {
        litellm_operator::leader::default_identity(
            std::env::var("HOSTNAME").ok(),
            std::fs::read_to_string("/etc/hostname").ok(),
            std::process::id(),
        )
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        gcp,
        kube::runtime::events::Reporter {
            controller: "litellm-operator".into(),
            instance: Some(identity.clone()),
        },
        metrics,
        Settings {
            namespace: args.namespace,
            selector: args.selector,
            concurrency: args.concurrency,
            resync: args.resync_interval,
            tenancy,
            ..Settings::default()
        },
    ));

    if args.leader_elect {
        let election = Election::new(args.lease_namespace, args.lease_name, identity);
        let (mut leading, campaign) = election.clone().spawn_with_handle(client.clone());
        // A standby is healthy and ready: otherwise rolling updates and node drains of a 2-replica Deployment
        // would wait forever for a pod that is, by design, not leading.
        health.set_ready();
        info!("Waiting for the leader lease");
        while !*leading.borrow() {
            leading
                .changed()
                .await
                .map_err(|_| "leader election stopped".to_owned())?;
        }
        ctx.metrics.leader.set(1);
        tokio::select! {
            () = controller::run(ctx.clone(), health) => {
                ctx.metrics.leader.set(0);
                // Shut down (SIGTERM / Ctrl-C) after in-flight reconciles finished: hand over at once.
                campaign.abort();
                if let Err(e) = election.release(client).await {
                    tracing::warn!(error = %e, "Could not release the leader lease; a standby takes over when it expires");
                }
            }
            _ = async { while *leading.borrow() { if leading.changed().await.is_err() { break; } } } => {
                return Err("lost the leader lease; exiting so a restart can campaign again".into());
            }
        }
    } else {
        ctx.metrics.leader.set(1);
        controller::run(ctx, health).await;
    }
    server.abort();
    Ok(())
}
