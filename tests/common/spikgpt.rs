//! Inputs and model settings shared by the SpikGPT command-line tests.

/// PCA-50 stand-in embeddings of the bundled immune cells (`scripts/spikgpt/make_embeddings.py`).
pub const EMB: &str = "tests/fixtures/spikgpt/immune1000_pca50.safetensors";
/// The bundled immune data set with the labels.
pub const DATA: &str = "data/immune1000.h5ad";
/// Its label column.
pub const KEY: &str = "cell_type_annotations";

/// Small and quick: m = 8 tokens, width 64; without dropout the m identical token copies are
/// computed once (exact), and 700 cells need more than the paper's 10 epochs at lr 0.01.
pub fn small_model_args() -> Vec<&'static str> {
    vec![
        "--tokens",
        "8",
        "--width",
        "64",
        "--heads",
        "4",
        "--epochs",
        "30",
        "--lr",
        "0.05",
        "--batch-size",
        "64",
        "--dropout",
        "0",
        "--seed",
        "7",
    ]
}

/// The same small model in the paper's training mode (dropout 0.1, the bounded-memory path), seed 42.
pub fn small_model_args_with_dropout() -> Vec<&'static str> {
    vec![
        "--tokens", "8", "--width", "64", "--heads", "4", "--epochs", "30", "--lr", "0.05",
    ]
}

/// Arguments of `spikgpt train` on the immune stand-in embeddings with `hold_out` removed.
pub fn immune_train_args(hold_out: &str) -> Vec<&str> {
    vec![
        "train",
        "--embeddings",
        EMB,
        "--data",
        DATA,
        "--label-key",
        KEY,
        "--hold-out",
        hold_out,
    ]
}
