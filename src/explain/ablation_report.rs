//! `spikgpt ablate`'s outputs: the per-cell table of calls before and after removing features, and
//! the summary (this module owns both files).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::ablation::CellAblation;
use crate::error::Result;
use crate::io::atomic::write_json_atomic;
use crate::io::table::Table;
use crate::spikgpt::metrics::UNKNOWN;
use crate::spikgpt::predictions::split_stem;

/// `spikgpt ablate`'s summary (`<stem>_summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct AblationSummary {
    /// Features removed.
    pub features: Vec<usize>,
    /// Cells.
    pub n_cells: usize,
    /// Cells where at least one of the features is active.
    pub n_active: usize,
    /// Cells whose call (class or Unknown) changed.
    pub call_changed: usize,
    /// Cells whose most probable class changed.
    pub class_changed: usize,
    /// Mean change of the original class's probability over the active cells.
    pub mean_prob_change_active: f64,
    /// `before -> after` call counts of the changed cells.
    pub transitions: BTreeMap<String, usize>,
}

/// Write the per-cell table (`out`, CSV + Parquet: `cell_id`, `label_before`, `best_before`,
/// `prob_before`, `label_after`, `best_after`, `prob_after_of_best_before`, `prob_change`,
/// `call_changed`, `removed_activation`) and `<stem>_summary.json`; return the summary.
pub fn write_ablation(
    res: &[CellAblation],
    ids: &[String],
    classes: &[String],
    features: &[usize],
    out: &Path,
) -> Result<AblationSummary> {
    let name = |c: Option<usize>| c.map_or(UNKNOWN.to_string(), |c| classes[c].clone());
    let n = res.len();
    let (dir, stem) = split_stem(out);
    Table::new(n)
        .str("cell_id", ids.to_vec())
        .str(
            "label_before",
            res.iter().map(|r| name(r.before.label())).collect(),
        )
        .str(
            "best_before",
            res.iter().map(|r| classes[r.before.best].clone()).collect(),
        )
        .f64("prob_before", res.iter().map(|r| r.before.prob).collect())
        .str(
            "label_after",
            res.iter().map(|r| name(r.after.label())).collect(),
        )
        .str(
            "best_after",
            res.iter().map(|r| classes[r.after.best].clone()).collect(),
        )
        .f64(
            "prob_after_of_best_before",
            res.iter().map(|r| r.prob_after).collect(),
        )
        .f64(
            "prob_change",
            res.iter().map(|r| r.prob_after - r.before.prob).collect(),
        )
        .bool(
            "call_changed",
            res.iter().map(|r| r.call_changed()).collect(),
        )
        .f64(
            "removed_activation",
            res.iter().map(|r| r.removed_activation).collect(),
        )
        .write(&dir, &stem)?;
    let active: Vec<&_> = res.iter().filter(|r| r.removed_activation != 0.0).collect();
    let mut transitions = BTreeMap::new();
    for r in res.iter().filter(|r| r.call_changed()) {
        *transitions
            .entry(format!(
                "{} -> {}",
                name(r.before.label()),
                name(r.after.label())
            ))
            .or_insert(0) += 1;
    }
    let summary = AblationSummary {
        features: features.to_vec(),
        n_cells: n,
        n_active: active.len(),
        call_changed: res.iter().filter(|r| r.call_changed()).count(),
        class_changed: res.iter().filter(|r| r.before.best != r.after.best).count(),
        mean_prob_change_active: active
            .iter()
            .map(|r| r.prob_after - r.before.prob)
            .sum::<f64>()
            / active.len().max(1) as f64,
        transitions,
    };
    write_json_atomic(&dir.join(format!("{stem}_summary.json")), &summary)?;
    Ok(summary)
}
