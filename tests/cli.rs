//! Integration tests that run the `scsae` and `spikgpt` binaries: end-to-end commands and their
//! bad-input errors (one clear line, exit 1, nothing written).
//!
//! One test binary for all of them (a single link against candle and polars); each module is one
//! former test file: `cargo test --test cli spikgpt_cli` runs one of them.

mod common;

mod cli {
    mod analysis_cli;
    mod atlas_cli;
    mod bad_inputs;
    mod cli_inspect;
    mod intervene_cli;
    mod sae_cli;
    mod scgpt_errors;
    mod spikgpt_cli;
}
