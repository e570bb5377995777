//! `gcp-emulator`: serves the emulated Google APIs until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// A faithful local Google Cloud for Secret Manager, IAM and Cloud Run v2.
#[derive(Parser, Debug)]
#[command(name = "gcp-emulator", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// Persist state to this JSON file and reload it at start.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Latency added to every API call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency: u64,
    /// How long a revision takes to start, e.g. `2s`, `500ms`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    revision_startup: Duration,
    /// How old an IAM grant must be before revision start-up honours it, e.g. `2m`.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    iam_propagation: Duration,
    /// Multiplier on Google's default quotas; 0 disables quotas.
    #[arg(long, default_value_t = 1.0)]
    quota_scale: f64,
    /// A service account that exists (repeatable); others exist once created through the IAM API or seeded.
    #[arg(long = "service-account")]
    service_accounts: Vec<String>,
    /// The old lenient mode: while none are seeded or created, every well-formed service account exists.
    #[arg(long)]
    any_service_account_exists: bool,
    /// A project whose GKE Workload Identity pool exists (repeatable).
    #[arg(long = "workload-identity-pool")]
    workload_identity_pools: Vec<String>,
    /// A container image whose revisions fail to start (repeatable).
    #[arg(long = "crashing-image")]
    crashing_images: Vec<String>,
    /// The code of a failed revision's operation error: a status name or number (Google has answered 9,
    /// FAILED_PRECONDITION, and 13, INTERNAL).
    #[arg(long, default_value = "FAILED_PRECONDITION", value_parser = parse_code)]
    revision_failure_code: gcp_emulator::Code,
    /// Require a token minted by the emulator (`POST /_emulator/tokens`) on every call, and check each call's
    /// IAM permission against project and resource policies.
    #[arg(long)]
    enforce_auth: bool,
    /// Run revisions of IMAGE as local processes with COMMAND, a shell command line (repeatable): `IMAGE=COMMAND`,
    /// split at the first `=`. The container's `args` follow the command; its `command` is ignored. Services then
    /// serve traffic at `http://LISTEN/_run/HOST/`.
    #[arg(long = "run-image", value_name = "IMAGE=COMMAND", value_parser = parse_run_image)]
    run_images: Vec<(String, String)>,
    /// Directory for revision processes (one subdirectory each); default: a fresh temporary directory, removed
    /// at shutdown.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Stop a revision's process after this many seconds without requests, unless the revision or its service
    /// sets minimum instances (Cloud Run scales such revisions to zero); the next request starts it again. 0:
    /// never.
    #[arg(long, value_name = "SECONDS", default_value_t = gcp_emulator::DEFAULT_STOP_IDLE_AFTER.as_secs())]
    stop_idle_after: u64,
}

fn parse_run_image(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((image, command)) if !image.is_empty() && !command.trim().is_empty() => {
            Ok((image.to_string(), command.to_string()))
        }
        _ => Err(format!("expected IMAGE=COMMAND, got {text}")),
    }
}

fn parse_code(text: &str) -> Result<gcp_emulator::Code, String> {
    gcp_emulator::Code::parse(text).ok_or_else(|| format!("not a status name or number: {text}"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("invalid duration: {text}"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration unit in {text}; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {text}: {e}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = gcp_emulator::Config {
        listen: Some(args.listen),
        latency: Duration::from_millis(args.latency),
        revision_startup: args.revision_startup,
        iam_propagation: args.iam_propagation,
        quota_scale: args.quota_scale,
        state_file: args.state,
        service_accounts: args.service_accounts,
        any_service_account_exists: args.any_service_account_exists,
        workload_identity_pools: args.workload_identity_pools,
        crashing_images: args.crashing_images,
        enforce_auth: args.enforce_auth,
        revision_failure_code: args.revision_failure_code,
        run_images: args.run_images.into_iter().collect(),
        run_dir: args.run_dir,
        stop_idle_after: (args.stop_idle_after > 0).then(|| Duration::from_secs(args.stop_idle_after)),
    };
    let emulator = gcp_emulator::spawn(config).await?;
    println!("gcp-emulator listening on {}", emulator.url());
    shutdown_signal().await;
    emulator.shutdown().await;
    tracing::info!("Stopped gcp-emulator");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
