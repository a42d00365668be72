//! `spikgpt evaluate`: accuracy, macro precision / recall / F1, per-class table, confusion matrix,
//! the Unknown-rejection report (with the logistic-regression baseline) and spiking statistics, from a
//! prediction table written by `spikgpt annotate`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::common::DataArgs;
use crate::data::load;
use crate::error::{Error, Result};
use crate::io::table::{read_dataframe, string_column};
use crate::spikgpt::annotate::{split_stem, DEFAULT_THRESHOLD};
use crate::spikgpt::energy::EnergyReport;
use crate::spikgpt::metrics::UNKNOWN;
use crate::spikgpt::report::{build_report, CellPredictions};

/// Arguments of `spikgpt evaluate`.
#[derive(Debug, Clone, Args)]
pub struct EvaluateArgs {
    /// Prediction table from `spikgpt annotate` (.csv or .parquet).
    #[arg(long)]
    pub predictions: PathBuf,
    /// Data file (.h5ad or 10x folder) with the true labels.
    #[arg(long)]
    pub data: PathBuf,
    /// obs column with the true cell types.
    #[arg(long)]
    pub label_key: String,
    /// Cell types absent from training (comma-separated); types the model does not know are added.
    #[arg(long, value_delimiter = ',')]
    pub held_out: Vec<String>,
    /// Rejection threshold (labels are recomputed from `max_prob`).
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Baseline prediction table [default: `<stem>_baseline.csv` beside the predictions, if present].
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Spiking statistics JSON [default: `<stem>_spiking.json` beside the predictions, if present].
    #[arg(long)]
    pub spiking: Option<PathBuf>,
    /// Folder for the report files [default: the predictions' folder].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// File stem of the report files.
    #[arg(long, default_value = "evaluation")]
    pub stem: String,
    #[command(flatten)]
    pub data_args: DataArgs,
}

/// A prediction table read back.
#[derive(Debug, Clone)]
pub struct PredictionTable {
    /// Cell ids.
    pub cell_ids: Vec<String>,
    /// Most probable class per cell.
    pub best: Vec<String>,
    /// Its probability.
    pub max_prob: Vec<f64>,
    /// The model's classes (from the `prob_<class>` columns).
    pub classes: Vec<String>,
}

/// Read a table written by `spikgpt annotate`.
pub fn read_predictions(path: &Path) -> Result<PredictionTable> {
    let df = read_dataframe(path)?;
    let col = |name: &str| {
        df.column(name).map_err(|_| {
            Error::input(
                path,
                format!("no column '{name}' (is this a `spikgpt annotate` table?)"),
            )
        })
    };
    let cell_ids = string_column(col("cell_id")?).map_err(|m| Error::input(path, m))?;
    let best = string_column(col("best_label")?).map_err(|m| Error::input(path, m))?;
    let mp = col("max_prob")?
        .cast(&polars::prelude::DataType::Float64)
        .map_err(|e| Error::input(path, format!("column 'max_prob': {e}")))?;
    let max_prob: Vec<f64> = mp
        .f64()
        .map_err(|e| Error::input(path, format!("column 'max_prob': {e}")))?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(x) if (0.0..=1.0).contains(&x) => Ok(x),
            _ => Err(Error::input(
                path,
                format!("column 'max_prob', row {i}: missing or not a probability"),
            )),
        })
        .collect::<Result<_>>()?;
    let classes: Vec<String> = df
        .get_column_names()
        .iter()
        .filter_map(|n| n.strip_prefix("prob_").map(str::to_string))
        .collect();
    if classes.is_empty() {
        return Err(Error::input(path, "no prob_<class> columns"));
    }
    Ok(PredictionTable {
        cell_ids,
        best,
        max_prob,
        classes,
    })
}

fn sibling(pred: &Path, suffix: &str, ext: &str) -> PathBuf {
    let (dir, stem) = split_stem(pred);
    let pext = pred.extension().and_then(|e| e.to_str()).unwrap_or("csv");
    let ext = if ext.is_empty() { pext } else { ext };
    dir.join(format!("{stem}{suffix}.{ext}"))
}

fn predictions_for(
    t: &PredictionTable,
    model: &str,
    threshold: f64,
    order: &[usize],
) -> CellPredictions {
    CellPredictions {
        model: model.to_string(),
        label: order
            .iter()
            .map(|&i| {
                if t.max_prob[i] < threshold {
                    UNKNOWN.to_string()
                } else {
                    t.best[i].clone()
                }
            })
            .collect(),
        best: order.iter().map(|&i| t.best[i].clone()).collect(),
        max_prob: order.iter().map(|&i| t.max_prob[i]).collect(),
    }
}

/// Run `spikgpt evaluate`, returning the report text.
pub fn run(args: &EvaluateArgs) -> Result<String> {
    crate::cli::common::check_threshold(args.threshold)?;
    let table = read_predictions(&args.predictions)?;
    let ds = load(&args.data, &args.data_args.load_options())?;
    let labels = ds.labels(&args.label_key)?;
    let index = ds.cell_index();
    let mut truth = Vec::with_capacity(table.cell_ids.len());
    for id in &table.cell_ids {
        match index.get(id.as_str()) {
            Some(&r) => truth.push(labels[r].clone()),
            None => {
                return Err(Error::input(
                    &args.predictions,
                    format!("cell '{id}' has no label in {}", args.data.display()),
                ))
            }
        }
    }
    for h in &args.held_out {
        if !truth.contains(h) {
            return Err(Error::invalid(format!(
                "--held-out {h}: no predicted cell has this true label"
            )));
        }
    }
    let mut held_out = args.held_out.clone();
    for t in &truth {
        if !table.classes.contains(t) && !held_out.contains(t) {
            held_out.push(t.clone());
        }
    }
    held_out.sort();
    let order: Vec<usize> = (0..truth.len()).collect();
    let main = predictions_for(&table, "spikgpt", args.threshold, &order);

    let bpath = args
        .baseline
        .clone()
        .unwrap_or_else(|| sibling(&args.predictions, "_baseline", ""));
    let baseline = if bpath.exists() {
        let b = read_predictions(&bpath)?;
        let pos: std::collections::HashMap<&str, usize> = b
            .cell_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut border = Vec::with_capacity(truth.len());
        for id in &table.cell_ids {
            border.push(*pos.get(id.as_str()).ok_or_else(|| {
                Error::input(
                    &bpath,
                    format!("cell '{id}' is missing from the baseline table"),
                )
            })?);
        }
        Some(predictions_for(
            &b,
            "logistic_regression",
            args.threshold,
            &border,
        ))
    } else if args.baseline.is_some() {
        return Err(Error::input(&bpath, "file not found"));
    } else {
        None
    };
    let spath = args
        .spiking
        .clone()
        .unwrap_or_else(|| sibling(&args.predictions, "_spiking", "json"));
    let spiking: Option<EnergyReport> = if spath.exists() {
        Some(crate::io::json::read_json(&spath, "spiking statistics")?)
    } else {
        None
    };
    let report = build_report(
        &truth,
        &table.classes,
        &held_out,
        args.threshold,
        &main,
        baseline.as_ref(),
        spiking,
    );
    let out_dir = match &args.out_dir {
        Some(d) => d.clone(),
        None => split_stem(&args.predictions).0,
    };
    report.write(&out_dir, &args.stem)?;
    let mut s = report.to_text();
    s.push_str(&format!(
        "wrote {0}/{1}.json, {0}/{1}_per_class.csv, {0}/{1}_confusion.png{2}",
        out_dir.display(),
        args.stem,
        if report.rejection.is_empty() {
            String::new()
        } else {
            format!(", {}/{}_threshold_sweep.png", out_dir.display(), args.stem)
        }
    ));
    Ok(s)
}
