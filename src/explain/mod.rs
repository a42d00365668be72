//! Explaining SpikGPT's calls through SAE features.
//!
//! - [`decompose`]: a cell embedding as `e0 + sum_f z_f v_f + error` in the SAE's dictionary, and the
//!   checks that an SAE belongs to the annotator's embedding space.
//! - `gradient`, [`attribution`]: the predicted class's logit attributed to features (gradient x
//!   activation or integrated gradients through the surrogate gradients) with the error term.
//! - [`ablation`]: remove features, re-run the annotator; top-attributed against random features.
//! - [`interpret`]: feature meanings from `scsae analyze`.
//! - [`drivers`]: per-class driving features and the features of Unknown cells.
//! - [`report`], `figures`: their tables and the per-class heatmap.
//!
//! [`explain_annotation`] runs all of it for `spikgpt annotate --sae`.

pub mod ablation;
pub mod ablation_report;
pub mod annotate_workflow;
pub mod attribution;
pub mod decompose;
pub mod drivers;
pub(crate) mod figures;
pub(crate) mod gradient;
pub mod interpret;
pub mod report;

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::io::atomic::write_json_atomic;
use crate::io::table::Table;
use crate::spikgpt::annotate::LoadedModel;
use crate::stats::median;
use ablation::{top_vs_random, ControlOptions, ControlRow};
use attribution::{attribute, AttributionOptions, CellAttribution, Method};
use decompose::Decomposition;
use drivers::{class_drivers, novel_features, CellCalls};
use interpret::Interpretations;
use report::{write_cell_tables, write_class_reports};

/// Options of [`explain_annotation`].
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    /// Attribution method.
    pub method: Method,
    /// Features listed per cell (and counted as a cell's drivers).
    pub top_features: usize,
    /// Completeness normalisation (see [`attribution`]).
    pub normalise: bool,
    /// Driving features listed per class.
    pub per_class: usize,
    /// Unknown-cell features listed.
    pub novel_limit: usize,
    /// Top-vs-random ablation check (`None` skips it).
    pub control: Option<ControlOptions>,
    /// Cells per batch.
    pub batch_size: usize,
    /// Show progress bars.
    pub progress: bool,
    /// What the figures name as the run (the SAE and the annotator); empty = no run line.
    pub run: String,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        ExplainOptions {
            method: Method::GradientXActivation,
            top_features: 10,
            normalise: true,
            per_class: 10,
            novel_limit: 20,
            control: Some(ControlOptions::default()),
            batch_size: 256,
            progress: false,
            run: String::new(),
        }
    }
}

/// How well the reported terms are explained by the linearisation, over cells.
#[derive(Debug, Clone, Serialize)]
pub struct Completeness {
    /// Median `|L(e) - L(e0)|`.
    pub median_abs_delta: f64,
    /// Median `|residual|`.
    pub median_abs_residual: f64,
    /// Median `|residual| / |L(e) - L(e0)|` over cells with a nonzero difference.
    pub median_relative_residual: f64,
    /// Median `|error_term| / |L(e) - L(e0)|`.
    pub median_relative_error_term: f64,
    /// Median factor applied by the completeness normalisation (1 without it).
    pub median_scale: f64,
    /// Fraction of cells whose terms add up to the logit difference within 1e-6 of it (relative).
    pub frac_complete: f64,
}

/// Headline numbers of an explained annotation (`<stem>_explain.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ExplainSummary {
    /// Attribution method.
    pub method: Method,
    /// Cells explained.
    pub n_cells: usize,
    /// SAE dictionary size.
    pub d_sae: usize,
    /// Mean number of active features per cell.
    pub mean_active_features: f64,
    /// Variance of the embeddings explained by the SAE reconstruction.
    pub sae_r2: f64,
    /// Residual statistics.
    pub completeness: Completeness,
    /// Top-attributed vs random ablation, one row per k.
    pub ablation: Vec<ControlRow>,
    /// Files written (stems beside the predictions).
    pub files: Vec<String>,
    /// Per cell, its top `top_features` features as `(feature, attribution)`, highest first.
    #[serde(skip)]
    pub top_features: Vec<Vec<(usize, f64)>>,
}

fn completeness(attrs: &[CellAttribution]) -> Completeness {
    let rel = |f: fn(&CellAttribution) -> f64| {
        median(
            attrs
                .iter()
                .filter(|a| a.delta().abs() > 1e-9)
                .map(|a| (f(a) / a.delta()).abs())
                .collect(),
        )
    };
    Completeness {
        median_abs_delta: median(attrs.iter().map(|a| a.delta().abs()).collect()),
        median_abs_residual: median(attrs.iter().map(|a| a.residual.abs()).collect()),
        median_relative_residual: rel(|a| a.residual),
        median_relative_error_term: rel(|a| a.error_term),
        median_scale: median(attrs.iter().map(|a| a.scale).collect()),
        frac_complete: attrs
            .iter()
            .filter(|a| a.residual.abs() <= 1e-6 * a.delta().abs().max(1.0))
            .count() as f64
            / attrs.len().max(1) as f64,
    }
}

/// Attribute, ablate and report for an annotated set of cells. `labels` are the final calls
/// (`Unknown` included); tables go to `<dir>/<stem>_*.csv|parquet`.
#[allow(clippy::too_many_arguments)]
pub fn explain_annotation(
    model: &LoadedModel,
    dec: &Decomposition,
    ids: &[String],
    labels: &[String],
    meaning: &Interpretations,
    opts: &ExplainOptions,
    dir: &Path,
    stem: &str,
) -> Result<ExplainSummary> {
    let attrs = attribute(
        &model.model,
        dec,
        &AttributionOptions {
            method: opts.method,
            batch_size: opts.batch_size,
            progress: opts.progress,
            normalise: opts.normalise,
            ..AttributionOptions::default()
        },
    )?;
    let cells = CellCalls {
        ids,
        labels,
        classes: &model.file.labels,
    };
    write_cell_tables(
        dir,
        stem,
        &cells,
        &attrs,
        meaning,
        opts.top_features,
        opts.method.name(),
    )?;
    let drivers = class_drivers(&cells, &attrs, opts.top_features, opts.per_class);
    let novel = novel_features(dec, labels, opts.novel_limit);
    write_class_reports(
        dir, stem, &cells, &attrs, &drivers, &novel, meaning, &opts.run,
    )?;
    let mut files = vec![
        format!("{stem}_attribution"),
        format!("{stem}_features"),
        format!("{stem}_class_drivers"),
        format!("{stem}_unknown_features"),
        format!("{stem}_class_heatmap"),
    ];
    let ablation = match &opts.control {
        Some(c) => {
            let rows = top_vs_random(&model.model, dec, &attrs, ids, c)?;
            write_control_table(dir, &format!("{stem}_ablation"), &rows)?;
            files.push(format!("{stem}_ablation"));
            rows
        }
        None => Vec::new(),
    };
    let summary = ExplainSummary {
        method: opts.method,
        n_cells: attrs.len(),
        d_sae: dec.dict.d_sae,
        mean_active_features: attrs.iter().map(|a| a.n_active as f64).sum::<f64>()
            / attrs.len().max(1) as f64,
        sae_r2: dec.r2(),
        completeness: completeness(&attrs),
        ablation,
        files,
        top_features: attrs
            .iter()
            .map(|a| {
                a.shares
                    .iter()
                    .take(opts.top_features)
                    .map(|s| (s.feature, s.attribution))
                    .collect()
            })
            .collect(),
    };
    write_json_atomic(&dir.join(format!("{stem}_explain.json")), &summary)?;
    Ok(summary)
}

/// The top-vs-random rows as a table.
pub fn write_control_table(dir: &Path, stem: &str, rows: &[ControlRow]) -> Result<()> {
    let col = |f: fn(&ControlRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    Table::new(rows.len())
        .count("k", rows.iter().map(|r| r.k as u64).collect())
        .count("cells", rows.iter().map(|r| r.cells as u64).collect())
        .f64("top_call_changed", col(|r| r.top_call_changed))
        .f64("random_call_changed", col(|r| r.random_call_changed))
        .f64("top_class_changed", col(|r| r.top_class_changed))
        .f64("random_class_changed", col(|r| r.random_class_changed))
        .f64("top_prob_drop", col(|r| r.top_prob_drop))
        .f64("random_prob_drop", col(|r| r.random_prob_drop))
        .f64("top_removed_norm", col(|r| r.top_removed_norm))
        .f64("random_removed_norm", col(|r| r.random_removed_norm))
        .write(dir, stem)
}

impl ExplainSummary {
    /// Human-readable lines for the terminal.
    pub fn to_text(&self) -> String {
        let c = &self.completeness;
        let mut s = format!(
            "explained {} cells with {} ({} SAE features, {:.1} active per cell, SAE R2 {:.3})\n  \
             median |logit - baseline| {:.4}, median |residual| {:.4} ({:.1}% of it), \
             median error term {:.1}% of it; median scale {:.3}, {:.1}% of cells add up exactly\n",
            self.n_cells,
            self.method.name(),
            self.d_sae,
            self.mean_active_features,
            self.sae_r2,
            c.median_abs_delta,
            c.median_abs_residual,
            100.0 * c.median_relative_residual,
            100.0 * c.median_relative_error_term,
            c.median_scale,
            100.0 * c.frac_complete,
        );
        for r in &self.ablation {
            s.push_str(&format!(
                "  ablate top {} vs {} random size-matched features ({} cells): call changed {:.1}% vs {:.1}%, class changed {:.1}% vs {:.1}%\n",
                r.k,
                r.k,
                r.cells,
                100.0 * r.top_call_changed,
                100.0 * r.random_call_changed,
                100.0 * r.top_class_changed,
                100.0 * r.random_class_changed,
            ));
        }
        s
    }
}
