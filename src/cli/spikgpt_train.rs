//! `spikgpt train`: fit SpikGPT on labelled embeddings and write a model folder with its validation
//! report (and the Unknown-rejection report when types are held out).

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::{DataArgs, RuntimeArgs};
use crate::error::Result;
use crate::spikgpt::calibration::CalibrationOptions;
use crate::spikgpt::config::{ModelConfig, Surrogate, TrainConfig};
use crate::spikgpt::novelty::Score;
use crate::spikgpt::train::{read_id_list, TrainData, TrainOptions};
use crate::spikgpt::training_report::train_and_report;

/// Arguments of `spikgpt train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Cell embeddings: an extraction store folder (`scsae extract`) or a .safetensors/.npy/.csv/.parquet
    /// cells x dims matrix with cell ids.
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Which cell matrix of an extraction store: cls or a layer number.
    #[arg(long, default_value = "cls")]
    pub embedding_layer: String,
    /// Data file (.h5ad or 10x folder) with the labels.
    #[arg(long)]
    pub data: PathBuf,
    /// obs column with the cell types.
    #[arg(long)]
    pub label_key: String,
    /// Output model folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Cell types to remove from training and report as unseen (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub hold_out: Vec<String>,
    /// File of cell ids (one per line) to use as the query/validation set instead of a random split.
    #[arg(long)]
    pub query_cells: Option<PathBuf>,
    /// Share of known validation cells the calibrated Unknown rule keeps.
    #[arg(long, default_value_t = 0.95)]
    pub keep: f64,
    /// One threshold per predicted class (classes with under 10 validation cells use the global one).
    #[arg(long)]
    pub per_class_thresholds: bool,
    /// Novelty score of the rule: max_prob, energy, knn_distance, combined, or auto (chosen by
    /// leave-one-type-out on the reference).
    #[arg(long, default_value = "auto")]
    pub score: String,
    /// Neighbours of the distance score and the kNN baseline.
    #[arg(long, default_value_t = 10)]
    pub knn_k: usize,
    /// Report the validation cells with the paper's rule instead (max probability below this is
    /// Unknown); the calibrated rule is still fitted and stored.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Model width d [default: 512].
    #[arg(long)]
    pub width: Option<usize>,
    /// Spiking transformer blocks [default: 1].
    #[arg(long)]
    pub blocks: Option<usize>,
    /// Attention heads [default: 8].
    #[arg(long)]
    pub heads: Option<usize>,
    /// MLP hidden width multiple [default: 4].
    #[arg(long)]
    pub mlp_ratio: Option<usize>,
    /// Token copies m per cell [default: 300].
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Time steps T [default: 4].
    #[arg(long)]
    pub time_steps: Option<usize>,
    /// Dropout in the MLP [default: 0.1].
    #[arg(long)]
    pub dropout: Option<f64>,
    /// LIF membrane time constant [default: 2.0].
    #[arg(long)]
    pub tau: Option<f64>,
    /// Surrogate gradient: sigmoid or sigmoid:ALPHA, atan or atan:ALPHA (default: sigmoid:4).
    #[arg(long)]
    pub surrogate: Option<String>,
    /// Soft reset (subtract the threshold) instead of a hard reset to 0.
    #[arg(long)]
    pub soft_reset: bool,
    /// Epochs [default: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size [default: 128].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Initial learning rate [default: 0.01].
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay [default: 1e-4].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Constant learning rate instead of cosine decay.
    #[arg(long)]
    pub no_cosine: bool,
    /// Training fraction of the stratified split [default: 0.7].
    #[arg(long)]
    pub train_fraction: Option<f64>,
    /// Continue an interrupted run from OUT/checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Overwrite a finished model folder at --out (refused otherwise).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub data_args: DataArgs,
}

impl TrainArgs {
    /// The model and training configs: defaults, overridden by the options given.
    pub fn configs(&self, seed: u64) -> Result<(ModelConfig, TrainConfig)> {
        let mut m = ModelConfig::default();
        if let Some(v) = self.width {
            m.width = v;
        }
        if let Some(v) = self.blocks {
            m.blocks = v;
        }
        if let Some(v) = self.heads {
            m.heads = v;
        }
        if let Some(v) = self.mlp_ratio {
            m.mlp_ratio = v;
        }
        if let Some(v) = self.tokens {
            m.tokens = v;
        }
        if let Some(v) = self.time_steps {
            m.time_steps = v;
        }
        if let Some(v) = self.dropout {
            m.dropout = v;
        }
        if let Some(v) = self.tau {
            m.lif.tau = v;
        }
        if let Some(s) = &self.surrogate {
            m.lif.surrogate = Surrogate::parse(s)?;
        }
        if self.soft_reset {
            m.lif.v_reset = None;
        }
        let mut t = TrainConfig {
            seed,
            ..TrainConfig::default()
        };
        if let Some(v) = self.epochs {
            t.epochs = v;
        }
        if let Some(v) = self.batch_size {
            t.batch_size = v;
        }
        if let Some(v) = self.lr {
            t.lr = v;
        }
        if let Some(v) = self.momentum {
            t.momentum = v;
        }
        if let Some(v) = self.weight_decay {
            t.weight_decay = v;
        }
        if self.no_cosine {
            t.cosine = false;
        }
        if let Some(v) = self.train_fraction {
            t.train_fraction = v;
        }
        if let Some(th) = self.threshold {
            crate::cli::common::check_threshold(th)?;
        }
        t.validate()?;
        Ok((m, t))
    }

    /// The calibration settings.
    pub fn calibration(&self) -> Result<CalibrationOptions> {
        let c = CalibrationOptions {
            keep: self.keep,
            per_class: self.per_class_thresholds,
            knn_k: self.knn_k,
            score: match self.score.as_str() {
                "auto" => None,
                s => Some(Score::parse(s)?),
            },
            ..CalibrationOptions::default()
        };
        c.validate()?;
        Ok(c)
    }
}

/// Run `spikgpt train`, returning the summary to print.
pub fn run(args: &TrainArgs, runtime: &RuntimeArgs) -> Result<String> {
    let rt = runtime.runtime()?;
    let (mcfg, tcfg) = args.configs(rt.seed)?;
    let calibration = args.calibration()?;
    crate::spikgpt::model_dir::check_not_trained(&args.out, args.force, args.resume)?;
    let data = TrainData::load(
        &args.embeddings,
        &args.embedding_layer,
        &args.data,
        &args.label_key,
        &args.data_args.load_options(),
    )?;
    let query_cells = args.query_cells.as_deref().map(read_id_list).transpose()?;
    let opts = TrainOptions {
        model: mcfg,
        train: tcfg,
        hold_out: args.hold_out.clone(),
        query_cells,
        progress: true,
        resume: args.resume,
        force: args.force,
        calibration,
    };
    let report = train_and_report(&rt, &data, &opts, &args.out, args.threshold)?;
    Ok(report.to_string())
}
