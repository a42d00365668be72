//! Tables of an explained annotation: per-cell attribution summary and top features, the features
//! that drive each class, the features of Unknown cells that the known classes rarely use, and the
//! per-class heatmap.

use std::path::Path;

use super::attribution::{CellAttribution, FeatureShare};
use super::drivers::{CellCalls, Driver, NovelFeature};
use super::figures::ClassHeatmap;
use super::interpret::{FeatureMeaning, Interpretations};
use crate::analysis::features_table::col;
use crate::error::Result;
use crate::io::table::Table;
use crate::plot::save_figure;

/// Adds the interpretation columns for a list of features.
fn with_meaning(t: Table, meanings: &[FeatureMeaning]) -> Table {
    t.opt_str(
        "feature_name",
        meanings.iter().map(|m| m.name.clone()).collect(),
    )
    .opt_str(
        col::BEST_TYPE,
        meanings.iter().map(|m| m.best_type.clone()).collect(),
    )
    .opt_f64(
        col::BEST_AUROC,
        meanings.iter().map(|m| m.best_auroc).collect(),
    )
    .opt_str(
        col::BEST_SET,
        meanings.iter().map(|m| m.best_set.clone()).collect(),
    )
    .opt_f64(
        col::BEST_SET_Q,
        meanings.iter().map(|m| m.best_set_q).collect(),
    )
}

/// `<stem>_attribution.*` (one row per cell) and `<stem>_features.*` (its `top` features).
pub fn write_cell_tables(
    dir: &Path,
    stem: &str,
    cells: &CellCalls<'_>,
    attrs: &[CellAttribution],
    meaning: &Interpretations,
    top: usize,
    method: &str,
) -> Result<()> {
    let n = attrs.len();
    Table::new(n)
        .str("cell_id", cells.ids.to_vec())
        .str("label", cells.labels.to_vec())
        .str(
            "explained_class",
            attrs
                .iter()
                .map(|a| cells.classes[a.target].clone())
                .collect(),
        )
        .f64("logit", attrs.iter().map(|a| a.logit).collect())
        .f64(
            "baseline_logit",
            attrs.iter().map(|a| a.baseline_logit).collect(),
        )
        .f64("logit_delta", attrs.iter().map(|a| a.delta()).collect())
        .f64(
            "features_total",
            attrs.iter().map(|a| a.features_total).collect(),
        )
        .f64("error_term", attrs.iter().map(|a| a.error_term).collect())
        .f64("scale", attrs.iter().map(|a| a.scale).collect())
        .f64("residual", attrs.iter().map(|a| a.residual).collect())
        .count(
            "n_active",
            attrs.iter().map(|a| a.n_active as u64).collect(),
        )
        .str("method", vec![method.to_string(); n])
        .write(dir, &format!("{stem}_attribution"))?;

    // one row per (cell, listed feature)
    let rows: Vec<(usize, usize, &FeatureShare)> = attrs
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            a.shares
                .iter()
                .take(top)
                .enumerate()
                .map(move |(r, s)| (i, r, s))
        })
        .collect();
    let col = |f: &dyn Fn(usize, usize, &FeatureShare) -> f64| -> Vec<f64> {
        rows.iter().map(|&(i, r, s)| f(i, r, s)).collect()
    };
    let text = |f: &dyn Fn(usize) -> String| -> Vec<String> {
        rows.iter().map(|&(i, _, _)| f(i)).collect()
    };
    let mean: Vec<FeatureMeaning> = rows
        .iter()
        .map(|&(_, _, s)| meaning.get(s.feature))
        .collect();
    let t = Table::new(rows.len())
        .str("cell_id", text(&|i| cells.ids[i].clone()))
        .str("label", text(&|i| cells.labels[i].clone()))
        .str(
            "explained_class",
            text(&|i| cells.classes[attrs[i].target].clone()),
        )
        .count("rank", rows.iter().map(|&(_, r, _)| r as u64 + 1).collect())
        .count(
            "feature",
            rows.iter().map(|&(_, _, s)| s.feature as u64).collect(),
        )
        .f64("activation", col(&|_, _, s| s.activation as f64))
        .f64("attribution", col(&|_, _, s| s.attribution))
        .opt_f64(
            "share_of_delta",
            // undefined (missing, not NaN) when the cell's score does not move from the baseline
            rows.iter()
                .map(|&(i, _, s)| {
                    let delta = attrs[i].delta();
                    (delta != 0.0).then(|| s.attribution / delta)
                })
                .collect(),
        );
    with_meaning(t, &mean).write(dir, &format!("{stem}_features"))
}

/// Write `<stem>_class_drivers.*`, `<stem>_unknown_features.*` and the heatmap
/// `<stem>_class_heatmap.png/.svg` (mean attribution of the drivers in every class; `run` names the
/// SAE and the annotator in its title).
#[allow(clippy::too_many_arguments)]
pub fn write_class_reports(
    dir: &Path,
    stem: &str,
    cells: &CellCalls<'_>,
    attrs: &[CellAttribution],
    drivers: &[Driver],
    novel: &[NovelFeature],
    meaning: &Interpretations,
    run: &str,
) -> Result<()> {
    let dm: Vec<FeatureMeaning> = drivers.iter().map(|d| meaning.get(d.feature)).collect();
    let t = Table::new(drivers.len())
        .str("class", drivers.iter().map(|d| d.class.clone()).collect())
        .count("rank", drivers.iter().map(|d| d.rank as u64).collect())
        .count(
            "feature",
            drivers.iter().map(|d| d.feature as u64).collect(),
        )
        .count(
            "cells_in_top",
            drivers.iter().map(|d| d.cells_in_top as u64).collect(),
        )
        .f64(
            "frac_in_top",
            drivers.iter().map(|d| d.frac_in_top).collect(),
        )
        .f64(
            "mean_attribution",
            drivers.iter().map(|d| d.mean_attribution).collect(),
        );
    with_meaning(t, &dm).write(dir, &format!("{stem}_class_drivers"))?;

    let nm: Vec<FeatureMeaning> = novel.iter().map(|d| meaning.get(d.feature)).collect();
    let t = Table::new(novel.len())
        .count("feature", novel.iter().map(|d| d.feature as u64).collect())
        .f64(
            "frac_active_unknown",
            novel.iter().map(|d| d.frac_active_unknown).collect(),
        )
        .f64(
            "frac_active_known",
            novel.iter().map(|d| d.frac_active_known).collect(),
        )
        .f64(
            "max_frac_active_class",
            novel.iter().map(|d| d.max_frac_active_class).collect(),
        )
        .opt_str(
            "most_active_class",
            novel.iter().map(|d| d.most_active_class.clone()).collect(),
        )
        .f64(
            "mean_activation_unknown",
            novel.iter().map(|d| d.mean_activation_unknown).collect(),
        );
    with_meaning(t, &nm).write(dir, &format!("{stem}_unknown_features"))?;

    let mut heat = ClassHeatmap::of(cells, attrs, drivers, meaning, 5, 40);
    heat.run = run.to_string();
    if !heat.features.is_empty() {
        save_figure(
            &dir.join(format!("{stem}_class_heatmap")),
            heat.size(),
            &heat,
        )?;
    }
    Ok(())
}
