//! Annotate cells with a trained model folder ([`super::model_dir`]): logits and probabilities in
//! fixed-size batches (BatchNorm uses running statistics, so a cell's result does not depend on the
//! other cells), the Unknown rule ([`super::calibration::Rule`]), and the prediction tables of SpikGPT
//! and the baselines.

use candle_core::Tensor;

use super::activity::ForwardStats;
use super::calibration::{distances, knn_baseline, score_cells, Rule};
use super::energy::{energy_report, EnergyReport};
use super::layers::Pass;
use super::lif::FireMode;
use super::metrics::{argmax, max_per_row, UNKNOWN};
use super::model::SpikGpt;
use super::novelty::{softmax_t, Score};
use super::predictions::PredictionTable;
use crate::analysis::RowBlocks;
use crate::error::{Error, Result};
use crate::io::atomic::write_json_atomic;

/// The paper's rejection threshold.
pub const DEFAULT_THRESHOLD: f64 = 0.95;

pub use super::model_dir::{load_model_dir, CalibrationData, LoadedModel, ModelFile, MODEL_FORMAT};

/// Logits (row-major `n x C`) of `x` (row-major `n x k`), in batches of `batch_size`.
pub fn predict_logits(
    model: &SpikGpt,
    x: &[f32],
    batch_size: usize,
    mut stats: Option<&mut ForwardStats>,
) -> Result<Vec<f32>> {
    let k = model.config.input_dim;
    if k == 0 || !x.len().is_multiple_of(k) {
        return Err(Error::invalid(format!("embeddings must have {k} columns")));
    }
    let n = x.len() / k;
    let bs = batch_size.max(1);
    let device = &model.params.device;
    let mut out = Vec::with_capacity(n * model.n_classes);
    let mut start = 0;
    while start < n {
        let end = (start + bs).min(n);
        let xb = Tensor::from_slice(&x[start * k..end * k], (end - start, k), device)?;
        let mut pass = Pass {
            train: false,
            fire: FireMode::SpikeNoGrad,
            rng: None,
            stats: stats.as_deref_mut(),
            multiplicity: 1,
        };
        let logits = model.forward(&xb, &mut pass)?;
        out.extend(
            logits
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
        start = end;
    }
    Ok(out)
}

/// Class probabilities (row-major `n x C`) of `x` (row-major `n x k`), in batches of `batch_size`.
pub fn predict_proba(
    model: &SpikGpt,
    x: &[f32],
    batch_size: usize,
    stats: Option<&mut ForwardStats>,
) -> Result<Vec<f32>> {
    let logits = predict_logits(model, x, batch_size, stats)?;
    let c = model.n_classes;
    let t = Tensor::from_vec(
        logits,
        (x.len() / model.config.input_dim.max(1), c),
        &candle_core::Device::Cpu,
    )?;
    Ok(candle_nn::ops::softmax_last_dim(&t)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// What [`annotate`] produces: SpikGPT's table and the two baselines' under the same kind of rule.
#[derive(Debug, Clone)]
pub struct Annotation {
    /// The rule applied.
    pub rule: Rule,
    /// SpikGPT.
    pub main: PredictionTable,
    /// The logistic-regression and kNN baselines (those the folder supports).
    pub baselines: Vec<BaselineOutput>,
}

impl Annotation {
    /// Append the calls of the next cells, annotated with the same model and rule.
    pub fn append(&mut self, other: Annotation) -> Result<()> {
        if self.baselines.len() != other.baselines.len() {
            return Err(Error::invalid(
                "annotations with different baselines cannot be joined",
            ));
        }
        self.main.append(other.main)?;
        for (a, b) in self.baselines.iter_mut().zip(other.baselines) {
            a.table.append(b.table)?;
        }
        Ok(())
    }
}

/// Cells read and annotated at a time by `spikgpt annotate` ([`annotate_rows`], rounded to whole
/// batches).
pub const STREAM_CELLS: usize = 4096;

/// [`annotate`] of rows read a block at a time (an extraction folder's cells through
/// [`crate::activations::cell_blocks::CellBlocks`], or a matrix in memory): the rows are re-cut into
/// chunks of whole batches (about `chunk_cells` cells; `spikgpt annotate` uses [`STREAM_CELLS`]), so
/// the batches, the calls and the spiking statistics are those of one call on every row, while
/// memory holds one chunk of embeddings.
pub fn annotate_rows(
    loaded: &LoadedModel,
    ids: &[String],
    x: &dyn RowBlocks,
    rule: &Rule,
    (batch_size, chunk_cells): (usize, usize),
    stats: &mut ForwardStats,
) -> Result<Annotation> {
    let k = x.n_cols();
    let bs = batch_size.max(1);
    let chunk = bs * (chunk_cells / bs).max(1);
    let mut buf: Vec<f32> = Vec::with_capacity(chunk * k);
    let mut done = 0usize;
    let mut out: Option<Annotation> = None;
    let mut flush = |buf: &mut Vec<f32>, rows: usize| -> Result<()> {
        if done + rows > ids.len() {
            return Err(Error::invalid(format!(
                "{} cell ids for more rows",
                ids.len()
            )));
        }
        let a = annotate(
            loaded,
            &ids[done..done + rows],
            &buf[..rows * k],
            rule,
            batch_size,
            Some(&mut *stats),
        )?;
        buf.drain(..rows * k);
        done += rows;
        match out.as_mut() {
            Some(o) => o.append(a)?,
            None => out = Some(a),
        }
        Ok(())
    };
    let mut visited = 0usize;
    x.visit_rows(&mut |block, n| {
        visited += n;
        buf.extend_from_slice(block);
        while buf.len() >= chunk * k.max(1) {
            flush(&mut buf, chunk)?;
        }
        Ok(())
    })?;
    if !buf.is_empty() || visited == 0 {
        let rows = buf.len() / k.max(1);
        flush(&mut buf, rows)?;
    }
    let out = out.expect("at least one chunk");
    if out.main.cell_ids.len() != ids.len() {
        return Err(Error::invalid(format!(
            "{} cell ids for {} rows",
            ids.len(),
            out.main.cell_ids.len()
        )));
    }
    Ok(out)
}

/// One baseline classifier's calls.
#[derive(Debug, Clone)]
pub struct BaselineOutput {
    /// `logistic_regression` or `knn`.
    pub name: String,
    /// Its rule, in words.
    pub rule: String,
    /// Its table.
    pub table: PredictionTable,
}

/// The rule a model folder implies: the paper's cut-off when `threshold` is given (or the folder has
/// no calibration), else the calibrated rule, re-thresholded by `keep`/`score` when given.
pub fn resolve_rule(
    loaded: &LoadedModel,
    threshold: Option<f64>,
    keep: Option<f64>,
    score: Option<Score>,
) -> Result<Rule> {
    if let Some(t) = threshold {
        if keep.is_some() || score.is_some() {
            return Err(Error::invalid(
                "--threshold (the paper's rule) cannot be combined with --keep or --score",
            ));
        }
        super::calibration::check_threshold(t)?;
        return Ok(Rule::Paper { threshold: t });
    }
    let rule = match &loaded.calibration {
        Some(c) => Rule::Calibrated(Box::new(c.calibration.clone())),
        None => Rule::Paper {
            threshold: DEFAULT_THRESHOLD,
        },
    };
    match (keep, score) {
        (None, None) => Ok(rule),
        (k, s) => {
            let k = k.unwrap_or(match &rule {
                Rule::Calibrated(c) => c.keep,
                Rule::Paper { .. } => 0.95,
            });
            rule.with_keep(k, s)
        }
    }
}

/// Label the cells `x` (row-major, `ids` one per row) with SpikGPT and the baselines under `rule`.
pub fn annotate(
    loaded: &LoadedModel,
    ids: &[String],
    x: &[f32],
    rule: &Rule,
    batch_size: usize,
    stats: Option<&mut ForwardStats>,
) -> Result<Annotation> {
    let classes = &loaded.file.labels;
    let c = classes.len();
    check_embeddings(x, loaded.model.config.input_dim)?;
    let logits = predict_logits(&loaded.model, x, batch_size, stats)?;
    let dist = match (&loaded.calibration, rule) {
        (Some(cal), Rule::Calibrated(r)) => Some(distances(&cal.reference, x, r.knn_k)?),
        _ => None,
    };
    let sc = score_cells(rule, &logits, c, dist.as_deref())?;
    let main = PredictionTable::new(
        ids.to_vec(),
        classes,
        sc.probs,
        &sc.best,
        sc.max_prob,
        sc.confidence,
        &sc.unknown,
        sc.scores,
    );
    let mut baselines = Vec::new();
    let base_rule = |name: &str| match rule {
        Rule::Calibrated(r) => r.baselines.iter().find(|b| b.model == name).cloned(),
        Rule::Paper { .. } => None,
    };
    if let Some(lr) = &loaded.baseline {
        let lg = lr.logits(x)?;
        let (t, th) = match (base_rule("logistic_regression"), rule) {
            (Some(b), _) => (b.temperature, b.threshold),
            (None, Rule::Paper { threshold }) => (1.0, *threshold),
            (None, Rule::Calibrated(_)) => (1.0, DEFAULT_THRESHOLD),
        };
        let probs = softmax_t(&lg, c, t);
        let best: Vec<usize> = probs.chunks(c).map(argmax).collect();
        let maxp = max_per_row(&probs, c);
        let unknown: Vec<bool> = maxp.iter().map(|&v| v < th).collect();
        baselines.push(BaselineOutput {
            name: "logistic_regression".to_string(),
            rule: format!("max probability (T = {t:.3}) below {th:.4} is Unknown"),
            table: PredictionTable::new(
                ids.to_vec(),
                classes,
                probs,
                &best,
                maxp.clone(),
                maxp,
                &unknown,
                Vec::new(),
            ),
        });
    }
    if let Some(cal) = &loaded.calibration {
        let k = cal.calibration.knn_k;
        let (probs, neg) = knn_baseline(&cal.reference, &cal.targets, c, x, k)?;
        let best: Vec<usize> = probs.chunks(c).map(argmax).collect();
        let maxp = max_per_row(&probs, c);
        let (conf, unknown, text): (Vec<f64>, Vec<bool>, String) = match (base_rule("knn"), rule) {
            (Some(b), _) => (
                neg.clone(),
                neg.iter().map(|&v| v < b.threshold).collect(),
                format!(
                    "mean distance to the {k} nearest reference cells above {:.4} is Unknown",
                    -b.threshold
                ),
            ),
            (None, Rule::Paper { threshold }) => (
                maxp.clone(),
                maxp.iter().map(|&v| v < *threshold).collect(),
                format!("neighbour vote share below {threshold} is Unknown"),
            ),
            (None, Rule::Calibrated(_)) => (
                neg.clone(),
                vec![false; neg.len()],
                "no rejection".to_string(),
            ),
        };
        baselines.push(BaselineOutput {
            name: "knn".to_string(),
            rule: text,
            table: PredictionTable::new(
                ids.to_vec(),
                classes,
                probs,
                &best,
                maxp,
                conf,
                &unknown,
                Vec::new(),
            ),
        });
    }
    Ok(Annotation {
        rule: rule.clone(),
        main,
        baselines,
    })
}

/// Error unless the inference `--batch-size` is at least 1 (results do not depend on it).
pub fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::invalid("--batch-size must be at least 1"));
    }
    Ok(())
}

/// What [`write_annotation`] reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnnotationSummary {
    /// The main table written.
    pub out: std::path::PathBuf,
    /// Cells annotated.
    pub n_cells: usize,
    /// Cells called Unknown.
    pub n_unknown: usize,
    /// The rule, in words.
    pub rule: String,
    /// Cells per call, most frequent first.
    pub counts: Vec<(String, usize)>,
    /// Firing rates and energy.
    pub spiking: EnergyReport,
}

impl std::fmt::Display for AnnotationSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "annotated {} cells: {} Unknown ({}); wrote {}",
            self.n_cells,
            self.n_unknown,
            self.rule,
            self.out.display()
        )?;
        for (n, k) in &self.counts {
            writeln!(f, "  {n:<20} {k}")?;
        }
        write!(f, "{}", self.spiking.to_text())
    }
}

/// Write an annotation beside `out` (`out` itself: SpikGPT's table; `<stem>_baseline.*`,
/// `<stem>_knn.*`: the baselines; `<stem>_rules.json`: each classifier's rule;
/// `<stem>_spiking.json`: the spiking statistics of the pass).
pub fn write_annotation(
    ann: &Annotation,
    out: &std::path::Path,
    stats: &ForwardStats,
) -> Result<AnnotationSummary> {
    let (dir, stem) = split_stem(out);
    ann.main.write(out)?;
    for b in &ann.baselines {
        let suffix = if b.name == "knn" { "_knn" } else { "_baseline" };
        b.table.write(&super::predictions::sibling(out, suffix))?;
    }
    let mut rules = std::collections::BTreeMap::new();
    rules.insert("spikgpt".to_string(), ann.rule.describe());
    for b in &ann.baselines {
        rules.insert(b.name.clone(), b.rule.clone());
    }
    write_json_atomic(&dir.join(format!("{stem}_rules.json")), &rules)?;
    let spiking = energy_report(stats);
    write_json_atomic(&dir.join(format!("{stem}_spiking.json")), &spiking)?;
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in &ann.main.label {
        match counts.iter_mut().find(|(n, _)| n == l) {
            Some((_, k)) => *k += 1,
            None => counts.push((l.clone(), 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let n_unknown = counts
        .iter()
        .find(|(n, _)| n == UNKNOWN)
        .map(|c| c.1)
        .unwrap_or(0);
    Ok(AnnotationSummary {
        out: out.to_path_buf(),
        n_cells: ann.main.cell_ids.len(),
        n_unknown,
        rule: ann.rule.describe(),
        counts,
        spiking,
    })
}

/// Embeddings must be whole rows of the model's input width, and finite.
pub fn check_embeddings(x: &[f32], k: usize) -> Result<()> {
    if k == 0 || !x.len().is_multiple_of(k) {
        return Err(Error::invalid(format!("embeddings must have {k} columns")));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "embeddings: cell {} has a non-finite value (NaN or infinite) in dimension {}",
            i / k,
            i % k
        )));
    }
    Ok(())
}

/// Per-cell calls from a probability matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Calls {
    /// Final label (`Unknown` when the max probability is below the threshold).
    pub label: Vec<String>,
    /// Most probable class.
    pub best: Vec<String>,
    /// Its probability.
    pub max_prob: Vec<f64>,
}

/// Arg-max labels with rejection below `threshold`.
pub fn calls(probs: &[f32], classes: &[String], threshold: f64) -> Calls {
    let c = classes.len();
    let n = probs.len().checked_div(c).unwrap_or(0);
    let mut out = Calls {
        label: Vec::with_capacity(n),
        best: Vec::with_capacity(n),
        max_prob: Vec::with_capacity(n),
    };
    for i in 0..n {
        let row = &probs[i * c..(i + 1) * c];
        let bi = super::metrics::argmax(row);
        let bp = row[bi];
        let best = classes[bi].clone();
        out.label.push(if (bp as f64) < threshold {
            UNKNOWN.to_string()
        } else {
            best.clone()
        });
        out.best.push(best);
        out.max_prob.push(bp as f64);
    }
    out
}

pub use super::predictions::split_stem;
