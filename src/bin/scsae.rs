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
    /// Join the stores of a sharded extraction (`extract --shard I/N`) into one store.
    Merge(cli::merge::MergeArgs),
    /// Train a sparse autoencoder on one layer's activations (the paper's recipe by default).
    Train(cli::train::TrainArgs),
    /// Train SAEs over layers x lambdas; write a Table-2-style table and an L0-vs-R2 plot.
    Sweep(cli::sweep::SweepArgs),
    /// Apply a saved SAE to activations (cells or tokens) and write the codes.
    Encode(cli::encode::EncodeArgs),
    /// Export a saved SAE for SAELens (`SAE.load_from_disk`), z-score folded into the weights.
    ExportSaelens(cli::export_saelens::ExportSaelensArgs),
    /// Analyse features: AUROC per cell type, gene attribution, gene-set enrichment, PCA baseline.
    Analyze(Box<cli::analyze::AnalyzeArgs>),
    /// Held-out concept scores: each feature's cell type chosen on validation cells, scored on test.
    Concepts(Box<cli::concepts::ConceptsArgs>),
    /// A static HTML site with a page per SAE feature (opens from disk).
    Atlas(Box<cli::atlas::AtlasArgs>),
    /// Splice the SAE's reconstruction into scGPT: expression loss recovered, CLS cosine, kNN.
    Fidelity(Box<cli::fidelity::FidelityArgs>),
    /// Scale or clamp one SAE feature inside scGPT and report what changes downstream.
    Steer(Box<cli::steer::SteerArgs>),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(a) => {
            let _ = &cli.runtime;
            cli::common::print_out(cli::inspect::run(&a)?);
        }
        Command::Extract(a) => {
            let report = cli::extract::run(&a, &cli.runtime.runtime()?)?;
            if a.json {
                cli::common::print_out(serde_json::to_string_pretty(&report)?);
            } else {
                cli::common::print_out(cli::extract::summary(&report, &a));
            }
        }
        Command::Train(a) => cli::common::print_out(cli::train::run(&a, &cli.runtime.runtime()?)?),
        Command::Sweep(a) => cli::common::print_out(cli::sweep::run(&a, &cli.runtime.runtime()?)?),
        Command::Encode(a) => {
            cli.runtime.runtime()?;
            cli::common::print_out(cli::encode::run(&a)?);
        }
        Command::Merge(a) => {
            let _ = &cli.runtime;
            cli::common::print_out(cli::merge::run(&a)?);
        }
        Command::ExportSaelens(a) => {
            cli.runtime.runtime()?;
            cli::common::print_out(cli::export_saelens::run(&a)?);
        }
        Command::Analyze(a) => {
            let rt = cli.runtime.runtime()?;
            cli::common::print_out(cli::analyze::run(&a, &rt)?);
        }
        Command::Concepts(a) => {
            cli.runtime.runtime()?;
            cli::common::print_out(cli::concepts::run(&a)?);
        }
        Command::Atlas(a) => {
            cli.runtime.runtime()?;
            cli::common::print_out(cli::atlas::run(&a)?);
        }
        Command::Fidelity(a) => {
            let rt = cli.runtime.runtime()?;
            cli::common::print_out(cli::fidelity::run(&a, &rt)?);
        }
        Command::Steer(a) => {
            let rt = cli.runtime.runtime()?;
            cli::common::print_out(cli::steer::run(&a, &rt)?);
        }
    }
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
