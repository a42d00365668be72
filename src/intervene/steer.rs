//! Causal steering: change one SAE feature in the residual stream during the forward pass and
//! report what changes downstream: the final `<cls>` embedding, SpikGPT's calls on it, and the
//! expression head's predictions for every gene.
//!
//! At every real token of the site, the feature's code `z_F` (encoding of the token's activation)
//! becomes `S z_F` (`--scale S`: 0 removes the feature, 2 doubles it) or `V` (`--clamp V`: switches it
//! on everywhere), and the difference is added through the feature's decoder row, in activation
//! units: `x' = x + (z_F' - z_F) W_dec[F] * std`. The rest of the token, including what the SAE does
//! not reconstruct, is kept, so a scale of 1 reproduces the clean run exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::intervene::cells::{cls_rows, cosine, CellSource};
use crate::intervene::edit::{Edit, SteerMode};
use crate::io::atomic::write_json_atomic;
use crate::io::lock::{check_not_finished, lock_for_writing};
use crate::io::table::Table;
use crate::runtime::Runtime;
use crate::sae::Sae;
use crate::scgpt::layers::site_name;
use crate::scgpt::model::{l2_normalise_rows, to_f32_vec, Site};
use crate::scgpt::Scgpt;
use crate::spikgpt::annotate::{annotate, resolve_rule};
use crate::spikgpt::model_dir::{load_model_dir, LoadedModel};

/// The file written last: its presence means the folder is complete.
pub const SUMMARY_FILE: &str = "steer.json";

/// Genes listed in the summary (the `genes` table has all of them).
const TOP_GENES: usize = 20;
/// Cells a gene must be a token of to be listed in the summary (fewer when the run has fewer).
const TOP_GENE_MIN_CELLS: usize = 10;

/// One steering run's inputs.
pub struct SteerRequest<'a> {
    /// The model.
    pub scgpt: &'a Scgpt,
    /// The SAE.
    pub sae: &'a Sae,
    /// Its folder.
    pub sae_dir: &'a Path,
    /// Where it plugs in ([`crate::intervene::site::sae_site`]).
    pub site: Site,
    /// The feature.
    pub feature: usize,
    /// How its code changes.
    pub mode: SteerMode,
    /// The cells.
    pub data: &'a Dataset,
    /// How the data were read (recorded in the summary).
    pub data_desc: serde_json::Value,
    /// Label column and labels (per-label summary).
    pub labels: Option<(String, Vec<String>)>,
    /// A SpikGPT model folder trained on this model's CLS embeddings.
    pub spikgpt: Option<PathBuf>,
    /// Output folder.
    pub out: &'a Path,
    /// Overwrite a finished output folder.
    pub force: bool,
    /// Cells per forward batch (results do not depend on it).
    pub batch_size: usize,
    /// Longest token sequence (as `scsae extract`).
    pub max_length: usize,
}

/// One gene's expression-head predictions, clean and steered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneChange {
    /// Gene symbol.
    pub gene: String,
    /// Cells in which the gene is a token.
    pub n_cells: usize,
    /// Mean predicted value, clean.
    pub pred_clean: f64,
    /// Mean predicted value, steered.
    pub pred_steered: f64,
    /// `pred_steered - pred_clean`.
    pub change: f64,
}

/// SpikGPT's calls before and after steering.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallChanges {
    /// The model folder.
    pub model: String,
    /// Cells whose call changed.
    pub n_changed: usize,
    /// Calls per class, clean.
    pub clean_counts: BTreeMap<String, usize>,
    /// Calls per class, steered.
    pub steered_counts: BTreeMap<String, usize>,
}

/// What a steering run measured (the summary file).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SteerReport {
    /// The SAE folder.
    pub sae: String,
    /// The SAE's run name.
    pub sae_name: String,
    /// The site.
    pub layer: String,
    /// The feature.
    pub feature: usize,
    /// How its code was changed.
    pub mode: SteerMode,
    /// The model description.
    pub model: serde_json::Value,
    /// The data description.
    pub data: serde_json::Value,
    /// Cells.
    pub n_cells: usize,
    /// Real tokens at the site.
    pub n_tokens: usize,
    /// Share of tokens on which the feature fires (before steering).
    pub feature_token_fraction: f64,
    /// Share of cells with at least one such token.
    pub feature_cell_fraction: f64,
    /// Mean cosine of the steered `<cls>` embedding with the clean one.
    pub cls_cosine_mean: f64,
    /// Smallest such cosine.
    pub cls_cosine_min: f64,
    /// Mean L2 distance between the normalised steered and clean embeddings.
    pub cls_shift_mean: f64,
    /// SpikGPT's calls (with `--spikgpt`).
    pub calls: Option<CallChanges>,
    /// Genes whose mean predicted expression moved most (by absolute change), among those that are
    /// tokens of at least 10 cells.
    pub top_genes: Vec<GeneChange>,
    /// Global seed (tokenisation).
    pub seed: u64,
    /// scsae version.
    pub software_version: String,
}

/// Check the SpikGPT folder: trained on this model's CLS embeddings (its width is the model's).
fn load_annotator(dir: &Path, d: usize, rt: &Runtime) -> Result<LoadedModel> {
    let loaded = load_model_dir(dir, rt)?;
    let k = loaded.model.config.input_dim;
    if k != d {
        return Err(Error::input(
            dir,
            format!("the SpikGPT model reads {k}-dimensional embeddings but scGPT's CLS embedding has {d}: train it on this model's CLS embeddings"),
        ));
    }
    if let Some(l) = loaded
        .file
        .embedding
        .layer
        .as_deref()
        .filter(|l| *l != "cls")
    {
        return Err(Error::input(
            dir,
            format!("the SpikGPT model was trained on layer {l} cell vectors, not the CLS embedding that steering changes"),
        ));
    }
    Ok(loaded)
}

/// Run the clean and steered forward passes over every cell and write the folder (`cells`,
/// `genes`, optional `transitions` and `labels` tables, then [`SUMMARY_FILE`] last). Every input is
/// checked before anything is written.
pub fn steer(req: &SteerRequest<'_>, rt: &Runtime) -> Result<SteerReport> {
    req.sae.check_feature(req.feature)?;
    match req.mode {
        SteerMode::Scale(s) | SteerMode::Clamp(s) if !s.is_finite() => {
            return Err(Error::invalid("--scale / --clamp must be a finite number"))
        }
        _ => {}
    }
    check_not_finished(req.out, SUMMARY_FILE, "a steering run", req.force)?;
    let head = req.scgpt.expr_head.as_ref().ok();
    let d = req.scgpt.config.embsize;
    let annotator = req
        .spikgpt
        .as_deref()
        .map(|p| load_annotator(p, d, rt))
        .transpose()?;
    let source = CellSource::new(req.scgpt, req.data, req.max_length, rt)?;
    let model = &req.scgpt.model;
    let edit = Edit::Steer {
        sae: req.sae,
        feature: req.feature,
        mode: req.mode,
    };
    let n = req.data.n_cells();
    let (mut clean_cls, mut steered_cls) = (Vec::with_capacity(n * d), Vec::with_capacity(n * d));
    let mut stats = Vec::with_capacity(n);
    // gene id -> (cells, sum clean, sum steered)
    let mut genes: BTreeMap<u32, (usize, f64, f64)> = BTreeMap::new();
    for rows in source.batches(req.batch_size)? {
        let toks = source.tokenize(rows);
        let batch = source.batch(&toks, rt)?;
        let h = model.forward_to(&batch, req.site)?;
        let (hs, st) = edit.apply(&h, &batch.lengths)?;
        let clean = model.forward_from(h, req.site, &batch.lengths)?;
        let steered = model.forward_from(hs, req.site, &batch.lengths)?;
        clean_cls.extend(cls_rows(&clean)?);
        steered_cls.extend(cls_rows(&steered)?);
        stats.extend(st);
        if let Some(head) = head {
            let pc = to_f32_vec(&head.forward(&clean)?)?;
            let ps = to_f32_vec(&head.forward(&steered)?)?;
            for (i, t) in toks.iter().enumerate() {
                let o = i * batch.max_len;
                for p in 1..t.len() {
                    let e = genes.entry(t.gene_ids[p]).or_default();
                    e.0 += 1;
                    e.1 += pc[o + p] as f64;
                    e.2 += ps[o + p] as f64;
                }
            }
        }
    }
    let cos: Vec<f64> = clean_cls
        .chunks_exact(d)
        .zip(steered_cls.chunks_exact(d))
        .map(|(a, b)| cosine(a, b))
        .collect();
    l2_normalise_rows(&mut clean_cls, d);
    l2_normalise_rows(&mut steered_cls, d);
    let shift: Vec<f64> = clean_cls
        .chunks_exact(d)
        .zip(steered_cls.chunks_exact(d))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let calls = match &annotator {
        Some(loaded) => {
            let rule = resolve_rule(loaded, None, None, None)?;
            let ids = &req.data.cell_ids;
            let a = annotate(loaded, ids, &clean_cls, &rule, req.batch_size, None)?;
            let b = annotate(loaded, ids, &steered_cls, &rule, req.batch_size, None)?;
            Some((a.main.label, b.main.label))
        }
        None => None,
    };
    let mut gene_rows: Vec<GeneChange> = genes
        .iter()
        .map(|(&id, &(k, c, s))| GeneChange {
            gene: req.scgpt.vocab.token(id).unwrap_or("?").to_string(),
            n_cells: k,
            pred_clean: c / k as f64,
            pred_steered: s / k as f64,
            change: (s - c) / k as f64,
        })
        .collect();
    gene_rows.sort_by(|a, b| {
        b.change
            .abs()
            .total_cmp(&a.change.abs())
            .then_with(|| a.gene.cmp(&b.gene))
    });
    let n_tokens: usize = stats.iter().map(|s| s.tokens).sum();
    let active: usize = stats.iter().map(|s| s.active).sum();
    let report = SteerReport {
        sae: req.sae_dir.display().to_string(),
        sae_name: req.sae.cfg.run_name(),
        layer: site_name(req.site),
        feature: req.feature,
        mode: req.mode,
        model: req.scgpt.describe(),
        data: req.data_desc.clone(),
        n_cells: n,
        n_tokens,
        feature_token_fraction: active as f64 / n_tokens.max(1) as f64,
        feature_cell_fraction: stats.iter().filter(|s| s.active > 0).count() as f64
            / n.max(1) as f64,
        cls_cosine_mean: cos.iter().sum::<f64>() / n.max(1) as f64,
        cls_cosine_min: cos.iter().copied().fold(f64::INFINITY, f64::min),
        cls_shift_mean: shift.iter().sum::<f64>() / n.max(1) as f64,
        calls: calls.as_ref().map(|(a, b)| CallChanges {
            model: req
                .spikgpt
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            n_changed: a.iter().zip(b).filter(|(x, y)| x != y).count(),
            clean_counts: counts(a),
            steered_counts: counts(b),
        }),
        top_genes: gene_rows
            .iter()
            .filter(|g| g.n_cells >= TOP_GENE_MIN_CELLS.min(n))
            .take(TOP_GENES)
            .cloned()
            .collect(),
        seed: rt.seed,
        software_version: env!("CARGO_PKG_VERSION").into(),
    };
    // ---- tables
    let mut t = Table::new(n).str("cell_id", req.data.cell_ids.clone());
    if let Some((key, labels)) = &req.labels {
        t = t.str(key, labels.clone());
    }
    t = t
        .count("n_tokens", stats.iter().map(|s| s.tokens as u64).collect())
        .f64(
            "feature_mean",
            stats
                .iter()
                .map(|s| s.sum / s.tokens.max(1) as f64)
                .collect(),
        )
        .f64(
            "feature_active_fraction",
            stats
                .iter()
                .map(|s| s.active as f64 / s.tokens.max(1) as f64)
                .collect(),
        )
        .f64("cls_cosine", cos.clone())
        .f64("cls_shift", shift.clone());
    if let Some((a, b)) = &calls {
        t = t
            .str("call_clean", a.clone())
            .str("call_steered", b.clone())
            .bool(
                "call_changed",
                a.iter().zip(b).map(|(x, y)| x != y).collect(),
            );
    }
    let g = Table::new(gene_rows.len())
        .str("gene", gene_rows.iter().map(|r| r.gene.clone()).collect())
        .count(
            "n_cells",
            gene_rows.iter().map(|r| r.n_cells as u64).collect(),
        )
        .f64(
            "pred_clean",
            gene_rows.iter().map(|r| r.pred_clean).collect(),
        )
        .f64(
            "pred_steered",
            gene_rows.iter().map(|r| r.pred_steered).collect(),
        )
        .f64("change", gene_rows.iter().map(|r| r.change).collect());
    let transitions = calls.as_ref().map(|(a, b)| {
        let mut m: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (x, y) in a.iter().zip(b) {
            *m.entry((x.as_str(), y.as_str())).or_default() += 1;
        }
        Table::new(m.len())
            .str("call_clean", m.keys().map(|k| k.0.to_string()).collect())
            .str("call_steered", m.keys().map(|k| k.1.to_string()).collect())
            .count("n_cells", m.values().copied().collect())
    });
    let by_label = req.labels.as_ref().map(|(key, labels)| {
        let mut m: BTreeMap<&str, (u64, f64, f64, u64)> = BTreeMap::new();
        for (i, l) in labels.iter().enumerate() {
            let e = m.entry(l.as_str()).or_default();
            e.0 += 1;
            e.1 += cos[i];
            e.2 += stats[i].active as f64 / stats[i].tokens.max(1) as f64;
            if let Some((a, b)) = &calls {
                e.3 += u64::from(a[i] != b[i]);
            }
        }
        let mut t = Table::new(m.len())
            .str(key, m.keys().map(|k| k.to_string()).collect())
            .count("n_cells", m.values().map(|v| v.0).collect())
            .f64(
                "cls_cosine_mean",
                m.values().map(|v| v.1 / v.0 as f64).collect(),
            )
            .f64(
                "feature_active_fraction",
                m.values().map(|v| v.2 / v.0 as f64).collect(),
            );
        if calls.is_some() {
            t = t.count("n_calls_changed", m.values().map(|v| v.3).collect());
        }
        t
    });
    std::fs::create_dir_all(req.out).map_err(|e| Error::input(req.out, e.to_string()))?;
    let _lock = lock_for_writing(req.out, SUMMARY_FILE, "a steering run", req.force, false)?;
    t.write(req.out, "cells")?;
    if head.is_some() {
        g.write(req.out, "genes")?;
    }
    if let Some(tr) = transitions {
        tr.write(req.out, "transitions")?;
    }
    if let Some(bl) = by_label {
        bl.write(req.out, "labels")?;
    }
    write_json_atomic(&req.out.join(SUMMARY_FILE), &report)?;
    Ok(report)
}

/// One paragraph for the terminal.
pub fn headline(r: &SteerReport, out: &Path) -> String {
    let how = match r.mode {
        SteerMode::Scale(s) => format!("scaled by {s}"),
        SteerMode::Clamp(v) => format!("clamped to {v}"),
    };
    let calls = match &r.calls {
        Some(c) => format!("; SpikGPT calls changed for {} cells", c.n_changed),
        None => String::new(),
    };
    let genes = match r.top_genes.first() {
        Some(g) => format!(
            "; largest expression-head change: {} ({:+.4})",
            g.gene, g.change
        ),
        None => String::new(),
    };
    format!(
        "feature f{} of {} {how} at layer {} on {} cells (it fires on {:.1} % of tokens, in {:.1} % of cells): CLS cosine with clean {:.4} (min {:.4}){calls}{genes}\nwrote {}",
        r.feature,
        r.sae_name,
        r.layer,
        r.n_cells,
        100.0 * r.feature_token_fraction,
        100.0 * r.feature_cell_fraction,
        r.cls_cosine_mean,
        r.cls_cosine_min,
        out.display()
    )
}

fn counts(calls: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for c in calls {
        *m.entry(c.clone()).or_insert(0) += 1;
    }
    m
}
