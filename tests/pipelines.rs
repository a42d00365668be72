//! End-to-end runs: the pipeline through the CLI (extract -> train -> analyze), an SAE on bundled
//! data, and the notebooks' code (each notebook must equal the code its test runs).
//!
//! One test binary for all of them (a single link against candle and polars); each module is one
//! former test file: `cargo test --test pipelines notebook_explain` runs one of them.

mod common;

mod pipelines {
    mod notebook_explain;
    mod notebook_paper;
    mod notebook_quickstart;
    mod pipeline_cli;
    mod sae_bundled;
    mod sharded_extract;
}
