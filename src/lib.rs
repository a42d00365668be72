//! # scsae
//!
//! Open up single-cell foundation models: run scGPT in candle, extract every layer's residual-stream
//! activations, train sparse autoencoders on them, turn features into biology, and annotate cells with
//! an explainable spiking-attention classifier (SpikGPT).
//!
//! Modules, in pipeline order:
//! - [`runtime`]: the shared candle device / dtype / threads / seed.
//! - [`data`]: single-cell matrices from `.h5ad` and 10x folders.
//! - [`scgpt`]: scGPT checkpoints, tokenisation, forward pass and `scsae extract`.
//! - [`activations`]: the on-disk store of extracted activations.
//! - [`sae`]: sparse autoencoders: training, sweeps, metrics, the saved SAELens-style format.
//! - [`analysis`]: AUROC, gene attribution, enrichment, PCA baseline and reports for features.
//! - [`io`], [`plot`]: file formats, atomic output, figures.
//! - [`progress`]: the one progress-bar style of the long loops.
//! - [`spikgpt`]: the spiking self-attention annotator (train, annotate, evaluate).
//! - [`stats`]: midranks, AUROC and median shared by the analysis and the annotator.

pub mod activations;
pub mod analysis;
pub mod cli;
pub mod data;
pub mod error;
pub mod explain;
pub mod io;
pub mod plot;
pub mod progress;
pub mod runtime;
pub mod sae;
pub mod scgpt;
pub mod spikgpt;
pub mod stats;

pub use error::{Error, Result};
pub use runtime::{Runtime, RuntimeConfig};
