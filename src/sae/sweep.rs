//! Sweeps over layers x lambdas: one run folder per pair, a Table-2-style table and an L0-vs-R^2 plot.
//! With `max_inputs` 0 every run trains in the same streaming passes over the store.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;

use crate::activations::ActivationStore;
use crate::error::{Error, Result};
use crate::io::lock::OutputLock;
use crate::io::table::write_table;
use crate::plot::{save_figure, Figure, FONT};
use crate::runtime::Runtime;
use crate::sae::config::{Arch, InputLevel, TrainConfig};
use crate::sae::input::{read_inputs, InputSpec};
use crate::sae::stream_train::{train_streaming, StreamRun};
use crate::sae::train::{check_out_dir, train, RunMetrics, TrainOptions};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    /// Layers (paper: 0, 6, 11).
    pub layers: Vec<String>,
    /// L1 coefficients (paper: 1, 3, 10), or L0 coefficients for JumpReLU; for the TopK family
    /// (TopK, BatchTopK, Matryoshka) the k values come from `ks`.
    pub lambdas: Vec<f64>,
    /// k values for TopK / BatchTopK sweeps (ignored for the standard SAE).
    pub ks: Vec<usize>,
    /// Options shared by every run (its `lambda` / `k` are overridden).
    pub base: TrainConfig,
    /// Tokens or cells.
    pub level: InputLevel,
}

/// One finished run of a sweep.
#[derive(Debug, Clone)]
pub struct SweepRow {
    /// Layer.
    pub layer: String,
    /// Run folder.
    pub dir: PathBuf,
    /// Its metrics.
    pub metrics: RunMetrics,
}

/// Folder name of a run: `layer11_lambda3`, `layer11_topk32`, `layer11_jumprelu_lambda1`.
pub fn run_name(layer: &str, cfg: &TrainConfig) -> String {
    match cfg.arch {
        Arch::Standard => format!("layer{layer}_lambda{}", cfg.lambda),
        a if !a.uses_k() => format!("layer{layer}_{a}_lambda{}", cfg.lambda),
        a => format!("layer{layer}_{a}{}", cfg.k),
    }
}

fn configs(spec: &SweepSpec) -> Vec<TrainConfig> {
    match spec.base.arch {
        a if !a.uses_k() => spec
            .lambdas
            .iter()
            .map(|&lambda| TrainConfig {
                lambda,
                ..spec.base.clone()
            })
            .collect(),
        _ => spec
            .ks
            .iter()
            .map(|&k| TrainConfig {
                k,
                ..spec.base.clone()
            })
            .collect(),
    }
}

/// Run (or, with `resume`, complete) a sweep into `out`; returns the rows in sweep order.
pub fn run_sweep(
    rt: &Runtime,
    activations: &Path,
    spec: &SweepSpec,
    out: &Path,
    opts: &TrainOptions,
) -> Result<Vec<SweepRow>> {
    rt.require_f32("SAE training")?;
    if spec.layers.is_empty() {
        return Err(Error::invalid("--layers is empty"));
    }
    let cfgs = configs(spec);
    if cfgs.is_empty() {
        return Err(Error::invalid(
            "nothing to sweep: --lambdas (or --ks) is empty",
        ));
    }
    // Validate everything before training anything.
    let store = ActivationStore::open(activations)?;
    for l in &spec.layers {
        if !store.manifest.layers.iter().any(|x| x == l) {
            return Err(Error::input(
                activations,
                format!(
                    "layer {l} was not extracted (available: {})",
                    store.manifest.layers.join(", ")
                ),
            ));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for layer in &spec.layers {
        for cfg in &cfgs {
            cfg.validate(store.manifest.d_model, 1)?;
            let name = run_name(layer, cfg);
            if !names.insert(name.clone()) {
                return Err(Error::invalid(format!(
                    "run {name} is listed twice: --layers, --lambdas and --ks must not repeat a value"
                )));
            }
            check_out_dir(&out.join(&name), cfg, opts.resume)?;
        }
    }
    let _lock = OutputLock::acquire(out)?;
    let mut rows = Vec::new();
    if spec.base.max_inputs == 0 {
        // every row, streamed: all runs share each pass over the store
        let runs: Vec<StreamRun> = spec
            .layers
            .iter()
            .flat_map(|layer| {
                cfgs.iter().map(move |cfg| StreamRun {
                    layer: layer.clone(),
                    cfg: cfg.clone(),
                    out: out.join(run_name(layer, cfg)),
                })
            })
            .collect();
        let opts = TrainOptions {
            stop_after_epochs: None,
            ..opts.clone()
        };
        let done = train_streaming(rt, activations, spec.level, &runs, &opts)?;
        for (r, t) in runs.into_iter().zip(done) {
            let t = t.ok_or_else(|| Error::invalid("training stopped before the last epoch"))?;
            rows.push(SweepRow {
                layer: r.layer,
                dir: r.out,
                metrics: t.metrics,
            });
        }
        write_sweep_outputs(out, &rows)?;
        return Ok(rows);
    }
    for layer in &spec.layers {
        let inputs = read_inputs(&InputSpec {
            path: activations,
            layer: Some(layer),
            level: spec.level,
            key: None,
            max_rows: spec.base.max_inputs,
            sample_seed: spec.base.sample_seed,
        })?;
        for cfg in &cfgs {
            let dir = out.join(run_name(layer, cfg));
            let run = train(rt, &inputs, cfg, &dir, opts)?;
            rows.push(SweepRow {
                layer: layer.clone(),
                dir,
                metrics: run.metrics,
            });
        }
    }
    write_sweep_outputs(out, &rows)?;
    Ok(rows)
}

/// Write `sweep.csv` / `sweep.parquet` and `l0_vs_r2.png` / `.svg`.
pub fn write_sweep_outputs(out: &Path, rows: &[SweepRow]) -> Result<()> {
    let col = |f: &dyn Fn(&SweepRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    // counts as int64 (pandas' integer type); `k` missing (not 0) for L1 runs
    let icol = |f: &dyn Fn(&SweepRow) -> u64| {
        rows.iter()
            .map(|r| i64::try_from(f(r)).unwrap_or(i64::MAX))
            .collect::<Vec<i64>>()
    };
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "layer".into(),
                rows.iter().map(|r| r.layer.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "arch".into(),
                rows.iter()
                    .map(|r| r.metrics.arch.to_string())
                    .collect::<Vec<_>>(),
            ),
            Column::new("lambda".into(), col(&|r| r.metrics.lambda)),
            Column::new(
                "k".into(),
                rows.iter()
                    .map(|r| r.metrics.k.map(|k| k as i64))
                    .collect::<Vec<Option<i64>>>(),
            ),
            Column::new("L0".into(), col(&|r| r.metrics.metrics.l0)),
            Column::new("R2".into(), col(&|r| r.metrics.metrics.r2)),
            Column::new("MSE".into(), col(&|r| r.metrics.metrics.mse)),
            Column::new("alive".into(), icol(&|r| r.metrics.metrics.alive as u64)),
            Column::new("dead".into(), icol(&|r| r.metrics.metrics.dead as u64)),
            Column::new(
                "alive_pct".into(),
                col(&|r| 100.0 * r.metrics.metrics.alive as f64 / r.metrics.d_sae.max(1) as f64),
            ),
            Column::new("d_sae".into(), icol(&|r| r.metrics.d_sae as u64)),
            Column::new(
                "n_inputs".into(),
                icol(&|r| r.metrics.metrics.n_inputs as u64),
            ),
            Column::new("epochs".into(), icol(&|r| r.metrics.epochs as u64)),
            Column::new(
                "run".into(),
                rows.iter()
                    .map(|r| {
                        r.dir
                            .file_name()
                            .map(|s| s.to_string_lossy().to_string())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>(),
            ),
        ],
    )
    .map_err(|e| Error::invalid(format!("cannot build sweep table: {e}")))?;
    write_table(&mut df, out, "sweep")?;
    save_figure(&out.join("l0_vs_r2"), (800, 560), &L0VsR2 { rows })
}

/// L0 (x, log scale) against R^2 (y), one line per layer through its runs.
struct L0VsR2<'a> {
    rows: &'a [SweepRow],
}

impl Figure for L0VsR2<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let l0: Vec<f64> = self
            .rows
            .iter()
            .map(|r| r.metrics.metrics.l0.max(0.1))
            .collect();
        let r2: Vec<f64> = self
            .rows
            .iter()
            .map(|r| r.metrics.metrics.r2)
            .filter(|v| v.is_finite())
            .collect();
        let (xmin, xmax) = l0
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let (ymin, ymax) = r2
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let (xmin, xmax) = if xmin < xmax {
            (xmin / 1.5, xmax * 1.5)
        } else {
            (xmin / 2.0, xmin * 2.0 + 1.0)
        };
        let (ymin, ymax) = if ymin < ymax {
            let pad = 0.1 * (ymax - ymin);
            (ymin - pad, (ymax + pad).min(1.05))
        } else if ymin.is_finite() && ymin < f64::MAX {
            (ymin - 0.1, ymin + 0.1)
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(root)
            .caption("SAE sparsity vs reconstruction", (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (xmin..xmax)
                    .log_scale()
                    .with_key_points(log_ticks(xmin, xmax)),
                ymin..ymax,
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("L0 (active features per input)")
            .y_desc("R²")
            .x_label_formatter(&|v| format!("{v}"))
            .label_style((FONT, 14))
            .draw()
            .map_err(|e| e.to_string())?;
        let mut layers: Vec<&str> = Vec::new();
        for r in self.rows {
            if !layers.contains(&r.layer.as_str()) {
                layers.push(&r.layer);
            }
        }
        for (li, layer) in layers.iter().enumerate() {
            let color = Palette99::pick(li).to_rgba();
            let mut pts: Vec<(f64, f64, String)> = self
                .rows
                .iter()
                .filter(|r| r.layer == *layer && r.metrics.metrics.r2.is_finite())
                .map(|r| {
                    let label = match r.metrics.k {
                        Some(k) => format!("k={k}"),
                        None => format!("λ={}", r.metrics.lambda),
                    };
                    (r.metrics.metrics.l0.max(0.1), r.metrics.metrics.r2, label)
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(format!("layer {layer}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    pts.iter()
                        .map(|p| Circle::new((p.0, p.1), 5, color.filled())),
                )
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(pts.iter().map(|p| {
                    Text::new(
                        p.2.clone(),
                        (p.0, p.1),
                        (FONT, 13).into_font().color(&BLACK),
                    )
                }))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Tick values of a log axis over `[lo, hi]`: the 1-2-5 series, or every 1..9 multiple of a power
/// of ten when the range spans less than a decade (plotters' default shows only powers of ten, so a
/// sweep within one decade got a single label).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let series = |mults: &[f64]| -> Vec<f64> {
        let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (e0..=e1)
            .flat_map(|e| mults.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| *v >= lo && *v <= hi)
            .collect()
    };
    let t = series(&[1.0, 2.0, 5.0]);
    if t.len() >= 3 {
        return t;
    }
    let t = series(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if t.len() >= 3 {
        return t;
    }
    // a narrow range: evenly spaced ticks at a 1-2-5 step
    let raw = (hi - lo) / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [5.0, 2.0, 1.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s <= raw)
        .unwrap_or(mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_ticks_label_narrow_ranges() {
        assert_eq!(
            super::log_ticks(3.0, 300.0),
            vec![5.0, 10.0, 20.0, 50.0, 100.0, 200.0]
        );
        assert_eq!(
            super::log_ticks(20.0, 70.0),
            vec![20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
        );
    }

    use super::*;

    #[test]
    fn lambda_architectures_sweep_lambdas_and_the_topk_family_sweeps_k() {
        let spec = |arch| SweepSpec {
            layers: vec!["11".into()],
            lambdas: vec![1.0, 3.0],
            ks: vec![16, 32, 64],
            base: TrainConfig {
                arch,
                ..TrainConfig::default()
            },
            level: InputLevel::Tokens,
        };
        let names = |arch| -> Vec<String> {
            configs(&spec(arch))
                .iter()
                .map(|c| run_name("11", c))
                .collect()
        };
        assert_eq!(
            names(Arch::Standard),
            ["layer11_lambda1", "layer11_lambda3"]
        );
        assert_eq!(
            names(Arch::Jumprelu),
            ["layer11_jumprelu_lambda1", "layer11_jumprelu_lambda3"]
        );
        assert_eq!(
            names(Arch::Matryoshka),
            [
                "layer11_matryoshka_batchtopk16",
                "layer11_matryoshka_batchtopk32",
                "layer11_matryoshka_batchtopk64"
            ]
        );
        assert_eq!(names(Arch::Topk).len(), 3);
    }
}
