//! `scsae train`, `scsae sweep` and `scsae encode` end to end: saved files against brute-force
//! recomputation, determinism, resume, and bad input.

use std::path::Path;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use scsae::data::DenseMatrix;
use scsae::io::matrix::read_matrix;
use scsae::sae::Sae;

use crate::common::sae::{planted, read_raw, write_store};
use crate::common::{scsae, with_options};

fn small_matrix(dir: &Path) -> std::path::PathBuf {
    let (_, mut x) = planted(12, 16, 600, 3, 0.05, 11);
    x.row_ids = Some((0..x.n_rows).map(|i| format!("r{i}")).collect());
    let p = dir.join("acts.safetensors");
    x.write_safetensors(&p, "acts").unwrap();
    p
}

fn train_args(acts: &Path, out: &Path) -> Vec<String> {
    train_args_with(acts, out, &[])
}

/// `scsae train` on a small problem; `set` overrides the defaults below (clap refuses repeats).
fn train_args_with(acts: &Path, out: &Path, set: &[(&str, &str)]) -> Vec<String> {
    let mut a = vec![
        "train".to_string(),
        "--activations".into(),
        acts.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--quiet".into(),
    ];
    a.extend(with_options(
        &[
            ("--features", "24"),
            ("--epochs", "4"),
            ("--batch-size", "64"),
            ("--lr", "0.003"),
            ("--lambda", "1"),
        ],
        set,
    ));
    a
}

fn metrics(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn metrics_and_codes_equal_brute_force_from_saved_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = small_matrix(tmp.path());
    let out = tmp.path().join("sae");
    scsae()
        .args(train_args(&acts, &out))
        .assert()
        .success()
        .stdout(contains("L0"));

    let raw = read_raw(&out);
    let (d, m) = (raw.d, raw.m);
    assert_eq!(raw.tensors["W_enc"].0, vec![d, m]);
    assert_eq!(raw.tensors["W_dec"].0, vec![m, d]);
    assert_eq!(raw.tensors["b_enc"].0, vec![m]);
    assert_eq!(raw.tensors["input_std"].0, vec![d]);
    assert_eq!(raw.cfg["architecture"], "standard");
    assert_eq!(raw.cfg["apply_b_dec_to_input"], true);
    assert_eq!(raw.cfg["normalize_activations"], "none");
    assert_eq!(raw.cfg["scsae"]["train"]["lambda"], 1.0);
    assert_eq!(raw.cfg["scsae"]["train"]["loss"], "mean");

    let x = read_matrix(&acts, None).unwrap();
    let codes = raw.codes(&x.data, None);
    let n = x.n_rows;
    // brute-force metrics in z-scored space
    let (mean, std) = (raw.t("input_mean"), raw.t("input_std"));
    let xz: Vec<f64> = x
        .data
        .chunks(d)
        .flat_map(|r| (0..d).map(move |i| ((r[i] - mean[i]) / std[i]) as f64))
        .collect();
    let mut col_mean = vec![0.0; d];
    for r in xz.chunks(d) {
        for i in 0..d {
            col_mean[i] += r[i] / n as f64;
        }
    }
    let (mut sse, mut sst, mut active) = (0.0, 0.0, 0usize);
    let mut fired = vec![0usize; m];
    for (r, z) in xz.chunks(d).zip(&codes) {
        let h = raw.decode(z);
        for i in 0..d {
            sse += (h[i] - r[i]).powi(2);
            sst += (r[i] - col_mean[i]).powi(2);
        }
        for (j, v) in z.iter().enumerate() {
            if *v > 0.0 {
                active += 1;
                fired[j] += 1;
            }
        }
    }
    let dead = fired
        .iter()
        .filter(|&&c| (c as f64) < 0.01 * n as f64)
        .count();
    let got = metrics(&out);
    let l0 = active as f64 / n as f64;
    assert!(
        (got["l0"].as_f64().unwrap() - l0).abs() < 0.02,
        "L0 {} vs brute force {l0}",
        got["l0"]
    );
    let r2 = 1.0 - sse / sst;
    assert!(
        (got["r2"].as_f64().unwrap() - r2).abs() < 1e-4,
        "R2 {} vs {r2}",
        got["r2"]
    );
    let mse = sse / (n * d) as f64;
    assert!(
        (got["mse"].as_f64().unwrap() - mse).abs() < 1e-4 * mse.max(1.0),
        "MSE {} vs {mse}",
        got["mse"]
    );
    assert_eq!(got["dead"].as_u64().unwrap() as usize, dead);
    assert_eq!(got["alive"].as_u64().unwrap() as usize, m - dead);
    assert_eq!(got["n_inputs"].as_u64().unwrap() as usize, n);

    // Sae::encode equals the brute force, carries row ids, and does not depend on row order
    let sae = Sae::load(&out).unwrap();
    let enc = sae.encode(&x).unwrap();
    assert_eq!(enc.row_ids, x.row_ids);
    for (a, b) in enc.data.iter().zip(codes.iter().flatten()) {
        assert!((*a as f64 - b).abs() < 1e-4, "{a} vs {b}");
    }
    let rev: Vec<usize> = (0..n).rev().collect();
    let enc_rev = sae.encode(&x.select_rows(&rev)).unwrap();
    assert_eq!(enc_rev, enc.select_rows(&rev));
    // decode + unzscore maps back to activation space
    let back = sae.unzscore(&sae.decode(&enc).unwrap()).unwrap();
    let h0 = raw.decode(&codes[0]);
    for i in 0..d {
        let want = h0[i] * std[i] as f64 + mean[i] as f64;
        assert!(
            (back.data[i] as f64 - want).abs() < 1e-3,
            "{} vs {want}",
            back.data[i]
        );
    }

    // scsae encode writes the same codes
    let codes_path = tmp.path().join("codes.safetensors");
    scsae()
        .args(["encode", "--sae"])
        .arg(&out)
        .arg("--activations")
        .arg(&acts)
        .arg("--out")
        .arg(&codes_path)
        .assert()
        .success();
    let written = read_matrix(&codes_path, Some("codes")).unwrap();
    assert_eq!(written.data, enc.data);
    assert_eq!(written.row_ids, x.row_ids);
}

#[test]
fn same_seed_same_bytes_and_threads_do_not_matter_and_resume_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = small_matrix(tmp.path());
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        scsae()
            .args(train_args(&acts, &out))
            .args(extra)
            .assert()
            .success();
        out
    };
    let a = run("a", &["--threads", "1"]);
    let b = run("b", &["--threads", "2"]);
    let c = run("c", &["--seed", "7", "--threads", "1"]);
    let w = |p: &Path| std::fs::read(p.join("sae_weights.safetensors")).unwrap();
    let mj = |p: &Path| std::fs::read(p.join("metrics.json")).unwrap();
    assert_eq!(w(&a), w(&b), "1 and 2 threads give different weights");
    assert_eq!(mj(&a), mj(&b), "1 and 2 threads give different metrics");
    assert_ne!(w(&a), w(&c), "another seed gives the same weights");

    // interrupted after 2 of 4 epochs, then resumed: bit-identical to the uninterrupted run
    let r = tmp.path().join("r");
    scsae()
        .args(train_args(&acts, &r))
        .args(["--threads", "1", "--stop-after-epochs", "2"])
        .assert()
        .success()
        .stdout(contains("paused"));
    assert!(r.join("checkpoint.safetensors").exists());
    assert!(!r.join("cfg.json").exists());
    // continuing without --resume is refused, with other options too
    scsae()
        .args(train_args(&acts, &r))
        .assert()
        .failure()
        .stderr(contains("--resume"));
    scsae()
        .args(train_args_with(&acts, &r, &[("--batch-size", "32")]))
        .arg("--resume")
        .assert()
        .failure()
        .stderr(contains("other training options"));
    scsae()
        .args(train_args(&acts, &r))
        .args(["--threads", "1", "--resume"])
        .assert()
        .success();
    assert_eq!(
        w(&a),
        w(&r),
        "resumed run differs from the uninterrupted one"
    );
    assert_eq!(mj(&a), mj(&r));
    assert!(!r.join("checkpoint.safetensors").exists());
    // a finished run is kept with --resume and refused without it
    scsae()
        .args(train_args(&acts, &r))
        .arg("--resume")
        .assert()
        .success()
        .stdout(contains("already trained"));
    scsae()
        .args(train_args(&acts, &r))
        .assert()
        .failure()
        .stderr(contains("already holds a trained SAE"));
}

#[test]
fn bad_input_is_a_clear_error_with_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    // NaN in a matrix file
    let mut x = DenseMatrix::new(4, 3, vec![1.0; 12]).unwrap();
    x.data[7] = f32::NAN;
    let bad = tmp.path().join("nan.safetensors");
    x.write_safetensors(&bad, "x").unwrap();
    let out = tmp.path().join("out1");
    scsae()
        .args(train_args(&bad, &out))
        .assert()
        .failure()
        .stderr(contains("nan.safetensors").and(contains("row 2, column 1")));
    assert!(!out.exists());

    // NaN inside a store's token activations, and a layer that was not extracted
    let store = tmp.path().join("store");
    write_store(&store, &["0", "1"], 4, 6, 5, |l, r| {
        let mut v = vec![(l + r) as f32 * 0.1, 1.0, -1.0, r as f32];
        if l == 1 && r == 17 {
            v[2] = f32::NAN;
        }
        v
    });
    let args = |layer: &str, out: &Path| {
        train_args_with(&store, out, &[("--layer", layer), ("--features", "8")])
    };
    let out = tmp.path().join("out2");
    scsae()
        .args(args("1", &out))
        .assert()
        .failure()
        .stderr(contains("store").and(contains("non-finite")));
    assert!(!out.exists());
    scsae()
        .args(args("5", &out))
        .assert()
        .failure()
        .stderr(contains("layer 5 was not extracted (available: 0, 1)"));
    assert!(!out.exists());
    scsae()
        .args(["sweep", "--activations"])
        .arg(&store)
        .args(["--layers", "0,7", "--out"])
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("layer 7 was not extracted"));
    assert!(!out.exists());

    // encode: dims that disagree with the SAE, and a layer other than the SAE's
    let sae_dir = tmp.path().join("sae0");
    scsae().args(args("0", &sae_dir)).assert().success();
    let m = DenseMatrix::new(3, 7, (0..21).map(|v| v as f32).collect()).unwrap();
    m.write_safetensors(&tmp.path().join("wide.safetensors"), "x")
        .unwrap();
    let codes = tmp.path().join("codes.safetensors");
    scsae()
        .args(["encode", "--sae"])
        .arg(&sae_dir)
        .arg("--activations")
        .arg(tmp.path().join("wide.safetensors"))
        .arg("--out")
        .arg(&codes)
        .assert()
        .failure()
        .stderr(contains("sae0").and(contains("expects 4 input dims but the activations have 7")));
    assert!(!codes.exists());
    scsae()
        .args(["encode", "--sae"])
        .arg(&sae_dir)
        .arg("--activations")
        .arg(&store)
        .args(["--layer", "1", "--out"])
        .arg(&codes)
        .assert()
        .failure()
        .stderr(contains("trained on layer 0"));
    assert!(!codes.exists());
    // the SAE's own layer works, at cell and token level; token codes carry the token index
    scsae()
        .args(["encode", "--sae"])
        .arg(&sae_dir)
        .arg("--activations")
        .arg(&store)
        .arg("--out")
        .arg(&codes)
        .assert()
        .success()
        .stdout(contains("6 x 8 codes"));
    let tok = tmp.path().join("tok.safetensors");
    scsae()
        .args(["encode", "--sae"])
        .arg(&sae_dir)
        .arg("--activations")
        .arg(&store)
        .args(["--level", "tokens", "--out"])
        .arg(&tok)
        .assert()
        .success()
        .stdout(contains("30 x 8 codes"));
    let bytes = std::fs::read(&tok).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("gene_id").unwrap().shape(), &[30]);
    let raw = read_raw(&sae_dir);
    assert_eq!(raw.cfg["hook_name"], "scgpt.blocks.0.hook_resid_post");
    assert_eq!(raw.cfg["hook_layer"], 0);
    assert_eq!(raw.cfg["model_name"], "scgpt-test");
    assert_eq!(raw.cfg["scsae"]["source"]["layer"], "0");
    assert_eq!(raw.cfg["scsae"]["level"], "tokens");
}

#[test]
fn sweep_writes_table_and_plot_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (_, x) = planted(8, 10, 400, 2, 0.05, 5);
    write_store(&store, &["0", "6"], 8, 40, 10, |l, r| {
        x.row(r).iter().map(|v| v * (1.0 + l as f32)).collect()
    });
    let out = tmp.path().join("sweep");
    let args = |resume: bool| {
        let mut a: Vec<String> = [
            "sweep",
            "--layers",
            "0,6",
            "--lambdas",
            "0.3,3",
            "--features",
            "16",
            "--epochs",
            "5",
            "--batch-size",
            "64",
            "--lr",
            "0.01",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend([
            "--activations".into(),
            store.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ]);
        if resume {
            a.push("--resume".into());
        }
        a
    };
    scsae()
        .args(args(false))
        .assert()
        .success()
        .stdout(contains("sweep.csv"));
    for f in ["sweep.csv", "sweep.parquet", "l0_vs_r2.png", "l0_vs_r2.svg"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let table = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].starts_with("layer,arch,lambda,k,L0,R2,MSE,alive,dead"),
        "{}",
        lines[0]
    );
    for name in [
        "layer0_lambda0.3",
        "layer0_lambda3",
        "layer6_lambda0.3",
        "layer6_lambda3",
    ] {
        let m = metrics(&out.join(name));
        assert!(m["r2"].as_f64().unwrap().is_finite());
        assert!(table.contains(name));
    }
    // more sparsity with a larger lambda, on both layers
    let l0 = |n: &str| metrics(&out.join(n))["l0"].as_f64().unwrap();
    assert!(l0("layer0_lambda3") < l0("layer0_lambda0.3"));
    assert!(l0("layer6_lambda3") < l0("layer6_lambda0.3"));
    // resume keeps finished runs and rewrites the same table; without --resume it is refused
    let before = std::fs::read(out.join("layer6_lambda3/sae_weights.safetensors")).unwrap();
    scsae().args(args(true)).assert().success();
    assert_eq!(
        std::fs::read_to_string(out.join("sweep.csv")).unwrap(),
        table
    );
    assert_eq!(
        std::fs::read(out.join("layer6_lambda3/sae_weights.safetensors")).unwrap(),
        before
    );
    scsae()
        .args(args(false))
        .assert()
        .failure()
        .stderr(contains("--resume"));
}

/// `--max-inputs 0` streams every token row through the shuffle buffer: a sweep trains all its runs
/// in the same passes, each run equals the same run trained alone, and the results match training
/// in memory on the same rows in quality.
#[test]
fn streaming_sweep_shares_passes_and_matches_training_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (_, x) = planted(8, 10, 400, 2, 0.05, 5);
    write_store(&store, &["0", "6"], 8, 40, 10, |l, r| {
        x.row(r).iter().map(|v| v * (1.0 + l as f32)).collect()
    });
    let common = [
        "--features",
        "16",
        "--epochs",
        "5",
        "--batch-size",
        "64",
        "--lr",
        "0.01",
        "--quiet",
    ];
    let sweep = |out: &Path, extra: &[&str]| {
        let mut a: Vec<String> = ["sweep", "--layers", "0,6", "--lambdas", "0.3,3"]
            .iter()
            .chain(&common)
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        a.extend([
            "--activations".into(),
            store.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ]);
        a
    };
    let streamed = tmp.path().join("streamed");
    let memory = tmp.path().join("memory");
    scsae()
        .args(sweep(
            &streamed,
            &["--max-inputs", "0", "--shuffle-buffer", "100"],
        ))
        .assert()
        .success()
        .stdout(contains("sweep.csv"));
    scsae().args(sweep(&memory, &[])).assert().success();
    for name in [
        "layer0_lambda0.3",
        "layer0_lambda3",
        "layer6_lambda0.3",
        "layer6_lambda3",
    ] {
        let (s, m) = (metrics(&streamed.join(name)), metrics(&memory.join(name)));
        assert_eq!(s["n_inputs"], 400, "{name}");
        assert_eq!(s["steps"], m["steps"], "{name}");
        let (rs, rm) = (s["r2"].as_f64().unwrap(), m["r2"].as_f64().unwrap());
        assert!(
            (rs - rm).abs() < 0.05,
            "{name}: streamed R2 {rs}, in memory {rm}"
        );
        let cfg = read_raw(&streamed.join(name)).cfg;
        assert_eq!(cfg["scsae"]["train"]["max_inputs"], 0);
        assert_eq!(cfg["scsae"]["train"]["shuffle_buffer"], 100);
        assert_eq!(cfg["scsae"]["n_train_inputs"], 400);
    }
    // one run trained alone by `scsae train` equals the same run of the shared pass
    let alone = tmp.path().join("alone");
    let mut a = train_args_with(
        &store,
        &alone,
        &[
            ("--features", "16"),
            ("--epochs", "5"),
            ("--lr", "0.01"),
            ("--lambda", "3"),
            ("--max-inputs", "0"),
            ("--shuffle-buffer", "100"),
        ],
    );
    a.extend(["--layer".into(), "6".into()]);
    scsae()
        .args(&a)
        .assert()
        .success()
        .stdout(contains("400 inputs"));
    assert_eq!(
        std::fs::read(alone.join("sae_weights.safetensors")).unwrap(),
        std::fs::read(streamed.join("layer6_lambda3/sae_weights.safetensors")).unwrap()
    );
    // a buffer of no rows is refused before anything is written
    let none = tmp.path().join("none");
    let mut a = train_args_with(
        &store,
        &none,
        &[("--max-inputs", "0"), ("--shuffle-buffer", "0")],
    );
    a.extend(["--layer".into(), "6".into()]);
    scsae()
        .args(&a)
        .assert()
        .failure()
        .stderr(contains("--shuffle-buffer must be at least 1"));
    assert!(!none.exists());
}
