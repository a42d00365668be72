//! Training SAEs on every row of an extraction folder without holding it in memory (`--max-inputs 0`):
//! one pass for the z-scores, then per epoch the parts in a seeded random order through a bounded
//! [`ShuffleBuffer`], then one pass for the final metrics. Several runs (layers x lambdas or ks) train
//! in the same passes: each block read from disk feeds every run, so a sweep reads the store once per
//! epoch instead of once per run.
//!
//! Memory: the shuffle buffer (`shuffle_buffer x d x 4` bytes per layer), one read block per layer,
//! and each run's parameters and Adam moments; none of it grows with the store.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;

use crate::activations::{ActivationStore, Provenance};
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::sae::config::{InputLevel, TrainConfig};
use crate::sae::metrics::MetricsAccumulator;
use crate::sae::model::Sae;
use crate::sae::run::{RunCore, RunSource};
use crate::sae::stream::{fit_zscores, ShuffleBuffer, StoreRows, READ_BLOCK};
use crate::sae::train::{batch_message, check_out_dir, epoch_rng, TrainOptions, TrainedRun};
use crate::sae::zscore;

/// Stream index of the generator that orders the parts of an epoch (distinct from the in-memory
/// shuffle's, the resampling's and the buffer's).
const PART_ORDER_STREAM: u64 = 2 << 32;
/// Stream index of the shuffle buffer's generator.
const BUFFER_STREAM: u64 = 3 << 32;

/// One run of a streaming pass.
#[derive(Debug, Clone)]
pub struct StreamRun {
    /// Layer trained on.
    pub layer: String,
    /// Its options (all runs of a pass share epochs, batch size, seed and buffer size).
    pub cfg: TrainConfig,
    /// Output folder.
    pub out: PathBuf,
}

/// Each layer's block z-scored with that layer's statistics.
fn zscored(blocks: &[Vec<f32>], zs: &[(Vec<f32>, Vec<f32>)]) -> Vec<Vec<f32>> {
    blocks
        .iter()
        .zip(zs)
        .map(|(b, (mean, std))| zscore::apply(b, mean, std))
        .collect()
}

/// Error unless the runs can share passes: same epochs, batch size, seed and buffer size.
fn check_shared(runs: &[StreamRun]) -> Result<()> {
    let Some(first) = runs.first() else {
        return Err(Error::invalid("nothing to train"));
    };
    let a = &first.cfg;
    for r in runs {
        let b = &r.cfg;
        if (b.epochs, b.batch_size, b.seed, b.shuffle_buffer)
            != (a.epochs, a.batch_size, a.seed, a.shuffle_buffer)
        {
            return Err(Error::invalid(format!(
                "{}: runs trained in one streaming pass must share --epochs, --batch-size, --seed and --shuffle-buffer",
                r.out.display()
            )));
        }
    }
    Ok(())
}

/// Train `runs` on every `level` row of the extraction folder `activations`, streaming. Returns one
/// result per run in order: `None` for a run paused by `opts.stop_after_epochs` (its checkpoint is
/// on disk), the finished run otherwise (with `resume`, a finished run is loaded, not retrained).
pub fn train_streaming(
    rt: &Runtime,
    activations: &Path,
    level: InputLevel,
    runs: &[StreamRun],
    opts: &TrainOptions,
) -> Result<Vec<Option<TrainedRun>>> {
    rt.require_f32("SAE training")?;
    check_shared(runs)?;
    let store = ActivationStore::open(activations)?;
    // every layer is checked before anything is read
    for r in runs {
        store.layer_tensor(&r.layer, level == InputLevel::Tokens)?;
        r.cfg.validate(store.manifest.d_model, 1)?;
    }
    let mut results: Vec<Option<TrainedRun>> = Vec::with_capacity(runs.len());
    let mut todo: Vec<usize> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        match check_out_dir(&r.out, &r.cfg, opts.resume)? {
            Some(metrics) => results.push(Some(TrainedRun {
                sae: Sae::load(&r.out)?,
                metrics,
                skipped: true,
                seconds: 0.0,
                inputs_per_second: 0.0,
            })),
            None => {
                results.push(None);
                todo.push(i);
            }
        }
    }
    if todo.is_empty() {
        return Ok(results);
    }
    // the layers the unfinished runs need, each read once per pass
    let mut layers: Vec<String> = Vec::new();
    for &i in &todo {
        if !layers.contains(&runs[i].layer) {
            layers.push(runs[i].layer.clone());
        }
    }
    let slot = |layer: &str| layers.iter().position(|l| l == layer).unwrap_or(0);
    let rows = StoreRows::new(&store, level, &layers)?;
    let (n, d) = (rows.n_rows(), rows.d());
    let zs = fit_zscores(&rows)?;
    let mut cores: Vec<(usize, RunCore<'_>)> = Vec::with_capacity(todo.len());
    for &i in &todo {
        let r = &runs[i];
        r.cfg.validate(d, n)?;
        let (mean, std) = zs[slot(&r.layer)].clone();
        cores.push((
            slot(&r.layer),
            RunCore::open(rt, &r.cfg, &r.out, opts, n, d, mean, std)?,
        ));
    }
    let cfg0 = &runs[todo[0]].cfg;
    let steps: u64 = cores.iter().map(|(_, c)| c.total_steps as u64).sum();
    let bar = crate::progress::bar(opts.progress, steps, "steps");
    bar.set_position(cores.iter().map(|(_, c)| c.state.meta.step as u64).sum());
    let t0 = Instant::now();
    let first_epoch = cores.iter().map(|(_, c)| c.epoch()).min().unwrap_or(0);
    for epoch in first_epoch..cfg0.epochs {
        let active: Vec<bool> = cores.iter().map(|(_, c)| c.epoch() == epoch).collect();
        if !active.iter().any(|a| *a) {
            continue;
        }
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, cfg0.epochs));
        for ((_, c), a) in cores.iter_mut().zip(&active) {
            if *a {
                c.begin_epoch();
            }
        }
        let mut order = rows.in_order();
        order.shuffle(&mut epoch_rng(cfg0.seed, PART_ORDER_STREAM + epoch as u64));
        let mut buffer = ShuffleBuffer::new(
            cfg0.shuffle_buffer,
            layers.len(),
            d,
            cfg0.batch_size,
            epoch_rng(cfg0.seed, BUFFER_STREAM + epoch as u64),
        );
        let mut emit = |b: &crate::sae::stream::Batch<'_>| -> Result<()> {
            for ((li, c), a) in cores.iter_mut().zip(&active) {
                if *a {
                    let pool = &b.pool[*li][..b.pool_rows * d];
                    let stats = c.step(&b.layers[*li], b.rows, pool)?;
                    bar.inc(1);
                    bar.set_message(batch_message(&stats));
                }
            }
            Ok(())
        };
        rows.visit(&order, READ_BLOCK, |k, blocks| {
            buffer.push(&zscored(blocks, &zs), k, &mut emit)
        })?;
        buffer.drain(&mut emit)?;
        for ((_, c), a) in cores.iter_mut().zip(&active) {
            if *a {
                c.end_epoch();
                c.checkpoint()?;
            }
        }
        if opts
            .stop_after_epochs
            .is_some_and(|s| cores.iter().all(|(_, c)| c.epochs_this_call() >= s))
            && epoch + 1 < cfg0.epochs
        {
            bar.finish_and_clear();
            for (_, c) in cores.iter_mut() {
                c.wait_checkpoint()?;
            }
            return Ok(results);
        }
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    // the final metrics of every run over every row, in one more pass
    let parts: Vec<_> = cores.iter().map(|(_, c)| c.eval_parts()).collect();
    let mut accs: Vec<MetricsAccumulator> = cores
        .iter()
        .map(|(_, c)| MetricsAccumulator::new(d, c.cfg.d_sae))
        .collect();
    rows.visit(&rows.in_order(), READ_BLOCK, |k, blocks| {
        let z = zscored(blocks, &zs);
        for (((li, c), (p, th)), acc) in cores.iter().zip(&parts).zip(accs.iter_mut()) {
            acc.add(c.device(), p, c.eval_sparsifier(th.as_deref())?, &z[*li], k)?;
        }
        Ok(())
    })?;
    drop(parts);
    for ((_, core), (acc, &i)) in cores.into_iter().zip(accs.iter().zip(&todo)) {
        let r = &runs[i];
        let source = RunSource {
            provenance: Provenance::of_store(&store, Some(&r.layer)),
            level,
            n,
        };
        results[i] = Some(core.finish(acc.finish(), &source, seconds)?);
    }
    Ok(results)
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::activations::{Manifest, StoreWriter, TokenIndex, FORMAT};
    use crate::data::DenseMatrix;
    use crate::sae::saelens::WEIGHTS_FILE;
    use crate::sae::train::METRICS_FILE;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    pub(super) const D: usize = 12;

    /// A store of `cells` cells x 20 tokens in parts of 8 cells, two layers of planted sparse codes:
    /// each token is 2 of 24 fixed random atoms with positive weights, plus 1% noise, offset and
    /// scaled per dimension (so the z-score matters). Layer "1" uses other atoms than layer "0".
    pub(super) fn planted_store(dir: &Path, cells: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let atoms: Vec<Vec<f32>> = (0..48)
            .map(|_| (0..D).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect())
            .collect();
        let ids: Vec<String> = (0..cells).map(|i| format!("c{i}")).collect();
        let manifest = Manifest {
            format: FORMAT.into(),
            software_version: "test".into(),
            model: serde_json::json!({"name": "planted"}),
            data: serde_json::json!({"file": "planted"}),
            options: serde_json::json!({}),
            layers: vec!["0".into(), "1".into()],
            d_model: D,
            n_cells: cells,
            seed: 0,
            tokens: true,
            cell_parts: vec![],
            token_parts: vec![],
            complete: false,
            shard: None,
        };
        let (mut w, _) = StoreWriter::create(dir, manifest, &ids, false).unwrap();
        for start in (0..cells).step_by(8) {
            let cell_idx: Vec<i64> = (start..(start + 8).min(cells)).map(|c| c as i64).collect();
            let mut index = TokenIndex::default();
            let mut layers = [Vec::new(), Vec::new()];
            for &c in &cell_idx {
                for p in 0..20 {
                    index.cell_index.push(c);
                    index.gene_id.push(p);
                    index.position.push(p);
                    for (l, out) in layers.iter_mut().enumerate() {
                        let mut x = vec![0f32; D];
                        for _ in 0..2 {
                            let a = &atoms[l * 24 + rng.random_range(0..24)];
                            let w = 0.5 + rng.random::<f32>();
                            x.iter_mut().zip(a).for_each(|(v, u)| *v += w * u);
                        }
                        for (j, v) in x.iter_mut().enumerate() {
                            *v = (*v + 0.01 * (rng.random::<f32>() - 0.5)) * (1.0 + j as f32) + 3.0;
                        }
                        out.extend(x);
                    }
                }
            }
            let t = index.cell_index.len();
            let m0 = DenseMatrix::new(t, D, layers[0].clone()).unwrap();
            let m1 = DenseMatrix::new(t, D, layers[1].clone()).unwrap();
            let cm = DenseMatrix::new(cell_idx.len(), D, vec![0.0; cell_idx.len() * D]).unwrap();
            w.write_chunk(
                &cell_idx,
                &[("layer_0".into(), &cm), ("layer_1".into(), &cm)],
                Some((&index, &[("layer_0".into(), &m0), ("layer_1".into(), &m1)])),
            )
            .unwrap();
        }
        w.finish().unwrap();
    }

    pub(super) fn cfg(lambda: f64) -> TrainConfig {
        TrainConfig {
            d_sae: 24,
            lambda,
            epochs: 6,
            batch_size: 64,
            lr: 3e-3,
            max_inputs: 0,
            shuffle_buffer: 300,
            ..TrainConfig::default()
        }
    }

    pub(super) fn run(layer: &str, lambda: f64, out: &Path) -> StreamRun {
        StreamRun {
            layer: layer.into(),
            cfg: cfg(lambda),
            out: out.to_path_buf(),
        }
    }

    pub(super) fn bytes(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(dir.join(WEIGHTS_FILE)).unwrap(),
            std::fs::read(dir.join(METRICS_FILE)).unwrap(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use crate::sae::input::{read_inputs, InputSpec};
    use crate::sae::train::train_partial;

    #[test]
    fn one_pass_z_scores_equal_the_in_memory_fit() {
        let tmp = tempfile::tempdir().unwrap();
        let store_dir = tmp.path().join("acts");
        planted_store(&store_dir, 20);
        let store = ActivationStore::open(&store_dir).unwrap();
        let rows = StoreRows::new(&store, InputLevel::Tokens, &["1".into(), "0".into()]).unwrap();
        assert_eq!(rows.n_rows(), 400);
        let z = fit_zscores(&rows).unwrap();
        for (k, layer) in ["1", "0"].iter().enumerate() {
            let m = store.token_matrix(layer, None, 0).unwrap().matrix;
            let (mean, std) = crate::sae::zscore::fit(&m.data, D);
            for j in 0..D {
                assert!((z[k].0[j] - mean[j]).abs() <= 1e-6 * mean[j].abs().max(1.0));
                assert!((z[k].1[j] - std[j]).abs() <= 1e-6 * std[j]);
            }
        }
    }

    #[test]
    fn runs_sharing_a_pass_equal_runs_alone_and_resume_is_exact() {
        let rt = Runtime::cpu().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let store_dir = tmp.path().join("acts");
        planted_store(&store_dir, 40);
        let opts = TrainOptions::default();
        // three runs (two layers, two lambdas) in one pass
        let together = [
            run("0", 1.0, &tmp.path().join("t0_1")),
            run("0", 3.0, &tmp.path().join("t0_3")),
            run("1", 1.0, &tmp.path().join("t1_1")),
        ];
        let res = train_streaming(&rt, &store_dir, InputLevel::Tokens, &together, &opts).unwrap();
        assert!(res.iter().all(|r| r.as_ref().is_some_and(|r| !r.skipped)));
        for r in &together {
            let name = r.out.file_name().unwrap().to_string_lossy().to_string();
            let alone = tmp.path().join(format!("alone_{name}"));
            let single = [StreamRun {
                out: alone.clone(),
                ..r.clone()
            }];
            train_streaming(&rt, &store_dir, InputLevel::Tokens, &single, &opts).unwrap();
            assert_eq!(bytes(&alone), bytes(&r.out), "{}", r.out.display());
        }
        // interrupted after 2 epochs, then resumed: the same bytes
        let paused = [run("1", 1.0, &tmp.path().join("paused"))];
        let stop = TrainOptions {
            stop_after_epochs: Some(2),
            ..TrainOptions::default()
        };
        let r = train_streaming(&rt, &store_dir, InputLevel::Tokens, &paused, &stop).unwrap();
        assert!(r[0].is_none());
        let resume = TrainOptions {
            resume: true,
            ..TrainOptions::default()
        };
        train_streaming(&rt, &store_dir, InputLevel::Tokens, &paused, &resume).unwrap();
        assert_eq!(bytes(&paused[0].out), bytes(&together[2].out));
        // a finished run is kept with --resume and refused without it
        let again = train_streaming(&rt, &store_dir, InputLevel::Tokens, &paused, &resume).unwrap();
        assert!(again[0].as_ref().unwrap().skipped);
        let e = train_streaming(&rt, &store_dir, InputLevel::Tokens, &paused, &opts).unwrap_err();
        assert!(e.to_string().contains("already holds a trained SAE"), "{e}");
        // runs that cannot share passes, and a layer that was not extracted, are refused up front
        let mut other = run("0", 1.0, &tmp.path().join("x"));
        other.cfg.batch_size = 32;
        let e = train_streaming(
            &rt,
            &store_dir,
            InputLevel::Tokens,
            &[run("0", 1.0, &tmp.path().join("y")), other],
            &opts,
        )
        .unwrap_err();
        assert!(e.to_string().contains("must share"), "{e}");
        let e = train_streaming(
            &rt,
            &store_dir,
            InputLevel::Tokens,
            &[run("7", 1.0, &tmp.path().join("z"))],
            &opts,
        )
        .unwrap_err();
        assert!(e.to_string().contains("layer 7 was not extracted"), "{e}");
        assert!(!tmp.path().join("y").exists() && !tmp.path().join("z").exists());
    }

    #[test]
    fn streaming_recovers_planted_codes_as_well_as_training_in_memory() {
        let rt = Runtime::cpu().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let store_dir = tmp.path().join("acts");
        planted_store(&store_dir, 60);
        let mut c = cfg(0.3);
        c.epochs = 12;
        let streamed = train_streaming(
            &rt,
            &store_dir,
            InputLevel::Tokens,
            &[StreamRun {
                layer: "0".into(),
                cfg: c.clone(),
                out: tmp.path().join("s"),
            }],
            &TrainOptions::default(),
        )
        .unwrap()
        .pop()
        .flatten()
        .unwrap();
        let inputs = read_inputs(&InputSpec {
            path: &store_dir,
            layer: Some("0"),
            level: InputLevel::Tokens,
            key: None,
            max_rows: 0,
            sample_seed: 0,
        })
        .unwrap();
        let mem = train_partial(
            &rt,
            &inputs,
            &c,
            &tmp.path().join("m"),
            &TrainOptions::default(),
        )
        .unwrap()
        .unwrap();
        let (s, m) = (&streamed.metrics.metrics, &mem.metrics.metrics);
        assert_eq!(s.n_inputs, 1200);
        assert_eq!(streamed.metrics.steps, mem.metrics.steps);
        // planted: 2 active atoms per token; both recover most of the variance
        assert!(
            s.r2 > 0.8 && m.r2 > 0.8,
            "streamed {} memory {}",
            s.r2,
            m.r2
        );
        assert!(
            (s.r2 - m.r2).abs() < 0.03,
            "streamed {} memory {}",
            s.r2,
            m.r2
        );
    }
}

#[cfg(test)]
mod arch_resume_tests {
    use super::tests_support::*;
    use super::*;
    use crate::sae::config::Arch;

    /// Every trainable architecture's state (JumpReLU thresholds and their Adam moments, the
    /// steps-since-fired counts of the auxiliary loss, the BatchTopK threshold) survives a
    /// checkpoint: paused after 2 epochs and resumed equals uninterrupted, byte for byte.
    #[test]
    fn paused_and_resumed_equals_uninterrupted_for_every_architecture() {
        let rt = Runtime::cpu().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("acts");
        planted_store(&store, 16);
        for (name, arch, widths, lambda) in [
            ("jumprelu", Arch::Jumprelu, vec![], 1.0),
            ("matryoshka", Arch::Matryoshka, vec![8], 0.0),
            ("topk", Arch::Topk, vec![], 0.0),
        ] {
            let cfg = TrainConfig {
                arch,
                k: 3,
                matryoshka_widths: widths,
                dead_window: 2,
                tied_init: true,
                ..cfg(lambda)
            };
            let one = |dir: &str| StreamRun {
                layer: "0".into(),
                cfg: cfg.clone(),
                out: tmp.path().join(format!("{name}_{dir}")),
            };
            let whole = [one("whole")];
            train_streaming(
                &rt,
                &store,
                InputLevel::Tokens,
                &whole,
                &TrainOptions::default(),
            )
            .unwrap();
            let parts = [one("parts")];
            let stop = TrainOptions {
                stop_after_epochs: Some(2),
                ..TrainOptions::default()
            };
            assert!(
                train_streaming(&rt, &store, InputLevel::Tokens, &parts, &stop).unwrap()[0]
                    .is_none()
            );
            let resume = TrainOptions {
                resume: true,
                ..TrainOptions::default()
            };
            train_streaming(&rt, &store, InputLevel::Tokens, &parts, &resume).unwrap();
            assert_eq!(bytes(&parts[0].out), bytes(&whole[0].out), "{name}");
        }
    }
}
