//! `scsae concepts` as one call: read the features (SAE codes of cell activations, or any matrix
//! with cell ids) and the data's labels, split the cells (stratified, seeded), score every feature's
//! concept on held-out cells ([`crate::analysis::heldout`]), and the same for the PCA baseline of the
//! same inputs; write the tables and `concepts.json` (written last: it marks a finished folder).

use std::path::PathBuf;

use polars::prelude::*;
use serde::Serialize;

use crate::activations::read_cells;
use crate::analysis::heldout::{
    score_columns, score_concepts, stratified_split, Concept, HeldOutOptions, HeldOutSummary,
};
use crate::analysis::pca::{fit_pca, PcaSolver};
use crate::analysis::pipeline::match_cells;
use crate::analysis::workflow::{encode_with_sae, FeatureSource};
use crate::data::{load, LoadOptions};
use crate::error::{Error, Result};
use crate::io::atomic::write_json_atomic;
use crate::io::file_name;
use crate::io::lock::{check_not_finished, OutputLock};
use crate::io::table::write_table;

/// The file written last.
pub const SUMMARY_FILE: &str = "concepts.json";

/// What `scsae concepts` reads and where it writes.
#[derive(Debug, Clone)]
pub struct ConceptsRequest {
    /// The features.
    pub source: FeatureSource,
    /// Data with the labels (.h5ad or 10x folder).
    pub data: PathBuf,
    /// Label column.
    pub label_key: String,
    /// How to read the data.
    pub load: LoadOptions,
    /// PCA components of the baseline (0 = none).
    pub pca_components: usize,
    /// Split, bars and orientation.
    pub opts: HeldOutOptions,
    /// Output folder.
    pub out: PathBuf,
    /// Overwrite a finished folder.
    pub force: bool,
}

/// `concepts.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ConceptsReport {
    /// What was scored (SAE run name or file).
    pub features: String,
    /// The features' headline.
    pub summary: HeldOutSummary,
    /// The PCA baseline's headline (two-sided: a component's sign is arbitrary).
    pub pca: Option<HeldOutSummary>,
    /// Options used.
    pub options: HeldOutOptions,
    /// Version of scsae.
    pub software_version: String,
}

/// The per-feature table.
fn table(concepts: &[Concept], prefix: &str) -> Result<DataFrame> {
    let f = |g: &dyn Fn(&Concept) -> f64| concepts.iter().map(g).collect::<Vec<f64>>();
    DataFrame::new(
        concepts.len(),
        vec![
            Column::new(
                "feature".into(),
                concepts
                    .iter()
                    .map(|c| format!("{prefix}{}", c.feature + usize::from(prefix == "PC")))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "cell_type".into(),
                concepts
                    .iter()
                    .map(|c| c.cell_type.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "flipped".into(),
                concepts.iter().map(|c| c.flipped).collect::<Vec<_>>(),
            ),
            Column::new("val_auroc".into(), f(&|c| c.val_auroc)),
            Column::new("threshold".into(), f(&|c| c.threshold)),
            Column::new("val_f1".into(), f(&|c| c.val_f1)),
            Column::new("test_auroc".into(), f(&|c| c.test_auroc)),
            Column::new("test_precision".into(), f(&|c| c.test_precision)),
            Column::new("test_recall".into(), f(&|c| c.test_recall)),
            Column::new("test_f1".into(), f(&|c| c.test_f1)),
            Column::new("p_value".into(), f(&|c| c.p_value)),
            Column::new("q_value".into(), f(&|c| c.q_value)),
            Column::new(
                "annotated".into(),
                concepts.iter().map(|c| c.annotated).collect::<Vec<_>>(),
            ),
        ],
    )
    .map_err(|e| Error::invalid(format!("cannot build the concepts table: {e}")))
}

/// Run the held-out scoring; nothing is written before every input has been read and checked.
pub fn run_concepts(req: &ConceptsRequest) -> Result<ConceptsReport> {
    if req.out.is_file() {
        return Err(Error::input(&req.out, "--out must be a folder"));
    }
    check_not_finished(&req.out, SUMMARY_FILE, "held-out concept scores", req.force)?;
    // the features, one column at a time: SAE codes stay column-sparse
    // `inputs` are the scored features, or with an SAE its inputs (codes kept column-sparse); the PCA
    // baseline is fitted on `inputs` either way
    let (codes, inputs, features_path, name) = match &req.source {
        FeatureSource::Matrix { path, key } => {
            let m = read_cells(path, None, key.as_deref())?.matrix;
            (None, m, path.clone(), file_name(path))
        }
        FeatureSource::Activations { dir, layer, sae } => {
            let cells = read_cells(dir, Some(layer), None)?;
            match sae {
                Some(sae) => {
                    let (codes, run) = encode_with_sae(sae, &cells)?;
                    (Some(codes), cells.matrix, dir.clone(), run)
                }
                None => (
                    None,
                    cells.matrix,
                    dir.clone(),
                    format!("layer {layer} activations"),
                ),
            }
        }
    };
    let row_ids = match &codes {
        Some(c) => c.row_ids.as_deref(),
        None => inputs.row_ids.as_deref(),
    };
    let ds = load(&req.data, &req.load)?;
    let all = ds.labels(&req.label_key)?;
    let rows = match_cells(row_ids, &features_path, &ds.cell_ids, &req.data)?;
    let labels: Vec<String> = rows.iter().map(|&r| all[r].clone()).collect();
    let ids: Vec<String> = rows.iter().map(|&r| ds.cell_ids[r].clone()).collect();
    drop(ds);
    let is_test = stratified_split(&ids, &labels, req.opts.test_fraction, req.opts.seed)?;
    let (concepts, summary) = match &codes {
        Some(c) => score_columns(
            rows.len(),
            c.n_cols(),
            |f| c.dense_column(f),
            &labels,
            &is_test,
            &req.opts,
        )?,
        None => score_concepts(&inputs, &labels, &is_test, &req.opts)?,
    };
    drop(codes);
    let pca = if req.pca_components > 0 {
        let p = fit_pca(&inputs, req.pca_components, PcaSolver::Auto, req.opts.seed)?;
        let opts = HeldOutOptions {
            two_sided: true,
            ..req.opts.clone()
        };
        Some(score_concepts(&p.scores, &labels, &is_test, &opts)?)
    } else {
        None
    };
    let mut sae_table = table(&concepts, "f")?;
    let mut pca_table = pca.as_ref().map(|(c, _)| table(c, "PC")).transpose()?;
    // ---- write: tables first, the summary last; one writer at a time
    std::fs::create_dir_all(&req.out).map_err(|e| Error::input(&req.out, e.to_string()))?;
    let _lock = OutputLock::acquire(&req.out)?;
    check_not_finished(&req.out, SUMMARY_FILE, "held-out concept scores", req.force)?;
    if req.force {
        // a finished folder being overwritten stops counting as finished first
        let s = req.out.join(SUMMARY_FILE);
        if s.exists() {
            std::fs::remove_file(&s).map_err(|e| Error::input(&s, e.to_string()))?;
        }
    }
    write_table(&mut sae_table, &req.out, "concepts")?;
    if let Some(t) = pca_table.as_mut() {
        write_table(t, &req.out, "concepts_pca")?;
    }
    let report = ConceptsReport {
        features: name,
        summary,
        pca: pca.map(|(_, s)| s),
        options: req.opts.clone(),
        software_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_json_atomic(&req.out.join(SUMMARY_FILE), &report)?;
    Ok(report)
}
