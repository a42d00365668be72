//! scGPT in candle: load released checkpoints, tokenise cells exactly as the official `embed_data`,
//! run the post-norm transformer encoder, and extract every layer's activations.
//!
//! The official code (PyPI `scgpt` 0.2.4: `model/model.py`, `tasks/cell_emb.py`, `data_collator.py`,
//! `preprocess.py`) is the reference; comments point at the Python functions each piece mirrors.
//!
//! - `config`: `args.json` of a checkpoint folder.
//! - `vocab`: `vocab.json` (gene symbol -> token id) with the special tokens.
//! - [`checkpoint`]: weights from `best_model.pt` or `.safetensors`, every key-naming variant.
//! - [`tokenize`]: gene matching, per-cell quantile binning with the official tie rule, seeded sampling.
//! - [`model`]: the forward pass (gene + value encoders, post-norm blocks with key padding masks).
//! - [`expr_head`]: the masked-expression (GEP) head and the pretraining masking.
//! - [`extract`](mod@extract): length-bucketed batching, pooling and streaming into the activation store.
//!
//! ```no_run
//! # fn main() -> scsae::Result<()> {
//! use scsae::scgpt::Scgpt;
//! let rt = scsae::Runtime::cpu()?;
//! let model = Scgpt::load(std::path::Path::new("scGPT_human"), &rt)?;
//! println!("{} layers, d = {}", model.config.nlayers, model.config.embsize);
//! # Ok(()) }
//! ```

pub mod attention_cpu;
pub mod checkpoint;
pub(crate) mod config;
pub mod expr_head;
pub mod extract;
pub(crate) mod layers;
pub mod model;
pub mod tokenize;
pub(crate) mod vocab;

pub use checkpoint::{Scgpt, WeightsFile};
pub use config::ScgptConfig;
pub use extract::{extract, ExtractOptions, ExtractReport};
pub use layers::LayerSelection;
pub use model::{Batch, ScgptModel};
pub use tokenize::{GeneMatch, TokenizedCell, Tokenizer, TokenizerOptions};
pub use vocab::Vocab;
