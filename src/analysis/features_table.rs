//! Owner of the per-feature table `features.{csv,parquet}` (and `pca_features.*`) that
//! `scsae analyze` writes and `spikgpt annotate --analysis` reads: one [`FeatureRow`] per feature and
//! the column names in [`col`].
//!
//! List-valued columns are Parquet lists and, in CSV, items joined with `;`
//! ([`crate::io::table::LIST_SEP`]); each gene or set list has a parallel list of its values
//! (`top_positive_genes` + `top_positive_r`, `enriched_sets` + `enriched_sets_q`), so that no number
//! is embedded in text. [`read`] takes either form back.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::table::{
    f64_list_column, nullable_string_column, opt_count_column, read_dataframe, str_list_column,
    Table,
};

/// Column names of the features table, in file order.
pub mod col {
    /// Feature name (`f12`, `PC3`).
    pub const FEATURE: &str = "feature";
    /// Feature index (column of the analysed matrix).
    pub const INDEX: &str = "index";
    /// Non-zero on at least the alive fraction of cells.
    pub const ALIVE: &str = "alive";
    /// Fraction of cells where the feature is non-zero.
    pub const FRAC_ACTIVE: &str = "frac_active";
    /// Mean value over cells.
    pub const MEAN: &str = "mean";
    /// Cell type with the highest AUROC.
    pub const BEST_TYPE: &str = "best_type";
    /// That AUROC.
    pub const BEST_AUROC: &str = "best_auroc";
    /// With `--direction both`: the best AUROC is for lower values in that type.
    pub const BEST_IS_LOWER: &str = "best_is_lower_in_type";
    /// Number of types with AUROC above the threshold.
    pub const N_TYPES_ABOVE: &str = "n_types_above_threshold";
    /// At least one type above the threshold.
    pub const SPECIFIC: &str = "cell_type_specific";
    /// Most positively correlated genes, strongest first (list of text).
    pub const TOP_POSITIVE: &str = "top_positive_genes";
    /// Their Pearson r (list of numbers, parallel to [`TOP_POSITIVE`]).
    pub const TOP_POSITIVE_R: &str = "top_positive_r";
    /// Most negatively correlated genes, strongest first (list of text).
    pub const TOP_NEGATIVE: &str = "top_negative_genes";
    /// Their Pearson r (list of numbers, parallel to [`TOP_NEGATIVE`]).
    pub const TOP_NEGATIVE_R: &str = "top_negative_r";
    /// Number of genes past the correlation cutoff (nullable int64: missing without expression).
    pub const N_CORRELATED: &str = "n_correlated_genes";
    /// Some gene set significant.
    pub const ENRICHED: &str = "enriched";
    /// Number of significant gene sets.
    pub const N_SETS: &str = "n_enriched_sets";
    /// Significant sets, most significant first (list of text).
    pub const SETS: &str = "enriched_sets";
    /// Their q-values (list of numbers, parallel to [`SETS`]).
    pub const SETS_Q: &str = "enriched_sets_q";
    /// Signed analyses only (`--auroc-direction both`, PCA): the side of each set, `positive` or
    /// `negative` correlation (list of text, parallel to [`SETS`]).
    pub const SETS_SIGN: &str = "enriched_sets_sign";
    /// Most significant set.
    pub const BEST_SET: &str = "best_set";
    /// Its Benjamini-Hochberg q-value.
    pub const BEST_SET_Q: &str = "best_set_q";
}

/// One row of the features table (see [`col`] for the meaning of each column).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureRow {
    /// [`col::FEATURE`].
    pub feature: String,
    /// [`col::ALIVE`].
    pub alive: bool,
    /// [`col::FRAC_ACTIVE`].
    pub frac_active: f64,
    /// [`col::MEAN`].
    pub mean: f64,
    /// [`col::BEST_TYPE`].
    pub best_type: Option<String>,
    /// [`col::BEST_AUROC`].
    pub best_auroc: Option<f64>,
    /// [`col::BEST_IS_LOWER`] (written only for signed analyses).
    pub best_is_lower: bool,
    /// [`col::N_TYPES_ABOVE`].
    pub n_types_above: u64,
    /// [`col::SPECIFIC`].
    pub specific: bool,
    /// [`col::TOP_POSITIVE`] with [`col::TOP_POSITIVE_R`]: (gene, r), strongest first.
    pub top_positive: Vec<(String, f64)>,
    /// [`col::TOP_NEGATIVE`] with [`col::TOP_NEGATIVE_R`]: (gene, r), strongest first.
    pub top_negative: Vec<(String, f64)>,
    /// [`col::N_CORRELATED`].
    pub n_correlated: Option<u64>,
    /// [`col::ENRICHED`].
    pub enriched: bool,
    /// [`col::N_SETS`].
    pub n_sets: u64,
    /// [`col::SETS`] with [`col::SETS_Q`] and [`col::SETS_SIGN`], most significant first.
    pub sets: Vec<EnrichedSet>,
    /// [`col::BEST_SET`].
    pub best_set: Option<String>,
    /// [`col::BEST_SET_Q`].
    pub best_set_q: Option<f64>,
}

/// One significant gene set of a feature.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnrichedSet {
    /// Gene-set name.
    pub name: String,
    /// Benjamini-Hochberg q-value.
    pub q: f64,
    /// Tested on the negatively correlated genes (signed analyses only; `false` otherwise).
    pub negative: bool,
}

/// Write `OUT/<stem>.csv` and `.parquet`, one row per feature in index order; the
/// [`col::BEST_IS_LOWER`] and [`col::SETS_SIGN`] columns only when `signed`.
pub fn write(out: &Path, stem: &str, rows: &[FeatureRow], signed: bool) -> Result<()> {
    let get = |f: &dyn Fn(&FeatureRow) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    let names = |l: &[(String, f64)]| l.iter().map(|(g, _)| g.clone()).collect::<Vec<_>>();
    let values = |l: &[(String, f64)]| l.iter().map(|&(_, r)| r).collect::<Vec<_>>();
    let mut table = Table::new(rows.len())
        .str(
            col::FEATURE,
            rows.iter().map(|r| r.feature.clone()).collect(),
        )
        .count(col::INDEX, (0..rows.len() as u64).collect())
        .bool(col::ALIVE, rows.iter().map(|r| r.alive).collect())
        .f64(col::FRAC_ACTIVE, get(&|r| r.frac_active))
        .f64(col::MEAN, get(&|r| r.mean))
        .opt_str(
            col::BEST_TYPE,
            rows.iter().map(|r| r.best_type.clone()).collect(),
        )
        .opt_f64(col::BEST_AUROC, rows.iter().map(|r| r.best_auroc).collect());
    if signed {
        table = table.bool(
            col::BEST_IS_LOWER,
            rows.iter().map(|r| r.best_is_lower).collect(),
        );
    }
    table = table
        .count(
            col::N_TYPES_ABOVE,
            rows.iter().map(|r| r.n_types_above).collect(),
        )
        .bool(col::SPECIFIC, rows.iter().map(|r| r.specific).collect())
        .str_list(
            col::TOP_POSITIVE,
            rows.iter().map(|r| names(&r.top_positive)).collect(),
        )
        .f64_list(
            col::TOP_POSITIVE_R,
            rows.iter().map(|r| values(&r.top_positive)).collect(),
        )
        .str_list(
            col::TOP_NEGATIVE,
            rows.iter().map(|r| names(&r.top_negative)).collect(),
        )
        .f64_list(
            col::TOP_NEGATIVE_R,
            rows.iter().map(|r| values(&r.top_negative)).collect(),
        )
        .opt_count(
            col::N_CORRELATED,
            rows.iter().map(|r| r.n_correlated).collect(),
        )
        .bool(col::ENRICHED, rows.iter().map(|r| r.enriched).collect())
        .count(col::N_SETS, rows.iter().map(|r| r.n_sets).collect())
        .str_list(
            col::SETS,
            rows.iter()
                .map(|r| r.sets.iter().map(|s| s.name.clone()).collect())
                .collect(),
        )
        .f64_list(
            col::SETS_Q,
            rows.iter()
                .map(|r| r.sets.iter().map(|s| s.q).collect())
                .collect(),
        );
    if signed {
        table = table.str_list(
            col::SETS_SIGN,
            rows.iter()
                .map(|r| {
                    r.sets
                        .iter()
                        .map(|s| sign_name(s.negative).into())
                        .collect()
                })
                .collect(),
        );
    }
    table
        .opt_str(
            col::BEST_SET,
            rows.iter().map(|r| r.best_set.clone()).collect(),
        )
        .opt_f64(col::BEST_SET_Q, rows.iter().map(|r| r.best_set_q).collect())
        .write(out, stem)
}

fn sign_name(negative: bool) -> &'static str {
    if negative {
        "negative"
    } else {
        "positive"
    }
}

/// Read a features table written by [`write`], from its Parquet or its CSV form (lists joined with
/// `;`), given as the file or as the analysis folder ([`locate`]). Rows come back in file order.
pub fn read(path: &Path) -> Result<Vec<FeatureRow>> {
    let file = locate(path);
    let df = read_dataframe(&file)?;
    let bad = |m: String| Error::input(&file, m);
    let column = |name: &str| {
        df.column(name).map_err(|_| {
            bad(format!(
                "missing column '{name}' (expected the features table of `scsae analyze`)"
            ))
        })
    };
    let text = |name: &str| -> Result<Vec<Option<String>>> {
        nullable_string_column(column(name)?)
            .map(|v| v.into_iter().map(|s| s.filter(|s| !s.is_empty())).collect())
            .map_err(bad)
    };
    let number = |name: &str, required: bool| -> Result<Vec<Option<f64>>> {
        text(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                None if required => Err(bad(format!("column '{name}', row {i}: missing value"))),
                None => Ok(None),
                Some(s) => s
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| bad(format!("column '{name}', row {i}: '{s}' is not a number"))),
            })
            .collect()
    };
    let flag = |name: &str| -> Result<Vec<bool>> {
        text(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v.as_deref() {
                Some("true") | Some("True") => Ok(true),
                Some("false") | Some("False") | None => Ok(false),
                Some(s) => Err(bad(format!(
                    "column '{name}', row {i}: '{s}' is not true/false"
                ))),
            })
            .collect()
    };
    let count = |name: &str| -> Result<Vec<u64>> {
        opt_count_column(column(name)?)
            .map_err(bad)
            .map(|v| v.into_iter().map(Option::unwrap_or_default).collect())
    };
    let pairs = |genes: &str, values: &str| -> Result<Vec<Vec<(String, f64)>>> {
        let g = str_list_column(column(genes)?).map_err(bad)?;
        let v = f64_list_column(column(values)?).map_err(bad)?;
        g.into_iter()
            .zip(v)
            .enumerate()
            .map(|(i, (g, v))| {
                if g.len() != v.len() {
                    return Err(bad(format!(
                        "row {i}: {} items in '{genes}' but {} in '{values}'",
                        g.len(),
                        v.len()
                    )));
                }
                Ok(g.into_iter().zip(v).collect())
            })
            .collect()
    };
    let feature = text(col::FEATURE)?;
    let alive = flag(col::ALIVE)?;
    let frac = number(col::FRAC_ACTIVE, true)?;
    let mean = number(col::MEAN, true)?;
    let best_type = text(col::BEST_TYPE)?;
    let best_auroc = number(col::BEST_AUROC, false)?;
    let lower = if df.column(col::BEST_IS_LOWER).is_ok() {
        flag(col::BEST_IS_LOWER)?
    } else {
        vec![false; df.height()]
    };
    let n_above = count(col::N_TYPES_ABOVE)?;
    let specific = flag(col::SPECIFIC)?;
    let pos = pairs(col::TOP_POSITIVE, col::TOP_POSITIVE_R)?;
    let neg = pairs(col::TOP_NEGATIVE, col::TOP_NEGATIVE_R)?;
    let n_corr = opt_count_column(column(col::N_CORRELATED)?).map_err(bad)?;
    let enriched = flag(col::ENRICHED)?;
    let n_sets = count(col::N_SETS)?;
    let sets = pairs(col::SETS, col::SETS_Q)?;
    let signs = if df.column(col::SETS_SIGN).is_ok() {
        str_list_column(column(col::SETS_SIGN)?).map_err(bad)?
    } else {
        vec![Vec::new(); df.height()]
    };
    let best_set = text(col::BEST_SET)?;
    let best_set_q = number(col::BEST_SET_Q, false)?;
    (0..df.height())
        .map(|i| {
            let sets = sets[i]
                .iter()
                .enumerate()
                .map(|(k, (name, q))| {
                    let negative = match signs[i].get(k).map(String::as_str) {
                        None | Some("positive") => false,
                        Some("negative") => true,
                        Some(s) => {
                            return Err(bad(format!(
                                "column '{}', row {i}: '{s}' is not positive/negative",
                                col::SETS_SIGN
                            )))
                        }
                    };
                    Ok(EnrichedSet {
                        name: name.clone(),
                        q: *q,
                        negative,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(FeatureRow {
                feature: feature[i]
                    .clone()
                    .ok_or_else(|| bad(format!("row {i}: missing feature name")))?,
                alive: alive[i],
                frac_active: frac[i].unwrap_or(f64::NAN),
                mean: mean[i].unwrap_or(f64::NAN),
                best_type: best_type[i].clone(),
                best_auroc: best_auroc[i],
                best_is_lower: lower[i],
                n_types_above: n_above[i],
                specific: specific[i],
                top_positive: pos[i].clone(),
                top_negative: neg[i].clone(),
                n_correlated: n_corr[i],
                enriched: enriched[i],
                n_sets: n_sets[i],
                sets,
                best_set: best_set[i].clone(),
                best_set_q: best_set_q[i],
            })
        })
        .collect()
}

/// The features table given as an analysis folder (its `features.parquet`, else `features.csv`)
/// or as the file itself.
pub fn locate(path: &Path) -> PathBuf {
    if path.is_dir() {
        let pq = path.join("features.parquet");
        if pq.exists() {
            pq
        } else {
            path.join("features.csv")
        }
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<FeatureRow> {
        vec![
            FeatureRow {
                feature: "f0".into(),
                alive: true,
                frac_active: 0.25,
                mean: 0.5,
                best_type: Some("B_memory".into()),
                best_auroc: Some(0.93),
                best_is_lower: true,
                n_types_above: 2,
                specific: true,
                top_positive: vec![("MS4A1".into(), 0.912), ("CD79A".into(), 0.5)],
                top_negative: vec![("7SK".into(), -0.125)],
                n_correlated: Some(40),
                enriched: true,
                n_sets: 2,
                sets: vec![
                    EnrichedSet {
                        name: "B_cell".into(),
                        q: 1.5e-12,
                        negative: false,
                    },
                    EnrichedSet {
                        name: "T_cell".into(),
                        q: 0.01,
                        negative: true,
                    },
                ],
                best_set: Some("B_cell".into()),
                best_set_q: Some(1.5e-12),
            },
            // a dead feature: no lists, no count
            FeatureRow {
                feature: "f1".into(),
                ..FeatureRow::default()
            },
        ]
    }

    #[test]
    fn features_table_round_trips_through_csv_and_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let rows = rows();
        write(dir.path(), "features", &rows, true).unwrap();
        for ext in ["csv", "parquet"] {
            let back = read(&dir.path().join(format!("features.{ext}"))).unwrap();
            assert_eq!(back, rows, "{ext}");
        }
        // the folder reads through its Parquet file
        assert_eq!(read(dir.path()).unwrap(), rows);
        let csv = std::fs::read_to_string(dir.path().join("features.csv")).unwrap();
        assert!(
            csv.contains(",MS4A1;CD79A,0.912;0.5,7SK,-0.125,40,true,2,B_cell;T_cell,1.5e-12;0.01,positive;negative,"),
            "{csv}"
        );
        // the dead feature: empty lists and a missing count are empty cells
        assert!(csv.lines().nth(2).unwrap().contains(",,,,,"), "{csv}");
        // unsigned: no sign columns, sets read back as positive
        let mut unsigned = rows.clone();
        unsigned[0].best_is_lower = false;
        unsigned[0].sets[1].negative = false;
        write(dir.path(), "u", &unsigned, false).unwrap();
        let df = read_dataframe(&dir.path().join("u.parquet")).unwrap();
        assert!(df.column(col::SETS_SIGN).is_err() && df.column(col::BEST_IS_LOWER).is_err());
        assert_eq!(read(&dir.path().join("u.csv")).unwrap(), unsigned);
    }
}
