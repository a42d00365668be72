//! The evaluation report shared by `spikgpt train` (on the validation and held-out cells) and
//! `spikgpt evaluate` (on a prediction table): classification metrics, the Unknown-rejection report
//! with accuracy–rejection curves for SpikGPT and the logistic-regression and kNN baselines side by
//! side, per-batch metrics, and the spiking statistics; written as text, JSON, tables and figures.

use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

use super::confusion::{ConfusionFigure, ConfusionTable};
use super::energy::EnergyReport;
use super::metrics::{classification_metrics, Metrics, UNKNOWN};
use super::plots::RejectionCurvePlot;
use super::predictions::PredictionTable;
use super::rejection::{rejection_report, RejectionReport, Scored};
use crate::error::{Error, Result};
use crate::io::atomic::{write_bytes_atomic, write_json_atomic};
use crate::io::table::write_table;
use crate::plot::save_figure;

/// Per-cell outputs of one classifier, in the evaluated cells' order.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutputs {
    /// Classifier name.
    pub model: String,
    /// The rule that made the calls.
    pub rule: String,
    /// Final label (or `Unknown`).
    pub label: Vec<String>,
    /// Most probable class.
    pub best: Vec<String>,
    /// The rule's confidence.
    pub confidence: Vec<f64>,
    /// Every novelty score's confidence, by name.
    pub scores: Vec<(String, Vec<f64>)>,
}

impl ModelOutputs {
    /// The rows `order` of a prediction table.
    pub fn from_table(model: &str, rule: &str, t: &PredictionTable, order: &[usize]) -> Self {
        ModelOutputs {
            model: model.to_string(),
            rule: rule.to_string(),
            label: order.iter().map(|&i| t.label[i].clone()).collect(),
            best: order.iter().map(|&i| t.best[i].clone()).collect(),
            confidence: order.iter().map(|&i| t.confidence[i]).collect(),
            scores: t
                .scores
                .iter()
                .map(|(s, v)| (s.name().to_string(), order.iter().map(|&i| v[i]).collect()))
                .collect(),
        }
    }

    fn unknown(&self) -> Vec<bool> {
        self.label.iter().map(|l| l == UNKNOWN).collect()
    }
}

/// Metrics of every classifier within one batch (`--batch-key`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRow {
    /// Batch value.
    pub batch: String,
    /// Classifier.
    pub model: String,
    /// Cells in the batch.
    pub n_cells: i64,
    /// Cells of known types.
    pub n_known: i64,
    /// Accuracy on known cells (Unknown counts as wrong).
    pub known_accuracy: f64,
    /// Accuracy on the known cells the rule accepted.
    pub accepted_accuracy: f64,
    /// Share of known cells rejected.
    pub known_rejected: f64,
    /// Share of held-out cells rejected (NaN without held-out cells).
    pub held_out_rejected: f64,
}

/// Everything `evaluate` reports.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationReport {
    /// Title naming the run (figures).
    pub title: String,
    /// Cell types treated as unseen (held out of training, or absent from the model).
    pub held_out: Vec<String>,
    /// SpikGPT metrics on the cells of known types (Unknown counts as wrong).
    pub metrics: Metrics,
    /// Baseline metrics on the same cells, by classifier.
    pub baseline_metrics: Vec<(String, Metrics)>,
    /// Rejection reports with accuracy–rejection curves (SpikGPT, then the baselines).
    pub rejection: Vec<RejectionReport>,
    /// Per-batch rows (`--batch-key`), empty otherwise.
    pub per_batch: Vec<BatchRow>,
    /// Spiking statistics, when recorded.
    pub spiking: Option<EnergyReport>,
    /// SpikGPT's calls against the truth on every cell, held-out types included (the figure).
    #[serde(skip)]
    pub confusion: ConfusionTable,
}

/// Build the report: `truth` per cell (in the model's names), `classes` the model's classes,
/// `held_out` the unseen types, `batches` an optional batch value per cell.
#[allow(clippy::too_many_arguments)]
pub fn build_report(
    title: &str,
    truth: &[String],
    classes: &[String],
    held_out: &[String],
    main: &ModelOutputs,
    baselines: &[ModelOutputs],
    batches: Option<&[String]>,
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
    let baseline_metrics = baselines
        .iter()
        .map(|b| {
            (
                b.model.clone(),
                classification_metrics(&sub(truth), &sub(&b.label), &present),
            )
        })
        .collect();
    let all: Vec<&ModelOutputs> = std::iter::once(main).chain(baselines).collect();
    let rejection = all
        .iter()
        .map(|m| {
            let unknown = m.unknown();
            rejection_report(
                truth,
                &Scored {
                    model: &m.model,
                    rule: &m.rule,
                    best: &m.best,
                    unknown: &unknown,
                    confidence: &m.confidence,
                    scores: &m.scores,
                },
                held_out,
            )
        })
        .collect();
    let mut per_batch = Vec::new();
    if let Some(b) = batches {
        let mut values: Vec<&String> = b.iter().collect();
        values.sort();
        values.dedup();
        for v in values {
            let rows: Vec<usize> = (0..truth.len()).filter(|&i| &b[i] == v).collect();
            for m in &all {
                per_batch.push(batch_row(v, m, &rows, truth, held_out));
            }
        }
    }
    EvaluationReport {
        title: title.to_string(),
        held_out: held_out.to_vec(),
        metrics,
        baseline_metrics,
        rejection,
        per_batch,
        spiking,
        confusion: ConfusionTable::of(truth, &main.label, classes),
    }
}

fn batch_row(
    batch: &str,
    m: &ModelOutputs,
    rows: &[usize],
    truth: &[String],
    held_out: &[String],
) -> BatchRow {
    let (mut nk, mut ok, mut acc_n, mut acc_ok, mut rk, mut nh, mut rh) = (0, 0, 0, 0, 0, 0, 0);
    for &i in rows {
        let unknown = m.label[i] == UNKNOWN;
        if held_out.contains(&truth[i]) {
            nh += 1;
            rh += unknown as usize;
        } else {
            nk += 1;
            ok += (m.label[i] == truth[i]) as usize;
            if unknown {
                rk += 1;
            } else {
                acc_n += 1;
                acc_ok += (m.best[i] == truth[i]) as usize;
            }
        }
    }
    let frac = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    BatchRow {
        batch: batch.to_string(),
        model: m.model.clone(),
        n_cells: rows.len() as i64,
        n_known: nk as i64,
        known_accuracy: frac(ok, nk),
        accepted_accuracy: frac(acc_ok, acc_n),
        known_rejected: frac(rk, nk),
        held_out_rejected: frac(rh, nh),
    }
}

impl EvaluationReport {
    /// The printed report.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\nSpikGPT on {} cells of known types (Unknown counts as wrong)\n",
            self.title, self.metrics.n_cells
        );
        s.push_str(&self.metrics.to_text());
        for (name, b) in &self.baseline_metrics {
            s.push_str(&format!(
                "baseline {name}: accuracy {:.4}  macro precision {:.4}  macro recall {:.4}  macro F1 {:.4}\n",
                b.accuracy, b.macro_precision, b.macro_recall, b.macro_f1
            ));
        }
        if self.held_out.is_empty() {
            s.push_str("Rejection (no held-out types among these cells)\n");
        } else {
            s.push_str(&format!(
                "Unknown-cell rejection (held-out types: {})\n",
                self.held_out.join(", ")
            ));
        }
        for r in &self.rejection {
            s.push_str(&r.to_text());
        }
        if !self.per_batch.is_empty() {
            s.push_str("Per batch (known accuracy with Unknown wrong / on accepted cells, known rejected, held-out rejected)\n");
            for b in &self.per_batch {
                s.push_str(&format!(
                    "  {:<28} {:<20} {:>5} cells  {:.3} / {:.3}  {:.3}  {}\n",
                    b.batch,
                    b.model,
                    b.n_cells,
                    b.known_accuracy,
                    b.accepted_accuracy,
                    b.known_rejected,
                    if b.held_out_rejected.is_nan() {
                        "n/a".to_string()
                    } else {
                        format!("{:.3}", b.held_out_rejected)
                    }
                ));
            }
        }
        if let Some(e) = &self.spiking {
            s.push_str(&e.to_text());
        }
        s
    }

    /// Write `<stem>.json`, `<stem>.txt`, `<stem>_per_class.{csv,parquet}`, `<stem>_confusion.{png,svg}`,
    /// `<stem>_rejection_curve.{csv,parquet,png,svg}` and, with batches, `<stem>_per_batch.{csv,parquet}`
    /// into `dir`.
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
                pc.iter().map(|c| c.support as i64).collect::<Vec<_>>(),
            ),
            Column::new(
                "predicted".into(),
                pc.iter().map(|c| c.predicted as i64).collect::<Vec<_>>(),
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
        let confusion = ConfusionFigure {
            title: &self.title,
            table: &self.confusion,
        };
        save_figure(
            &dir.join(format!("{stem}_confusion")),
            confusion.layout().size,
            &confusion,
        )?;
        let mut model = Vec::new();
        let (mut target, mut rej, mut acc, mut acc_n, mut ho, mut kn) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for r in &self.rejection {
            for p in &r.curve {
                model.push(r.model.clone());
                target.push(p.target_rejected);
                rej.push(p.rejected);
                acc.push(p.known_accuracy);
                acc_n.push(p.known_accepted as i64);
                ho.push(p.held_out_rejected);
                kn.push(p.known_rejected);
            }
        }
        let mut df = DataFrame::new_infer_height(vec![
            Column::new("model".into(), model),
            Column::new("target_unclassified".into(), target),
            Column::new("unclassified".into(), rej),
            Column::new("known_accuracy".into(), acc),
            Column::new("known_accepted".into(), acc_n),
            Column::new("held_out_rejected".into(), ho),
            Column::new("known_rejected".into(), kn),
        ])
        .map_err(|e| Error::invalid(format!("cannot build curve table: {e}")))?;
        write_table(&mut df, dir, &format!("{stem}_rejection_curve"))?;
        save_figure(
            &dir.join(format!("{stem}_rejection_curve")),
            (1200, 540),
            &RejectionCurvePlot {
                reports: &self.rejection,
                title: &self.title,
            },
        )?;
        if !self.per_batch.is_empty() {
            let pb = &self.per_batch;
            let mut df = DataFrame::new_infer_height(vec![
                Column::new(
                    "batch".into(),
                    pb.iter().map(|b| b.batch.clone()).collect::<Vec<_>>(),
                ),
                Column::new(
                    "model".into(),
                    pb.iter().map(|b| b.model.clone()).collect::<Vec<_>>(),
                ),
                Column::new(
                    "n_cells".into(),
                    pb.iter().map(|b| b.n_cells).collect::<Vec<_>>(),
                ),
                Column::new(
                    "n_known".into(),
                    pb.iter().map(|b| b.n_known).collect::<Vec<_>>(),
                ),
                Column::new(
                    "known_accuracy".into(),
                    pb.iter().map(|b| b.known_accuracy).collect::<Vec<_>>(),
                ),
                Column::new(
                    "accepted_accuracy".into(),
                    pb.iter().map(|b| b.accepted_accuracy).collect::<Vec<_>>(),
                ),
                Column::new(
                    "known_rejected".into(),
                    pb.iter().map(|b| b.known_rejected).collect::<Vec<_>>(),
                ),
                Column::new(
                    "held_out_rejected".into(),
                    pb.iter().map(|b| b.held_out_rejected).collect::<Vec<_>>(),
                ),
            ])
            .map_err(|e| Error::invalid(format!("cannot build per-batch table: {e}")))?;
            write_table(&mut df, dir, &format!("{stem}_per_batch"))?;
        }
        Ok(())
    }
}
