//! `scsae steer`: scale or clamp one SAE feature in scGPT's residual stream and report the change
//! of the CLS embedding, SpikGPT's calls and the expression head's gene predictions.

use std::path::PathBuf;

use clap::Args;

use crate::cli::fidelity::SpliceArgs;
use crate::error::{Error, Result};
use crate::intervene::{load_inputs, steer, SteerMode, SteerRequest};
use crate::runtime::Runtime;

/// Arguments of `scsae steer`.
#[derive(Debug, Clone, Args)]
pub struct SteerArgs {
    /// Model, SAE, cells and output.
    #[command(flatten)]
    pub splice: SpliceArgs,
    /// Feature index (0-based, as `f<i>` in the analysis tables).
    #[arg(long)]
    pub feature: usize,
    /// Multiply the feature's code by S at every token (0 removes it, 2 doubles it).
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub scale: Option<f64>,
    /// Set the feature's code to V at every token (switches it on where it is off).
    #[arg(
        long,
        value_name = "V",
        allow_hyphen_values = true,
        conflicts_with = "scale"
    )]
    pub clamp: Option<f64>,
    /// SpikGPT model folder trained on this model's CLS embeddings: report how its calls change.
    #[arg(long)]
    pub spikgpt: Option<PathBuf>,
}

/// Run; returns the headline.
pub fn run(a: &SteerArgs, rt: &Runtime) -> Result<String> {
    let mode = match (a.scale, a.clamp) {
        (Some(s), None) => SteerMode::Scale(s),
        (None, Some(v)) => SteerMode::Clamp(v),
        _ => return Err(Error::invalid("give --scale S or --clamp V")),
    };
    let s = &a.splice;
    let l = load_inputs(&s.spec(), rt)?;
    let r = steer(
        &SteerRequest {
            scgpt: &l.scgpt,
            sae: &l.sae,
            sae_dir: &s.sae,
            site: l.site,
            feature: a.feature,
            mode,
            data: &l.data,
            data_desc: l.data_desc.clone(),
            labels: l.labels.clone(),
            spikgpt: a.spikgpt.clone(),
            out: &s.out,
            force: s.force,
            batch_size: s.batch_size,
            max_length: s.max_length,
        },
        rt,
    )?;
    Ok(crate::intervene::steer::headline(&r, &s.out))
}
