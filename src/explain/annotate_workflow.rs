//! `spikgpt annotate` as one library call ([`annotate_and_explain`]): load the model folder and the
//! embeddings, apply the Unknown rule, write the prediction tables, and with an SAE explain every
//! call through its features. Everything is read and checked before anything is written.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::decompose::load_for_model;
use super::interpret::Interpretations;
use super::{explain_annotation, ExplainOptions, ExplainSummary};
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::spikgpt::activity::ForwardStats;
use crate::spikgpt::annotate::{
    annotate, check_batch_size, load_model_dir, resolve_rule, write_annotation, AnnotationSummary,
    DEFAULT_THRESHOLD,
};
use crate::spikgpt::calibration::Rule;
use crate::spikgpt::inputs::{cell_ids, load_embeddings};
use crate::spikgpt::novelty::Score;
use crate::spikgpt::predictions::{check_table_out, split_stem};

/// The explanation part of a request: an SAE trained on the same embeddings.
#[derive(Debug, Clone)]
pub struct ExplainRequest<'a> {
    /// Saved SAE folder.
    pub sae: &'a Path,
    /// `scsae analyze` folder (or its features table) naming the features.
    pub analysis: Option<&'a Path>,
    /// Attribution and ablation options (the ablation's Unknown threshold is set from the rule).
    pub options: ExplainOptions,
}

/// What [`annotate_and_explain`] reads and writes.
#[derive(Debug, Clone)]
pub struct AnnotateRequest<'a> {
    /// Model folder written by `spikgpt train`.
    pub model: &'a Path,
    /// Cell embeddings: an extraction folder or a matrix file.
    pub embeddings: &'a Path,
    /// Cell matrix of an extraction folder (`cls` or a layer).
    pub embedding_layer: &'a str,
    /// The paper's rule at this threshold instead of the calibrated one.
    pub threshold: Option<f64>,
    /// Re-threshold the calibrated rule to keep this share of known validation cells.
    pub keep: Option<f64>,
    /// Novelty score of the calibrated rule.
    pub score: Option<&'a str>,
    /// Main prediction table (`.csv` or `.parquet`; siblings are written beside it).
    pub out: &'a Path,
    /// Overwrite existing tables.
    pub force: bool,
    /// Cells per inference batch (results do not depend on it).
    pub batch_size: usize,
    /// Explain the calls through an SAE.
    pub explain: Option<ExplainRequest<'a>>,
}

/// What [`annotate_and_explain`] did.
#[derive(Debug, Clone, Serialize)]
pub struct AnnotateReport {
    /// The prediction tables.
    pub annotation: AnnotationSummary,
    /// True when the model folder has no calibration and the paper's 0.95 cut-off was used.
    pub uncalibrated_model: bool,
    /// The explanation, when an SAE was given.
    pub explanation: Option<ExplainSummary>,
}

impl std::fmt::Display for AnnotateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.annotation)?;
        if self.uncalibrated_model {
            writeln!(f, "  note: this model folder has no calibration (older version): the paper's 0.95 cut-off was used")?;
        }
        if let Some(e) = &self.explanation {
            write!(f, "\n{}", e.to_text())?;
        }
        Ok(())
    }
}

/// Annotate (and explain) the cells of `req`.
pub fn annotate_and_explain(req: &AnnotateRequest<'_>, rt: &Runtime) -> Result<AnnotateReport> {
    check_table_out(req.out, req.force)?;
    check_batch_size(req.batch_size)?;
    let loaded = load_model_dir(req.model, rt)?;
    let emb = load_embeddings(req.embeddings, req.embedding_layer)?;
    let score = req.score.map(Score::parse).transpose()?;
    let rule = resolve_rule(&loaded, req.threshold, req.keep, score)?;
    let k = loaded.model.config.input_dim;
    if emb.matrix.n_cols != k {
        return Err(Error::input(
            req.embeddings,
            format!(
                "embeddings have {} dimensions but the model in {} was trained on {k}",
                emb.matrix.n_cols,
                req.model.display()
            ),
        ));
    }
    let ids = cell_ids(&emb.matrix);
    // everything the explanation needs is checked before anything is written
    let explain = match &req.explain {
        Some(x) => {
            let mut opts = x.options.clone();
            if let Some(c) = opts.control.as_mut() {
                c.threshold = match &rule {
                    Rule::Paper { threshold } => *threshold,
                    Rule::Calibrated(_) => DEFAULT_THRESHOLD,
                };
            }
            let dec = load_for_model(x.sae, &loaded, &emb)?;
            if let Some(c) = &opts.control {
                c.validate(dec.dict.d_sae)?;
            }
            let meaning = match x.analysis {
                Some(a) => Interpretations::read(a, dec.dict.d_sae)?,
                None => Interpretations::default(),
            };
            Some((dec, meaning, opts))
        }
        None => None,
    };
    let mut stats = ForwardStats::default();
    let ann = annotate(
        &loaded,
        &ids,
        &emb.matrix.data,
        &rule,
        req.batch_size,
        Some(&mut stats),
    )?;
    let annotation = write_annotation(&ann, req.out, &stats)?;
    let explanation = match explain {
        Some((dec, meaning, opts)) => {
            let (dir, stem): (PathBuf, String) = split_stem(req.out);
            Some(explain_annotation(
                &loaded,
                &dec,
                &ids,
                &ann.main.label,
                &meaning,
                &opts,
                &dir,
                &stem,
            )?)
        }
        None => None,
    };
    Ok(AnnotateReport {
        annotation,
        uncalibrated_model: loaded.calibration.is_none() && req.threshold.is_none(),
        explanation,
    })
}
