//! Command-line argument definitions and the functions the `scsae` and `spikgpt` binaries call.
//!
//! Each subcommand lives in its own file with a clap `Args` struct and a `run` function; the binaries
//! only parse and dispatch.

pub mod analyze;
pub mod atlas;
pub mod common;
pub mod concepts;
pub mod encode;
pub mod export_saelens;
pub mod extract;
pub mod fidelity;
pub mod inspect;
pub mod merge;
pub mod spikgpt_ablate;
pub mod spikgpt_annotate;
pub mod spikgpt_evaluate;
pub mod spikgpt_train;
pub mod steer;
pub mod sweep;
pub mod train;
