//! Load what an intervention run needs from the command line's files: the model, the SAE and its
//! site, the cells and (optionally) their labels. Everything is checked here, before any output.

use std::path::Path;

use crate::data::{load, Dataset, LoadOptions, MatrixLayer};
use crate::error::{Error, Result};
use crate::intervene::site::sae_site;
use crate::runtime::Runtime;
use crate::sae::Sae;
use crate::scgpt::model::Site;
use crate::scgpt::Scgpt;

/// The files of an intervention run.
#[derive(Debug, Clone)]
pub struct SpliceSpec<'a> {
    /// SAE folder.
    pub sae: &'a Path,
    /// scGPT checkpoint folder.
    pub model: &'a Path,
    /// Weights file instead of the folder's.
    pub weights: Option<&'a Path>,
    /// Single-cell data.
    pub data: &'a Path,
    /// How to read it.
    pub load: LoadOptions,
    /// Use only the first N cells.
    pub first_cells: Option<usize>,
    /// The SAE's layer when it does not record one.
    pub layer: Option<&'a str>,
    /// obs column with cell labels.
    pub label_key: Option<&'a str>,
}

/// The loaded inputs.
pub struct Loaded {
    /// The model.
    pub scgpt: Scgpt,
    /// The SAE.
    pub sae: Sae,
    /// Its site in the model.
    pub site: Site,
    /// The cells.
    pub data: Dataset,
    /// How they were read (for summaries).
    pub data_desc: serde_json::Value,
    /// Label column and labels.
    pub labels: Option<(String, Vec<String>)>,
}

/// Load and check everything (model, SAE against model, data, labels).
pub fn load_inputs(spec: &SpliceSpec<'_>, rt: &Runtime) -> Result<Loaded> {
    let sae = Sae::load(spec.sae)?;
    let scgpt = Scgpt::load_with(spec.model, spec.weights, rt)?;
    let site = sae_site(&sae, spec.sae, &scgpt, spec.layer)?;
    let mut data = load(spec.data, &spec.load)?;
    data.check_expression()?;
    if let Some(k) = spec.first_cells {
        if k == 0 {
            return Err(Error::invalid("--first-cells must be at least 1"));
        }
        if k < data.n_cells() {
            data = data.select_cells(&(0..k).collect::<Vec<_>>());
        }
    }
    let labels = match spec.label_key {
        Some(key) => Some((key.to_string(), data.labels(key)?)),
        None => None,
    };
    let abs = std::fs::canonicalize(spec.data).unwrap_or_else(|_| spec.data.to_path_buf());
    let data_desc = serde_json::json!({
        "file": abs.display().to_string(),
        "layer": match spec.load.layer { MatrixLayer::X => "X", MatrixLayer::Raw => "raw" },
        "gene_key": spec.load.gene_key,
        "first_cells": spec.first_cells,
        "n_cells": data.n_cells(),
    });
    Ok(Loaded {
        scgpt,
        sae,
        site,
        data,
        data_desc,
        labels,
    })
}
