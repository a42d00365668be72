//! `spikgpt annotate`: label cells with a trained model; `Unknown` below the confidence threshold.

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::RuntimeArgs;
use crate::error::{Error, Result};
use crate::explain::ablation::ControlOptions;
use crate::explain::annotate_workflow::{
    annotate_and_explain, AnnotateH5ad, AnnotateReport, AnnotateRequest, ExplainRequest,
};
use crate::explain::attribution::Method;
use crate::explain::ExplainOptions;
use crate::spikgpt::annotate::{load_model_dir, LoadedModel, DEFAULT_THRESHOLD};
use crate::spikgpt::inputs::{load_embeddings, Embeddings};

/// The annotator and the cells it reads (shared by `annotate` and `ablate`).
#[derive(Debug, Clone, Args)]
pub struct AnnotatorInput {
    /// Model folder written by `spikgpt train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Cell embeddings (extraction store folder or matrix file), same dimension as the training ones.
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Which cell matrix of an extraction store: cls or a layer number.
    #[arg(long, default_value = "cls")]
    pub embedding_layer: String,
}

impl AnnotatorInput {
    /// Load the model folder and the embeddings.
    pub fn load(&self, rt: &crate::runtime::Runtime) -> Result<(LoadedModel, Embeddings)> {
        let loaded = load_model_dir(&self.model, rt)?;
        let emb = load_embeddings(&self.embeddings, &self.embedding_layer)?;
        Ok((loaded, emb))
    }
}

/// Arguments of `spikgpt annotate`.
#[derive(Debug, Clone, Args)]
pub struct AnnotateArgs {
    /// Model and cells.
    #[command(flatten)]
    pub input: AnnotatorInput,
    /// The paper's rule instead of the calibrated one: cells whose highest class probability (T = 1)
    /// is below this are labelled Unknown (paper: 0.95).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Re-threshold the calibrated rule to keep this share of known validation cells
    /// [default: the model folder's, 0.95].
    #[arg(long)]
    pub keep: Option<f64>,
    /// Novelty score of the calibrated rule: max_prob, energy, knn_distance or combined
    /// [default: the model folder's, chosen by leave-one-type-out at training].
    #[arg(long)]
    pub score: Option<String>,
    /// Output table (`.csv`; a `.parquet` twin is written beside it, plus `<stem>_baseline.*` and
    /// `<stem>_spiking.json`).
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
    /// Also write a copy of the cells' .h5ad with the calls in obs (spikgpt_label, spikgpt_best,
    /// spikgpt_confidence, spikgpt_unknown), obsm['spikgpt_proba'] and uns['spikgpt'].
    #[arg(long, value_name = "OUT.h5ad")]
    pub write_h5ad: Option<PathBuf>,
    /// The .h5ad to copy (default: the data file recorded in the extraction folder).
    #[arg(long, requires = "write_h5ad")]
    pub data: Option<PathBuf>,
    /// Cells per inference batch (results do not depend on it).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Explanations through SAE features.
    #[command(flatten)]
    pub explain: ExplainArgs,
}

/// How a method of attribution is named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttributionArg {
    /// Gradient x activation (one backward pass).
    Grad,
    /// Integrated gradients from the all-zero code (`--ig-steps` passes).
    Ig,
}

/// Options of `spikgpt annotate --sae`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// SAE trained on the same embeddings (same layer and scGPT model): explain every call through its
    /// features (`<stem>_attribution.*`, `<stem>_features.*`, class reports, ablation check).
    #[arg(long)]
    pub sae: Option<PathBuf>,
    /// Output folder of `scsae analyze` for this SAE (or its features table): adds each feature's best
    /// cell type, AUROC and top enriched gene set.
    #[arg(long, requires = "sae")]
    pub analysis: Option<PathBuf>,
    /// Features listed per cell.
    #[arg(long, default_value_t = 10)]
    pub top_features: usize,
    /// Attribution method.
    #[arg(long, value_enum, default_value_t = AttributionArg::Grad)]
    pub attribution: AttributionArg,
    /// Path steps of integrated gradients.
    #[arg(long, default_value_t = 32)]
    pub ig_steps: usize,
    /// Numbers of top-attributed features removed together in the ablation check.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    pub ablation_k: Vec<usize>,
    /// Random size-matched control draws per cell in the ablation check.
    #[arg(long, default_value_t = 10)]
    pub ablation_draws: usize,
    /// Report the raw surrogate-gradient terms instead of scaling each cell's terms to add up to its
    /// logit difference (the scale and the residual are reported either way).
    #[arg(long)]
    pub raw_attribution: bool,
    /// Skip the top-vs-random ablation check.
    #[arg(long)]
    pub no_ablation: bool,
}

impl ExplainArgs {
    /// The library options.
    pub fn options(&self, threshold: f64, batch_size: usize, seed: u64) -> Result<ExplainOptions> {
        let method = match self.attribution {
            AttributionArg::Grad => Method::GradientXActivation,
            AttributionArg::Ig => Method::parse("ig", self.ig_steps)?,
        };
        if self.ablation_draws == 0 {
            return Err(Error::invalid("--ablation-draws must be at least 1"));
        }
        if self.top_features == 0 {
            return Err(Error::invalid("--top-features must be at least 1"));
        }
        let control = (!self.no_ablation).then(|| ControlOptions {
            ks: self.ablation_k.clone(),
            draws: self.ablation_draws,
            seed,
            threshold,
            batch_size,
            ..ControlOptions::default()
        });
        Ok(ExplainOptions {
            method,
            top_features: self.top_features,
            normalise: !self.raw_attribution,
            control,
            batch_size,
            progress: true,
            ..ExplainOptions::default()
        })
    }
}

/// Run `spikgpt annotate`, returning what was written.
pub fn run(args: &AnnotateArgs, runtime: &RuntimeArgs) -> Result<AnnotateReport> {
    let rt = runtime.runtime()?;
    let explain = match &args.explain.sae {
        Some(sae) => Some(ExplainRequest {
            sae,
            analysis: args.explain.analysis.as_deref(),
            options: args
                .explain
                .options(DEFAULT_THRESHOLD, args.batch_size, runtime.seed)?,
        }),
        None => None,
    };
    annotate_and_explain(
        &AnnotateRequest {
            model: &args.input.model,
            embeddings: &args.input.embeddings,
            embedding_layer: &args.input.embedding_layer,
            threshold: args.threshold,
            keep: args.keep,
            score: args.score.as_deref(),
            out: &args.out,
            force: args.force,
            batch_size: args.batch_size,
            explain,
            h5ad: args.write_h5ad.as_deref().map(|out| AnnotateH5ad {
                out,
                data: args.data.as_deref(),
            }),
        },
        &rt,
    )
}
