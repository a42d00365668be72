//! Inputs: cell embeddings (an extraction store folder or a matrix file) and labels joined by cell id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::activations::ActivationStore;
use crate::data::{load, LoadOptions};
use crate::error::{Error, Result};
use crate::io::matrix::{read_matrix, DenseMatrix};

/// Where embeddings came from (saved in the model's `config.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbeddingSource {
    /// The path given.
    pub path: PathBuf,
    /// The store's cell matrix used (`cls` or a layer), when the path is an extraction store.
    pub layer: Option<String>,
    /// The store manifest's model description, when from a store.
    pub model: Option<serde_json::Value>,
    /// The store manifest's data description, when from a store.
    pub data: Option<serde_json::Value>,
}

/// Cell embeddings with their provenance.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// Cells x dims, row ids = cell ids when known.
    pub matrix: DenseMatrix,
    /// Provenance.
    pub source: EmbeddingSource,
}

/// Read embeddings from an extraction store folder (`layer` = `cls` or a layer name) or from a
/// `.safetensors` / `.npy` / `.csv` / `.tsv` / `.parquet` matrix. Non-finite values and duplicate cell
/// ids are errors naming the file.
pub fn load_embeddings(path: &Path, layer: &str) -> Result<Embeddings> {
    let (matrix, source) = if path.is_dir() {
        let store = ActivationStore::open(path)?;
        let m = store.cell_matrix(layer)?;
        let source = EmbeddingSource {
            path: path.to_path_buf(),
            layer: Some(layer.to_string()),
            model: Some(store.manifest.model.clone()),
            data: Some(store.manifest.data.clone()),
        };
        (m, source)
    } else {
        let m = read_matrix(path, None)?;
        (
            m,
            EmbeddingSource {
                path: path.to_path_buf(),
                ..EmbeddingSource::default()
            },
        )
    };
    matrix.check_finite(path)?;
    if let Some(ids) = &matrix.row_ids {
        let mut seen = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if let Some(j) = seen.insert(id.as_str(), i) {
                return Err(Error::input(
                    path,
                    format!("cell id '{id}' appears twice (rows {j} and {i})"),
                ));
            }
        }
    }
    Ok(Embeddings { matrix, source })
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
    let ds = load(data_path, opts)?;
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
