//! `scsae`: extract scGPT activations, train sparse autoencoders, analyse their features.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scsae::cli::{self, common::RuntimeArgs};

#[derive(Parser)]
#[command(
    name = "scsae",
    version,
    about = "Sparse autoencoders on scGPT: extract, train, analyse"
)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a data file: cells, genes, non-zeros, obs columns, label counts.
    Inspect(cli::inspect::InspectArgs),
    /// Run scGPT on a data set and store every layer's activations (per cell, optionally per token).
    Extract(cli::extract::ExtractArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(a) => {
            let _ = &cli.runtime;
            println!("{}", cli::inspect::run(&a)?);
        }
        Command::Extract(a) => {
            let report = cli::extract::run(&a, &cli.runtime.runtime()?)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", cli::extract::summary(&report, &a.out));
            }
        }
    }
    Ok(())
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
