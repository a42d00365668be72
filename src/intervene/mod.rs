//! Interventions in scGPT's residual stream through an SAE: put the SAE's reconstruction back into
//! the model and measure what it keeps ([`fidelity`](mod@fidelity), `scsae fidelity`), or change one
//! feature and see what moves downstream ([`steer`](mod@steer), `scsae steer`).
//!
//! - [`site`]: where an SAE plugs in (its layer), checked against the model.
//! - [`edit`]: the edits of the activations at that site (keep, zero, reconstruct, steer).
//! - [`inputs`]: the model, SAE, cells and labels of a run, loaded and checked.
//! - [`cells`]: the cells, tokenised as `scsae extract` does, in batches.
//! - [`knn`]: leave-one-out kNN label accuracy on embeddings.

pub mod cells;
pub mod edit;
pub mod fidelity;
pub mod inputs;
pub mod knn;
pub mod site;
pub mod steer;

pub use edit::{Edit, SteerMode};
pub use fidelity::{fidelity, FidelityOptions, FidelityReport, FidelityRequest};
pub use inputs::{load_inputs, Loaded, SpliceSpec};
pub use site::sae_site;
pub use steer::{steer, SteerReport, SteerRequest};
