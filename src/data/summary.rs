//! What `scsae inspect` reports about a data set.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::Dataset;
use crate::error::Result;

/// Counts describing a data set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Number of cells.
    pub n_cells: usize,
    /// Number of genes.
    pub n_genes: usize,
    /// Stored non-zero values.
    pub nnz: usize,
    /// Obs column names in file order.
    pub obs_columns: Vec<String>,
    /// Label -> number of cells, for the requested label column (empty without one).
    pub labels: BTreeMap<String, usize>,
    /// The label column counted, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_key: Option<String>,
}

impl Summary {
    /// Summarise `ds`, counting labels of `label_key` when given (missing labels are an error).
    pub fn of(ds: &Dataset, label_key: Option<&str>) -> Result<Summary> {
        let mut labels = BTreeMap::new();
        if let Some(key) = label_key {
            for l in ds.labels(key)? {
                *labels.entry(l).or_insert(0) += 1;
            }
        }
        Ok(Summary {
            n_cells: ds.n_cells(),
            n_genes: ds.n_genes(),
            nnz: ds.matrix.nnz(),
            obs_columns: ds.obs.names(),
            labels,
            label_key: label_key.map(str::to_string),
        })
    }

    /// Human-readable report: sizes, columns, and labels by decreasing count.
    pub fn to_text(&self, ds: &Dataset) -> String {
        let mut s = format!(
            "{}\n  cells: {}\n  genes: {}\n  stored non-zeros: {} ({:.1}% dense)\n  obs columns:\n",
            ds.source.display(),
            self.n_cells,
            self.n_genes,
            self.nnz,
            100.0 * self.nnz as f64 / (self.n_cells as f64 * self.n_genes as f64).max(1.0)
        );
        for c in &ds.obs.columns {
            s.push_str(&format!("    {} ({})\n", c.name, c.values.kind()));
        }
        if let Some(key) = &self.label_key {
            s.push_str(&format!("  labels in '{key}': {}\n", self.labels.len()));
            let mut v: Vec<(&String, &usize)> = self.labels.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (l, n) in v {
                s.push_str(&format!("    {l}: {n}\n"));
            }
        }
        s
    }
}
