//! Integration tests against independent references: values computed by the official scGPT code,
//! anndata, PyTorch, scikit-learn, scipy, statsmodels and numpy (tests/fixtures), finite differences,
//! hand-derived recursions, planted ground truth, and invariances (batch size, cell order, threads).
//!
//! One test binary for all of them (a single link against candle and polars); each module is one
//! former test file: `cargo test --test reference scgpt_parity` runs one of them.

mod common;

mod reference {
    mod analysis_by_rows;
    mod analysis_immune;
    mod analysis_reference;
    mod data_h5ad;
    mod fuzz_readers;
    mod sae_planted;
    mod sae_reference;
    mod sae_saelens_export;
    mod scgpt_extract;
    mod scgpt_interventions;
    mod scgpt_parity;
    mod spikgpt_explain;
    mod spikgpt_lif;
    mod spikgpt_model;
    mod spikgpt_reference;
}
