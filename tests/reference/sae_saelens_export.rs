//! `export_saelens` folds the z-score exactly: SAELens's forward pass, computed by hand (f64) from
//! the exported files on RAW activations, gives scsae's codes (`Sae::encode`, which z-scores first)
//! and scsae's reconstructions mapped back to activation space, for standard, TopK and BatchTopK
//! (exported as JumpReLU). The reference forward re-implements SAELens 6's
//! `StandardSAE` / `TopKSAE` / `JumpReLUSAE` `encode` / `decode` with `apply_b_dec_to_input = true`.

use std::collections::BTreeSet;
use std::path::Path;

use safetensors::SafeTensors;
use scsae::activations::Provenance;
use scsae::data::DenseMatrix;
use scsae::runtime::Runtime;
use scsae::sae::config::{Arch, InputLevel, TrainConfig};
use scsae::sae::input::Inputs;
use scsae::sae::saelens_export::export_saelens;
use scsae::sae::train::{train, TrainOptions};
use scsae::sae::Sae;
use serde_json::Value;

use crate::common::sae::planted;

const D: usize = 12;

/// Planted-dictionary data with very different per-dimension offsets and scales, so that the
/// z-score statistics are far from (0, 1).
fn data() -> DenseMatrix {
    let (_, x) = planted(D, 24, 800, 3, 0.05, 7);
    let scale: Vec<f32> = (0..D).map(|i| 0.3 * 1.4f32.powi(i as i32)).collect();
    let offset: Vec<f32> = (0..D).map(|i| -4.0 + 0.9 * i as f32).collect();
    let mut data = x.data.clone();
    for row in data.chunks_exact_mut(D) {
        for ((v, s), o) in row.iter_mut().zip(&scale).zip(&offset) {
            *v = *v * s + o;
        }
    }
    DenseMatrix::new(x.n_rows, D, data).unwrap()
}

fn train_sae(x: &DenseMatrix, arch: Arch, dir: &Path) -> Sae {
    let cfg = TrainConfig {
        d_sae: 32,
        arch,
        k: 4,
        lambda: 1.0,
        epochs: 4,
        batch_size: 64,
        lr: 3e-3,
        tied_init: arch != Arch::Standard,
        matryoshka_widths: if arch == Arch::Matryoshka {
            vec![8]
        } else {
            Vec::new()
        },
        ..TrainConfig::default()
    };
    let inputs = Inputs {
        matrix: x.clone(),
        tokens: None,
        source: Provenance::default(),
        level: InputLevel::Cells,
    };
    let rt = Runtime::cpu().unwrap();
    train(&rt, &inputs, &cfg, dir, &TrainOptions::default()).unwrap();
    // through the saved files, as `scsae export-saelens` does
    Sae::load(dir).unwrap()
}

/// The exported tensors, by name, with their shapes.
fn read_weights(path: &Path) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = Vec::new();
    for (name, v) in st.tensors() {
        assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}");
        let vals = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect();
        out.push((name, v.shape().to_vec(), vals));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// SAELens's forward on raw `x`: `(codes, reconstruction)`.
fn saelens_forward(
    x: &DenseMatrix,
    cfg: &Value,
    t: &[(String, Vec<usize>, Vec<f64>)],
) -> (Vec<f64>, Vec<f64>) {
    let get = |n: &str| t.iter().find(|e| e.0 == n).map(|e| &e.2);
    let (w_enc, w_dec) = (get("W_enc").unwrap(), get("W_dec").unwrap());
    let (b_enc, b_dec) = (get("b_enc").unwrap(), get("b_dec").unwrap());
    let d = cfg["d_in"].as_u64().unwrap() as usize;
    let m = cfg["d_sae"].as_u64().unwrap() as usize;
    assert_eq!(cfg["apply_b_dec_to_input"], true);
    assert_eq!(cfg["normalize_activations"], "none");
    let arch = cfg["architecture"].as_str().unwrap();
    let mut codes = Vec::with_capacity(x.n_rows * m);
    let mut recon = Vec::with_capacity(x.n_rows * d);
    for row in x.data.chunks_exact(d) {
        // process_sae_in: sae_in - b_dec * apply_b_dec_to_input
        let xc: Vec<f64> = row.iter().zip(b_dec).map(|(&v, b)| v as f64 - b).collect();
        let pre: Vec<f64> = (0..m)
            .map(|j| b_enc[j] + (0..d).map(|i| xc[i] * w_enc[i * m + j]).sum::<f64>())
            .collect();
        let z: Vec<f64> = match arch {
            "standard" => pre.iter().map(|p| p.max(0.0)).collect(),
            "topk" => {
                // torch.topk(pre, k) then relu on the kept values
                let k = cfg["k"].as_u64().unwrap() as usize;
                let mut idx: Vec<usize> = (0..m).collect();
                idx.sort_by(|&a, &b| pre[b].total_cmp(&pre[a]));
                let mut z = vec![0.0; m];
                for &j in &idx[..k] {
                    z[j] = pre[j].max(0.0);
                }
                z
            }
            "jumprelu" => {
                // relu(pre) * (pre > threshold)
                let th = get("threshold").unwrap();
                pre.iter()
                    .zip(th)
                    .map(|(p, t)| if p > t { p.max(0.0) } else { 0.0 })
                    .collect()
            }
            other => panic!("unexpected architecture {other}"),
        };
        for i in 0..d {
            recon.push(b_dec[i] + (0..m).map(|j| z[j] * w_dec[j * d + i]).sum::<f64>());
        }
        codes.extend(z);
    }
    (codes, recon)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |a, b| a.max(b.abs()))
}

fn check(arch: Arch, expected: &str) {
    let x = data();
    let dir = tempfile::tempdir().unwrap();
    let sae = train_sae(&x, arch, &dir.path().join("sae"));
    assert!(max_abs(&sae.input_mean.iter().map(|&v| v as f64).collect::<Vec<_>>()) > 3.0);
    let (lo, hi) = sae
        .input_std
        .iter()
        .fold((f32::MAX, 0f32), |(l, h), &s| (l.min(s), h.max(s)));
    assert!(hi / lo > 10.0, "input_std from {lo} to {hi}");

    let out = dir.path().join("lens");
    let report = export_saelens(&sae, &out, false).unwrap();
    assert_eq!(report.architecture, expected);

    // cfg.json: SAELens 6's SAEConfig.to_dict() keys, nothing else
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cfg.json")).unwrap()).unwrap();
    let keys: BTreeSet<&str> = cfg
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut want: BTreeSet<&str> = [
        "d_in",
        "d_sae",
        "dtype",
        "device",
        "apply_b_dec_to_input",
        "normalize_activations",
        "reshape_activations",
        "metadata",
        "architecture",
    ]
    .into();
    if expected == "topk" {
        want.extend(["k", "rescale_acts_by_decoder_norm"]);
        assert_eq!(cfg["k"], 4);
        assert_eq!(cfg["rescale_acts_by_decoder_norm"], false);
    }
    assert_eq!(keys, want);
    assert_eq!(cfg["architecture"], expected);
    assert!(cfg["metadata"]["sae_lens_version"]
        .as_str()
        .unwrap()
        .starts_with('6'));

    // weights: exactly the state dict of the SAELens class (strict load), F32
    let t = read_weights(&out.join("sae_weights.safetensors"));
    let names: Vec<&str> = t.iter().map(|e| e.0.as_str()).collect();
    if expected == "jumprelu" {
        assert_eq!(names, ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]);
    } else {
        assert_eq!(names, ["W_dec", "W_enc", "b_dec", "b_enc"]);
    }
    assert_eq!(t[1].1, vec![D, 32]);
    assert_eq!(t[0].1, vec![32, D]);

    let (codes, recon) = saelens_forward(&x, &cfg, &t);
    let ours = sae.encode(&x).unwrap();
    let ours_recon = sae.unzscore(&sae.decode(&ours).unwrap()).unwrap();
    let scale_z = max_abs(&ours.data.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let scale_x = max_abs(&x.data.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let dz = codes
        .iter()
        .zip(&ours.data)
        .fold(0f64, |a, (c, o)| a.max((c - *o as f64).abs()));
    let dx = recon
        .iter()
        .zip(&ours_recon.data)
        .fold(0f64, |a, (c, o)| a.max((c - *o as f64).abs()));
    let support = |v: &mut dyn Iterator<Item = bool>| v.filter(|b| *b).count();
    let nz_lens = support(&mut codes.iter().map(|v| *v != 0.0));
    let nz_ours = support(&mut ours.data.iter().map(|v| *v != 0.0));
    eprintln!(
        "{arch} -> {expected}: max |codes diff| {dz:.3e} (max code {scale_z:.3}), max |recon diff| {dx:.3e} (max |x| {scale_x:.3}), nonzeros {nz_lens} vs {nz_ours}"
    );
    assert!(nz_ours > 0, "{arch}: every code is zero");
    // the same features fire on the same inputs
    for (i, (c, o)) in codes.iter().zip(&ours.data).enumerate() {
        assert_eq!(
            *c != 0.0,
            *o != 0.0,
            "{arch}: support differs at {i}: {c} vs {o}"
        );
    }
    assert!(
        dz <= 1e-5 * scale_z.max(1.0),
        "{arch}: codes differ by {dz}"
    );
    assert!(
        dx <= 1e-5 * scale_x.max(1.0),
        "{arch}: reconstructions differ by {dx}"
    );

    // scsae reads its own export back (SAELens's top-level `k` for TopK) and encodes raw inputs
    // to the same codes
    let back = Sae::load(&out).unwrap();
    let again = back.encode(&x).unwrap();
    let d_back = again
        .data
        .iter()
        .zip(&ours.data)
        .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
    assert!(
        (d_back as f64) <= 1e-5 * scale_z.max(1.0),
        "{arch}: re-read export differs by {d_back}"
    );

    // an existing export is refused without force, naming the file; replaced with force
    let err = export_saelens(&sae, &out, false).unwrap_err().to_string();
    assert!(err.contains("cfg.json") && err.contains("--force"), "{err}");
    export_saelens(&sae, &out, true).unwrap();
    // and the SAE's own folder is never overwritten
    let own = export_saelens(&sae, &dir.path().join("sae"), true);
    assert!(own.is_err());
}

#[test]
fn standard_export_matches_encode_on_raw_inputs() {
    check(Arch::Standard, "standard");
}

#[test]
fn topk_export_matches_encode_on_raw_inputs() {
    check(Arch::Topk, "topk");
}

#[test]
fn batchtopk_export_is_a_jumprelu_matching_encode_on_raw_inputs() {
    check(Arch::Batchtopk, "jumprelu");
}

#[test]
fn matryoshka_and_jumprelu_exports_are_jumprelus_matching_encode_on_raw_inputs() {
    check(Arch::Matryoshka, "jumprelu");
    check(Arch::Jumprelu, "jumprelu");
}
