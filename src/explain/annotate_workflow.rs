//! `spikgpt annotate` as one library call ([`annotate_and_explain`]): load the model folder and the
//! embeddings, apply the Unknown rule, write the prediction tables, and with an SAE explain every
//! call through its features. Everything is read and checked before anything is written.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::decompose::load_for_model;
use super::interpret::Interpretations;
use super::{explain_annotation, ExplainOptions, ExplainSummary};
use crate::activations::cell_blocks::CellBlocks;
use crate::activations::h5ad_export::resolve_input;
use crate::activations::ActivationStore;
use crate::analysis::RowBlocks;
use crate::data::h5ad_write::{
    check_h5ad_rows, check_h5ad_target, write_h5ad_copy, H5adAdditions, ObsAddition, ObsmAddition,
    UnsAddition,
};
use crate::error::{Error, Result};
use crate::io::file_name;
use crate::runtime::Runtime;
use crate::spikgpt::activity::ForwardStats;
use crate::spikgpt::annotate::{
    annotate_rows, check_batch_size, load_model_dir, resolve_rule, write_annotation, Annotation,
    AnnotationSummary, DEFAULT_THRESHOLD, STREAM_CELLS,
};
use crate::spikgpt::calibration::Rule;
use crate::spikgpt::inputs::{cell_ids, load_embeddings};
use crate::spikgpt::metrics::UNKNOWN;
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
    /// Also write the calls into a copy of the cells' `.h5ad`.
    pub h5ad: Option<AnnotateH5ad<'a>>,
}

/// `spikgpt annotate --write-h5ad`: `obs` columns `spikgpt_label`, `spikgpt_best`,
/// `spikgpt_confidence`, `spikgpt_unknown`; `obsm['spikgpt_proba']` with the class names in
/// `uns['spikgpt']['classes']`; with an SAE, `obs['spikgpt_top_features']` and
/// `obsm['spikgpt_attribution']` (sparse: each cell's top features' attributions).
#[derive(Debug, Clone)]
pub struct AnnotateH5ad<'a> {
    /// The new `.h5ad`.
    pub out: &'a Path,
    /// The `.h5ad` to copy (default: the data file the extraction folder records).
    pub data: Option<&'a Path>,
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
    /// The `.h5ad` written.
    pub h5ad: Option<PathBuf>,
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
        if let Some(h) = &self.h5ad {
            write!(
                f,
                "\nwrote {} (obs spikgpt_*, obsm['spikgpt_proba'])",
                h.display()
            )?;
        }
        Ok(())
    }
}

/// Annotate (and explain) the cells of `req`.
pub fn annotate_and_explain(req: &AnnotateRequest<'_>, rt: &Runtime) -> Result<AnnotateReport> {
    check_table_out(req.out, req.force)?;
    check_batch_size(req.batch_size)?;
    let loaded = load_model_dir(req.model, rt)?;
    // an extraction folder is annotated a block of cells at a time; the explanation (which
    // decomposes every cell's embedding) and matrix files read the embeddings whole
    let (emb, blocks) = if req.explain.is_none() && req.embeddings.is_dir() {
        let store = ActivationStore::open(req.embeddings)?;
        (None, Some(CellBlocks::open(&store, req.embedding_layer)?))
    } else {
        (
            Some(load_embeddings(req.embeddings, req.embedding_layer)?),
            None,
        )
    };
    let (x, ids): (&dyn RowBlocks, Vec<String>) = match (&emb, &blocks) {
        (Some(e), _) => (&e.matrix, cell_ids(&e.matrix)),
        (None, Some(b)) => (b, b.row_ids().to_vec()),
        (None, None) => unreachable!("embeddings are read whole or in blocks"),
    };
    let h5ad_input = match &req.h5ad {
        Some(h) => {
            let input = match h.data {
                Some(d) => d.to_path_buf(),
                None if req.embeddings.is_dir() => {
                    resolve_input(&ActivationStore::open(req.embeddings)?, None)?
                }
                None => {
                    return Err(Error::input(
                        req.embeddings,
                        "is a matrix file: name the .h5ad to copy with --data",
                    ))
                }
            };
            let file_ids = check_h5ad_target(&input, h.out, req.force)?;
            Some((input, file_ids))
        }
        None => None,
    };
    let score = req.score.map(Score::parse).transpose()?;
    let rule = resolve_rule(&loaded, req.threshold, req.keep, score)?;
    let k = loaded.model.config.input_dim;
    if x.n_cols() != k {
        return Err(Error::input(
            req.embeddings,
            format!(
                "embeddings have {} dimensions but the model in {} was trained on {k}",
                x.n_cols(),
                req.model.display()
            ),
        ));
    }
    if let Some((input, file_ids)) = &h5ad_input {
        check_h5ad_rows(input, file_ids, &ids)?;
    }
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
            let emb = emb.as_ref().expect("read whole when explaining");
            let dec = load_for_model(x.sae, &loaded, emb)?;
            let (sae_cfg, _) = crate::sae::saelens::load(x.sae)?;
            opts.run = format!(
                "{} explaining SpikGPT {}",
                sae_cfg.run_name(),
                file_name(req.model)
            );
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
    let ann = annotate_rows(
        &loaded,
        &ids,
        x,
        &rule,
        (req.batch_size, STREAM_CELLS),
        &mut stats,
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
    let h5ad = match (&req.h5ad, h5ad_input) {
        (Some(h), Some((input, _))) => {
            let add = h5ad_additions(&ann, explanation.as_ref(), req.model);
            write_h5ad_copy(&input, h.out, &add, req.force)?;
            Some(h.out.to_path_buf())
        }
        _ => None,
    };
    Ok(AnnotateReport {
        annotation,
        uncalibrated_model: loaded.calibration.is_none() && req.threshold.is_none(),
        explanation,
        h5ad,
    })
}

/// What `--write-h5ad` adds for an annotation (see [`AnnotateH5ad`]).
fn h5ad_additions(
    ann: &Annotation,
    explanation: Option<&ExplainSummary>,
    model_dir: &Path,
) -> H5adAdditions {
    let t = &ann.main;
    let classes = t.classes.clone();
    let mut with_unknown = classes.clone();
    with_unknown.push(UNKNOWN.to_string());
    let mut add = H5adAdditions {
        row_ids: t.cell_ids.clone(),
        obs: vec![
            (
                "spikgpt_label".to_string(),
                ObsAddition::Categorical {
                    values: t.label.clone(),
                    categories: with_unknown,
                },
            ),
            (
                "spikgpt_best".to_string(),
                ObsAddition::Categorical {
                    values: t.best.clone(),
                    categories: classes.clone(),
                },
            ),
            (
                "spikgpt_confidence".to_string(),
                ObsAddition::F64(t.confidence.clone()),
            ),
            (
                "spikgpt_unknown".to_string(),
                ObsAddition::Bool(t.unknown()),
            ),
        ],
        obsm: vec![(
            "spikgpt_proba".to_string(),
            ObsmAddition::Dense {
                n_cols: classes.len(),
                data: t.probs.iter().map(|&p| p as f32).collect(),
            },
        )],
        uns: Vec::new(),
    };
    let mut uns = vec![
        ("classes".to_string(), UnsAddition::Strings(classes)),
        (
            "rule".to_string(),
            UnsAddition::Strings(vec![ann.rule.describe()]),
        ),
        (
            "model".to_string(),
            UnsAddition::Strings(vec![std::fs::canonicalize(model_dir)
                .unwrap_or_else(|_| model_dir.to_path_buf())
                .display()
                .to_string()]),
        ),
    ];
    if let Some(e) = explanation {
        add.obs.push((
            "spikgpt_top_features".to_string(),
            ObsAddition::Str(
                e.top_features
                    .iter()
                    .map(|fs| {
                        fs.iter()
                            .map(|(f, _)| format!("f{f}"))
                            .collect::<Vec<_>>()
                            .join(";")
                    })
                    .collect(),
            ),
        ));
        add.obsm.push((
            "spikgpt_attribution".to_string(),
            ObsmAddition::Csr {
                n_cols: e.d_sae,
                rows: e
                    .top_features
                    .iter()
                    .map(|fs| {
                        let mut r: Vec<(u32, f32)> =
                            fs.iter().map(|&(f, a)| (f as u32, a as f32)).collect();
                        r.sort_by_key(|x| x.0);
                        r
                    })
                    .collect(),
            },
        ));
        uns.push((
            "explained_class".to_string(),
            UnsAddition::Strings(vec!["the most probable class of each cell".to_string()]),
        ));
    }
    add.uns
        .push(("spikgpt".to_string(), UnsAddition::Dict(uns)));
    add
}
