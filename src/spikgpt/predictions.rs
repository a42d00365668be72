//! The prediction table (this module owns its columns): written by `spikgpt annotate` and `spikgpt
//! train` (validation cells), read by `spikgpt evaluate`.
//!
//! Columns, in order (CSV and Parquet alike): `cell_id` (string), `label` (the call, or `Unknown`),
//! `best_label` (the most probable class), `max_prob` (its probability at the rule's temperature),
//! `confidence` (the rule's score: higher = more confident the cell is of a known type), `unknown`
//! (bool: the rule rejected it), then `score_<name>` for every novelty score when the model folder is
//! calibrated (`score_max_prob`, `score_energy`, `score_knn_distance`, `score_combined`), then
//! `prob_<class>` for every class.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::metrics::UNKNOWN;
use super::novelty::Score;
use crate::error::{Error, Result};
use crate::io::table::{read_dataframe, string_column, write_table};

/// One classifier's per-cell outputs, as written and read.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionTable {
    /// Cell ids.
    pub cell_ids: Vec<String>,
    /// The call (`Unknown` when rejected).
    pub label: Vec<String>,
    /// Most probable class.
    pub best: Vec<String>,
    /// Its probability.
    pub max_prob: Vec<f64>,
    /// The rule's confidence (older tables without the column: `max_prob`).
    pub confidence: Vec<f64>,
    /// Every novelty score's confidence, when computed.
    pub scores: Vec<(Score, Vec<f64>)>,
    /// The model's classes, probability-column order.
    pub classes: Vec<String>,
    /// Row-major `n x classes` probabilities.
    pub probs: Vec<f64>,
}

impl PredictionTable {
    /// Append the rows of `other`, a table of the same classes and scores (the next cells of a
    /// stream).
    pub fn append(&mut self, other: PredictionTable) -> Result<()> {
        let same_scores = self.scores.len() == other.scores.len()
            && self
                .scores
                .iter()
                .zip(&other.scores)
                .all(|(a, b)| a.0 == b.0);
        if self.classes != other.classes || !same_scores {
            return Err(Error::invalid(
                "prediction tables of different classes or scores cannot be joined",
            ));
        }
        self.cell_ids.extend(other.cell_ids);
        self.label.extend(other.label);
        self.best.extend(other.best);
        self.max_prob.extend(other.max_prob);
        self.confidence.extend(other.confidence);
        for (a, b) in self.scores.iter_mut().zip(other.scores) {
            a.1.extend(b.1);
        }
        self.probs.extend(other.probs);
        Ok(())
    }

    /// Build from per-cell outputs (`best` indexes `classes`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cell_ids: Vec<String>,
        classes: &[String],
        probs: Vec<f64>,
        best: &[usize],
        max_prob: Vec<f64>,
        confidence: Vec<f64>,
        unknown: &[bool],
        scores: Vec<(Score, Vec<f64>)>,
    ) -> Self {
        let label = best
            .iter()
            .zip(unknown)
            .map(|(&b, &u)| {
                if u {
                    UNKNOWN.to_string()
                } else {
                    classes[b].clone()
                }
            })
            .collect();
        PredictionTable {
            cell_ids,
            label,
            best: best.iter().map(|&b| classes[b].clone()).collect(),
            max_prob,
            confidence,
            scores,
            classes: classes.to_vec(),
            probs,
        }
    }

    /// Whether each cell was rejected.
    pub fn unknown(&self) -> Vec<bool> {
        self.label.iter().map(|l| l == UNKNOWN).collect()
    }

    /// Write `<stem>.csv` and `<stem>.parquet` beside `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        let mut cols: Vec<Column> = vec![
            Column::new("cell_id".into(), self.cell_ids.clone()),
            Column::new("label".into(), self.label.clone()),
            Column::new("best_label".into(), self.best.clone()),
            Column::new("max_prob".into(), self.max_prob.clone()),
            Column::new("confidence".into(), self.confidence.clone()),
            Column::new("unknown".into(), self.unknown()),
        ];
        for (s, v) in &self.scores {
            cols.push(Column::new(format!("score_{}", s.name()).into(), v.clone()));
        }
        let nc = self.classes.len();
        for (j, name) in self.classes.iter().enumerate() {
            let v: Vec<f64> = (0..self.cell_ids.len())
                .map(|i| self.probs[i * nc + j])
                .collect();
            cols.push(Column::new(format!("prob_{name}").into(), v));
        }
        let mut df = DataFrame::new_infer_height(cols)
            .map_err(|e| Error::input(out, format!("cannot build table: {e}")))?;
        let (dir, stem) = split_stem(out);
        write_table(&mut df, &dir, &stem)
    }

    /// Read a table written by [`PredictionTable::write`] (or by earlier versions, which lack
    /// `confidence`, `unknown` and the scores).
    pub fn read(path: &Path) -> Result<Self> {
        let df = read_dataframe(path)?;
        let col = |name: &str| {
            df.column(name).map_err(|_| {
                Error::input(
                    path,
                    format!("no column '{name}' (is this a `spikgpt annotate` table?)"),
                )
            })
        };
        let cell_ids = string_column(col("cell_id")?).map_err(|m| Error::input(path, m))?;
        let best = string_column(col("best_label")?).map_err(|m| Error::input(path, m))?;
        let label = string_column(col("label")?).map_err(|m| Error::input(path, m))?;
        let floats = |name: &str, prob: bool| -> Result<Vec<f64>> {
            let c = col(name)?
                .cast(&DataType::Float64)
                .map_err(|e| Error::input(path, format!("column '{name}': {e}")))?;
            c.f64()
                .map_err(|e| Error::input(path, format!("column '{name}': {e}")))?
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Some(x) if !prob || (0.0..=1.0).contains(&x) => Ok(x),
                    _ => Err(Error::input(
                        path,
                        format!(
                            "column '{name}', row {i}: missing or not {}",
                            if prob { "a probability" } else { "a number" }
                        ),
                    )),
                })
                .collect()
        };
        let max_prob = floats("max_prob", true)?;
        let names = df.get_column_names();
        let has = |n: &str| names.iter().any(|c| c.as_str() == n);
        let confidence = if has("confidence") {
            floats("confidence", false)?
        } else {
            max_prob.clone()
        };
        let mut scores = Vec::new();
        for s in Score::ALL {
            let n = format!("score_{}", s.name());
            if has(&n) {
                scores.push((s, floats(&n, false)?));
            }
        }
        let classes: Vec<String> = names
            .iter()
            .filter_map(|n| n.strip_prefix("prob_").map(str::to_string))
            .collect();
        if classes.is_empty() {
            return Err(Error::input(path, "no prob_<class> columns"));
        }
        let per: Vec<Vec<f64>> = classes
            .iter()
            .map(|c| floats(&format!("prob_{c}"), true))
            .collect::<Result<_>>()?;
        let n = cell_ids.len();
        let mut probs = vec![0.0; n * classes.len()];
        for (j, col) in per.iter().enumerate() {
            for i in 0..n {
                probs[i * classes.len() + j] = col[i];
            }
        }
        if let Some((dup, _, _)) = crate::data::first_duplicate(&cell_ids) {
            return Err(Error::input(
                path,
                format!("cell id '{dup}' appears more than once"),
            ));
        }
        Ok(PredictionTable {
            cell_ids,
            label,
            best,
            max_prob,
            confidence,
            scores,
            classes,
            probs,
        })
    }
}

/// Error unless `out` names a table the way the tables are written: `<stem>.csv` or
/// `<stem>.parquet` (both files are written, beside each other), and, unless `force`, neither
/// exists yet.
pub fn check_table_out(out: &Path, force: bool) -> Result<()> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv" | "parquet") => crate::io::atomic::check_new_output(
            &[&out.with_extension("csv"), &out.with_extension("parquet")],
            force,
        ),
        _ => Err(Error::input(
            out,
            "--out must end in .csv or .parquet (the table is written as <stem>.csv and <stem>.parquet)",
        )),
    }
}

/// `(folder, stem)` of an output path like `out/predictions.csv`.
pub fn split_stem(out: &Path) -> (PathBuf, String) {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("predictions")
        .to_string();
    (dir, stem)
}

/// The path of a sibling table: `<stem><suffix>.<ext of out>` beside `out`.
pub fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let (dir, stem) = split_stem(out);
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("csv");
    dir.join(format!("{stem}{suffix}.{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_duplicate_ids_refused() {
        let dir = tempfile::tempdir().unwrap();
        let classes = vec!["A".to_string(), "B".to_string()];
        let t = PredictionTable::new(
            vec!["007".into(), "c2".into()],
            &classes,
            vec![0.9, 0.1, 0.4, 0.6],
            &[0, 1],
            vec![0.9, 0.6],
            vec![-1.5, -7.0],
            &[false, true],
            vec![(Score::KnnDistance, vec![-1.5, -7.0])],
        );
        let out = dir.path().join("p.csv");
        t.write(&out).unwrap();
        for f in ["p.csv", "p.parquet"] {
            let back = PredictionTable::read(&dir.path().join(f)).unwrap();
            // the numeric-looking id stays a string; Unknown, scores and probabilities survive
            assert_eq!(back.cell_ids, vec!["007", "c2"]);
            assert_eq!(back.label, vec!["A", "Unknown"]);
            assert_eq!(back.best, vec!["A", "B"]);
            assert_eq!(back.confidence, vec![-1.5, -7.0]);
            assert_eq!(back.scores, vec![(Score::KnnDistance, vec![-1.5, -7.0])]);
            assert_eq!(back.probs, vec![0.9, 0.1, 0.4, 0.6]);
        }
        let dup = dir.path().join("dup.csv");
        std::fs::write(
            &dup,
            "cell_id,label,best_label,max_prob,prob_A\nx,A,A,0.9,0.9\nx,A,A,0.8,0.8\n",
        )
        .unwrap();
        let e = PredictionTable::read(&dup).unwrap_err().to_string();
        assert!(
            e.contains("dup.csv") && e.contains("'x' appears more than once"),
            "{e}"
        );
    }
}
