//! Sparse autoencoders on activations: the paper's L1 SAE plus TopK / BatchTopK, training with a
//! fused Adam, metrics, sweeps, and the SAELens-compatible saved format.
//!
//! - [`config`]: training options with the paper's defaults.
//! - [`kernel`], [`linalg`], [`params`], `optim`: the arithmetic (forward, hand-derived backward,
//!   Adam, clipping, schedules).
//! - [`train`](mod@train), [`checkpoint`], `resample`: the training loop, resumable state, dead-feature
//!   resampling.
//! - [`metrics`]: L0, R^2, MSE, alive/dead.
//! - `model`, [`saelens`]: the saved SAE ([`Sae`]: load / encode / decode).
//! - [`encode`](mod@encode): `scsae encode` as one call.
//! - [`input`]: reading activations; [`sweep`]: layer x lambda grids with a table and a plot.
//! - [`stream`], [`stream_train`]: training on every row of a store through a bounded shuffle
//!   buffer, several runs per pass (`--max-inputs 0`); [`run`]: one run's state, whatever feeds it.

pub mod checkpoint;
pub(crate) mod codes;
pub mod config;
pub mod encode;
pub mod input;
pub mod kernel;
pub mod linalg;
pub mod metrics;
pub(crate) mod model;
pub(crate) mod optim;
pub mod params;
pub(crate) mod resample;
pub mod run;
pub mod saelens;
pub mod saelens_export;
pub mod sparse_kernel;
pub mod stream;
pub mod stream_train;
pub mod sweep;
pub mod train;
pub mod vector_ops;
pub(crate) mod zscore;

pub use config::{Arch, InputLevel, LossConvention, TrainConfig};
pub use metrics::Metrics;
pub use model::Sae;
pub use saelens::SaeConfig;
pub use train::{train, RunMetrics, TrainOptions, TrainedRun};
