//! `spikgpt ablate`: remove SAE features from every cell's embedding (keeping the reconstruction
//! error), re-run the annotator and report how each call changes.

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::RuntimeArgs;
use crate::cli::spikgpt_annotate::AnnotatorInput;
use crate::error::Result;
use crate::explain::ablation::ablate_features;
use crate::explain::ablation_report::write_ablation;
pub use crate::explain::ablation_report::AblationSummary;
use crate::explain::decompose::load_for_model;
use crate::explain::interpret::Interpretations;
use crate::spikgpt::annotate::DEFAULT_THRESHOLD;
use crate::spikgpt::inputs::cell_ids;

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
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
    /// Cells per inference batch (results do not depend on it).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

/// Run `spikgpt ablate`, returning the summary to print.
pub fn run(args: &AblateArgs, runtime: &RuntimeArgs) -> Result<String> {
    crate::spikgpt::predictions::check_table_out(&args.out, args.force)?;
    crate::spikgpt::annotate::check_batch_size(args.batch_size)?;
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
    let summary = write_ablation(&res, &ids, &loaded.file.labels, &args.feature, &args.out)?;
    let n = summary.n_cells;
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
