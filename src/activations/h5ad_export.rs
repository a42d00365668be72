//! `scsae extract --write-h5ad`: a copy of the input `.h5ad` with scGPT's cell embedding in
//! `obsm['X_scGPT']` (the L2-normalised CLS output, as the official `embed_data` stores it) and,
//! on request, the mean-pooled activations of chosen layers in `obsm['X_scGPT_layer<L>']`.

use std::path::{Path, PathBuf};

use super::ActivationStore;
use crate::data::h5ad_write::{write_h5ad_copy, H5adAdditions, ObsmAddition, UnsAddition};
use crate::error::{Error, Result};

/// What [`store_to_h5ad`] writes.
#[derive(Debug, Clone)]
pub struct StoreH5adRequest<'a> {
    /// A complete extraction folder.
    pub store: &'a Path,
    /// The `.h5ad` the extraction read (default: the file recorded in the store's manifest).
    pub input: Option<&'a Path>,
    /// The new `.h5ad`.
    pub out: &'a Path,
    /// Layers whose mean-pooled activations are added too (`all` = every stored layer).
    pub layers: &'a [String],
    /// Overwrite an existing `out` (never the input).
    pub force: bool,
}

/// The data file an extraction folder records, if any.
pub fn recorded_data_file(store: &ActivationStore) -> Option<PathBuf> {
    store
        .manifest
        .data
        .get("file")
        .and_then(|f| f.as_str())
        .map(PathBuf::from)
}

/// `obsm` key of a layer's pooled activations.
pub fn layer_key(layer: &str) -> String {
    if layer == "embeddings" {
        "X_scGPT_embeddings".to_string()
    } else {
        format!("X_scGPT_layer{layer}")
    }
}

/// The input an export reads: `given`, else the file the store records.
pub fn resolve_input(store: &ActivationStore, given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => recorded_data_file(store).ok_or_else(|| {
            Error::input(
                store.dir(),
                "records no data file; name the .h5ad to copy with --data",
            )
        }),
    }
}

/// Write a copy of the extraction's input with the embeddings added; returns the `obsm` keys.
pub fn store_to_h5ad(req: &StoreH5adRequest<'_>) -> Result<Vec<String>> {
    let store = ActivationStore::open(req.store)?;
    let input = resolve_input(&store, req.input)?;
    let layers: Vec<String> = if req.layers.iter().any(|l| l == "all") {
        store.manifest.layers.clone()
    } else {
        req.layers.to_vec()
    };
    for l in &layers {
        if !store.manifest.layers.contains(l) {
            return Err(Error::input(
                req.store,
                format!(
                    "layer {l} was not extracted (available: {})",
                    store.manifest.layers.join(", ")
                ),
            ));
        }
    }
    let mut add = H5adAdditions {
        row_ids: store.cell_ids.clone(),
        ..Default::default()
    };
    let mut keys = Vec::new();
    for (key, layer) in std::iter::once(("X_scGPT".to_string(), "cls".to_string()))
        .chain(layers.iter().map(|l| (layer_key(l), l.clone())))
    {
        let m = store.cell_matrix(&layer)?;
        add.obsm.push((
            key.clone(),
            ObsmAddition::Dense {
                n_cols: m.n_cols,
                data: m.data,
            },
        ));
        keys.push(key);
    }
    add.uns.push((
        "scGPT".to_string(),
        UnsAddition::Dict(vec![
            ("obsm_keys".to_string(), UnsAddition::Strings(keys.clone())),
            (
                "extraction".to_string(),
                UnsAddition::Strings(vec![std::fs::canonicalize(req.store)
                    .unwrap_or_else(|_| req.store.to_path_buf())
                    .display()
                    .to_string()]),
            ),
        ]),
    ));
    write_h5ad_copy(&input, req.out, &add, req.force)?;
    Ok(keys)
}
