//! `scsae sweep`: train SAEs over layers x lambdas and tabulate them like the paper's Table 2.

use std::path::PathBuf;

use clap::Args;

use crate::cli::train::SaeOptions;
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::sae::sweep::{run_sweep, SweepSpec};

/// `scsae sweep` arguments.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Extraction folder written by `scsae extract`.
    #[arg(long)]
    pub activations: PathBuf,
    /// Comma-separated layers.
    #[arg(long, default_value = "0,6,11", value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Comma-separated L1 coefficients (standard SAE) or L0 coefficients (jumprelu).
    #[arg(long, default_value = "1,3,10", value_delimiter = ',')]
    pub lambdas: Vec<f64>,
    /// Comma-separated k values (topk / batchtopk / matryoshka sweeps).
    #[arg(long, default_value = "16,32,64", value_delimiter = ',')]
    pub ks: Vec<usize>,
    /// Output folder: one subfolder per run, sweep.csv / sweep.parquet, l0_vs_r2.png / .svg.
    #[arg(long)]
    pub out: PathBuf,
    /// Training options.
    #[command(flatten)]
    pub sae: SaeOptions,
}

/// Run the sweep; returns the table as text.
pub fn run(args: &SweepArgs, rt: &Runtime) -> Result<String> {
    if args.lambdas.iter().any(|l| !(l.is_finite() && *l >= 0.0)) {
        return Err(Error::invalid("--lambdas must be non-negative numbers"));
    }
    let spec = SweepSpec {
        layers: args.layers.iter().map(|s| s.trim().to_string()).collect(),
        lambdas: args.lambdas.clone(),
        ks: args.ks.clone(),
        base: args.sae.config(0.0, rt.seed),
        level: args.sae.level,
    };
    let rows = run_sweep(rt, &args.activations, &spec, &args.out, &args.sae.options())?;
    let mut text = String::from("layer\tlambda\tk\tL0\tR2\tMSE\talive\tdead\n");
    for r in &rows {
        let m = &r.metrics;
        text.push_str(&format!(
            "{}\t{}\t{}\t{:.1}\t{:.4}\t{:.4}\t{}\t{}\n",
            r.layer,
            m.lambda,
            m.k.map(|k| k.to_string()).unwrap_or_else(|| "-".into()),
            m.metrics.l0,
            m.metrics.r2,
            m.metrics.mse,
            m.metrics.alive,
            m.metrics.dead
        ));
    }
    text.push_str(&format!("wrote {}", args.out.join("sweep.csv").display()));
    Ok(text)
}
