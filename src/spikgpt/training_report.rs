//! `spikgpt train` as one library call: train ([`super::train::train`]), draw the training curve, and
//! report the validation and held-out cells under the model folder's own rule (the calibrated one, or
//! the paper's cut-off when given) next to the baselines.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::activity::ForwardStats;
use super::annotate::{annotate, load_model_dir, resolve_rule};
use super::calibration::Calibration;
use super::cell_map::{write_cell_map, MapInputs};
use super::energy::energy_report;
use super::plots::CurvePlot;
use super::report::{build_report, EvaluationReport, ModelOutputs};
use super::train::{gather, train, EpochRecord, TrainData, TrainOptions};
use crate::error::Result;
use crate::plot::save_figure;
use crate::runtime::Runtime;

/// What `spikgpt train` reports (printed, and `validation_report.*` in the model folder).
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The model folder.
    pub out: PathBuf,
    /// Training cells.
    pub n_train: usize,
    /// Validation cells.
    pub n_validation: usize,
    /// Cells of held-out types.
    pub n_held_out: usize,
    /// Classes.
    pub n_classes: usize,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    /// The training curve.
    pub curve: Vec<EpochRecord>,
    /// The calibrated Unknown rule.
    pub calibration: Calibration,
    /// Validation and held-out cells under the rule, with the baselines.
    pub evaluation: EvaluationReport,
}

/// The title of a training run's figures: the model folder's name and the held-out types.
pub fn run_title(out: &Path, hold_out: &[String]) -> String {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| out.display().to_string());
    let held = if hold_out.is_empty() {
        String::new()
    } else {
        format!(" (held out: {})", hold_out.join(", "))
    };
    format!("SpikGPT {name}{held}: validation and held-out cells")
}

/// Train on `data`, write the model folder `out` with its training curve figure, validation
/// predictions and validation report, and return the report. `threshold`: report with the paper's
/// rule instead of the calibrated one (which is fitted and stored either way).
pub fn train_and_report(
    rt: &Runtime,
    data: &TrainData,
    opts: &TrainOptions,
    out: &Path,
    threshold: Option<f64>,
) -> Result<TrainReport> {
    rt.require_f32("SpikGPT training")?;
    let outcome = train(rt, data, opts, out)?;
    let title = run_title(out, &opts.hold_out);
    let curve_title = title.replace(": validation and held-out cells", ": training curve");
    save_figure(
        &out.join("training_curve"),
        (1000, 450),
        &CurvePlot {
            curve: &outcome.curve,
            title: &curve_title,
        },
    )?;

    // The validation cells plus every held-out cell, annotated as a user would annotate them.
    let p = &outcome.prepared;
    let mut rows = p.val.clone();
    rows.extend_from_slice(&p.held_out);
    let x = gather(&data.x, data.dim, &rows);
    let ids: Vec<String> = rows.iter().map(|&i| data.cell_ids[i].clone()).collect();
    let truth: Vec<String> = rows.iter().map(|&i| data.labels[i].clone()).collect();
    let loaded = load_model_dir(out, rt)?;
    let rule = resolve_rule(&loaded, threshold, None, None)?;
    let mut stats = ForwardStats::default();
    let ann = annotate(&loaded, &ids, &x, &rule, 256, Some(&mut stats))?;
    let order: Vec<usize> = (0..ids.len()).collect();
    let main = ModelOutputs::from_table("spikgpt", &rule.describe(), &ann.main, &order);
    let baselines: Vec<ModelOutputs> = ann
        .baselines
        .iter()
        .map(|b| ModelOutputs::from_table(&b.name, &b.rule, &b.table, &order))
        .collect();
    let evaluation = build_report(
        &title,
        &truth,
        &p.classes,
        &opts.hold_out,
        &main,
        &baselines,
        None,
        Some(energy_report(&stats)),
    );
    ann.main.write(&out.join("validation_predictions.csv"))?;
    evaluation.write(out, "validation_report")?;
    write_cell_map(
        out,
        "validation_report",
        &title,
        &MapInputs {
            x: &x,
            d: data.dim,
            input: "the embeddings",
            truth: &truth,
            calls: &ann.main.label,
            classes: &p.classes,
            n_total: None,
        },
        opts.train.seed,
    )?;
    Ok(TrainReport {
        out: out.to_path_buf(),
        n_train: p.train.len(),
        n_validation: p.val.len(),
        n_held_out: p.held_out.len(),
        n_classes: p.classes.len(),
        best_epoch: outcome.best_epoch,
        curve: outcome.curve,
        calibration: outcome.calibration,
        evaluation,
    })
}

impl fmt::Display for TrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "trained SpikGPT on {} cells ({} classes), validated on {} cells{}; best epoch {} of {}",
            self.n_train,
            self.n_classes,
            self.n_validation,
            if self.n_held_out == 0 {
                String::new()
            } else {
                format!(", {} held-out cells", self.n_held_out)
            },
            self.best_epoch,
            self.curve.len(),
        )?;
        if let Some(l) = self.curve.last() {
            writeln!(
                f,
                "last epoch: train loss {:.4}, validation accuracy {:.4}, {:.2} s",
                l.train_loss, l.val_accuracy, l.seconds
            )?;
        }
        let cal = &self.calibration;
        writeln!(
            f,
            "calibration: temperature {:.3} (validation NLL {:.4} -> {:.4}); rule score {} ({}); threshold keeps {:.1}% of validation cells",
            cal.temperature,
            cal.nll_before,
            cal.nll_after,
            cal.score.name(),
            cal.selected_by,
            100.0 * cal.validation_kept
        )?;
        if !cal.loto_mean_auroc.is_empty() {
            write!(f, "  leave-one-type-out mean AUROC:")?;
            for (sc, a) in &cal.loto_mean_auroc {
                write!(f, " {} {:.4}", sc.name(), a)?;
            }
            writeln!(f)?;
        }
        write!(f, "{}", self.evaluation.to_text())?;
        write!(f, "model folder: {}", self.out.display())
    }
}
