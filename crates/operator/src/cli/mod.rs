//! `plan`, `apply` and `import`: the reconcile pipeline from the command line, without a cluster.
//!
//! `plan` and `apply` run the same planner and executor as the controller ([`converge`]): `plan` predicts the
//! phases' effects and performs nothing; `apply` performs them and keeps passing until converged. The record of
//! what is ours (the controller's `status`) lives in a state file ([`state`]). So what `plan` prints is what
//! `apply` does, an `apply` after a converged `apply` writes nothing, and both reach the controller's end state.

mod converge;
mod import;
mod manifest;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use litellm_operator_gcp::Gcp;
use prometheus_client::registry::Registry;

use crate::gcp_config::GcpArgs;

/// Exit code when a plan found changes (0: none, 1: error).
const EXIT_CHANGES: u8 = 2;

/// Output format of `plan` and `apply`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Readable lines.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// Output format of `import`: the manifest, in either of the forms `kubectl apply -f` and `plan -f` read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestFormat {
    /// YAML, with a comment naming the service it came from.
    #[default]
    Yaml,
    /// One JSON document.
    Json,
}

/// `litellm-operator plan`.
#[derive(clap::Args, Clone, Debug)]
pub struct PlanArgs {
    /// YAML files with LiteLLMDeployments and the Kubernetes Secrets and ConfigMaps they read (multi-document).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The record of what earlier applies created and granted (read only by `plan`).
    #[arg(long, default_value = state::DEFAULT_STATE_FILE)]
    pub state: PathBuf,
    /// Check every deployment against this tenancy policy first (as the controller does).
    #[arg(long)]
    pub tenancy_policy: Option<PathBuf>,
    #[command(flatten)]
    pub gcp: GcpArgs,
}

/// `litellm-operator apply`.
#[derive(clap::Args, Clone, Debug)]
pub struct ApplyArgs {
    /// YAML files with LiteLLMDeployments and the Kubernetes Secrets and ConfigMaps they read (multi-document).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// How long to wait for the new revision to become Ready.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Output format of the result (the actions performed and the progress go to stderr as lines either way).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The record of what applies created and granted; rewritten after every pass.
    #[arg(long, default_value = state::DEFAULT_STATE_FILE)]
    pub state: PathBuf,
    /// Check every deployment against this tenancy policy first (as the controller does).
    #[arg(long)]
    pub tenancy_policy: Option<PathBuf>,
    #[command(flatten)]
    pub gcp: GcpArgs,
}

/// `litellm-operator import`.
#[derive(clap::Args, Clone, Debug)]
pub struct ImportArgs {
    /// Google Cloud project of the service.
    #[arg(long)]
    pub project: String,
    /// Cloud Run region of the service.
    #[arg(long)]
    pub region: String,
    /// Cloud Run service id.
    #[arg(long)]
    pub service: String,
    /// Namespace of the LiteLLMDeployment written.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Format of the LiteLLMDeployment written (warnings go to stderr either way).
    #[arg(short = 'o', long, value_enum, default_value_t = ManifestFormat::Yaml)]
    pub output: ManifestFormat,
    #[command(flatten)]
    pub gcp: GcpArgs,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::resync::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration such as 90s or 5m"))
}

/// Runs `plan`: exit 0 when nothing would change, 2 when something would, 1 on error.
pub fn plan(args: PlanArgs) -> ExitCode {
    block_on(async move {
        let manifests = manifest::load(&args.files)?;
        check_tenancy(&manifests, args.tenancy_policy.as_deref())?;
        let state = state::State::load(&args.state).map_err(Problems::from)?;
        let gcp = connect(&args.gcp).await?;
        let report = converge::plan(&gcp, &manifests, &state).await?;
        match args.output {
            OutputFormat::Text => print!("{}", report.text()),
            OutputFormat::Json => println!("{}", report.json()),
        }
        Ok(if report.changes() > 0 {
            ExitCode::from(EXIT_CHANGES)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// Runs `apply`: exit 0 once converged and the revision is Ready, 1 on error or a failed revision.
pub fn apply(args: ApplyArgs) -> ExitCode {
    block_on(async move {
        let manifests = manifest::load(&args.files)?;
        check_tenancy(&manifests, args.tenancy_policy.as_deref())?;
        let gcp = connect(&args.gcp).await?;
        let report = converge::apply(&gcp, &manifests, &args.state, args.timeout).await?;
        match args.output {
            OutputFormat::Text => print!("{}", report.text()),
            OutputFormat::Json => println!("{}", report.json()),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `import`: prints a LiteLLMDeployment adopting the service; warnings go to stderr.
pub fn import(args: ImportArgs) -> ExitCode {
    block_on(async move {
        let gcp = connect(&args.gcp).await?;
        let imported = import::import(&gcp, &args).await?;
        for warning in &imported.warnings {
            eprintln!("warning: {warning}");
        }
        match args.output {
            ManifestFormat::Yaml => print!("{}", imported.yaml()?),
            ManifestFormat::Json => println!("{}", imported.json()),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// With a policy, refuses (before any Google call) every deployment its namespace may not make. Without one the
/// CLI is unrestricted: it acts with the caller's own Google identity, not a shared one a tenant could borrow.
fn check_tenancy(manifests: &manifest::Manifests, policy: Option<&std::path::Path>) -> Result<(), Problems> {
    let Some(path) = policy else {
        return Ok(());
    };
    let policy = crate::plan::tenancy::load(path).map_err(Problems::from)?;
    let refused: Vec<String> = manifests
        .deployments
        .iter()
        .filter_map(|d| {
            let ns = d.obj.metadata.namespace.as_deref().unwrap_or("default");
            let adopt = d.obj.adopts();
            policy
                .check(ns, &d.desired, adopt)
                .err()
                .map(|f| format!("{}: LiteLLMDeployment {}: {f}", d.file, d.id()))
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Problems(refused))
    }
}

/// Problems that stop a command, one line each (naming the file and field, never a secret value).
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<String>);

impl<T: Into<String>> From<T> for Problems {
    fn from(line: T) -> Self {
        Problems(vec![line.into()])
    }
}

async fn connect(args: &GcpArgs) -> Result<Gcp, Problems> {
    let mut registry = Registry::default();
    args.connect(&mut registry)
        .await
        .map_err(|e| Problems::from(format!("Google Cloud access: {e}")))
}

fn block_on(work: impl Future<Output = Result<ExitCode, Problems>>) -> ExitCode {
    // Google's clients and rustls: one crypto provider for the whole process (see `run`).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(Problems(lines)) => {
            for line in lines {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
