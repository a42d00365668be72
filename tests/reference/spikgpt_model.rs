//! Model-level checks: collapsing identical token copies is exact, annotation does not depend on
//! cell order or batch size, training is reproducible byte for byte and learns a planted structure.

use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::activations::Provenance;
use scsae::spikgpt::activity::ForwardStats;
use scsae::spikgpt::annotate::predict_proba;
use scsae::spikgpt::config::{ModelConfig, TrainConfig};
use scsae::spikgpt::layers::Pass;
use scsae::spikgpt::lif::FireMode;
use scsae::spikgpt::model::SpikGpt;
use scsae::spikgpt::optim::Sgd;
use scsae::spikgpt::train::{train, TrainData, TrainOptions};
use scsae::Runtime;

fn small_config(k: usize) -> ModelConfig {
    ModelConfig {
        input_dim: k,
        width: 16,
        heads: 2,
        tokens: 5,
        time_steps: 3,
        ..ModelConfig::default()
    }
}

/// Planted clusters: `c` classes around random centres in `k` dims.
fn planted(n_per: usize, c: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..c)
        .map(|_| (0..k).map(|_| rng.random::<f32>() * 6.0 - 3.0).collect())
        .collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n_per * c {
        let cls = i % c;
        for c in &centres[cls] {
            x.push(c + (rng.random::<f32>() - 0.5) * 1.5);
        }
        y.push(format!("type{cls}"));
    }
    (x, y)
}

#[test]
fn collapsed_tokens_equal_full_token_computation() {
    let k = 6;
    let model = SpikGpt::new(&small_config(k), 3, &Device::Cpu, 3).unwrap();
    let (x, _) = planted(10, 3, k, 1);
    let mut a_stats = ForwardStats::default();
    let a = predict_proba(&model, &x, 64, Some(&mut a_stats)).unwrap();
    let mut full = model.clone();
    full.collapse_identical_tokens = false;
    let mut b_stats = ForwardStats::default();
    let b = predict_proba(&full, &x, 64, Some(&mut b_stats)).unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "collapsed vs full tokens differ by {worst}");
    // the same firing rates in every layer
    for ((n1, r1), (n2, r2)) in a_stats.firing_rates().iter().zip(b_stats.firing_rates()) {
        assert_eq!(n1, &n2);
        assert!((r1 - r2).abs() < 1e-9, "{n1}: {r1} vs {r2}");
    }
    // the network does spike
    assert!(a_stats.firing_rates().iter().any(|(_, r)| *r > 0.01));
}

/// One training step (forward in training mode, cross-entropy, backward) with the pass's dropout
/// generator seeded by `seed`: logits, loss, gradients and BatchNorm running statistics, by name.
type Step = (Vec<f32>, Vec<(String, Vec<f32>)>, Vec<(String, Vec<f32>)>);

/// Forward in training mode (dropout generator seeded by `seed`), cross-entropy, backward.
fn forward_backward(
    model: &SpikGpt,
    x: &[f32],
    y: &[u32],
    seed: u64,
) -> (candle_core::Tensor, candle_core::backprop::GradStore) {
    let k = model.config.input_dim;
    let xt = candle_core::Tensor::from_slice(x, (x.len() / k, k), &Device::Cpu).unwrap();
    let yt = candle_core::Tensor::from_slice(y, y.len(), &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pass = Pass {
        train: true,
        fire: FireMode::Spike,
        rng: Some(&mut rng),
        stats: None,
        multiplicity: 1,
    };
    let logits = model.forward(&xt, &mut pass).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &yt).unwrap();
    let grads = loss.backward().unwrap();
    (logits, grads)
}

fn training_step(model: &SpikGpt, x: &[f32], y: &[u32], seed: u64) -> Step {
    let (logits, grads) = forward_backward(model, x, y, seed);
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let g = model
        .params
        .trainable
        .iter()
        .map(|(n, v)| {
            let g = grads
                .get(v.as_tensor())
                .map(flat)
                .unwrap_or_else(|| vec![0.0; v.elem_count()]);
            (n.clone(), g)
        })
        .collect();
    let b = model
        .params
        .buffers
        .iter()
        .map(|(n, v)| (n.clone(), flat(v.as_tensor())))
        .collect();
    (flat(&logits), g, b)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn bounded_memory_dropout_tail_equals_full_token_training() {
    // The paper's training mode (dropout on, one block) computed from one token per cell plus sparse
    // per-token corrections must equal the straightforward pass over m physical tokens: logits,
    // every parameter's gradient and the BatchNorm running statistics, for two neuron variants.
    let k = 6;
    let soft_atan = {
        let mut c = small_config(k);
        c.lif.v_reset = None;
        c.lif.decay_input = false;
        c.lif.detach_reset = false;
        c.lif.surrogate = scsae::spikgpt::Surrogate::Atan { alpha: 2.0 };
        c
    };
    for cfg in [small_config(k), soft_atan] {
        let cfg = ModelConfig {
            dropout: 0.3,
            tokens: 7,
            ..cfg
        };
        let (x, labels) = planted(4, 3, k, 5);
        let y: Vec<u32> = labels
            .iter()
            .map(|l| l.trim_start_matches("type").parse().unwrap())
            .collect();
        let tail = SpikGpt::new(&cfg, 3, &Device::Cpu, 9).unwrap();
        let mut full = SpikGpt::new(&cfg, 3, &Device::Cpu, 9).unwrap();
        full.collapse_identical_tokens = false;
        {
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let probe = Pass {
                train: true,
                fire: FireMode::Spike,
                rng: Some(&mut rng),
                stats: None,
                multiplicity: 1,
            };
            assert!(tail.uses_token_tail(&probe) && !full.uses_token_tail(&probe));
        }
        let (la, ga, ba) = training_step(&tail, &x, &y, 77);
        let (lb, gb, bb) = training_step(&full, &x, &y, 77);
        let d = max_abs_diff(&la, &lb);
        assert!(d < 1e-5, "logits differ by {d}");
        let mut fc2_grad = 0.0f32;
        for ((na, a), (nb, b)) in ga.iter().zip(&gb) {
            assert_eq!(na, nb);
            let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            // f32 rounding differs between the two summation orders; through the surrogate
            // gradients of the attention neurons it reaches ~1e-4 of a tensor's largest gradient.
            let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = max_abs_diff(a, b);
            assert!(
                d <= 1e-6 + 1e-3 * amax,
                "gradient of {na} differs by {d} (largest {amax}, scale {scale})"
            );
            if na.contains("mlp.fc2") || na.contains("mlp.fc1") {
                fc2_grad = fc2_grad.max(b.iter().fold(0.0f32, |m, v| m.max(v.abs())));
            }
        }
        assert!(
            fc2_grad > 1e-4,
            "the MLP gets no gradient: the check would be vacuous"
        );
        for ((na, a), (_, b)) in ba.iter().zip(&bb) {
            let d = max_abs_diff(a, b);
            assert!(d < 1e-5, "running statistic {na} differs by {d}");
        }
        // Three SGD steps (momentum, weight decay, the paper's lr) on each: the weights and the
        // BatchNorm statistics stay equal to 1e-5.
        let mut opt_a = Sgd::new(0.9, 1e-4);
        let mut opt_b = Sgd::new(0.9, 1e-4);
        for step in 0..3 {
            for (model, opt) in [(&tail, &mut opt_a), (&full, &mut opt_b)] {
                let (_, grads) = forward_backward(model, &x, &y, 100 + step);
                opt.step(&model.params.trainable, &grads, 0.01).unwrap();
            }
        }
        let flat = |v: &candle_core::Var| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        for (name, va) in tail.params.trainable.iter().chain(&tail.params.buffers) {
            let vb = full
                .params
                .trainable
                .get(name)
                .or_else(|| full.params.buffers.get(name))
                .unwrap();
            let d = max_abs_diff(&flat(va), &flat(vb));
            assert!(d < 1e-5, "after 3 steps {name} differs by {d}");
        }
        // A different dropout seed gives a different step (the masks are really used).
        let (lc, _, _) =
            training_step(&SpikGpt::new(&cfg, 3, &Device::Cpu, 9).unwrap(), &x, &y, 78);
        assert!(max_abs_diff(&la, &lc) > 1e-4);
    }
}

#[test]
fn annotation_ignores_order_and_batch_size() {
    let k = 6;
    let model = SpikGpt::new(&small_config(k), 3, &Device::Cpu, 5).unwrap();
    let (x, _) = planted(20, 3, k, 2);
    let n = x.len() / k;
    let base = predict_proba(&model, &x, 256, None).unwrap();
    let mut perm: Vec<usize> = (0..n).collect();
    perm.reverse();
    perm.swap(3, 17);
    let xp: Vec<f32> = perm
        .iter()
        .flat_map(|&i| x[i * k..(i + 1) * k].to_vec())
        .collect();
    for bs in [1, 7, 256] {
        let p = predict_proba(&model, &xp, bs, None).unwrap();
        for (row, &i) in perm.iter().enumerate() {
            for c in 0..3 {
                let (u, v) = (p[row * 3 + c], base[i * 3 + c]);
                assert!((u - v).abs() <= 1e-6, "batch {bs}, cell {i}: {u} vs {v}");
            }
        }
    }
}

fn data(x: Vec<f32>, labels: Vec<String>, k: usize) -> TrainData {
    let n = labels.len();
    TrainData {
        x,
        dim: k,
        cell_ids: (0..n).map(|i| format!("c{i}")).collect(),
        labels,
        label_source: "planted".into(),
        label_key: "type".into(),
        embedding: Provenance::default(),
    }
}

#[test]
fn training_is_reproducible_and_learns_planted_classes() {
    let _ = Runtime::cpu();
    let rt = Runtime::cpu_with_seed(11).unwrap();
    let k = 8;
    let (x, y) = planted(40, 4, k, 9);
    let d = data(x, y, k);
    let opts = TrainOptions {
        model: ModelConfig {
            width: 32,
            heads: 4,
            tokens: 4,
            ..ModelConfig::default()
        },
        train: TrainConfig {
            epochs: 8,
            batch_size: 32,
            lr: 0.05,
            seed: 11,
            ..TrainConfig::default()
        },
        ..TrainOptions::default()
    };
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let o1 = train(&rt, &d, &opts, d1.path()).unwrap();
    train(&rt, &d, &opts, d2.path()).unwrap();
    let b1 = std::fs::read(d1.path().join("model.safetensors")).unwrap();
    let b2 = std::fs::read(d2.path().join("model.safetensors")).unwrap();
    assert!(b1 == b2, "same seed must give the same model bytes");
    let best = o1.curve[o1.best_epoch - 1].val_accuracy;
    assert!(best > 0.9, "validation accuracy on planted clusters {best}");
    // a different seed gives a different model
    let mut other = opts.clone();
    other.train.seed = 12;
    let d3 = tempfile::tempdir().unwrap();
    train(&rt, &d, &other, d3.path()).unwrap();
    assert!(std::fs::read(d3.path().join("model.safetensors")).unwrap() != b1);
    // resuming a finished run reproduces it
    let r = TrainOptions {
        resume: true,
        ..opts.clone()
    };
    train(&rt, &d, &r, d1.path()).unwrap();
    assert!(std::fs::read(d1.path().join("model.safetensors")).unwrap() == b1);
}

#[test]
fn single_class_training_set_is_rejected() {
    let rt = Runtime::cpu().unwrap();
    let k = 4;
    let (x, _) = planted(5, 2, k, 1);
    let labels = vec!["T".to_string(); 10];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let err = train(&rt, &data(x, labels, k), &TrainOptions::default(), &out).unwrap_err();
    assert!(err.to_string().contains("single-class"), "{err}");
    assert!(!out.exists());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn interrupted_checkpoint_resumes_exactly_or_fails_clearly() {
    // A kill -9 while the checkpoint is replaced, simulated on a finished run's folder (without its
    // model file, so that a resume must rebuild it from the checkpoint): the resume either gives the
    // uninterrupted run's bytes or fails naming the checkpoint, never a different model.
    let rt = Runtime::cpu_with_seed(3).unwrap();
    let k = 6;
    let (x, y) = planted(12, 3, k, 4);
    let d = data(x, y, k);
    let opts = TrainOptions {
        model: small_config(k),
        train: TrainConfig {
            epochs: 3,
            batch_size: 16,
            lr: 0.05,
            seed: 3,
            ..TrainConfig::default()
        },
        ..TrainOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    train(&rt, &d, &opts, &done).unwrap();
    let want = std::fs::read(done.join("model.safetensors")).unwrap();
    let resume = TrainOptions {
        resume: true,
        ..opts.clone()
    };
    let killed = |name: &str, damage: &dyn Fn(&std::path::Path)| {
        let out = dir.path().join(name);
        copy_dir(&done, &out);
        std::fs::remove_file(out.join("model.safetensors")).unwrap();
        damage(&out);
        (out.clone(), train(&rt, &d, &resume, &out))
    };
    let partial_tmp = |out: &std::path::Path| {
        let tmp = out.join("checkpoint.tmp-4242");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("last.safetensors"), b"half a file").unwrap();
    };
    // Killed while writing the next checkpoint: a partial temporary beside the complete one.
    let (out, r) = killed("tmp", &|o| partial_tmp(o));
    r.unwrap();
    assert!(std::fs::read(out.join("model.safetensors")).unwrap() == want);
    assert!(!out.join("checkpoint.tmp-4242").exists());
    // Killed between the two renames: only the previous checkpoint, moved aside, is complete.
    let (out, r) = killed("swap", &|o| {
        partial_tmp(o);
        std::fs::rename(o.join("checkpoint"), o.join("checkpoint.old-4242")).unwrap();
    });
    r.unwrap();
    assert!(std::fs::read(out.join("model.safetensors")).unwrap() == want);
    assert!(out.join("checkpoint").is_dir() && !out.join("checkpoint.old-4242").exists());
    // A file replaced without its manifest (a half-done file-by-file update), a file missing, no
    // manifest at all: refused, nothing written.
    for (name, file, bytes) in [
        ("changed", "momentum.safetensors", Some(&b"other"[..])),
        ("missing", "best.safetensors", None),
        ("unlisted", "manifest.json", None),
    ] {
        let (out, r) = killed(name, &|o| {
            let p = o.join("checkpoint").join(file);
            match bytes {
                Some(b) => std::fs::write(&p, b).unwrap(),
                None => std::fs::remove_file(&p).unwrap(),
            }
        });
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("checkpoint") && err.contains("drop --resume"),
            "{name}: {err}"
        );
        assert!(!out.join("model.safetensors").exists(), "{name}");
    }
}
