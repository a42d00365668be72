//! `spikgpt ablate`: remove SAE features from every cell's embedding (keeping the reconstruction
//! error), re-run the annotator and report how each call changes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::cli::common::RuntimeArgs;
use crate::cli::spikgpt_annotate::AnnotatorInput;
use crate::error::Result;
use crate::explain::ablation::ablate_features;
use crate::explain::decompose::load_for_model;
use crate::explain::interpret::Interpretations;
use crate::io::atomic::write_json_atomic;
use crate::io::table::Table;
use crate::spikgpt::annotate::{split_stem, DEFAULT_THRESHOLD};
use crate::spikgpt::inputs::cell_ids;
use crate::spikgpt::metrics::UNKNOWN;

/// Arguments of `spikgpt ablate`.
#[derive(Debug, Clone, Args)]
pub struct AblateArgs {
    /// Model and cells.
    #[command(flatten)]
    pub input: AnnotatorInput,
    /// SAE trained on the same embeddings.
    #[arg(long)]
    pub sae: PathBuf,
    /// Feature(s) to remove together (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', required = true)]
    pub feature: Vec<usize>,
    /// Output of `scsae analyze` for the SAE: prints what the features mean.
    #[arg(long)]
    pub analysis: Option<PathBuf>,
    /// Cells whose highest class probability is below this are Unknown.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Per-cell table (`.csv`; a `.parquet` twin and `<stem>_summary.json` are written beside it).
    #[arg(long)]
    pub out: PathBuf,
    /// Cells per inference batch (results do not depend on it).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

/// `spikgpt ablate`'s summary (`<stem>_summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct AblationSummary {
    /// Features removed.
    pub features: Vec<usize>,
    /// Cells.
    pub n_cells: usize,
    /// Cells where at least one of the features is active.
    pub n_active: usize,
    /// Cells whose call (class or Unknown) changed.
    pub call_changed: usize,
    /// Cells whose most probable class changed.
    pub class_changed: usize,
    /// Mean change of the original class's probability over the active cells.
    pub mean_prob_change_active: f64,
    /// `before -> after` call counts of the changed cells.
    pub transitions: BTreeMap<String, usize>,
}

/// Run `spikgpt ablate`, returning the summary to print.
pub fn run(args: &AblateArgs, runtime: &RuntimeArgs) -> Result<String> {
    crate::cli::common::check_threshold(args.threshold)?;
    let rt = runtime.runtime()?;
    let (loaded, emb) = args.input.load(&rt)?;
    let dec = load_for_model(&args.sae, &loaded, &emb)?;
    let meaning = match &args.analysis {
        Some(a) => Interpretations::read(a, dec.dict.d_sae)?,
        None => Interpretations::default(),
    };
    let res = ablate_features(
        &loaded.model,
        &dec,
        &args.feature,
        args.threshold,
        args.batch_size,
    )?;
    let ids = cell_ids(&emb.matrix);
    let classes = &loaded.file.labels;
    let name = |c: Option<usize>| c.map_or(UNKNOWN.to_string(), |c| classes[c].clone());
    let n = res.len();
    let (dir, stem) = split_stem(&args.out);
    Table::new(n)
        .str("cell_id", ids.clone())
        .str(
            "label_before",
            res.iter().map(|r| name(r.before.label())).collect(),
        )
        .str(
            "best_before",
            res.iter().map(|r| classes[r.before.best].clone()).collect(),
        )
        .f64("prob_before", res.iter().map(|r| r.before.prob).collect())
        .str(
            "label_after",
            res.iter().map(|r| name(r.after.label())).collect(),
        )
        .str(
            "best_after",
            res.iter().map(|r| classes[r.after.best].clone()).collect(),
        )
        .f64(
            "prob_after_of_best_before",
            res.iter().map(|r| r.prob_after).collect(),
        )
        .f64(
            "prob_change",
            res.iter().map(|r| r.prob_after - r.before.prob).collect(),
        )
        .bool(
            "call_changed",
            res.iter().map(|r| r.call_changed()).collect(),
        )
        .f64(
            "removed_activation",
            res.iter().map(|r| r.removed_activation).collect(),
        )
        .write(&dir, &stem)?;
    let active: Vec<&_> = res.iter().filter(|r| r.removed_activation != 0.0).collect();
    let mut transitions = BTreeMap::new();
    for r in res.iter().filter(|r| r.call_changed()) {
        *transitions
            .entry(format!(
                "{} -> {}",
                name(r.before.label()),
                name(r.after.label())
            ))
            .or_insert(0) += 1;
    }
    let summary = AblationSummary {
        features: args.feature.clone(),
        n_cells: n,
        n_active: active.len(),
        call_changed: res.iter().filter(|r| r.call_changed()).count(),
        class_changed: res.iter().filter(|r| r.before.best != r.after.best).count(),
        mean_prob_change_active: active
            .iter()
            .map(|r| r.prob_after - r.before.prob)
            .sum::<f64>()
            / active.len().max(1) as f64,
        transitions,
    };
    write_json_atomic(&dir.join(format!("{stem}_summary.json")), &summary)?;
    let mut s = format!(
        "removed feature(s) {:?} from {n} cells ({} with the feature active): {} calls changed, {} most probable classes changed, mean probability change {:+.4} where active; wrote {}\n",
        summary.features,
        summary.n_active,
        summary.call_changed,
        summary.class_changed,
        summary.mean_prob_change_active,
        args.out.display()
    );
    for f in &args.feature {
        let m = meaning.get(*f);
        if let Some(t) = m.best_type {
            s.push_str(&format!(
                "  feature {f}: best cell type {t} (AUROC {:.3}){}\n",
                m.best_auroc.unwrap_or(f64::NAN),
                m.best_set
                    .map(|g| format!(", top gene set {g}"))
                    .unwrap_or_default()
            ));
        }
    }
    for (t, k) in &summary.transitions {
        s.push_str(&format!("  {t:<30} {k}\n"));
    }
    Ok(s)
}
