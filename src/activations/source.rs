//! The one reader for "an extraction folder or a matrix file" of cell-level vectors, used by SAE
//! training and encoding, the analysis and SpikGPT.

use std::path::Path;

use super::{ActivationStore, Provenance};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::io::matrix::read_matrix;

/// Cell-level vectors with where they came from.
#[derive(Debug, Clone)]
pub struct CellMatrix {
    /// Cells x dims; row ids are the cell ids when known.
    pub matrix: DenseMatrix,
    /// Where the matrix came from.
    pub provenance: Provenance,
}

/// Read cell-level vectors from `path`: an extraction folder (then `layer` is required: `cls`, a
/// layer name or `embeddings`) or a `.safetensors` (tensor `key`) / `.npy` / CSV / TSV / Parquet
/// matrix (then `layer` is only recorded). Non-finite values and duplicate cell ids are errors
/// naming the file.
pub fn read_cells(path: &Path, layer: Option<&str>, key: Option<&str>) -> Result<CellMatrix> {
    let (matrix, provenance) = if path.is_dir() {
        let store = ActivationStore::open(path)?;
        let layer = require_layer(&store, layer)?;
        let m = store.cell_matrix(layer)?;
        if m.n_rows == 0 {
            return Err(Error::input(path, "the extraction holds no cells"));
        }
        m.check_finite(path)?;
        (m, Provenance::of_store(&store, Some(layer)))
    } else {
        (read_matrix(path, key)?, Provenance::of_matrix(path, layer))
    };
    check_unique_ids(&matrix, path)?;
    Ok(CellMatrix { matrix, provenance })
}

/// `layer`, or an error listing the store's layers when it is missing.
pub fn require_layer<'a>(store: &ActivationStore, layer: Option<&'a str>) -> Result<&'a str> {
    layer.ok_or_else(|| {
        Error::input(
            store.dir(),
            format!(
                "--layer is required with an extraction folder (available: {})",
                store.manifest.layers.join(", ")
            ),
        )
    })
}

/// Error naming `path` when a row id appears twice.
pub fn check_unique_ids(m: &DenseMatrix, path: &Path) -> Result<()> {
    m.row_ids
        .as_deref()
        .map_or(Ok(()), |ids| check_unique(ids, path))
}

/// Error naming `path` when a cell id appears twice in `ids`.
pub(crate) fn check_unique(ids: &[String], path: &Path) -> Result<()> {
    match crate::data::first_duplicate(ids) {
        Some((id, j, i)) => Err(Error::input(
            path,
            format!("cell id '{id}' appears twice (rows {j} and {i})"),
        )),
        None => Ok(()),
    }
}
