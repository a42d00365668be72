//! # scsae
//!
//! Open up single-cell foundation models: run scGPT in candle, extract every layer's residual-stream
//! activations, train sparse autoencoders on them, turn features into biology, and annotate cells with
//! an explainable spiking-attention classifier (SpikGPT).
//!
//! The main entry points are re-exported here: [`load`] single-cell data, [`Scgpt`] and [`extract()`]
//! for activations, [`read_cells`] for "an extraction folder or a matrix file", [`Sae`] (trained by
//! [`sae::train()`]), [`analyze`], and for the annotator [`train_and_report`], [`load_model_dir`] and
//! [`annotate`].
//!
//! An SAE on the bundled cells' embeddings (50 principal components of the log expression, shipped
//! as a stand-in for scGPT embeddings), and the AUROC of its most B-cell-specific feature:
//!
//! ```
//! # fn main() -> scsae::Result<()> {
//! use std::path::Path;
//! use scsae::sae::{input::InputSpec, InputLevel, TrainOptions};
//!
//! let rt = scsae::Runtime::cpu()?;
//! let emb = Path::new("tests/fixtures/spikgpt/immune1000_pca50.safetensors");
//! let spec = InputSpec { path: emb, layer: None, level: InputLevel::Cells, key: None, max_rows: 0, sample_seed: 0 };
//! let inputs = scsae::sae::input::read_inputs(&spec)?;
//! let cfg = scsae::SaeTrainConfig {
//!     d_sae: 64, epochs: 30, batch_size: 64, lr: 0.01, lambda: 0.3, ..Default::default()
//! };
//! let out = std::env::temp_dir().join(format!("scsae-doc-{}", std::process::id()));
//! let run = scsae::sae::train(&rt, &inputs, &cfg, &out, &TrainOptions::default())?;
//! let codes = run.sae.encode(&inputs.matrix)?;
//!
//! let data = scsae::load(Path::new("data/immune1000.h5ad"), &scsae::LoadOptions::default())?;
//! let labels = data.labels("cell_type_annotations")?;
//! assert_eq!(codes.row_ids.as_deref(), Some(data.cell_ids.as_slice()));
//! let is_b: Vec<bool> = labels.iter().map(|l| l.starts_with("B_")).collect();
//! let best = (0..codes.n_cols)
//!     .filter_map(|j| scsae::stats::auroc(&codes.column(j), &is_b))
//!     .fold(0.0, f64::max);
//! assert!(best > 0.9, "best B-cell AUROC {best}"); // sklearn on `scsae encode`'s codes: 0.969
//! std::fs::remove_dir_all(&out).ok();
//! # Ok(()) }
//! ```
//!
//! Modules, in pipeline order:
//! - [`runtime`]: the shared candle device / dtype / threads / seed.
//! - [`data`]: single-cell matrices from `.h5ad` and 10x folders.
//! - [`scgpt`]: scGPT checkpoints, tokenisation, forward pass and `scsae extract`.
//! - [`activations`]: the on-disk store of extracted activations.
//! - [`sae`]: sparse autoencoders: training, sweeps, metrics, the saved SAELens-style format.
//! - [`analysis`]: AUROC, gene attribution, enrichment, PCA baseline and reports for features.
//! - [`atlas`]: a static HTML site with a page per feature (`scsae atlas`).
//! - [`io`], `plot`: file formats, atomic output, figures; [`notebook`]: showing figures in Jupyter.
//! - `progress`: the one progress-bar style of the long loops.
//! - [`spikgpt`]: the spiking self-attention annotator (train, annotate, evaluate).
//! - [`stats`]: midranks, AUROC, median, Fisher's exact test and Benjamini-Hochberg, shared by the
//!   analysis, the annotator and the explanations.

pub mod activations;
pub mod analysis;
pub mod atlas;
pub mod cli;
pub mod data;
pub mod error;
pub mod explain;
pub mod intervene;
pub mod io;
pub mod notebook;
pub(crate) mod plot;
pub(crate) mod progress;
pub mod runtime;
pub mod sae;
pub mod scgpt;
pub mod spikgpt;
pub mod stats;

pub use error::{Error, Result};
pub use runtime::{Runtime, RuntimeConfig};

// The stable entry points, one per job (see ARCHITECTURE.md for the data flow).
pub use activations::{read_cells, ActivationStore, CellMatrix, Provenance};
pub use analysis::workflow::{analyze, AnalyzeInputs, AnalyzeReport};
pub use data::{load, Dataset, DenseMatrix, LoadOptions};
pub use sae::{Sae, TrainConfig as SaeTrainConfig};
pub use scgpt::{extract, Scgpt};
pub use spikgpt::annotate::{annotate, load_model_dir};
pub use spikgpt::training_report::train_and_report;
pub use spikgpt::SpikGpt;
