//! The evaluation report shared by `spikgpt train` (on the validation and held-out cells) and
//! `spikgpt evaluate` (on a prediction table): classification metrics, the Unknown-rejection report
//! with its threshold sweep for SpikGPT and the logistic-regression baseline side by side, and the
//! spiking statistics; written as text, JSON, tables and figures.

use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

use super::energy::EnergyReport;
use super::metrics::{classification_metrics, Metrics};
use super::plots::{ConfusionPlot, SweepPlot};
use super::rejection::{rejection_report, RejectionReport};
use crate::error::{Error, Result};
use crate::io::atomic::{write_bytes_atomic, write_json_atomic};
use crate::io::table::write_table;
use crate::plot::save_figure;

/// Per-cell predictions of one classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct CellPredictions {
    /// Classifier name.
    pub model: String,
    /// Final label (or `Unknown`).
    pub label: Vec<String>,
    /// Most probable class.
    pub best: Vec<String>,
    /// Its probability.
    pub max_prob: Vec<f64>,
}

/// Everything `evaluate` reports.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationReport {
    /// Rejection threshold.
    pub threshold: f64,
    /// Cell types treated as unseen (held out of training, or absent from the model).
    pub held_out: Vec<String>,
    /// SpikGPT metrics on the cells of known types.
    pub metrics: Metrics,
    /// Baseline metrics on the same cells, when baseline predictions are available.
    pub baseline_metrics: Option<Metrics>,
    /// Rejection reports (SpikGPT, then the baseline), when held-out cells are present.
    pub rejection: Vec<RejectionReport>,
    /// Spiking statistics, when recorded.
    pub spiking: Option<EnergyReport>,
}

/// Build the report: `truth` per cell, `classes` the model's classes, `held_out` the unseen types.
pub fn build_report(
    truth: &[String],
    classes: &[String],
    held_out: &[String],
    threshold: f64,
    main: &CellPredictions,
    baseline: Option<&CellPredictions>,
    spiking: Option<EnergyReport>,
) -> EvaluationReport {
    let known: Vec<usize> = (0..truth.len())
        .filter(|&i| classes.contains(&truth[i]))
        .collect();
    let sub = |v: &[String]| -> Vec<String> { known.iter().map(|&i| v[i].clone()).collect() };
    let present: Vec<String> = classes
        .iter()
        .filter(|c| known.iter().any(|&i| &truth[i] == *c))
        .cloned()
        .collect();
    let metrics = classification_metrics(&sub(truth), &sub(&main.label), &present);
    let baseline_metrics =
        baseline.map(|b| classification_metrics(&sub(truth), &sub(&b.label), &present));
    let mut rejection = Vec::new();
    if truth.iter().any(|t| held_out.contains(t)) {
        rejection.push(rejection_report(
            &main.model,
            truth,
            &main.best,
            &main.max_prob,
            held_out,
            threshold,
        ));
        if let Some(b) = baseline {
            rejection.push(rejection_report(
                &b.model,
                truth,
                &b.best,
                &b.max_prob,
                held_out,
                threshold,
            ));
        }
    }
    EvaluationReport {
        threshold,
        held_out: held_out.to_vec(),
        metrics,
        baseline_metrics,
        rejection,
        spiking,
    }
}

impl EvaluationReport {
    /// The printed report.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "SpikGPT (threshold {:.2}; Unknown counts as wrong) on {} cells of known types\n",
            self.threshold, self.metrics.n_cells
        );
        s.push_str(&self.metrics.to_text());
        if let Some(b) = &self.baseline_metrics {
            s.push_str(&format!(
                "baseline (multinomial logistic regression, same threshold): accuracy {:.4}  macro precision {:.4}  macro recall {:.4}  macro F1 {:.4}\n",
                b.accuracy, b.macro_precision, b.macro_recall, b.macro_f1
            ));
        }
        if !self.rejection.is_empty() {
            s.push_str(&format!(
                "Unknown-cell rejection (held-out types: {})\n",
                self.held_out.join(", ")
            ));
            for r in &self.rejection {
                s.push_str(&r.to_text());
            }
        }
        if let Some(e) = &self.spiking {
            s.push_str(&e.to_text());
        }
        s
    }

    /// Write `<stem>.json`, `<stem>.txt`, `<stem>_per_class.{csv,parquet}`, `<stem>_confusion.{png,svg}`
    /// and, with held-out cells, `<stem>_threshold_sweep.{csv,parquet,png,svg}` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<()> {
        write_json_atomic(&dir.join(format!("{stem}.json")), self)?;
        write_bytes_atomic(&dir.join(format!("{stem}.txt")), self.to_text().as_bytes())?;
        let pc = &self.metrics.per_class;
        let mut df = DataFrame::new_infer_height(vec![
            Column::new(
                "class".into(),
                pc.iter().map(|c| c.label.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "support".into(),
                pc.iter().map(|c| c.support as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "predicted".into(),
                pc.iter().map(|c| c.predicted as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "precision".into(),
                pc.iter().map(|c| c.precision).collect::<Vec<_>>(),
            ),
            Column::new(
                "recall".into(),
                pc.iter().map(|c| c.recall).collect::<Vec<_>>(),
            ),
            Column::new("f1".into(), pc.iter().map(|c| c.f1).collect::<Vec<_>>()),
            Column::new(
                "unknown_fraction".into(),
                pc.iter().map(|c| c.unknown_fraction).collect::<Vec<_>>(),
            ),
        ])
        .map_err(|e| Error::invalid(format!("cannot build per-class table: {e}")))?;
        write_table(&mut df, dir, &format!("{stem}_per_class"))?;
        let n = self.metrics.confusion_cols.len().max(4) as u32;
        let side = (260 + 34 * n).min(1600);
        save_figure(
            &dir.join(format!("{stem}_confusion")),
            (side + 40, side),
            &ConfusionPlot(&self.metrics),
        )?;
        if !self.rejection.is_empty() {
            let mut model = Vec::new();
            let mut th = Vec::new();
            let mut ho = Vec::new();
            let mut kn = Vec::new();
            let mut acc = Vec::new();
            for r in &self.rejection {
                for row in &r.sweep {
                    model.push(r.model.clone());
                    th.push(row.threshold);
                    ho.push(row.held_out_rejected);
                    kn.push(row.known_rejected);
                    acc.push(row.known_accuracy_accepted);
                }
            }
            let mut df = DataFrame::new_infer_height(vec![
                Column::new("model".into(), model),
                Column::new("threshold".into(), th),
                Column::new("held_out_rejected".into(), ho),
                Column::new("known_rejected".into(), kn),
                Column::new("known_accuracy_accepted".into(), acc),
            ])
            .map_err(|e| Error::invalid(format!("cannot build sweep table: {e}")))?;
            write_table(&mut df, dir, &format!("{stem}_threshold_sweep"))?;
            save_figure(
                &dir.join(format!("{stem}_threshold_sweep")),
                (800, 560),
                &SweepPlot(&self.rejection),
            )?;
        }
        Ok(())
    }
}
