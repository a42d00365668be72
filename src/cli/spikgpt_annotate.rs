//! `spikgpt annotate`: label cells with a trained model; `Unknown` below the confidence threshold.

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::RuntimeArgs;
use crate::error::{Error, Result};
use crate::io::atomic::write_json_atomic;
use crate::spikgpt::annotate::{
    calls, load_model_dir, predict_proba, split_stem, write_predictions, DEFAULT_THRESHOLD,
};
use crate::spikgpt::energy::energy_report;
use crate::spikgpt::inputs::{cell_ids, load_embeddings};
use crate::spikgpt::metrics::UNKNOWN;
use crate::spikgpt::stats::ForwardStats;

/// Arguments of `spikgpt annotate`.
#[derive(Debug, Clone, Args)]
pub struct AnnotateArgs {
    /// Model folder written by `spikgpt train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Cell embeddings (extraction store folder or matrix file), same dimension as the training ones.
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Which cell matrix of an extraction store: cls or a layer number.
    #[arg(long, default_value = "cls")]
    pub embedding_layer: String,
    /// Cells whose highest class probability is below this are labelled Unknown.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Output table (`.csv`; a `.parquet` twin is written beside it, plus `<stem>_baseline.*` and
    /// `<stem>_spiking.json`).
    #[arg(long)]
    pub out: PathBuf,
    /// Cells per inference batch (results do not depend on it).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

/// Run `spikgpt annotate`, returning the summary to print.
pub fn run(args: &AnnotateArgs, runtime: &RuntimeArgs) -> Result<String> {
    if !(0.0..=1.0).contains(&args.threshold) {
        return Err(Error::invalid(format!(
            "--threshold {} must be in [0, 1]",
            args.threshold
        )));
    }
    let rt = runtime.runtime()?;
    let loaded = load_model_dir(&args.model, &rt)?;
    let emb = load_embeddings(&args.embeddings, &args.embedding_layer)?;
    let k = loaded.model.config.input_dim;
    if emb.matrix.n_cols != k {
        return Err(Error::input(
            &args.embeddings,
            format!(
                "embeddings have {} dimensions but the model in {} was trained on {k}",
                emb.matrix.n_cols,
                args.model.display()
            ),
        ));
    }
    let ids = cell_ids(&emb.matrix);
    let classes = &loaded.file.labels;
    let mut stats = ForwardStats::default();
    let probs = predict_proba(
        &loaded.model,
        &emb.matrix.data,
        args.batch_size,
        Some(&mut stats),
    )?;
    let (dir, stem) = split_stem(&args.out);
    write_predictions(&args.out, &ids, &probs, classes, args.threshold)?;
    if let Some(b) = &loaded.baseline {
        let bp = b.predict_proba(&emb.matrix.data)?;
        write_predictions(
            &dir.join(format!("{stem}_baseline.csv")),
            &ids,
            &bp,
            classes,
            args.threshold,
        )?;
    }
    let energy = energy_report(&stats);
    write_json_atomic(&dir.join(format!("{stem}_spiking.json")), &energy)?;
    let c = calls(&probs, classes, args.threshold);
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in &c.label {
        match counts.iter_mut().find(|(n, _)| n == l) {
            Some((_, k)) => *k += 1,
            None => counts.push((l.clone(), 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let unknown = counts
        .iter()
        .find(|(n, _)| n == UNKNOWN)
        .map(|c| c.1)
        .unwrap_or(0);
    let mut s = format!(
        "annotated {} cells: {} Unknown (max probability < {}); wrote {}\n",
        ids.len(),
        unknown,
        args.threshold,
        args.out.display()
    );
    for (n, k) in counts {
        s.push_str(&format!("  {n:<20} {k}\n"));
    }
    s.push_str(&energy.to_text());
    Ok(s)
}
