//! Calibrated Unknown calls, fitted on the validation split that training holds out (never on query
//! cells), and the model folder's `calibration.json` + `reference.safetensors` (this module owns both).
//!
//! At training time ([`fit`]):
//! 1. temperature scaling of the logits on the validation cells (`super::novelty::fit_temperature`);
//! 2. the distance of each validation cell to its k nearest training cells in embedding space
//!    (scArches-style), with the training embeddings kept as `reference.safetensors`;
//! 3. the novelty score of the default rule: given (`--score`), or chosen by leave-one-type-out on the
//!    reference: each type in turn is removed from training, a classifier is refitted without it and
//!    every score's AUROC for that type against the known validation cells is recorded; the score with
//!    the best mean AUROC wins (`super::novelty::select_score`). The refitted classifier is the logistic
//!    regression on the same embeddings (a stand-in: refitting SpikGPT once per type costs one full
//!    training each);
//! 4. the threshold that keeps `keep` of the known validation cells (optionally one per predicted class);
//! 5. the same rule (temperature, keep-threshold) for the two baselines: logistic regression (its
//!    maximum probability) and a k-nearest-neighbour classifier (its neighbour distance).
//!
//! At annotation time ([`score_cells`]) every score is computed for every cell, and the cell is
//! `Unknown` when the rule's confidence is below its threshold; the paper's rule (softmax maximum
//! below a fixed cut-off, `--threshold 0.95`) remains available as [`Rule::Paper`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::baseline::{LogReg, LogRegConfig};
use super::metrics::{argmax, auroc, max_per_row};
use super::novelty::{
    confidence, fit_temperature, keep_threshold, knn_classify, knn_mean_distance,
    per_class_thresholds, select_score, softmax_t, Combiner, LotoFold, Score, ScoreInputs,
};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::io::matrix::read_matrix;

/// Format tag of `calibration.json`.
pub const CALIBRATION_FORMAT: &str = "spikgpt-calibration/1";
/// File name of the calibration inside a model folder.
pub const CALIBRATION_FILE: &str = "calibration.json";
/// File name of the training embeddings kept for the neighbour distance.
pub const REFERENCE_FILE: &str = "reference.safetensors";
/// The score used when leave-one-type-out cannot choose (fewer than three reference types).
pub const FALLBACK_SCORE: Score = Score::KnnDistance;
/// Fewest validation cells a calibration is fitted on.
pub const MIN_VALIDATION_CELLS: usize = 10;

/// How the rejection rule is calibrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CalibrationOptions {
    /// Share of known validation cells the threshold keeps (0.95).
    pub keep: f64,
    /// One threshold per predicted class instead of one for all (false).
    pub per_class: bool,
    /// Validation cells a class needs for its own threshold (10); fewer use the global one.
    pub per_class_min_cells: usize,
    /// Neighbours of the distance score and the kNN baseline (10).
    pub knn_k: usize,
    /// The rule's score; `None` = chosen by leave-one-type-out on the reference.
    pub score: Option<Score>,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        CalibrationOptions {
            keep: 0.95,
            per_class: false,
            per_class_min_cells: 10,
            knn_k: 10,
            score: None,
        }
    }
}

impl CalibrationOptions {
    /// Check the values (one-line errors naming the option).
    pub fn validate(&self) -> Result<()> {
        check_keep(self.keep)?;
        if self.knn_k == 0 {
            return Err(Error::invalid("--knn-k must be at least 1"));
        }
        Ok(())
    }
}

/// `--keep` must lie in (0, 1].
pub fn check_keep(keep: f64) -> Result<()> {
    if !(keep > 0.0 && keep <= 1.0) {
        return Err(Error::invalid(format!(
            "--keep {keep} must be in (0, 1]: the share of known validation cells to keep"
        )));
    }
    Ok(())
}

/// The paper's cut-off `--threshold` must lie in [0, 1].
pub fn check_threshold(threshold: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(Error::invalid(format!(
            "--threshold {threshold} must be in [0, 1]"
        )));
    }
    Ok(())
}

/// The keep-rule of a baseline classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineRule {
    /// `logistic_regression` or `knn`.
    pub model: String,
    /// What its confidence is (`max_prob` at its temperature, or `knn_distance`).
    pub confidence: Score,
    /// Its temperature (1 for the kNN classifier).
    pub temperature: f64,
    /// Threshold keeping `keep` of its validation cells.
    pub threshold: f64,
}

/// `calibration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Always [`CALIBRATION_FORMAT`].
    pub format: String,
    /// Fitted temperature T (logits / T).
    pub temperature: f64,
    /// Validation mean NLL at T = 1 and at the fitted T.
    pub nll_before: f64,
    /// Validation mean NLL at the fitted T.
    pub nll_after: f64,
    /// Neighbours of the distance score.
    pub knn_k: usize,
    /// The default rule's score.
    pub score: Score,
    /// How it was chosen.
    pub selected_by: String,
    /// Target share of known validation cells kept.
    pub keep: f64,
    /// Global threshold on the score's confidence.
    pub threshold: f64,
    /// Per predicted class thresholds (`--per-class`), in class order.
    pub per_class_thresholds: Option<Vec<f64>>,
    /// Share of validation cells the rule actually keeps (ties at the threshold are kept).
    pub validation_kept: f64,
    /// Validation cells.
    pub n_validation: usize,
    /// Validation accuracy (arg-max) at the fitted temperature (unchanged by scaling).
    pub validation_accuracy: f64,
    /// The posterior-distance combination (validation CDFs).
    pub combiner: Combiner,
    /// Sorted validation confidences of every score (for `annotate --keep`/`--score`).
    pub validation_confidences: Vec<(Score, Vec<f64>)>,
    /// Leave-one-type-out folds (empty when `--score` was given).
    pub loto: Vec<LotoFold>,
    /// Mean AUROC per score over the folds.
    pub loto_mean_auroc: Vec<(Score, f64)>,
    /// The baselines' rules.
    pub baselines: Vec<BaselineRule>,
}

/// What [`fit`] needs: the trained model's validation logits and the split's embeddings.
pub struct FitInputs<'a> {
    /// Validation logits, row-major `n_val x c`.
    pub val_logits: &'a [f32],
    /// Validation classes.
    pub val_targets: &'a [usize],
    /// Classes.
    pub c: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Training embeddings (row-major).
    pub x_train: &'a [f32],
    /// Training classes.
    pub y_train: &'a [usize],
    /// Validation embeddings (row-major).
    pub x_val: &'a [f32],
    /// The logistic baseline fitted on the training cells.
    pub baseline: &'a LogReg,
    /// Class names (for fold names).
    pub classes: &'a [String],
}

/// Every score's confidences for cells with `logits` and neighbour distances `dist`.
fn all_confidences(
    logits: &[f32],
    c: usize,
    t: f64,
    dist: &[f64],
    combiner: &Combiner,
) -> Result<Vec<(Score, Vec<f64>)>> {
    let inputs = ScoreInputs {
        logits,
        c,
        temperature: t,
        knn_distance: dist,
    };
    Score::ALL
        .iter()
        .map(|&s| Ok((s, confidence(s, &inputs, Some(combiner))?)))
        .collect()
}

/// Fit the calibration (see the module documentation).
pub fn fit(inp: &FitInputs<'_>, opts: &CalibrationOptions) -> Result<Calibration> {
    opts.validate()?;
    let c = inp.c;
    let n_val = inp.val_targets.len();
    if n_val < MIN_VALIDATION_CELLS {
        return Err(Error::invalid(format!(
            "calibration needs at least {MIN_VALIDATION_CELLS} validation cells of known types, got {n_val}; lower --train-fraction"
        )));
    }
    let t = fit_temperature(inp.val_logits, inp.val_targets, c)?;
    let nll = |t: f64| super::novelty::mean_nll(inp.val_logits, inp.val_targets, c, t);
    let k = opts.knn_k.min(inp.y_train.len().max(1));
    let dist = knn_mean_distance(inp.x_train, inp.x_val, inp.dim, k, false)?;
    let probs = softmax_t(inp.val_logits, c, t);
    let maxp = max_per_row(&probs, c);
    let neg: Vec<f64> = dist.iter().map(|d| -d).collect();
    let combiner = Combiner::fit(&maxp, &neg)?;
    let confs = all_confidences(inp.val_logits, c, t, &dist, &combiner)?;

    let (score, selected_by, loto, loto_mean) = match opts.score {
        Some(s) => (s, "--score".to_string(), Vec::new(), Vec::new()),
        None => {
            let folds = leave_one_type_out(inp, k)?;
            match select_score(&folds) {
                Ok((s, mean)) => (
                    s,
                    "leave-one-type-out on the reference (logistic regression refitted per left-out type)"
                        .to_string(),
                    folds,
                    mean,
                ),
                // Fewer than three types (or too few validation cells per type): no fold can be
                // scored; fall back to the score leave-one-type-out chose on the bundled immune cells.
                Err(_) => (
                    FALLBACK_SCORE,
                    format!(
                        "{} (leave-one-type-out needs at least 3 reference types with validation cells)",
                        FALLBACK_SCORE.name()
                    ),
                    folds,
                    Vec::new(),
                ),
            }
        }
    };
    let conf = &confs
        .iter()
        .find(|(s, _)| *s == score)
        .expect("every score")
        .1;
    let (threshold, kept) = keep_threshold(conf, opts.keep)?;
    let pred: Vec<usize> = inp.val_logits.chunks(c).map(argmax).collect();
    let per_class_thresholds = if opts.per_class {
        Some(per_class_thresholds(
            conf,
            &pred,
            c,
            opts.keep,
            opts.per_class_min_cells,
        )?)
    } else {
        None
    };
    let validation_kept = match &per_class_thresholds {
        Some(th) => {
            conf.iter()
                .zip(&pred)
                .filter(|(v, &p)| **v >= th[p])
                .count() as f64
                / n_val as f64
        }
        None => kept,
    };
    let correct = pred
        .iter()
        .zip(inp.val_targets)
        .filter(|(p, y)| p == y)
        .count();

    // Baselines under the same keep-rule.
    let lr_logits = inp.baseline.logits(inp.x_val)?;
    let t_lr = fit_temperature(&lr_logits, inp.val_targets, c)?;
    let lr_conf = max_per_row(&softmax_t(&lr_logits, c, t_lr), c);
    let (lr_th, _) = keep_threshold(&lr_conf, opts.keep)?;
    let (knn_th, _) = keep_threshold(&neg, opts.keep)?;
    let baselines = vec![
        BaselineRule {
            model: "logistic_regression".into(),
            confidence: Score::MaxProb,
            temperature: t_lr,
            threshold: lr_th,
        },
        BaselineRule {
            model: "knn".into(),
            confidence: Score::KnnDistance,
            temperature: 1.0,
            threshold: knn_th,
        },
    ];
    let validation_confidences = confs
        .into_iter()
        .map(|(s, mut v)| {
            v.sort_by(|a, b| a.total_cmp(b));
            (s, v)
        })
        .collect();
    Ok(Calibration {
        format: CALIBRATION_FORMAT.into(),
        temperature: t,
        nll_before: nll(1.0),
        nll_after: nll(t),
        knn_k: k,
        score,
        selected_by,
        keep: opts.keep,
        threshold,
        per_class_thresholds,
        validation_kept,
        n_validation: n_val,
        validation_accuracy: correct as f64 / n_val as f64,
        combiner,
        validation_confidences,
        loto,
        loto_mean_auroc: loto_mean,
        baselines,
    })
}

/// Leave-one-type-out on the reference with the logistic stand-in: per type, refit without it and
/// record each score's AUROC (held-out type, all its reference cells, vs the known validation cells).
fn leave_one_type_out(inp: &FitInputs<'_>, k: usize) -> Result<Vec<LotoFold>> {
    let c = inp.c;
    let dim = inp.dim;
    let n_train = inp.y_train.len();
    let mut folds = Vec::with_capacity(c);
    for left in 0..c {
        let remap: Vec<Option<usize>> = (0..c)
            .map(|j| match j.cmp(&left) {
                std::cmp::Ordering::Less => Some(j),
                std::cmp::Ordering::Equal => None,
                std::cmp::Ordering::Greater => Some(j - 1),
            })
            .collect();
        let train_rows: Vec<usize> = (0..n_train).filter(|&i| inp.y_train[i] != left).collect();
        let mut fold_classes: Vec<usize> = train_rows.iter().map(|&i| inp.y_train[i]).collect();
        fold_classes.sort_unstable();
        fold_classes.dedup();
        let known_val: Vec<usize> = (0..inp.val_targets.len())
            .filter(|&i| inp.val_targets[i] != left)
            .collect();
        if fold_classes.len() < 2 || known_val.len() < 2 {
            folds.push(LotoFold {
                left_out: inp.classes[left].clone(),
                auroc: Score::ALL.iter().map(|&s| (s, None)).collect(),
            });
            continue;
        }
        let xt = super::train::gather(inp.x_train, dim, &train_rows);
        let yt: Vec<usize> = train_rows
            .iter()
            .map(|&i| remap[inp.y_train[i]].expect("kept class"))
            .collect();
        let lr = LogReg::fit(&xt, &yt, dim, c - 1, &LogRegConfig::default())?;
        // Known: validation cells of the other types; held out: every reference cell of the type.
        let mut rows_x = super::train::gather(inp.x_val, dim, &known_val);
        let mut is_held = vec![false; known_val.len()];
        let held_val: Vec<usize> = (0..inp.val_targets.len())
            .filter(|&i| inp.val_targets[i] == left)
            .collect();
        let held_train: Vec<usize> = (0..n_train).filter(|&i| inp.y_train[i] == left).collect();
        rows_x.extend(super::train::gather(inp.x_val, dim, &held_val));
        rows_x.extend(super::train::gather(inp.x_train, dim, &held_train));
        is_held.resize(known_val.len() + held_val.len() + held_train.len(), true);
        let logits = lr.logits(&rows_x)?;
        let nk = known_val.len();
        let known_targets: Vec<usize> = known_val
            .iter()
            .map(|&i| remap[inp.val_targets[i]].expect("known"))
            .collect();
        let t = fit_temperature(&logits[..nk * (c - 1)], &known_targets, c - 1)?;
        let dist = knn_mean_distance(&xt, &rows_x, dim, k.min(train_rows.len()), false)?;
        let maxp = max_per_row(&softmax_t(&logits, c - 1, t), c - 1);
        let neg: Vec<f64> = dist.iter().map(|d| -d).collect();
        let combiner = Combiner::fit(&maxp[..nk], &neg[..nk])?;
        let confs = all_confidences(&logits, c - 1, t, &dist, &combiner)?;
        let auroc = confs
            .iter()
            .map(|(s, v)| {
                let novelty: Vec<f64> = v.iter().map(|x| -x).collect();
                (*s, auroc(&novelty, &is_held))
            })
            .collect();
        folds.push(LotoFold {
            left_out: inp.classes[left].clone(),
            auroc,
        });
    }
    Ok(folds)
}

/// The rule that turns confidences into Unknown calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// The calibrated rule (score, threshold(s), temperature) of a model folder.
    Calibrated(Box<Calibration>),
    /// The paper's rule: softmax maximum (T = 1) below `threshold` is Unknown.
    Paper {
        /// The cut-off (paper: 0.95).
        threshold: f64,
    },
}

impl Rule {
    /// One line describing the rule.
    pub fn describe(&self) -> String {
        match self {
            Rule::Calibrated(c) => format!(
                "calibrated: {} confidence (T = {:.3}) below {}{} is Unknown; keeps {:.1}% of known validation cells",
                c.score.name(),
                c.temperature,
                if c.per_class_thresholds.is_some() {
                    "its predicted class's threshold".to_string()
                } else {
                    format!("{:.4}", c.threshold)
                },
                "",
                100.0 * c.validation_kept
            ),
            Rule::Paper { threshold } => {
                format!("paper: softmax maximum below {threshold} is Unknown")
            }
        }
    }

    /// The temperature probabilities are reported at.
    pub fn temperature(&self) -> f64 {
        match self {
            Rule::Calibrated(c) => c.temperature,
            Rule::Paper { .. } => 1.0,
        }
    }

    /// A copy with the threshold recomputed to keep `keep` of the validation cells, on `score`
    /// (per-class thresholds are dropped: they need the validation cells' classes).
    pub fn with_keep(&self, keep: f64, score: Option<Score>) -> Result<Rule> {
        check_keep(keep)?;
        match self {
            Rule::Calibrated(c) => {
                let score = score.unwrap_or(c.score);
                let v = &c
                    .validation_confidences
                    .iter()
                    .find(|(s, _)| *s == score)
                    .ok_or_else(|| Error::invalid("calibration lacks that score"))?
                    .1;
                let (threshold, kept) = keep_threshold(v, keep)?;
                let mut c = c.clone();
                c.score = score;
                c.keep = keep;
                c.threshold = threshold;
                c.validation_kept = kept;
                c.per_class_thresholds = None;
                c.selected_by = format!("{} (re-thresholded at annotation)", c.selected_by);
                Ok(Rule::Calibrated(c))
            }
            Rule::Paper { .. } => Err(Error::invalid(
                "--keep needs a calibrated model folder (trained by this version of spikgpt train)",
            )),
        }
    }
}

/// Per-cell outputs of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredCells {
    /// Probabilities at the rule's temperature, row-major `n x c`.
    pub probs: Vec<f64>,
    /// Most probable class.
    pub best: Vec<usize>,
    /// Its probability.
    pub max_prob: Vec<f64>,
    /// The rule's confidence (higher = more likely a known type).
    pub confidence: Vec<f64>,
    /// Below the threshold.
    pub unknown: Vec<bool>,
    /// Every score's confidence (calibrated rule only).
    pub scores: Vec<(Score, Vec<f64>)>,
}

/// Apply `rule` to cells with `logits` (`n x c`) and neighbour distances `dist` (calibrated rule).
pub fn score_cells(
    rule: &Rule,
    logits: &[f32],
    c: usize,
    dist: Option<&[f64]>,
) -> Result<ScoredCells> {
    let t = rule.temperature();
    let probs = softmax_t(logits, c, t);
    let best: Vec<usize> = probs.chunks(c).map(argmax).collect();
    let max_prob = max_per_row(&probs, c);
    match rule {
        Rule::Paper { threshold } => Ok(ScoredCells {
            unknown: max_prob.iter().map(|&p| p < *threshold).collect(),
            confidence: max_prob.clone(),
            probs,
            best,
            max_prob,
            scores: Vec::new(),
        }),
        Rule::Calibrated(cal) => {
            let dist = dist.unwrap_or(&[]);
            let scores = all_confidences(logits, c, t, dist, &cal.combiner)?;
            let conf = scores
                .iter()
                .find(|(s, _)| *s == cal.score)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let unknown = conf
                .iter()
                .zip(&best)
                .map(|(&v, &b)| match &cal.per_class_thresholds {
                    Some(th) => v < th[b],
                    None => v < cal.threshold,
                })
                .collect();
            Ok(ScoredCells {
                probs,
                best,
                max_prob,
                confidence: conf,
                unknown,
                scores,
            })
        }
    }
}

/// The kNN classifier baseline on the reference: probabilities (vote fractions) and its confidence
/// (minus the mean neighbour distance).
pub fn knn_baseline(
    reference: &DenseMatrix,
    ref_targets: &[usize],
    c: usize,
    query: &[f32],
    k: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let r = knn_classify(&reference.data, ref_targets, c, query, reference.n_cols, k)?;
    Ok((r.proba, r.mean_distance.iter().map(|d| -d).collect()))
}

/// Write `calibration.json` and `reference.safetensors` (training embeddings and their classes) into
/// the model folder.
pub fn write(
    dir: &Path,
    cal: &Calibration,
    reference: &DenseMatrix,
    targets: &[usize],
) -> Result<()> {
    reference.write_safetensors(&dir.join(REFERENCE_FILE), "embeddings")?;
    crate::io::atomic::write_json_atomic(&dir.join("reference_classes.json"), &targets)?;
    crate::io::atomic::write_json_atomic(&dir.join(CALIBRATION_FILE), cal)
}

/// A model folder's calibration and reference, when it has them (folders of older versions do not).
pub fn read(dir: &Path) -> Result<Option<(Calibration, DenseMatrix, Vec<usize>)>> {
    let p = dir.join(CALIBRATION_FILE);
    if !p.exists() {
        return Ok(None);
    }
    let cal: Calibration = crate::io::json::read_json(&p, "calibration")?;
    if cal.format != CALIBRATION_FORMAT {
        return Err(Error::input(
            &p,
            format!("format '{}' is not {CALIBRATION_FORMAT}", cal.format),
        ));
    }
    let rp = dir.join(REFERENCE_FILE);
    let reference = read_matrix(&rp, None)?;
    let tp = dir.join("reference_classes.json");
    let targets: Vec<usize> = crate::io::json::read_json(&tp, "reference classes")?;
    if targets.len() != reference.n_rows {
        return Err(Error::input(
            &tp,
            format!(
                "{} classes for {} reference cells",
                targets.len(),
                reference.n_rows
            ),
        ));
    }
    Ok(Some((cal, reference, targets)))
}

/// Mean neighbour distance of `query` rows to the reference (the distance score's input).
pub fn distances(reference: &DenseMatrix, query: &[f32], k: usize) -> Result<Vec<f64>> {
    knn_mean_distance(
        &reference.data,
        query,
        reference.n_cols,
        k.min(reference.n_rows),
        false,
    )
}
