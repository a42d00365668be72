//! Per-cell annotation columns (`obs`) and joining labels from a table.

use std::path::Path;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::io::table::{nullable_string_column, read_dataframe, string_column, ID_COLUMN_NAMES};

/// Values of one obs column.
#[derive(Debug, Clone, PartialEq)]
pub enum ObsValues {
    /// Categorical: per-cell codes into `categories`; code -1 means missing.
    Categorical {
        /// Code of each cell (-1 = missing).
        codes: Vec<i32>,
        /// Category names.
        categories: Vec<String>,
    },
    /// Free text, `None` where missing.
    Strings(Vec<Option<String>>),
    /// Numbers (NaN = missing).
    Numeric(Vec<f64>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl ObsValues {
    /// Number of cells.
    pub fn len(&self) -> usize {
        match self {
            ObsValues::Categorical { codes, .. } => codes.len(),
            ObsValues::Strings(v) => v.len(),
            ObsValues::Numeric(v) => v.len(),
            ObsValues::Bool(v) => v.len(),
        }
    }

    /// True when there are no cells.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every value as text (`None` where missing). Numbers print like Python (`3` for 3.0).
    pub fn as_strings(&self) -> Vec<Option<String>> {
        match self {
            ObsValues::Categorical { codes, categories } => codes
                .iter()
                .map(|&c| {
                    usize::try_from(c)
                        .ok()
                        .and_then(|c| categories.get(c).cloned())
                })
                .collect(),
            ObsValues::Strings(v) => v.clone(),
            ObsValues::Numeric(v) => v
                .iter()
                .map(|x| {
                    if x.is_nan() {
                        None
                    } else if x.fract() == 0.0 && x.abs() < 1e15 {
                        Some(format!("{}", *x as i64))
                    } else {
                        Some(format!("{x}"))
                    }
                })
                .collect(),
            ObsValues::Bool(v) => v
                .iter()
                .map(|&b| Some(if b { "True" } else { "False" }.to_string()))
                .collect(),
        }
    }

    /// Kind of column, for display.
    pub fn kind(&self) -> &'static str {
        match self {
            ObsValues::Categorical { .. } => "categorical",
            ObsValues::Strings(_) => "string",
            ObsValues::Numeric(_) => "numeric",
            ObsValues::Bool(_) => "bool",
        }
    }

    fn select_rows(&self, rows: &[usize]) -> ObsValues {
        match self {
            ObsValues::Categorical { codes, categories } => ObsValues::Categorical {
                codes: rows.iter().map(|&r| codes[r]).collect(),
                categories: categories.clone(),
            },
            ObsValues::Strings(v) => {
                ObsValues::Strings(rows.iter().map(|&r| v[r].clone()).collect())
            }
            ObsValues::Numeric(v) => ObsValues::Numeric(rows.iter().map(|&r| v[r]).collect()),
            ObsValues::Bool(v) => ObsValues::Bool(rows.iter().map(|&r| v[r]).collect()),
        }
    }
}

/// A named obs column.
#[derive(Debug, Clone, PartialEq)]
pub struct ObsColumn {
    /// Column name.
    pub name: String,
    /// Its values.
    pub values: ObsValues,
}

/// The obs table: columns in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Obs {
    /// Columns in file order.
    pub columns: Vec<ObsColumn>,
}

impl Obs {
    /// Column by name.
    pub fn get(&self, name: &str) -> Option<&ObsColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Column names in order.
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Add or replace a column.
    pub fn insert(&mut self, col: ObsColumn) {
        if let Some(c) = self.columns.iter_mut().find(|c| c.name == col.name) {
            *c = col;
        } else {
            self.columns.push(col);
        }
    }

    /// Keep the cells at `rows`.
    pub fn select_rows(&self, rows: &[usize]) -> Obs {
        Obs {
            columns: self
                .columns
                .iter()
                .map(|c| ObsColumn {
                    name: c.name.clone(),
                    values: c.values.select_rows(rows),
                })
                .collect(),
        }
    }
}

/// Join the columns of a CSV/TSV/Parquet label table onto `ds.obs` by cell id.
///
/// The id column is the first one named like an id column ([`ID_COLUMN_NAMES`]: `cell_id`,
/// `barcode`, `obs_names`, `index`, ...), or else the first column. Cells absent from the table get missing values; a table that
/// matches no cell at all is an error (almost always the wrong file or id column).
pub fn join_labels(ds: &mut Dataset, table: &Path) -> Result<()> {
    let df = read_dataframe(table)?;
    let cols = df.columns();
    if cols.len() < 2 {
        return Err(Error::input(
            table,
            "label table needs a cell-id column and at least one label column",
        ));
    }
    let id_pos = cols
        .iter()
        .position(|c| ID_COLUMN_NAMES.contains(&c.name().to_lowercase().as_str()))
        .unwrap_or(0);
    let ids = string_column(&cols[id_pos]).map_err(|m| Error::input(table, m))?;
    let mut row_of = std::collections::HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if row_of.insert(id.as_str(), i).is_some() {
            return Err(Error::input(table, format!("cell id '{id}' appears twice")));
        }
    }
    let matched: Vec<Option<usize>> = ds
        .cell_ids
        .iter()
        .map(|id| row_of.get(id.as_str()).copied())
        .collect();
    if matched.iter().all(|m| m.is_none()) {
        return Err(Error::input(
            table,
            format!(
                "no cell id matches the data (first data id '{}', first table id '{}')",
                ds.cell_ids.first().map(String::as_str).unwrap_or(""),
                ids.first().map(String::as_str).unwrap_or("")
            ),
        ));
    }
    for (j, c) in cols.iter().enumerate() {
        if j == id_pos {
            continue;
        }
        let values = nullable_string_column(c).map_err(|m| Error::input(table, m))?;
        let per_cell: Vec<Option<String>> = matched
            .iter()
            .map(|m| m.and_then(|r| values[r].clone()))
            .collect();
        ds.obs.insert(ObsColumn {
            name: c.name().to_string(),
            values: ObsValues::Strings(per_cell),
        });
    }
    Ok(())
}
