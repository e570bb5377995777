//! The `litellm-operator` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runs the LiteLLM proxy on Google Cloud Run with every credential in Google Secret Manager.
#[derive(Parser)]
#[command(name = "litellm-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the LiteLLMDeployment CustomResourceDefinition (YAML) generated from the Rust types.
    Crd {
        /// Print the Markdown field reference (docs/crd-reference.md) instead of the YAML.
        #[arg(long)]
        reference: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { reference } => {
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
    }
}
