//! Extraction speed: `cargo bench --bench extract`.
//!
//! - `extract/full_size/immune_64_cells`: the scGPT_human architecture (12 blocks, d = 512, 8 heads,
//!   60,697-token vocabulary) with seeded random weights, every layer pooled plus CLS, on the first 64
//!   cells of data/immune1000.h5ad (mean 666 expressed genes per cell). The checkpoint is written once
//!   to `target/scgpt-bench-full/` (reuse it with `scsae extract --model target/scgpt-bench-full ...`
//!   to time all 1000 cells and read peak memory), or taken from `SCSAE_SCGPT_FULL/tiny` when set.
//! - `extract/tiny/immune_1000_cells`: the committed 2-layer d = 64 fixture on all 1000 cells.
//!
//! - `extract/cpu_dtype/{f32,bf16}_8_cells`: the full-size model on 8 cells in f32 and in bf16 on
//!   the CPU (candle's CPU kernels; `scsae` refuses `--dtype bf16` on the CPU, so the bench builds its
//!   runtime by hand), and the largest |bf16 - f32| of the normalised CLS embeddings (printed). Run
//!   it alone with `cargo bench --profile dev --bench extract -- cpu_dtype`.
//!
//! Peak resident memory of the bench process (VmHWM) is printed at the end. The PyTorch reference
//! timing on the same cells is scripts/scgpt/bench_torch.py.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scsae::data::{load, Dataset, LoadOptions};
use scsae::scgpt::checkpoint::write_random_checkpoint;
use scsae::scgpt::{extract, ExtractOptions, Scgpt, ScgptConfig};
use scsae::{Runtime, RuntimeConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn immune() -> Dataset {
    load(
        &repo().join("data/immune1000.h5ad"),
        &LoadOptions::default(),
    )
    .expect("bundled data")
}

/// A full-size checkpoint folder: the official-code one from `SCSAE_SCGPT_FULL`, else a seeded
/// random one whose vocabulary is the data's genes padded to 60,694 genes.
fn full_size_checkpoint(ds: &Dataset) -> PathBuf {
    if let Ok(dir) = std::env::var("SCSAE_SCGPT_FULL") {
        return Path::new(&dir).join("tiny");
    }
    let dir = repo().join("target/scgpt-bench-full");
    if !dir.join("model.safetensors").exists() {
        let mut genes: Vec<String> = ds.gene_symbols.clone();
        genes.sort();
        genes.dedup();
        let mut k = 0;
        while genes.len() < 60_694 {
            genes.push(format!("FILLER{k}"));
            k += 1;
        }
        write_random_checkpoint(&dir, &ScgptConfig::default(), &genes, 1)
            .expect("write checkpoint");
    }
    dir
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Extract every layer of `data` into `out` with the default options.
fn extract_to(model: &Scgpt, data: &Dataset, rt: &Runtime, out: &Path) {
    extract(
        model,
        data,
        serde_json::json!({}),
        out,
        &ExtractOptions::default(),
        rt,
    )
    .expect("extract");
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::cpu().expect("runtime");
    let ds = immune();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut run = 0usize;
    let mut go = |model: &Scgpt, data: &Dataset| {
        run += 1;
        let out = tmp.path().join(format!("run{run}"));
        extract_to(model, data, &rt, &out);
        std::fs::remove_dir_all(&out).ok();
    };

    let tiny = Scgpt::load(&repo().join("tests/fixtures/scgpt/tiny"), &rt).expect("tiny");
    let mut g = c.benchmark_group("extract/tiny");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(ds.n_cells() as u64));
    g.bench_function("immune_1000_cells", |b| b.iter(|| go(&tiny, &ds)));
    g.finish();

    let full = Scgpt::load(&full_size_checkpoint(&ds), &rt).expect("full-size checkpoint");
    let cells = ds.select_cells(&(0..64).collect::<Vec<_>>());
    let mut g = c.benchmark_group("extract/full_size");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.throughput(Throughput::Elements(cells.n_cells() as u64));
    g.bench_function("immune_64_cells", |b| b.iter(|| go(&full, &cells)));
    g.finish();
    // f32 against bf16 on the CPU
    let bf16_rt = Runtime {
        dtype: candle_core::DType::BF16,
        config: RuntimeConfig {
            precision: scsae::runtime::Precision::Bf16,
            ..rt.config.clone()
        },
        ..rt.clone()
    };
    let dir = full_size_checkpoint(&ds);
    let full_bf16 = Scgpt::load(&dir, &bf16_rt).expect("bf16 checkpoint");
    let few = ds.select_cells(&(0..8).collect::<Vec<_>>());
    let cls = |model: &Scgpt, rt: &Runtime, name: &str| -> Vec<f32> {
        let out = tmp.path().join(name);
        extract_to(model, &few, rt, &out);
        let m = scsae::read_cells(&out, Some("cls"), None).expect("cls");
        std::fs::remove_dir_all(&out).ok();
        m.matrix.data
    };
    let a = cls(&full, &rt, "cls_f32");
    let b = cls(&full_bf16, &bf16_rt, "cls_bf16");
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "bf16 vs f32 on the CPU, 8 cells: max |diff| of the normalised CLS embeddings {worst:.2e}"
    );
    let mut g = c.benchmark_group("extract/cpu_dtype");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(few.n_cells() as u64));
    let mut k = 0usize;
    for (name, model, r) in [
        ("f32_8_cells", &full, &rt),
        ("bf16_8_cells", &full_bf16, &bf16_rt),
    ] {
        g.bench_function(name, |bch| {
            bch.iter(|| {
                k += 1;
                let out = tmp.path().join(format!("dtype{k}"));
                extract_to(model, &few, r, &out);
                std::fs::remove_dir_all(&out).ok();
            })
        });
    }
    g.finish();
    if let Some(mib) = peak_rss_mib() {
        eprintln!("peak resident memory of the bench process (VmHWM): {mib:.0} MiB");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
