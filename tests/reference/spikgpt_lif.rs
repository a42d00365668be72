//! LIF neuron checks: spike trains against hand-computed sequences for every reset / decay mode, and
//! gradients through T steps against (1) finite differences of the smooth-surrogate neuron and (2) a
//! hand-derived BPTT recursion written independently below in f64.

use candle_core::{DType, Device, Tensor, Var};
use scsae::spikgpt::config::{LifConfig, Surrogate};
use scsae::spikgpt::lif::{lif_multistep, FireMode};

fn cfg(decay_input: bool, soft: bool, detach_reset: bool) -> LifConfig {
    LifConfig {
        tau: 2.0,
        v_threshold: 1.0,
        v_reset: if soft { None } else { Some(0.0) },
        decay_input,
        detach_reset,
        surrogate: Surrogate::Sigmoid { alpha: 4.0 },
    }
}

fn run_lif(x: &[f64], c: &LifConfig) -> Vec<f64> {
    let t = Tensor::from_slice(x, (x.len(), 1), &Device::Cpu).unwrap();
    lif_multistep(&t, c, FireMode::Spike)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

#[test]
fn spike_trains_match_hand_computation() {
    // x = 1.2, 0.95, 0.9, 0.1, 3.0, 1.5; tau = 2, V_th = 1 (membrane values worked by hand):
    // decay_input, hard: H = .6, .775, .8375, .46875, 1.734375 (fire, V=0), .75          -> 0 0 0 0 1 0
    // decay_input, soft: as above until t4: V = .734375; t5 H = 1.1171875 (fire)         -> 0 0 0 0 1 1
    // no decay_input, hard: H = 1.2 (fire), .95, 1.375 (fire), .1, 3.05 (fire), 1.5 (fire) -> 1 0 1 0 1 1
    // no decay_input, soft: H = 1.2 (V .2), 1.05 (V .05), .925, .5625, 3.28125, 2.640625 -> 1 1 0 0 1 1
    let x = [1.2, 0.95, 0.9, 0.1, 3.0, 1.5];
    assert_eq!(
        run_lif(&x, &cfg(true, false, true)),
        vec![0., 0., 0., 0., 1., 0.]
    );
    assert_eq!(
        run_lif(&x, &cfg(true, true, true)),
        vec![0., 0., 0., 0., 1., 1.]
    );
    assert_eq!(
        run_lif(&x, &cfg(false, false, true)),
        vec![1., 0., 1., 0., 1., 1.]
    );
    assert_eq!(
        run_lif(&x, &cfg(false, true, true)),
        vec![1., 1., 0., 0., 1., 1.]
    );
    // heaviside(0) = 1: decay_input from rest with X = 2 V_th gives H = V_th exactly.
    assert_eq!(run_lif(&[2.0], &cfg(true, false, true)), vec![1.0]);
    // the attention neuron (threshold 0.5) fires on X = 1 at the first step
    let mut a = cfg(true, false, true);
    a.v_threshold = 0.5;
    assert_eq!(run_lif(&[1.0, 0.0], &a), vec![1.0, 0.0]);
    // hard reset to a non-zero potential: V_reset = -0.5, no decay_input:
    // t0 V=-.5: H = -.5 - 0 + 2 = 1.5 fire, V = -.5; t1 H = -.5 + .3 = -.2; t2 H = -.2 - .15 + 1.3 = .95
    let mut r = cfg(false, false, true);
    r.v_reset = Some(-0.5);
    assert_eq!(run_lif(&[2.0, 0.3, 1.3], &r), vec![1.0, 0.0, 0.0]);
}

/// f64 reference neuron: forward with heaviside (or the smooth primitive) and the hand-derived BPTT
/// gradient of `L = sum_t w_t S_t` with respect to `x_t`, for one neuron.
fn reference(x: &[f64], w: &[f64], c: &LifConfig, smooth: bool) -> (f64, Vec<f64>) {
    let vr = c.v_reset.unwrap_or(0.0);
    let t_len = x.len();
    let (mut hs, mut ss) = (vec![0.0; t_len], vec![0.0; t_len]);
    let mut v = vr;
    let mut loss = 0.0;
    for t in 0..t_len {
        let h = if c.decay_input {
            v + (x[t] - (v - vr)) / c.tau
        } else {
            v - (v - vr) / c.tau + x[t]
        };
        let u = h - c.v_threshold;
        let s = if smooth {
            c.surrogate.primitive(u)
        } else if u >= 0.0 {
            1.0
        } else {
            0.0
        };
        v = match c.v_reset {
            Some(vr) => (1.0 - s) * h + s * vr,
            None => h - s * c.v_threshold,
        };
        hs[t] = h;
        ss[t] = s;
        loss += w[t] * s;
    }
    let mut gx = vec![0.0; t_len];
    let mut gv = 0.0; // dL/dV_t flowing back from step t+1
    for t in (0..t_len).rev() {
        let (h, s) = (hs[t], ss[t]);
        let (dv_ds, dv_dh) = match c.v_reset {
            Some(vr) => (vr - h, 1.0 - s),
            None => (-c.v_threshold, 1.0),
        };
        let gs = w[t] + if c.detach_reset { 0.0 } else { gv * dv_ds };
        let gh = gs * c.surrogate.derivative(h - c.v_threshold) + gv * dv_dh;
        gx[t] = gh * if c.decay_input { 1.0 / c.tau } else { 1.0 };
        gv = gh * (1.0 - 1.0 / c.tau);
    }
    (loss, gx)
}

fn candle_grad(x: &[f64], w: &[f64], c: &LifConfig, mode: FireMode) -> (f64, Vec<f64>) {
    let n = x.len();
    let xv = Var::from_tensor(&Tensor::from_slice(x, (n, 1), &Device::Cpu).unwrap()).unwrap();
    let wt = Tensor::from_slice(w, (n, 1), &Device::Cpu).unwrap();
    let s = lif_multistep(xv.as_tensor(), c, mode).unwrap();
    let loss = (s * wt).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let g = grads
        .get(xv.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    (
        loss.to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap(),
        g,
    )
}

fn cases() -> Vec<(Vec<f64>, Vec<f64>)> {
    vec![
        (
            vec![1.2, 0.95, 0.9, 0.1, 3.0, 1.5],
            vec![1.0, -0.5, 2.0, 0.3, 1.0, -1.0],
        ),
        (vec![0.3, 2.2, -0.4, 1.7], vec![0.7, 1.1, -0.2, 0.9]),
        (vec![0.8, 0.8, 0.8, 0.8], vec![1.0, 1.0, 1.0, 1.0]),
    ]
}

#[test]
fn hand_derived_bptt_matches_finite_differences_of_smooth_neuron() {
    // Finite differences see every path, so the reset path is kept (detach_reset = false).
    for decay in [true, false] {
        for soft in [false, true] {
            let c = cfg(decay, soft, false);
            for (x, w) in cases() {
                let (_, g) = reference(&x, &w, &c, true);
                for t in 0..x.len() {
                    let h = 1e-6;
                    let (mut xp, mut xm) = (x.clone(), x.clone());
                    xp[t] += h;
                    xm[t] -= h;
                    let fd = (reference(&xp, &w, &c, true).0 - reference(&xm, &w, &c, true).0)
                        / (2.0 * h);
                    assert!(
                        (fd - g[t]).abs() < 1e-7,
                        "decay {decay} soft {soft} t {t}: {fd} vs {}",
                        g[t]
                    );
                }
            }
        }
    }
}

#[test]
fn candle_autograd_of_smooth_neuron_matches_finite_differences() {
    for decay in [true, false] {
        for soft in [false, true] {
            let c = cfg(decay, soft, false);
            for (x, w) in cases() {
                let (loss, g) = candle_grad(&x, &w, &c, FireMode::Smooth);
                assert!((loss - reference(&x, &w, &c, true).0).abs() < 1e-12);
                for t in 0..x.len() {
                    let h = 1e-6;
                    let (mut xp, mut xm) = (x.clone(), x.clone());
                    xp[t] += h;
                    xm[t] -= h;
                    let fd = (reference(&xp, &w, &c, true).0 - reference(&xm, &w, &c, true).0)
                        / (2.0 * h);
                    assert!(
                        (fd - g[t]).abs() < 1e-7,
                        "decay {decay} soft {soft} t {t}: {fd} vs {}",
                        g[t]
                    );
                }
            }
        }
    }
}

#[test]
fn surrogate_gradient_through_time_matches_hand_derived_bptt() {
    for surrogate in [
        Surrogate::Sigmoid { alpha: 4.0 },
        Surrogate::Atan { alpha: 2.0 },
    ] {
        for decay in [true, false] {
            for soft in [false, true] {
                for detach in [true, false] {
                    let mut c = cfg(decay, soft, detach);
                    c.surrogate = surrogate;
                    for (x, w) in cases() {
                        let (loss, g) = candle_grad(&x, &w, &c, FireMode::Spike);
                        let (rl, rg) = reference(&x, &w, &c, false);
                        assert_eq!(loss, rl, "spike forward must be exactly binary");
                        for t in 0..x.len() {
                            assert!(
                                (g[t] - rg[t]).abs() < 1e-12,
                                "{surrogate:?} decay {decay} soft {soft} detach {detach} t {t}: {} vs {}",
                                g[t],
                                rg[t]
                            );
                        }
                    }
                }
            }
        }
    }
}
