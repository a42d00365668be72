//! `spikgpt`: train the spiking self-attention cell annotator, annotate and evaluate.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scsae::cli::{self, common::RuntimeArgs};

#[derive(Parser)]
#[command(
    name = "spikgpt",
    version,
    about = "Spiking self-attention cell-type annotator on scGPT embeddings"
)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train on labelled embeddings; writes a model folder with a validation report.
    Train(Box<cli::spikgpt_train::TrainArgs>),
    /// Label cells with a trained model (Unknown below the confidence threshold).
    Annotate(cli::spikgpt_annotate::AnnotateArgs),
    /// Remove SAE features from every cell and report how the calls change.
    Ablate(cli::spikgpt_ablate::AblateArgs),
    /// Metrics, confusion matrix, Unknown-rejection report and spiking statistics of predictions.
    Evaluate(cli::spikgpt_evaluate::EvaluateArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let text = match &cli.command {
        Command::Train(a) => cli::spikgpt_train::run(a, &cli.runtime)?,
        Command::Annotate(a) => cli::spikgpt_annotate::run(a, &cli.runtime)?.to_string(),
        Command::Ablate(a) => cli::spikgpt_ablate::run(a, &cli.runtime)?,
        Command::Evaluate(a) => cli::spikgpt_evaluate::run(a)?,
    };
    cli::common::print_out(text);
    Ok(())
}

fn main() -> ExitCode {
    match run(cli::common::parse_args::<Cli>()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
