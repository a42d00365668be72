//! Training and encoding inputs: an extraction folder (tokens or cells of one layer) or a matrix file.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::activations::{read_cells, require_layer, ActivationStore, Provenance, TokenIndex};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::sae::config::InputLevel;

/// Activations read for training or encoding.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `[n, d]` raw activations (row ids: cell ids for cells, `cell:position` for tokens).
    pub matrix: DenseMatrix,
    /// Per-token index columns when the rows are tokens of an extraction folder.
    pub tokens: Option<TokenIndex>,
    /// Where they came from.
    pub source: Provenance,
    /// Tokens or cells.
    pub level: InputLevel,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct InputSpec<'a> {
    /// Extraction folder or matrix file.
    pub path: &'a Path,
    /// Layer name (required for an extraction folder; recorded only for a matrix file).
    pub layer: Option<&'a str>,
    /// Tokens or cells (extraction folders only).
    pub level: InputLevel,
    /// Tensor name inside a safetensors matrix file.
    pub key: Option<&'a str>,
    /// Keep at most this many rows (seeded uniform subsample in input order; 0 = all).
    pub max_rows: usize,
    /// Seed of the subsample.
    pub sample_seed: u64,
}

/// Indices of a seeded uniform subsample of `k` of `n` rows, in increasing order (the same scheme as
/// [`ActivationStore::token_matrix`]).
pub fn subsample_rows(n: usize, k: usize, seed: u64) -> Vec<usize> {
    if k == 0 || k >= n {
        return (0..n).collect();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut keep = order[..k].to_vec();
    keep.sort_unstable();
    keep
}

/// Read the inputs; non-finite values are an error naming the file.
pub fn read_inputs(spec: &InputSpec<'_>) -> Result<Inputs> {
    let path = spec.path;
    if path.is_dir() && spec.level == InputLevel::Tokens {
        return read_token_inputs(spec);
    }
    let cells = read_cells(path, spec.layer, spec.key)?;
    let m = cells.matrix;
    let keep = subsample_rows(m.n_rows, spec.max_rows, spec.sample_seed);
    let matrix = if keep.len() < m.n_rows {
        m.select_rows(&keep)
    } else {
        m
    };
    Ok(Inputs {
        matrix,
        tokens: None,
        source: cells.provenance,
        level: spec.level,
    })
}

/// The per-token activations of one layer of an extraction folder, row ids `cell:position`.
fn read_token_inputs(spec: &InputSpec<'_>) -> Result<Inputs> {
    let path = spec.path;
    let store = ActivationStore::open(path)?;
    let layer = require_layer(&store, spec.layer)?;
    let max = (spec.max_rows > 0).then_some(spec.max_rows);
    let t = store.token_matrix(layer, max, spec.sample_seed)?;
    let mut matrix = t.matrix;
    matrix.row_ids = Some(
        t.index
            .cell_index
            .iter()
            .zip(&t.index.position)
            .map(|(c, p)| {
                let id = usize::try_from(*c)
                    .ok()
                    .and_then(|c| store.cell_ids.get(c))
                    .cloned()
                    .unwrap_or_else(|| c.to_string());
                format!("{id}:{p}")
            })
            .collect(),
    );
    if matrix.n_rows == 0 {
        return Err(Error::input(
            path,
            format!("no {} activations for layer {layer}", spec.level),
        ));
    }
    matrix.check_finite(path)?;
    Ok(Inputs {
        matrix,
        tokens: Some(t.index),
        source: Provenance::of_store(&store, Some(layer)),
        level: spec.level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsample_is_sorted_seeded_and_complete_when_small() {
        let a = subsample_rows(100, 10, 42);
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, subsample_rows(100, 10, 42));
        assert_ne!(a, subsample_rows(100, 10, 43));
        assert_eq!(subsample_rows(5, 10, 1), vec![0, 1, 2, 3, 4]);
        assert_eq!(subsample_rows(5, 0, 1).len(), 5);
    }
}
