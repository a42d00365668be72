//! SpikGPT: a spiking self-attention cell-type annotator on cell embeddings (scGPT CLS embeddings or
//! any cells x dims matrix), with Unknown-cell rejection and spiking statistics.
//!
//! - [`config`]: model / training settings with the paper's defaults.
//! - `dropout`: bit masks; `token_tail`: the per-token dropout tail in bounded memory.
//! - [`lif`]: multi-step LIF neurons with surrogate gradients; [`layers`], `attention`, [`model`]: the network.
//! - [`train`] (with `split`, [`optim`], [`checkpoint`]): training and the model folder; [`training_report`]: `spikgpt
//!   train` as one call; [`annotate`]: inference.
//! - [`metrics`], `rejection`, [`baseline`], `energy`, [`report`], `plots`, [`confusion`], [`cell_map`]: evaluation.
//! - `novelty`: calibrated Unknown calls (temperature scaling, novelty scores, rejection rules).
//!
//! ```no_run
//! use scsae::spikgpt::{annotate, inputs};
//! # fn main() -> scsae::Result<()> {
//! let rt = scsae::Runtime::cpu()?;
//! let model = annotate::load_model_dir("model".as_ref(), &rt)?;
//! let emb = inputs::load_embeddings("query.safetensors".as_ref(), "cls")?;
//! let probs = annotate::predict_proba(&model.model, &emb.matrix.data, 256, None)?;
//! let calls = annotate::calls(&probs, &model.file.labels, 0.95);
//! # let _ = calls; Ok(()) }
//! ```

pub mod activity;
pub mod annotate;
pub(crate) mod attention;
pub mod baseline;
pub mod calibration;
pub mod cell_map;
pub mod checkpoint;
pub mod config;
pub mod confusion;
pub(crate) mod dropout;
pub(crate) mod energy;
pub mod evaluation;
pub mod inputs;
pub mod layers;
pub mod lif;
pub mod metrics;
pub mod model;
pub mod model_dir;
pub(crate) mod novelty;
pub mod optim;
pub mod params;
pub(crate) mod plots;
pub mod predictions;
pub(crate) mod rejection;
pub mod report;
pub(crate) mod split;
pub(crate) mod token_tail;
pub mod train;
pub mod training_report;

pub use config::{LifConfig, ModelConfig, Surrogate, TrainConfig};
pub use model::SpikGpt;
