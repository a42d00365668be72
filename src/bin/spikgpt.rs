//! `spikgpt`: train the spiking self-attention cell annotator, annotate and evaluate.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scsae::cli::common::RuntimeArgs;

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
enum Command {}

fn run(cli: Cli) -> anyhow::Result<()> {
    let _ = &cli.runtime;
    match cli.command {}
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
