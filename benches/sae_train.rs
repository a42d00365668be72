//! Training throughput of the paper's SAE recipe: one optimiser step (forward, hand-derived backward,
//! clipping, Adam, decoder renormalisation) on a 512 x 512 batch with M = 2048, the shape of the
//! paper's runs (50,000 tokens x 512 dims). Compare with `scripts/sae/bench_torch.py` (same recipe in
//! plain PyTorch, same shapes, same thread count).
//!
//! A second group times the five dense products of an L1 step (`gemm` on the step's shapes and
//! transposes, 512 x 512 x 2048 multiply-adds each), the part of the step no element pass can shorten.
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench --bench sae_train`

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::sae::config::{Arch, TrainConfig};
use scsae::sae::train::{initial_state, train_step};

fn bench(c: &mut Criterion) {
    let (d, batch) = (512, 512);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x: Vec<f32> = (0..batch * d)
        .map(|_| rng.random_range(-1.7f32..1.7))
        .collect();
    let mut group = c.benchmark_group("sae_train_step");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch as u64));
    for (name, arch) in [("standard_l1", Arch::Standard), ("topk32", Arch::Topk)] {
        let cfg = TrainConfig {
            arch,
            ..TrainConfig::default()
        };
        let mut state = initial_state(&cfg, d, String::new());
        group.bench_function(name, |b| {
            b.iter(|| {
                train_step(&Device::Cpu, &mut state, &x, batch, &cfg, 3920).unwrap();
                state.meta.step += 1;
            })
        });
    }
    group.finish();
}

/// A product of the step: name, `(m, n, k)`, `a` with its (column, row) strides, `b` with its strides.
type Case<'a> = (
    &'a str,
    (usize, usize, usize),
    &'a [f32],
    (isize, isize),
    &'a [f32],
    (isize, isize),
);

/// `a (m x k) @ b (k x n)` into `out` with the given (column, row) strides of `a` and `b`.
fn product(
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    (a_cs, a_rs): (isize, isize),
    b: &[f32],
    (b_cs, b_rs): (isize, isize),
    out: &mut [f32],
) {
    assert!(a.len() >= m * k && b.len() >= k * n && out.len() >= m * n);
    let threads = rayon::current_num_threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the operands cover the strided shapes (asserted above) and `out` aliases neither.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

fn bench_products(c: &mut Criterion) {
    let (n, d, m) = (512usize, 512usize, 2048usize);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut r =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1f32..1.0)).collect() };
    let (xc, w_enc, z, w_dec, g_out, g_pre) =
        (r(n * d), r(d * m), r(n * m), r(m * d), r(n * d), r(n * m));
    let mut out = vec![0f32; m * d];
    let (di, mi) = (d as isize, m as isize);
    let mut group = c.benchmark_group("sae_l1_dense_products");
    group.sample_size(10);
    group.throughput(Throughput::Elements((2 * n * d * m) as u64)); // flops
    let cases: [Case; 5] = [
        ("pre = xc W_enc", (n, m, d), &xc, (1, di), &w_enc, (1, mi)),
        ("x_hat = z W_dec", (n, d, m), &z, (1, mi), &w_dec, (1, di)),
        (
            "dW_dec = z^T g_out",
            (m, d, n),
            &z,
            (mi, 1),
            &g_out,
            (1, di),
        ),
        (
            "g_pre = g_out W_dec^T",
            (n, m, d),
            &g_out,
            (1, di),
            &w_dec,
            (di, 1),
        ),
        (
            "dW_enc = xc^T g_pre",
            (d, m, n),
            &xc,
            (di, 1),
            &g_pre,
            (1, mi),
        ),
    ];
    for (name, shape, a, sa, b, sb) in cases {
        group.bench_function(name, |bn| {
            bn.iter(|| product(shape, a, sa, b, sb, &mut out))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_products);
criterion_main!(benches);
