//! `spikgpt evaluate` as a library call: prediction tables (SpikGPT and, beside them, the
//! logistic-regression and kNN baselines) against the true labels of the annotated data set, which
//! may be another data set than the reference (`--label-map` renames its types to the model's,
//! `--batch-key` splits the metrics by technology, donor or study).
//!
//! Held-out (unseen) types are those given with `--held-out`, those the label map marks as absent
//! from the reference (an empty `reference_label`), and, without a label map, every true type the
//! model does not know. With a label map, a query type that is neither mapped, nor marked absent,
//! nor held out, nor a model class is an error naming it: a typo in the map must not silently turn
//! a known type into an "Unknown" success.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::cell_map::{map_rows, write_cell_map, MapInputs, MAX_MAP_CELLS};
use super::energy::EnergyReport;
use super::predictions::{sibling, split_stem, PredictionTable};
use super::report::{build_report, EvaluationReport, ModelOutputs};
use crate::data::{load, LoadOptions};
use crate::error::{Error, Result};
use crate::io::table::{nullable_string_column, read_dataframe};

/// What to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EvaluateOptions {
    /// `spikgpt annotate`'s table.
    pub predictions: PathBuf,
    /// Data set with the true labels.
    pub data: PathBuf,
    /// How to read it.
    pub load: LoadOptions,
    /// obs column with the true types.
    pub label_key: String,
    /// Types absent from training.
    pub held_out: Vec<String>,
    /// CSV `query_label,reference_label` renaming the data's types to the model's.
    pub label_map: Option<PathBuf>,
    /// obs column to split the metrics by.
    pub batch_key: Option<String>,
    /// Recompute every call with the paper's rule (maximum probability below this is Unknown).
    pub threshold: Option<f64>,
    /// Baseline tables; default: `<stem>_baseline.*` and `<stem>_knn.*` beside the predictions.
    pub baselines: Vec<(String, PathBuf)>,
    /// Spiking statistics; default `<stem>_spiking.json` beside the predictions.
    pub spiking: Option<PathBuf>,
    /// Report folder; default the predictions' folder.
    pub out_dir: Option<PathBuf>,
    /// Report file stem.
    pub stem: String,
    /// Overwrite an existing report with this stem.
    pub force: bool,
    /// The cell embeddings the calls were made on, for the map (`<stem>_map`); without them the map
    /// is drawn from the data's expression (log-normalised, 50 principal components).
    pub embeddings: Option<PathBuf>,
    /// Which cell matrix of an extraction store (`cls` or a layer number).
    pub embedding_layer: String,
    /// Seed of the map (which cells are drawn when there are many; the PCA of the expression).
    pub seed: u64,
}

/// A label map: query type -> the model's type, or `None` for a type absent from the reference.
pub type LabelMap = HashMap<String, Option<String>>;

/// Read a label map (`query_label,reference_label`, CSV/TSV/Parquet; the first two columns when the
/// names differ). An empty `reference_label` marks a type absent from the reference.
pub fn read_label_map(path: &Path, classes: &[String]) -> Result<LabelMap> {
    let df = read_dataframe(path)?;
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let column = |want: &str| -> Result<Vec<Option<String>>> {
        let c = df.column(want).map_err(|_| {
            Error::input(
                path,
                format!(
                    "a label map needs the columns query_label,reference_label (found: {})",
                    names.join(",")
                ),
            )
        })?;
        nullable_string_column(c).map_err(|m| Error::input(path, m))
    };
    let q = column("query_label")?;
    let r = column("reference_label")?;
    let mut map = LabelMap::new();
    for (i, (qv, rv)) in q.into_iter().zip(r).enumerate() {
        let Some(qv) = qv.filter(|s| !s.trim().is_empty()) else {
            return Err(Error::input(
                path,
                format!("row {}: empty query_label", i + 1),
            ));
        };
        let rv = rv.filter(|s| !s.trim().is_empty());
        if let Some(rv) = &rv {
            if !classes.contains(rv) {
                return Err(Error::input(
                    path,
                    format!(
                        "row {}: reference_label '{rv}' is not a class of the model (classes: {})",
                        i + 1,
                        classes.join(", ")
                    ),
                ));
            }
        }
        if map.insert(qv.clone(), rv).is_some() {
            return Err(Error::input(
                path,
                format!("query_label '{qv}' is mapped twice"),
            ));
        }
    }
    Ok(map)
}

/// Evaluate and write the report files; returns the report.
pub fn evaluate(opts: &EvaluateOptions) -> Result<EvaluationReport> {
    if opts.stem.is_empty()
        || opts.stem.contains(['/', '\\'])
        || opts.stem == "."
        || opts.stem == ".."
    {
        return Err(Error::invalid(format!(
            "--stem '{}' must be a plain file name (no folders; use --out-dir)",
            opts.stem
        )));
    }
    let out_dir = match &opts.out_dir {
        Some(d) => d.clone(),
        None => split_stem(&opts.predictions).0,
    };
    crate::io::atomic::check_new_output(
        &[
            &out_dir.join(format!("{}.json", opts.stem)),
            &out_dir.join(format!("{}.txt", opts.stem)),
        ],
        opts.force,
    )?;
    if let Some(t) = opts.threshold {
        super::calibration::check_threshold(t)?;
    }
    let mut table = PredictionTable::read(&opts.predictions)?;
    let ds = load(&opts.data, &opts.load)?;
    let labels = ds.labels(&opts.label_key)?;
    let batch_values = match &opts.batch_key {
        Some(k) => Some(ds.labels(k)?),
        None => None,
    };
    let index = ds.cell_index();
    let mut rows = Vec::with_capacity(table.cell_ids.len());
    for id in &table.cell_ids {
        match index.get(id.as_str()) {
            Some(&r) => rows.push(r),
            None => {
                return Err(Error::input(
                    &opts.predictions,
                    format!("cell '{id}' is not in {}", opts.data.display()),
                ))
            }
        }
    }
    let classes = table.classes.clone();
    let raw_truth: Vec<String> = rows.iter().map(|&r| labels[r].clone()).collect();
    let mut held_out: Vec<String> = opts.held_out.clone();
    let truth: Vec<String> = match &opts.label_map {
        Some(p) => {
            let map = read_label_map(p, &classes)?;
            let mut unmapped: Vec<&String> = raw_truth
                .iter()
                .filter(|t| {
                    !map.contains_key(*t) && !classes.contains(t) && !opts.held_out.contains(t)
                })
                .collect();
            unmapped.sort();
            unmapped.dedup();
            if !unmapped.is_empty() {
                return Err(Error::input(
                    p,
                    format!(
                        "query types not in the label map: {} (map them, or give them an empty reference_label if the reference lacks them)",
                        unmapped
                            .iter()
                            .map(|s| format!("'{s}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            raw_truth
                .iter()
                .map(|t| match map.get(t) {
                    Some(Some(r)) => r.clone(),
                    Some(None) => {
                        if !held_out.contains(t) {
                            held_out.push(t.clone());
                        }
                        t.clone()
                    }
                    None => t.clone(),
                })
                .collect()
        }
        None => raw_truth,
    };
    for h in &opts.held_out {
        if !truth.contains(h) {
            return Err(Error::invalid(format!(
                "--held-out {h}: no predicted cell has this true label"
            )));
        }
    }
    for t in &truth {
        if !classes.contains(t) && !held_out.contains(t) {
            held_out.push(t.clone());
        }
    }
    held_out.sort();
    held_out.dedup();

    let order: Vec<usize> = (0..truth.len()).collect();
    let paper = |t: &mut PredictionTable, th: f64| {
        for i in 0..t.label.len() {
            t.confidence[i] = t.max_prob[i];
            t.label[i] = if t.max_prob[i] < th {
                super::metrics::UNKNOWN.to_string()
            } else {
                t.best[i].clone()
            };
        }
    };
    // The rules `spikgpt annotate` recorded beside the tables (`<stem>_rules.json`).
    let rules: HashMap<String, String> = {
        let (dir, stem) = split_stem(&opts.predictions);
        let p = dir.join(format!("{stem}_rules.json"));
        if p.exists() {
            crate::io::json::read_json(&p, "annotation rules")?
        } else {
            HashMap::new()
        }
    };
    let rule_name = |model: &str| -> String {
        match opts.threshold {
            Some(th) => format!("paper rule: max probability < {th} is Unknown"),
            None => rules
                .get(model)
                .cloned()
                .unwrap_or_else(|| "the rule the table was annotated with".to_string()),
        }
    };
    if let Some(th) = opts.threshold {
        paper(&mut table, th);
    }
    let main = ModelOutputs::from_table("spikgpt", &rule_name("spikgpt"), &table, &order);

    let mut baseline_paths = Vec::new();
    for (name, suffix) in [("logistic_regression", "_baseline"), ("knn", "_knn")] {
        match opts.baselines.iter().find(|(n, _)| n == name) {
            Some((_, p)) => baseline_paths.push((name.to_string(), p.clone())),
            None => {
                let p = sibling(&opts.predictions, suffix);
                if p.exists() {
                    baseline_paths.push((name.to_string(), p));
                }
            }
        }
    }
    let mut baselines = Vec::new();
    for (name, path) in &baseline_paths {
        let mut b = PredictionTable::read(path)?;
        let pos: HashMap<&str, usize> = b
            .cell_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut border = Vec::with_capacity(truth.len());
        for id in &table.cell_ids {
            border.push(*pos.get(id.as_str()).ok_or_else(|| {
                Error::input(
                    path,
                    format!("cell '{id}' is missing from this baseline table"),
                )
            })?);
        }
        if let Some(th) = opts.threshold {
            paper(&mut b, th);
        }
        baselines.push(ModelOutputs::from_table(
            name,
            &rule_name(name),
            &b,
            &border,
        ));
    }
    let spath = opts.spiking.clone().unwrap_or_else(|| {
        let (dir, stem) = split_stem(&opts.predictions);
        dir.join(format!("{stem}_spiking.json"))
    });
    let spiking: Option<EnergyReport> = if spath.exists() {
        Some(crate::io::json::read_json(&spath, "spiking statistics")?)
    } else {
        None
    };
    let batches: Option<Vec<String>> =
        batch_values.map(|b| rows.iter().map(|&r| b[r].clone()).collect());
    let title = format!(
        "{} vs {} ({})",
        opts.predictions.display(),
        opts.data.display(),
        opts.label_key
    );
    let report = build_report(
        &title,
        &truth,
        &classes,
        &held_out,
        &main,
        &baselines,
        batches.as_deref(),
        spiking,
    );
    report.write(&out_dir, &opts.stem)?;
    let calls: Vec<String> = order.iter().map(|&i| table.label[i].clone()).collect();
    match &opts.embeddings {
        Some(p) => {
            let (x, d) = embeddings_of(p, &opts.embedding_layer, &table.cell_ids)?;
            let inputs = MapInputs {
                x: &x,
                d,
                input: "the embeddings",
                truth: &truth,
                calls: &calls,
                classes: &classes,
                n_total: None,
            };
            write_cell_map(&out_dir, &opts.stem, &title, &inputs, opts.seed)?;
        }
        None => {
            // the expression of (a seeded sample of) the cells; a data set whose expression cannot
            // be mapped still gets its evaluation
            let drawn = map_rows(truth.len(), MAX_MAP_CELLS, opts.seed);
            let pick = |v: &[String]| drawn.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
            let data_rows: Vec<usize> = drawn.iter().map(|&i| rows[i]).collect();
            let (t, c) = (pick(&truth), pick(&calls));
            let written = expression_matrix(&ds, &data_rows).and_then(|(x, d, input)| {
                let inputs = MapInputs {
                    x: &x,
                    d,
                    input: &input,
                    truth: &t,
                    calls: &c,
                    classes: &classes,
                    n_total: Some(truth.len()),
                };
                write_cell_map(&out_dir, &opts.stem, &title, &inputs, opts.seed)
            });
            if let Err(e) = written {
                eprintln!("warning: no map of the cells: {e}");
            }
        }
    }
    Ok(report)
}

/// The rows of the embeddings at `path` for `ids`, row-major, with their width.
fn embeddings_of(path: &Path, layer: &str, ids: &[String]) -> Result<(Vec<f32>, usize)> {
    let emb = super::inputs::load_embeddings(path, layer)?;
    let m = &emb.matrix;
    let own = super::inputs::cell_ids(m);
    let pos: HashMap<&str, usize> = own
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut x = Vec::with_capacity(ids.len() * m.n_cols);
    for id in ids {
        let r = *pos.get(id.as_str()).ok_or_else(|| {
            Error::input(path, format!("cell '{id}' of the predictions is not here"))
        })?;
        x.extend_from_slice(&m.data[r * m.n_cols..(r + 1) * m.n_cols]);
    }
    Ok((x, m.n_cols))
}

/// Genes kept for a map of the expression: the most variable ones.
const MAP_GENES: usize = 2000;

/// The expression of `rows` (normalised to 1e4 per cell and log1p-transformed when it holds counts)
/// on its [`MAP_GENES`] most variable genes, row-major, with their number and a caption.
fn expression_matrix(
    ds: &crate::data::Dataset,
    rows: &[usize],
) -> Result<(Vec<f32>, usize, String)> {
    use crate::analysis::correlation::{prepare_expression, ExpressionTransform};
    let mut sub = ds.select_cells(rows).matrix;
    let note = prepare_expression(&mut sub, ExpressionTransform::Auto);
    let n = sub.n_rows.max(1) as f64;
    let (mut sum, mut sq) = (vec![0f64; sub.n_cols], vec![0f64; sub.n_cols]);
    for (&j, &v) in sub.indices.iter().zip(&sub.data) {
        sum[j as usize] += v as f64;
        sq[j as usize] += (v as f64) * (v as f64);
    }
    let var: Vec<f64> = (0..sub.n_cols)
        .map(|j| sq[j] / n - (sum[j] / n).powi(2))
        .collect();
    let mut genes: Vec<usize> = (0..sub.n_cols).filter(|&j| var[j] > 0.0).collect();
    genes.sort_by(|&a, &b| var[b].total_cmp(&var[a]).then(a.cmp(&b)));
    genes.truncate(MAP_GENES);
    genes.sort_unstable();
    let kept = sub.select_cols(&genes);
    let how = if note.contains("log1p") {
        "log1p of counts per 1e4"
    } else {
        "as stored"
    };
    Ok((
        kept.to_dense(),
        genes.len(),
        format!(
            "the expression ({how}, {} most variable genes)",
            genes.len()
        ),
    ))
}
