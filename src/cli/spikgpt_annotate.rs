//! `spikgpt annotate`: label cells with a trained model; `Unknown` below the confidence threshold.

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::RuntimeArgs;
use crate::error::{Error, Result};
use crate::explain::ablation::ControlOptions;
use crate::explain::attribution::Method;
use crate::explain::decompose::load_for_model;
use crate::explain::interpret::Interpretations;
use crate::explain::{explain_annotation, ExplainOptions};
use crate::spikgpt::activity::ForwardStats;
use crate::spikgpt::annotate::{
    annotate, load_model_dir, resolve_rule, write_annotation, LoadedModel, DEFAULT_THRESHOLD,
};
use crate::spikgpt::calibration::Rule;
use crate::spikgpt::inputs::{cell_ids, load_embeddings, Embeddings};
use crate::spikgpt::novelty::Score;
use crate::spikgpt::predictions::split_stem;

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

/// Run `spikgpt annotate`, returning the summary to print.
pub fn run(args: &AnnotateArgs, runtime: &RuntimeArgs) -> Result<String> {
    crate::spikgpt::predictions::check_table_out(&args.out, args.force)?;
    crate::cli::common::check_batch_size(args.batch_size)?;
    let rt = runtime.runtime()?;
    let (loaded, emb) = args.input.load(&rt)?;
    let score = args.score.as_deref().map(Score::parse).transpose()?;
    let rule = resolve_rule(&loaded, args.threshold, args.keep, score)?;
    let k = loaded.model.config.input_dim;
    if emb.matrix.n_cols != k {
        return Err(Error::input(
            &args.input.embeddings,
            format!(
                "embeddings have {} dimensions but the model in {} was trained on {k}",
                emb.matrix.n_cols,
                args.input.model.display()
            ),
        ));
    }
    emb.matrix.check_finite(&args.input.embeddings)?;
    let ids = cell_ids(&emb.matrix);
    // Everything the explanation needs is checked before anything is written.
    let explain_threshold = match &rule {
        Rule::Paper { threshold } => *threshold,
        Rule::Calibrated(_) => DEFAULT_THRESHOLD,
    };
    let explain = match &args.explain.sae {
        Some(dir) => {
            let opts = args
                .explain
                .options(explain_threshold, args.batch_size, runtime.seed)?;
            let dec = load_for_model(dir, &loaded, &emb)?;
            if let Some(c) = &opts.control {
                c.validate(dec.dict.d_sae)?;
            }
            let meaning = match &args.explain.analysis {
                Some(a) => Interpretations::read(a, dec.dict.d_sae)?,
                None => Interpretations::default(),
            };
            Some((dec, meaning, opts))
        }
        None => None,
    };
    let mut stats = ForwardStats::default();
    let ann = annotate(
        &loaded,
        &ids,
        &emb.matrix.data,
        &rule,
        args.batch_size,
        Some(&mut stats),
    )?;
    let (dir, stem) = split_stem(&args.out);
    let summary = write_annotation(&ann, &args.out, &stats)?;
    let mut s = summary.to_string();
    if loaded.calibration.is_none() && args.threshold.is_none() {
        s.push_str("  note: this model folder has no calibration (older version): the paper's 0.95 cut-off was used\n");
    }
    if let Some((dec, meaning, opts)) = explain {
        let summary = explain_annotation(
            &loaded,
            &dec,
            &ids,
            &ann.main.label,
            &meaning,
            &opts,
            &dir,
            &stem,
        )?;
        s.push('\n');
        s.push_str(&summary.to_text());
    }
    Ok(s)
}
