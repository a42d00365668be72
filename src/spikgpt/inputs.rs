//! Inputs: cell embeddings (an extraction store folder or a matrix file) and labels joined by cell id.

use std::path::Path;

use crate::activations::{read_cells, Provenance};
use crate::data::DenseMatrix;
use crate::data::{load_obs, LoadOptions};
use crate::error::{Error, Result};

/// Cell embeddings with their provenance.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// Cells x dims, row ids = cell ids when known.
    pub matrix: DenseMatrix,
    /// Provenance.
    pub source: Provenance,
}

/// Read embeddings from an extraction store folder (`layer` = `cls` or a layer name) or from a
/// `.safetensors` / `.npy` / `.csv` / `.tsv` / `.parquet` matrix. Non-finite values and duplicate cell
/// ids are errors naming the file.
pub fn load_embeddings(path: &Path, layer: &str) -> Result<Embeddings> {
    // a matrix file has no layers: `layer` (default `cls`) applies to extraction folders only
    let layer = path.is_dir().then_some(layer);
    let cells = read_cells(path, layer, None)?;
    Ok(Embeddings {
        matrix: cells.matrix,
        source: cells.provenance,
    })
}

/// The cell ids of `m`, or `cell_<row>` when the matrix has none.
pub fn cell_ids(m: &DenseMatrix) -> Vec<String> {
    match &m.row_ids {
        Some(ids) => ids.clone(),
        None => (0..m.n_rows).map(|i| format!("cell_{i}")).collect(),
    }
}

/// Labels for every embedding row from `data`'s obs column `key`, joined by cell id. A matrix without
/// row ids is matched by position when the cell counts agree (with a warning on stderr). Cells without
/// a label are an error naming the embeddings file and the first such cell.
pub fn labels_for(
    emb: &DenseMatrix,
    emb_path: &Path,
    data_path: &Path,
    key: &str,
    opts: &LoadOptions,
) -> Result<Vec<String>> {
    let ds = load_obs(data_path, opts)?;
    let labels = ds.labels(key)?;
    match &emb.row_ids {
        Some(ids) => {
            let index = ds.cell_index();
            let mut out = Vec::with_capacity(ids.len());
            let mut missing = Vec::new();
            for id in ids {
                match index.get(id.as_str()) {
                    Some(&r) => out.push(labels[r].clone()),
                    None => missing.push(id.as_str()),
                }
            }
            if !missing.is_empty() {
                return Err(Error::input(
                    emb_path,
                    format!(
                        "{} of {} cells have no label in {} (first: '{}')",
                        missing.len(),
                        ids.len(),
                        data_path.display(),
                        missing[0]
                    ),
                ));
            }
            Ok(out)
        }
        None => {
            if emb.n_rows != ds.n_cells() {
                return Err(Error::input(
                    emb_path,
                    format!(
                        "the matrix has no cell ids and {} rows, but {} has {} cells: cannot match cells",
                        emb.n_rows,
                        data_path.display(),
                        ds.n_cells()
                    ),
                ));
            }
            eprintln!(
                "warning: {} has no cell ids; matching its {} rows to {} by position",
                emb_path.display(),
                emb.n_rows,
                data_path.display()
            );
            Ok(labels)
        }
    }
}
