//! The atlas's tabular inputs: an `scsae analyze` folder (features, AUROC and enrichment tables,
//! `summary.json`), an `scsae concepts` folder and the class drivers of an explained `spikgpt
//! annotate` run, each checked to describe the SAE being shown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::DataFrame;

use crate::analysis::features_table::{self, FeatureRow};
use crate::error::{Error, Result};
use crate::io::table::{nullable_string_column, read_dataframe};

/// A table's columns read as text, with errors naming the file.
struct Text {
    file: PathBuf,
    df: DataFrame,
}

impl Text {
    fn read(file: &Path) -> Result<Text> {
        Ok(Text {
            file: file.to_path_buf(),
            df: read_dataframe(file)?,
        })
    }

    fn bad(&self, msg: impl Into<String>) -> Error {
        Error::input(&self.file, msg)
    }

    fn has(&self, name: &str) -> bool {
        self.df.column(name).is_ok()
    }

    /// Column `name` as text (`None` where missing or empty).
    fn text(&self, name: &str) -> Result<Vec<Option<String>>> {
        let c = self
            .df
            .column(name)
            .map_err(|_| self.bad(format!("missing column '{name}'")))?;
        Ok(nullable_string_column(c)
            .map_err(|e| self.bad(e))?
            .into_iter()
            .map(|v| v.filter(|s| !s.is_empty()))
            .collect())
    }

    /// Column `name` as text, every value present.
    fn required(&self, name: &str) -> Result<Vec<String>> {
        self.text(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| self.bad(format!("column '{name}', row {i}: missing value")))
            })
            .collect()
    }

    /// Column `name` as numbers (`NaN` where missing).
    fn numbers(&self, name: &str) -> Result<Vec<f64>> {
        self.text(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                None => Ok(f64::NAN),
                Some(s) => s.trim().parse::<f64>().map_err(|_| {
                    self.bad(format!("column '{name}', row {i}: '{s}' is not a number"))
                }),
            })
            .collect()
    }

    /// Column `name` as true/false flags (missing: false).
    fn flags(&self, name: &str) -> Result<Vec<bool>> {
        self.text(name)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v.as_deref() {
                Some("true") | Some("True") => Ok(true),
                Some("false") | Some("False") | None => Ok(false),
                Some(s) => {
                    Err(self.bad(format!("column '{name}', row {i}: '{s}' is not true/false")))
                }
            })
            .collect()
    }

    /// The feature of every row, by name (`names`), as an index; an unknown name is an error.
    fn feature_index(&self, index: &HashMap<&str, usize>, what: &str) -> Result<Vec<usize>> {
        self.required("feature")?
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                index.get(f.as_str()).copied().ok_or_else(|| {
                    self.bad(format!(
                        "row {i}: feature '{f}' is not one of the {} features of {what}",
                        index.len()
                    ))
                })
            })
            .collect()
    }
}

/// `DIR/<stem>.parquet` when it exists, else `DIR/<stem>.csv`.
pub fn table_file(dir: &Path, stem: &str) -> PathBuf {
    let pq = dir.join(format!("{stem}.parquet"));
    if pq.exists() {
        pq
    } else {
        dir.join(format!("{stem}.csv"))
    }
}

/// One tested gene set of a feature (a row of `enrichment.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct SetTest {
    /// Gene-set name.
    pub name: String,
    /// GMT file it came from.
    pub gmt: String,
    /// `positive` or `negative` correlated genes.
    pub sign: String,
    /// Correlated genes in the set.
    pub overlap: f64,
    /// The feature's correlated genes tested.
    pub n_genes: f64,
    /// Measured genes of the set.
    pub set_size: f64,
    /// Fisher odds ratio.
    pub odds_ratio: f64,
    /// Fisher p-value.
    pub p: f64,
    /// Benjamini-Hochberg q-value.
    pub q: f64,
    /// Significant at the analysis's FDR.
    pub significant: bool,
    /// The overlapping genes (`;`-joined).
    pub genes: String,
}

/// An `scsae analyze` folder, per feature.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The folder.
    pub dir: PathBuf,
    /// The features table, one row per feature in index order.
    pub features: Vec<FeatureRow>,
    /// Per feature: (cell type, AUROC) over the tested types (empty for dead features).
    pub auroc: Vec<Vec<(String, f64)>>,
    /// Per feature: the tested gene sets, lowest q first (`None`: no enrichment table).
    pub sets: Option<Vec<Vec<SetTest>>>,
    /// Cells analysed.
    pub n_cells: usize,
    /// FDR level of the analysis.
    pub fdr: f64,
    /// AUROC threshold of the analysis.
    pub auroc_threshold: f64,
    /// What was analysed (`summary.json`'s `feature_source`).
    pub source: String,
}

impl Analysis {
    /// The feature names, in index order.
    pub fn names(&self) -> Vec<String> {
        self.features.iter().map(|f| f.feature.clone()).collect()
    }

    fn name_index(&self) -> HashMap<&str, usize> {
        self.features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.feature.as_str(), i))
            .collect()
    }

    /// Error unless the analysis describes the codes whose per-feature non-zero counts are `nnz` over
    /// `n_cells` cells: same cell count, and every feature's active fraction equal to the table's
    /// (rounded to 3 decimals in the CSV) within 0.001.
    pub fn check_activity(&self, nnz: &[usize], n_cells: usize, sae: &Path) -> Result<()> {
        let file = features_table::locate(&self.dir);
        if self.n_cells != n_cells {
            return Err(Error::input(
                &self.dir,
                format!(
                    "the analysis covers {} cells but the activations hold {n_cells}: it was made from other activations",
                    self.n_cells
                ),
            ));
        }
        for (j, (f, &k)) in self.features.iter().zip(nnz).enumerate() {
            let here = k as f64 / n_cells.max(1) as f64;
            let diff = (f.frac_active - here).abs();
            if diff.is_nan() || diff > 1.001e-3 {
                return Err(Error::input(
                    &file,
                    format!(
                        "feature {j} ({}) is active on {:.1}% of cells in this analysis but on {:.1}% as the SAE in {} encodes them: the analysis was made with another SAE",
                        f.feature,
                        100.0 * f.frac_active,
                        100.0 * here,
                        sae.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Read the analysis folder `dir` and check that it describes `d_sae` features (the SAE in `sae`).
pub fn read_analysis(dir: &Path, d_sae: usize, sae: &Path) -> Result<Analysis> {
    if !dir.is_dir() {
        return Err(Error::input(
            dir,
            "not a folder (expected the output folder of `scsae analyze`)",
        ));
    }
    let summary_path = dir.join("summary.json");
    let summary: serde_json::Value = crate::io::read_json(&summary_path, "analysis summary")?;
    let num = |v: &serde_json::Value, what: &str| {
        v.as_f64().ok_or_else(|| {
            Error::input(
                &summary_path,
                format!("missing number '{what}' (expected the summary of `scsae analyze`)"),
            )
        })
    };
    let n_cells = num(&summary["n_cells"], "n_cells")? as usize;
    let fdr = num(&summary["config"]["fdr"], "config.fdr")?;
    let auroc_threshold = num(
        &summary["config"]["auroc_threshold"],
        "config.auroc_threshold",
    )?;
    let source = summary["feature_source"].as_str().unwrap_or("").to_string();

    let features = features_table::read(dir)?;
    if features.len() != d_sae {
        return Err(Error::input(
            features_table::locate(dir),
            format!(
                "describes {} features but the SAE in {} has {d_sae}: was it analysed with this SAE?",
                features.len(),
                sae.display()
            ),
        ));
    }
    let mut a = Analysis {
        dir: dir.to_path_buf(),
        features,
        auroc: vec![Vec::new(); d_sae],
        sets: None,
        n_cells,
        fdr,
        auroc_threshold,
        source,
    };
    let index = a.name_index();
    let what = format!("the analysis in {}", dir.display());

    let t = Text::read(&table_file(dir, "auroc"))?;
    let rows = t.feature_index(&index, &what)?;
    let types = t.required("cell_type")?;
    let values = t.numbers("auroc")?;
    let mut auroc = vec![Vec::new(); d_sae];
    for ((j, ty), v) in rows.into_iter().zip(types).zip(values) {
        auroc[j].push((ty, v));
    }
    for per in &mut auroc {
        per.sort_by(|x, y| x.0.cmp(&y.0));
    }

    let enr = table_file(dir, "enrichment");
    let sets = if enr.exists() {
        let t = Text::read(&enr)?;
        let rows = t.feature_index(&index, &what)?;
        let name = t.required("gene_set")?;
        let gmt = t.text("gmt_file")?;
        let sign = t.text("correlation_sign")?;
        let overlap = t.numbers("overlap")?;
        let n_genes = t.numbers("n_correlated_genes")?;
        let size = t.numbers("set_size")?;
        let odds = t.numbers("odds_ratio")?;
        let p = t.numbers("p_value")?;
        let q = t.numbers("q_value")?;
        let sig = if t.has("significant") {
            t.flags("significant")?
        } else {
            q.iter().map(|&q| q < fdr).collect()
        };
        let genes = t.text("overlap_genes")?;
        let mut sets = vec![Vec::new(); d_sae];
        for (i, j) in rows.into_iter().enumerate() {
            sets[j].push(SetTest {
                name: name[i].clone(),
                gmt: gmt[i].clone().unwrap_or_default(),
                sign: sign[i].clone().unwrap_or_else(|| "positive".into()),
                overlap: overlap[i],
                n_genes: n_genes[i],
                set_size: size[i],
                odds_ratio: odds[i],
                p: p[i],
                q: q[i],
                significant: sig[i],
                genes: genes[i].clone().unwrap_or_default(),
            });
        }
        for per in &mut sets {
            per.sort_by(|x, y| {
                x.q.total_cmp(&y.q)
                    .then(x.p.total_cmp(&y.p))
                    .then_with(|| x.name.cmp(&y.name))
                    .then_with(|| x.sign.cmp(&y.sign))
            });
        }
        Some(sets)
    } else {
        None
    };
    a.auroc = auroc;
    a.sets = sets;
    Ok(a)
}

/// A feature's held-out concept (a row of `concepts.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct Concept {
    /// The cell type chosen on the validation cells.
    pub cell_type: String,
    /// Validation AUROC.
    pub val_auroc: f64,
    /// Test AUROC.
    pub test_auroc: f64,
    /// Test F1 at the validation threshold.
    pub test_f1: f64,
    /// BH q-value of the test AUROC.
    pub q: f64,
    /// Passes the concept bars.
    pub annotated: bool,
}

/// Read `concepts.csv` of an `scsae concepts` folder (or the table itself): per feature its concept,
/// checked to name the features `names` (those of the analysis).
pub fn read_concepts(path: &Path, names: &[String]) -> Result<Vec<Option<Concept>>> {
    let (file, summary) = if path.is_dir() {
        (
            table_file(path, "concepts"),
            Some(path.join(crate::analysis::concepts::SUMMARY_FILE)),
        )
    } else {
        (path.to_path_buf(), None)
    };
    if let Some(s) = summary.filter(|s| s.exists()) {
        let v: serde_json::Value = crate::io::read_json(&s, "concepts summary")?;
        if let Some(n) = v["summary"]["n_features"].as_u64() {
            if n as usize != names.len() {
                return Err(Error::input(
                    &s,
                    format!(
                        "scores {n} features but the SAE has {}: were the concepts made with this SAE?",
                        names.len()
                    ),
                ));
            }
        }
    }
    let t = Text::read(&file)?;
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let rows = t.feature_index(&index, "the analysis")?;
    let ty = t.required("cell_type")?;
    let val = t.numbers("val_auroc")?;
    let test = t.numbers("test_auroc")?;
    let f1 = t.numbers("test_f1")?;
    let q = t.numbers("q_value")?;
    let ann = t.flags("annotated")?;
    let mut out = vec![None; names.len()];
    for (i, j) in rows.into_iter().enumerate() {
        if out[j].is_some() {
            return Err(t.bad(format!("feature '{}' appears twice", names[j])));
        }
        out[j] = Some(Concept {
            cell_type: ty[i].clone(),
            val_auroc: val[i],
            test_auroc: test[i],
            test_f1: f1[i],
            q: q[i],
            annotated: ann[i],
        });
    }
    Ok(out)
}

/// A class whose SpikGPT calls a feature drives (a row of `<stem>_class_drivers.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    /// The class.
    pub class: String,
    /// The feature's rank among the class's drivers (1 = strongest).
    pub rank: u64,
    /// Cells called the class with the feature among their top attributed features.
    pub cells_in_top: u64,
    /// That count over the cells called the class.
    pub frac_in_top: f64,
    /// Mean attribution over the cells called the class.
    pub mean_attribution: f64,
}

/// The class-drivers table of an explained `spikgpt annotate` run, given as the table itself or as
/// its `<stem>_explain.json` (then the table beside it; the JSON's `d_sae` must be the SAE's).
/// Per feature: the classes it drives, strongest rank first.
pub fn read_drivers(path: &Path, d_sae: usize) -> Result<Vec<Vec<Drive>>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (file, json) = if let Some(stem) = name.strip_suffix("_explain.json") {
        let dir = path.parent().unwrap_or(Path::new(""));
        (
            table_file(dir, &format!("{stem}_class_drivers")),
            Some(path.to_path_buf()),
        )
    } else {
        let stem = name
            .strip_suffix("_class_drivers.csv")
            .or_else(|| name.strip_suffix("_class_drivers.parquet"));
        let json = stem.map(|s| path.with_file_name(format!("{s}_explain.json")));
        (path.to_path_buf(), json.filter(|j| j.exists()))
    };
    if let Some(j) = json {
        let v: serde_json::Value = crate::io::read_json(&j, "explanation summary")?;
        let n = v["d_sae"].as_u64().ok_or_else(|| {
            Error::input(
                &j,
                "no 'd_sae' (expected the <stem>_explain.json of `spikgpt annotate --sae`)",
            )
        })?;
        if n as usize != d_sae {
            return Err(Error::input(
                &j,
                format!("explains calls through an SAE of {n} features but the SAE has {d_sae}: was it run with this SAE?"),
            ));
        }
    }
    let t = Text::read(&file)?;
    let class = t.required("class")?;
    let feature = t.required("feature")?;
    let rank = t.numbers("rank")?;
    let cells = t.numbers("cells_in_top")?;
    let frac = t.numbers("frac_in_top")?;
    let mean = t.numbers("mean_attribution")?;
    let mut out = vec![Vec::new(); d_sae];
    for (i, f) in feature.iter().enumerate() {
        let j = f.trim().parse::<usize>().map_err(|_| {
            t.bad(format!(
                "column 'feature', row {i}: '{f}' is not a feature index"
            ))
        })?;
        if j >= d_sae {
            return Err(t.bad(format!(
                "row {i}: feature index {j} is out of range (the SAE has {d_sae} features)"
            )));
        }
        out[j].push(Drive {
            class: class[i].clone(),
            rank: rank[i] as u64,
            cells_in_top: cells[i] as u64,
            frac_in_top: frac[i],
            mean_attribution: mean[i],
        });
    }
    for per in &mut out {
        per.sort_by(|a, b| a.rank.cmp(&b.rank).then_with(|| a.class.cmp(&b.class)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_are_checked_against_the_sae_width() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("p_class_drivers.csv");
        std::fs::write(
            &csv,
            "class,rank,feature,cells_in_top,frac_in_top,mean_attribution\nB,2,1,3,0.5,0.1\nT,1,1,4,0.25,0.2\nB,1,0,6,1.0,0.3\n",
        )
        .unwrap();
        let d = read_drivers(&csv, 3).unwrap();
        assert_eq!(d[0].len(), 1);
        assert_eq!(
            d[1].iter()
                .map(|x| (x.class.as_str(), x.rank))
                .collect::<Vec<_>>(),
            vec![("T", 1), ("B", 2)]
        );
        assert!(d[2].is_empty());
        let e = read_drivers(&csv, 1).unwrap_err().to_string();
        assert!(
            e.contains("p_class_drivers.csv") && e.contains("feature index 1 is out of range"),
            "{e}"
        );
        // the JSON beside it names another width
        std::fs::write(dir.path().join("p_explain.json"), r#"{"d_sae": 8}"#).unwrap();
        let e = read_drivers(&csv, 3).unwrap_err().to_string();
        assert!(
            e.contains("p_explain.json") && e.contains("8 features"),
            "{e}"
        );
        let e = read_drivers(&dir.path().join("p_explain.json"), 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("8 features"), "{e}");
        assert_eq!(
            read_drivers(&dir.path().join("p_explain.json"), 8)
                .unwrap()
                .len(),
            8
        );
    }
}
