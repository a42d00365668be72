//! What each SAE feature means, read from the `features.csv` / `features.parquet` table that
//! `scsae analyze` writes: best cell type and its AUROC, top enriched gene set and its q-value.

use std::path::Path;

use crate::analysis::features_table::{self, col};
use crate::error::{Error, Result};
use crate::io::table::{nullable_string_column, read_dataframe};

/// Interpretation of one feature (all fields optional: dead or unenriched features have none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureMeaning {
    /// Feature name in the analysis (`f123`).
    pub name: Option<String>,
    /// Cell type with the highest AUROC.
    pub best_type: Option<String>,
    /// That AUROC.
    pub best_auroc: Option<f64>,
    /// Most significant enriched gene set.
    pub best_set: Option<String>,
    /// Its Benjamini-Hochberg q-value.
    pub best_set_q: Option<f64>,
}

/// Interpretations of every feature, indexed by feature.
#[derive(Debug, Clone, Default)]
pub struct Interpretations {
    /// One per feature (empty when no analysis was given).
    pub features: Vec<FeatureMeaning>,
}

impl Interpretations {
    /// The meaning of feature `f` (empty when unknown).
    pub fn get(&self, f: usize) -> FeatureMeaning {
        self.features.get(f).cloned().unwrap_or_default()
    }

    /// Read `features.parquet` (or `features.csv`) from an analysis folder, or that file itself, and
    /// check that it describes `d_sae` features.
    pub fn read(path: &Path, d_sae: usize) -> Result<Interpretations> {
        let file = features_table::locate(path);
        let df = read_dataframe(&file)?;
        let column = |name: &str| -> Result<Vec<Option<String>>> {
            match df.column(name) {
                Ok(c) => nullable_string_column(c).map_err(|e| Error::input(&file, e)),
                Err(_) => Err(Error::input(
                    &file,
                    format!(
                        "missing column '{name}' (expected the features table of `scsae analyze`)"
                    ),
                )),
            }
        };
        let index = column(col::INDEX)?;
        let names = column(col::FEATURE)?;
        let types = column(col::BEST_TYPE)?;
        let aurocs = column(col::BEST_AUROC)?;
        let sets = column(col::BEST_SET)?;
        let qs = column(col::BEST_SET_Q)?;
        if index.len() != d_sae {
            return Err(Error::input(
                &file,
                format!(
                    "describes {} features but the SAE has {d_sae}: was it analysed with this SAE?",
                    index.len()
                ),
            ));
        }
        let num = |v: &Option<String>, what: &str, row: usize| -> Result<Option<f64>> {
            match v {
                None => Ok(None),
                Some(s) if s.is_empty() => Ok(None),
                Some(s) => s.parse::<f64>().map(Some).map_err(|_| {
                    Error::input(&file, format!("row {row}: {what} '{s}' is not a number"))
                }),
            }
        };
        let mut features = vec![FeatureMeaning::default(); d_sae];
        for r in 0..index.len() {
            let f = index[r]
                .as_deref()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&f| f < d_sae)
                .ok_or_else(|| {
                    Error::input(&file, format!("row {r}: index is not a feature of the SAE"))
                })?;
            features[f] = FeatureMeaning {
                name: names[r].clone(),
                best_type: types[r].clone().filter(|s| !s.is_empty()),
                best_auroc: num(&aurocs[r], col::BEST_AUROC, r)?,
                best_set: sets[r].clone().filter(|s| !s.is_empty()),
                best_set_q: num(&qs[r], col::BEST_SET_Q, r)?,
            };
        }
        Ok(Interpretations { features })
    }
}
