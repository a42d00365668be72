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
    /// Train a sparse autoencoder on one layer's activations (the paper's recipe by default).
    Train(cli::train::TrainArgs),
    /// Train SAEs over layers x lambdas; write a Table-2-style table and an L0-vs-R2 plot.
    Sweep(cli::sweep::SweepArgs),
    /// Apply a saved SAE to activations (cells or tokens) and write the codes.
    Encode(cli::encode::EncodeArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(a) => {
            let _ = &cli.runtime;
            println!("{}", cli::inspect::run(&a)?);
        }
        Command::Train(a) => println!("{}", cli::train::run(&a, &cli.runtime.runtime()?)?),
        Command::Sweep(a) => println!("{}", cli::sweep::run(&a, &cli.runtime.runtime()?)?),
        Command::Encode(a) => {
            cli.runtime.runtime()?;
            println!("{}", cli::encode::run(&a)?);
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
