//! `spikgpt evaluate`: accuracy, macro precision / recall / F1, per-class table, confusion matrix,
//! the Unknown-rejection report with accuracy–rejection curves (SpikGPT, logistic-regression and kNN
//! baselines), per-batch metrics and spiking statistics, from a table written by `spikgpt annotate`
//! (the work is [`crate::spikgpt::evaluation::evaluate`]).

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::DataArgs;
use crate::error::Result;
use crate::spikgpt::evaluation::{evaluate, EvaluateOptions};
use crate::spikgpt::predictions::split_stem;

/// Arguments of `spikgpt evaluate`.
#[derive(Debug, Clone, Args)]
pub struct EvaluateArgs {
    /// Prediction table from `spikgpt annotate` (.csv or .parquet).
    #[arg(long)]
    pub predictions: PathBuf,
    /// Data file (.h5ad or 10x folder) with the true labels (the annotated data set, which may differ
    /// from the reference).
    #[arg(long)]
    pub data: PathBuf,
    /// obs column with the true cell types.
    #[arg(long)]
    pub label_key: String,
    /// Cell types absent from training (comma-separated); without --label-map, types the model does
    /// not know are added.
    #[arg(long, value_delimiter = ',')]
    pub held_out: Vec<String>,
    /// CSV `query_label,reference_label` renaming the data's types to the model's; an empty
    /// reference_label marks a type the reference lacks (evaluated as unseen).
    #[arg(long)]
    pub label_map: Option<PathBuf>,
    /// obs column (technology, donor, study) to report the metrics per value of.
    #[arg(long)]
    pub batch_key: Option<String>,
    /// Recompute the calls with the paper's rule: maximum probability below this is Unknown
    /// [default: the rule the table was annotated with].
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Logistic-regression baseline table (default: `<stem>_baseline.csv` beside the predictions).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// kNN baseline table (default: `<stem>_knn.csv` beside the predictions).
    #[arg(long)]
    pub knn: Option<PathBuf>,
    /// Spiking statistics JSON (default: `<stem>_spiking.json` beside the predictions, if present).
    #[arg(long)]
    pub spiking: Option<PathBuf>,
    /// Folder for the report files [default: the predictions' folder].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// File stem of the report files.
    #[arg(long, default_value = "evaluation")]
    pub stem: String,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
    /// The cell embeddings the calls were made on (extraction store folder or matrix file): the map
    /// of the cells (`<stem>_map.png`) is drawn from them [default: from the data's expression].
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
    /// Which cell matrix of an extraction store: cls or a layer number.
    #[arg(long, default_value = "cls")]
    pub embedding_layer: String,
    /// Seed of the map (which cells are drawn when there are more than 5,000).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub data_args: DataArgs,
}

/// Run `spikgpt evaluate`, returning the report text.
pub fn run(args: &EvaluateArgs) -> Result<String> {
    let mut baselines = Vec::new();
    if let Some(p) = &args.baseline {
        baselines.push(("logistic_regression".to_string(), p.clone()));
    }
    if let Some(p) = &args.knn {
        baselines.push(("knn".to_string(), p.clone()));
    }
    for (_, p) in &baselines {
        if !p.exists() {
            return Err(crate::error::Error::input(p, "file not found"));
        }
    }
    let opts = EvaluateOptions {
        predictions: args.predictions.clone(),
        data: args.data.clone(),
        load: args.data_args.load_options(),
        label_key: args.label_key.clone(),
        held_out: args.held_out.clone(),
        label_map: args.label_map.clone(),
        batch_key: args.batch_key.clone(),
        threshold: args.threshold,
        baselines,
        spiking: args.spiking.clone(),
        out_dir: args.out_dir.clone(),
        stem: args.stem.clone(),
        force: args.force,
        embeddings: args.embeddings.clone(),
        embedding_layer: args.embedding_layer.clone(),
        seed: args.seed,
    };
    let report = evaluate(&opts)?;
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| split_stem(&args.predictions).0);
    let mut s = report.to_text();
    s.push_str(&format!(
        "wrote {0}/{1}.json, {0}/{1}_per_class.csv, {0}/{1}_confusion.png, {0}/{1}_map.png, {0}/{1}_rejection_curve.png{2}",
        out_dir.display(),
        args.stem,
        if report.per_batch.is_empty() {
            String::new()
        } else {
            format!(", {}/{}_per_batch.csv", out_dir.display(), args.stem)
        }
    ));
    Ok(s)
}
