//! Mutation fuzzing of every input parser: h5ad, 10x folders, scGPT checkpoints (`best_model.pt`,
//! safetensors), dense matrices (safetensors/npy/CSV/TSV/Parquet), GMT, label tables, label maps and
//! activation stores. Any panic that escapes a reader is a bug (readers must return an error).
//!
//! - `fuzz_smoke` (CI): a short seeded pass over every target plus every saved regression input in
//!   `tests/fixtures/fuzz/crashes/<target>/<case>/` (inputs under `crashes/<target>/known/` are known
//!   library bugs and are skipped until fixed; `fuzz_known` replays them).
//! - `fuzz_long` (`#[ignore]`, see `scripts/fuzz/run.sh`): cycles the targets until
//!   `SCSAE_FUZZ_SECS` have passed. Each slice runs in a child process (this test binary running
//!   `fuzz_worker`) under a memory limit, so an allocation abort, a stack overflow or a hang (no
//!   progress for `SCSAE_FUZZ_HANG_SECS`) is caught too; new crashes are written to
//!   `crashes/<target>/known/`.
//!
//! Inputs are not kept between iterations (no coverage feedback): input `i` of a target is a pure
//! function of (target, seed, i) and the seed corpus, so `SCSAE_FUZZ_REPRO=target:seed:iter`
//! rewrites one input into `SCSAE_FUZZ_OUT` (default `target/fuzz-repro`) and runs it.
//! Seeds: `tests/fixtures/fuzz/seeds/` (written by `scripts/fuzz/make_seeds.py`) and the hostile
//! corpus `tests/bad_inputs/files/`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use scsae::activations::ActivationStore;
use scsae::data::{LoadOptions, MatrixLayer};
use scsae::Runtime;

use crate::common::root;

/// Largest mutated file (bytes).
const MAX_LEN: usize = 1 << 20;
/// Iterations per target in `fuzz_smoke`.
const SMOKE_ITERS: u64 = 300;
/// Seed of `fuzz_smoke`.
const SMOKE_SEED: u64 = 20240;

// ---------------------------------------------------------------------------------------------
// Inputs: a case is a folder of files (a file target uses the first one).

#[derive(Clone, Debug)]
struct Case {
    files: Vec<(String, Vec<u8>)>,
}

impl Case {
    fn write(&self, dir: &Path) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        for (name, bytes) in &self.files {
            let p = dir.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(p, bytes).unwrap();
        }
    }

    fn read(dir: &Path) -> Case {
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files);
        files.sort();
        Case {
            files: files
                .into_iter()
                .map(|rel| {
                    let bytes = std::fs::read(dir.join(&rel)).unwrap();
                    (rel, bytes)
                })
                .collect(),
        }
    }
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(base, &p, out);
        } else {
            out.push(
                p.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/"),
            );
        }
    }
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Every file directly in `dirs` whose name ends with one of `exts`, each a one-file case named
/// `input.<ext>`.
fn file_seeds(dirs: &[&str], exts: &[&str]) -> Vec<Case> {
    let mut out = Vec::new();
    for d in dirs {
        for p in sorted_entries(&root().join(d)) {
            let name = p.file_name().unwrap().to_string_lossy().to_lowercase();
            if !p.is_file() {
                continue;
            }
            if let Some(ext) = exts.iter().find(|e| name.ends_with(&format!(".{e}"))) {
                out.push(Case {
                    files: vec![(format!("input.{ext}"), std::fs::read(&p).unwrap())],
                });
            }
        }
    }
    out
}

/// Every sub-folder of `dirs` (whose name starts with one of `prefixes`, if any) as a case.
fn dir_seeds(dirs: &[&str], prefixes: &[&str]) -> Vec<Case> {
    let mut out = Vec::new();
    for d in dirs {
        for p in sorted_entries(&root().join(d)) {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() && (prefixes.is_empty() || prefixes.iter().any(|x| name.starts_with(x))) {
                out.push(Case::read(&p));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Targets

type RunFn = fn(&Path, &Case) -> bool;

struct Target {
    name: &'static str,
    seeds: fn() -> Vec<Case>,
    /// Relative weight of mutating each file of a folder case, by file name.
    weight: fn(&str) -> u32,
    /// Run the reader(s) on the case written at the path; `true` when the main reader accepted it
    /// (the others run for coverage; only panics matter).
    run: RunFn,
}

fn weight_one(_: &str) -> u32 {
    1
}

fn main_file(dir: &Path, case: &Case) -> PathBuf {
    dir.join(&case.files[0].0)
}

fn rt() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::cpu().unwrap())
}

fn tiny_dataset() -> &'static scsae::Dataset {
    static DS: OnceLock<scsae::Dataset> = OnceLock::new();
    DS.get_or_init(|| {
        scsae::data::h5ad::read_h5ad(
            &root().join("tests/bad_inputs/files/good/tiny.h5ad"),
            &LoadOptions::default(),
        )
        .unwrap()
    })
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "h5ad",
            seeds: || {
                file_seeds(
                    &[
                        "tests/fixtures/fuzz/seeds/h5ad",
                        "tests/bad_inputs/files/good",
                        "tests/bad_inputs/files/h5ad",
                    ],
                    &["h5ad"],
                )
            },
            weight: weight_one,
            run: |dir, case| {
                let p = main_file(dir, case);
                let a = scsae::data::load(&p, &LoadOptions::default()).is_ok();
                let raw = LoadOptions {
                    layer: MatrixLayer::Raw,
                    gene_key: Some("gene_ids".into()),
                    make_unique: true,
                    ..LoadOptions::default()
                };
                let _ = scsae::data::h5ad::read_h5ad(&p, &raw);
                a
            },
        },
        Target {
            name: "tenx",
            seeds: || {
                dir_seeds(
                    &[
                        "tests/fixtures/fuzz/seeds/tenx",
                        "tests/bad_inputs/files/tenx",
                    ],
                    &[],
                )
            },
            weight: |name| if name.starts_with("matrix") { 6 } else { 2 },
            run: |dir, _| {
                let a = scsae::data::load(dir, &LoadOptions::default()).is_ok();
                let ids = LoadOptions {
                    gene_key: Some("gene_ids".into()),
                    make_unique: true,
                    ..LoadOptions::default()
                };
                let _ = scsae::data::tenx::read_10x(dir, &ids);
                a
            },
        },
        Target {
            name: "scgpt",
            seeds: || {
                dir_seeds(&["tests/fixtures/fuzz/seeds/scgpt"], &[])
                    .into_iter()
                    .chain(dir_seeds(
                        &["tests/bad_inputs/files/config"],
                        &["scgpt_pt_"],
                    ))
                    .collect()
            },
            weight: |name| if name.ends_with(".json") { 1 } else { 8 },
            run: |dir, _| scsae::Scgpt::load(dir, rt()).is_ok(),
        },
        Target {
            name: "matrix",
            seeds: || {
                file_seeds(
                    &[
                        "tests/fixtures/fuzz/seeds/matrix",
                        "tests/bad_inputs/files/good",
                        "tests/bad_inputs/files/matrix",
                    ],
                    &["safetensors", "npy", "csv", "tsv", "parquet"],
                )
            },
            weight: weight_one,
            run: |dir, case| {
                let p = main_file(dir, case);
                let a = scsae::io::matrix::read_matrix(&p, None).is_ok();
                if case.files[0].0.ends_with(".safetensors") {
                    let _ = scsae::io::matrix::read_matrix(&p, Some("x"));
                }
                a
            },
        },
        Target {
            name: "gmt",
            seeds: || {
                file_seeds(
                    &[
                        "tests/fixtures/fuzz/seeds/gmt",
                        "tests/bad_inputs/files/good",
                        "tests/bad_inputs/files/gmt",
                    ],
                    &["gmt"],
                )
            },
            weight: weight_one,
            run: |dir, case| {
                let p = main_file(dir, case);
                let text = String::from_utf8_lossy(&case.files[0].1);
                let a = scsae::analysis::gmt::parse_gmt(&text, &p).is_ok();
                let _ = scsae::analysis::gmt::read_gene_sets(&[p]);
                a
            },
        },
        Target {
            name: "labels",
            seeds: || {
                file_seeds(
                    &[
                        "tests/fixtures/fuzz/seeds/labels",
                        "tests/bad_inputs/files/labels",
                    ],
                    &["csv", "tsv", "parquet"],
                )
            },
            weight: weight_one,
            run: |dir, case| {
                let mut ds = tiny_dataset().clone();
                scsae::data::obs::join_labels(&mut ds, &main_file(dir, case)).is_ok()
            },
        },
        Target {
            name: "label_map",
            seeds: || {
                let mut v = file_seeds(
                    &["tests/fixtures/fuzz/seeds/label_map"],
                    &["csv", "tsv", "parquet"],
                );
                v.extend(
                    file_seeds(&["tests/bad_inputs/files/labels"], &["csv"])
                        .into_iter()
                        .filter(|c| c.files[0].1.len() < 100),
                );
                v
            },
            weight: weight_one,
            run: |dir, case| {
                let classes: Vec<String> = ["T", "B", "NK"].iter().map(|s| s.to_string()).collect();
                scsae::spikgpt::evaluation::read_label_map(&main_file(dir, case), &classes).is_ok()
            },
        },
        Target {
            name: "acts",
            seeds: || {
                dir_seeds(&["tests/fixtures/fuzz/seeds/acts"], &[])
                    .into_iter()
                    .chain(dir_seeds(&["tests/bad_inputs/files/config"], &["acts_"]))
                    .collect()
            },
            weight: |name| match name {
                "manifest.json" => 5,
                "cell_ids.json" => 1,
                _ => 2,
            },
            run: |dir, _| {
                let Ok(store) = ActivationStore::open(dir) else {
                    return false;
                };
                let mut layers: Vec<String> =
                    store.manifest.layers.iter().take(3).cloned().collect();
                layers.push("cls".into());
                for l in &layers {
                    let _ = store.cell_matrix(l);
                    if l != "cls" {
                        let _ = store.token_matrix(l, None, 0);
                        let _ = store.token_matrix(l, Some(3), 1);
                    }
                }
                true
            },
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Mutations

const INTERESTING_8: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, b'\n', b',', b'\t', b'"'];
const INTERESTING_64: [u64; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];
const INTERESTING_NUM: [&str; 20] = [
    "0",
    "-1",
    "1",
    "-0",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e308",
    "1e999",
    "-1e308",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "",
];
const JUNK: [&str; 12] = [
    "\0", "\u{feff}", "é", "\u{fffd}", "\"", "\"\"", "\r\n", "\t", ",", "%", "#", "{}",
];

fn is_text(name: &str, bytes: &[u8]) -> bool {
    let ext_text = [".mtx", ".tsv", ".csv", ".gmt", ".json", ".txt", ".tab"];
    if ext_text.iter().any(|e| name.ends_with(e)) {
        return true;
    }
    !bytes.is_empty()
        && bytes
            .iter()
            .take(512)
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
}

fn byte_mutation(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    let pos = |rng: &mut ChaCha8Rng, len: usize| {
        if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        }
    };
    match rng.random_range(0..10) {
        0 if len > 0 => {
            let i = pos(rng, len);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = pos(rng, len);
            data[i] = *INTERESTING_8.choose(rng).unwrap();
        }
        2 if len > 0 => {
            // an interesting integer as u16/u32/u64, little or big endian (lengths, offsets, shapes)
            let v = *INTERESTING_64.choose(rng).unwrap();
            let width = [2usize, 4, 8][rng.random_range(0..3)];
            let bytes: Vec<u8> = if rng.random_bool(0.8) {
                v.to_le_bytes()[..width].to_vec()
            } else {
                v.to_be_bytes()[8 - width..].to_vec()
            };
            let i = pos(rng, len);
            for (k, b) in bytes.into_iter().enumerate() {
                if i + k < data.len() {
                    data[i + k] = b;
                }
            }
        }
        3 => {
            let i = pos(rng, len + 1).min(len);
            let n = rng.random_range(1..=16);
            let ins: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(i..i, ins);
        }
        4 if len > 0 => {
            let i = pos(rng, len);
            let n = rng.random_range(1..=(len - i).min(64));
            data.drain(i..i + n);
        }
        5 if len > 0 => {
            // duplicate a range
            let i = pos(rng, len);
            let n = rng.random_range(1..=(len - i).min(256));
            let chunk = data[i..i + n].to_vec();
            let j = pos(rng, len + 1).min(len);
            data.splice(j..j, chunk);
        }
        6 if len > 0 => {
            let n = pos(rng, len);
            data.truncate(n);
        }
        7 if !other.is_empty() => {
            // splice: a prefix of this input and a suffix of another seed
            let i = pos(rng, len + 1).min(len);
            let j = rng.random_range(0..other.len());
            data.truncate(i);
            data.extend_from_slice(&other[j..]);
        }
        8 if !other.is_empty() && len > 0 => {
            // overwrite a range with bytes of another seed
            let i = pos(rng, len);
            let j = rng.random_range(0..other.len());
            let n = rng.random_range(1..=64).min(other.len() - j).min(len - i);
            data[i..i + n].copy_from_slice(&other[j..j + n]);
        }
        _ => {
            // random byte at a random place
            if len > 0 {
                let i = pos(rng, len);
                data[i] = rng.random();
            } else {
                data.push(rng.random());
            }
        }
    }
}

fn text_mutation(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let n = lines.len();
    let li = rng.random_range(0..n);
    match rng.random_range(0..7) {
        0 => {
            let l = lines[li].clone();
            let k = rng.random_range(1..=3);
            for _ in 0..k {
                lines.insert(li, l.clone());
            }
        }
        1 if n > 1 => {
            lines.remove(li);
        }
        2 if n > 1 => {
            let lj = rng.random_range(0..n);
            lines.swap(li, lj);
        }
        3 | 4 => {
            // replace a number (or, without one, a field) with an interesting one
            let line = &lines[li];
            let spans: Vec<(usize, usize)> = number_spans(line);
            let new = INTERESTING_NUM.choose(rng).unwrap().to_string();
            if let Some(&(a, b)) = spans.choose(rng) {
                lines[li] = format!("{}{}{}", &line[..a], new, &line[b..]);
            } else {
                let at = char_boundary(line, rng.random_range(0..=line.len()));
                lines[li] = format!("{}{}{}", &line[..at], new, &line[at..]);
            }
        }
        5 => {
            let line = &lines[li];
            let at = char_boundary(line, rng.random_range(0..=line.len()));
            let junk = JUNK.choose(rng).unwrap();
            lines[li] = format!("{}{}{}", &line[..at], junk, &line[at..]);
        }
        _ => {
            // delete a field (separated by tab, comma or space)
            let line = lines[li].clone();
            let sep = [',', '\t', ' '].into_iter().find(|s| line.contains(*s));
            if let Some(sep) = sep {
                let mut fields: Vec<&str> = line.split(sep).collect();
                let k = rng.random_range(0..fields.len());
                fields.remove(k);
                lines[li] = fields.join(&sep.to_string());
            } else {
                lines[li].clear();
            }
        }
    }
    *data = lines.join("\n").into_bytes();
}

fn char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn number_spans(line: &str) -> Vec<(usize, usize)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let mut a = i;
            if a > 0 && b[a - 1] == b'-' {
                a -= 1;
            }
            let mut j = i;
            while j < b.len()
                && (b[j].is_ascii_digit() || b[j] == b'.' || b[j] == b'e' || b[j] == b'E')
            {
                j += 1;
            }
            out.push((a, j));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn mix(seed: u64, target: &str, iter: u64) -> u64 {
    // FNV-1a over the target name, then splitmix64 of everything
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let mut z =
        h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ iter.wrapping_mul(0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Input `iter` of `target` for `seed`: a seed case with 1..8 stacked mutations of one of its files.
fn make_input(t: &Target, seeds: &[Case], seed: u64, iter: u64) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, t.name, iter));
    let mut case = seeds.choose(&mut rng).unwrap().clone();
    if case.files.is_empty() {
        return case;
    }
    let other = seeds.choose(&mut rng).unwrap().clone();
    let weights: Vec<u32> = case.files.iter().map(|(n, _)| (t.weight)(n)).collect();
    let total: u32 = weights.iter().sum();
    let mut pick = rng.random_range(0..total);
    let mut fi = 0;
    for (i, w) in weights.iter().enumerate() {
        if pick < *w {
            fi = i;
            break;
        }
        pick -= w;
    }
    let name = case.files[fi].0.clone();
    let other_bytes = other
        .files
        .iter()
        .find(|(n, _)| *n == name)
        .or(other.files.first())
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    let data = &mut case.files[fi].1;
    let text = is_text(&name, data);
    let n_mut = 1 + (rng.random::<u32>() % 8).min(rng.random::<u32>() % 8);
    for _ in 0..n_mut {
        if text && rng.random_bool(0.6) {
            text_mutation(&mut rng, data);
        } else {
            byte_mutation(&mut rng, data, &other_bytes);
        }
        data.truncate(MAX_LEN);
    }
    case
}

// ---------------------------------------------------------------------------------------------
// Running inputs and catching panics

thread_local! {
    static FUZZING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    static LAST_BT: std::cell::RefCell<Option<std::backtrace::Backtrace>> = const { std::cell::RefCell::new(None) };
}

/// Panics inside readers that the library itself catches (e.g. candle's pickle reader).
static INNER_PANICS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
/// An input is being run (panics on other threads are then recorded in `FOREIGN_PANIC`).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static FOREIGN_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn install_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if FUZZING.with(|f| f.get()) {
                let loc = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_else(|| "?".into());
                let msg = payload_str(info.payload());
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}\t{loc}")));
                LAST_BT
                    .with(|b| *b.borrow_mut() = Some(std::backtrace::Backtrace::force_capture()));
            } else {
                if ACTIVE.load(Ordering::SeqCst) {
                    // a reader's worker thread (rayon/polars): keep where it panicked
                    let loc = info
                        .location()
                        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                        .unwrap_or_else(|| "?".into());
                    let bt = std::backtrace::Backtrace::force_capture().to_string();
                    let via = crate_frame(&bt)
                        .map(|f| format!(" (via {f}, on another thread)"))
                        .unwrap_or_else(|| " (on another thread)".into());
                    *FOREIGN_PANIC.lock().unwrap() = Some(format!("{loc}{via}"));
                }
                prev(info);
            }
        }));
    });
}

fn payload_str(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".into()
    }
}

enum Outcome {
    Ok,
    Err,
    /// message, location
    Panic(String, String),
}

fn run_case(t: &Target, case: &Case, dir: &Path) -> Outcome {
    install_hook();
    case.write(dir);
    FUZZING.with(|f| f.set(true));
    LAST_PANIC.with(|p| *p.borrow_mut() = None);
    *FOREIGN_PANIC.lock().unwrap() = None;
    ACTIVE.store(true, Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| (t.run)(dir, case)));
    ACTIVE.store(false, Ordering::SeqCst);
    FUZZING.with(|f| f.set(false));
    let foreign = FOREIGN_PANIC.lock().unwrap().take();
    let last = LAST_PANIC.with(|p| p.borrow_mut().take());
    match r {
        Ok(ok) => {
            if let Some(inner) = last {
                // a panic the library caught itself (`guarded`): not a failure, but counted
                let loc = inner.split('\t').nth(1).unwrap_or("?").to_string();
                *INNER_PANICS
                    .lock()
                    .unwrap()
                    .entry(format!("{} {}", t.name, loc))
                    .or_default() += 1;
            }
            if ok {
                Outcome::Ok
            } else {
                Outcome::Err
            }
        }
        Err(payload) => {
            let msg = payload_str(&*payload);
            let mut loc = last
                .and_then(|l| l.split('\t').nth(1).map(str::to_string))
                .or(foreign)
                .unwrap_or_else(|| "? (panicked on another thread)".into());
            // where in scsae (the panic may be inside a dependency)
            let bt = LAST_BT
                .with(|b| b.borrow_mut().take())
                .map(|b| b.to_string())
                .unwrap_or_default();
            if let Some(f) = crate_frame(&bt) {
                if !loc.starts_with(&f) {
                    loc = format!("{loc} (via {f})");
                }
            }
            Outcome::Panic(msg, loc)
        }
    }
}

/// The first frame of a backtrace in scsae's own sources (`./src/...` or `.../src/...` of the crate).
fn crate_frame(bt: &str) -> Option<String> {
    let crate_src = root().join("src").display().to_string();
    bt.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("at "))
        .find(|l| l.starts_with("./src/") || l.starts_with(&crate_src))
        .map(|l| l.replace(&crate_src, "./src"))
}

/// A panic location without line and column numbers (`a.rs:3:9 (via ./src/b.rs:5:1)` ->
/// `a.rs (via ./src/b.rs)`): crashes are deduplicated on it, one saved input per signature and run.
fn signature(loc: &str) -> String {
    loc.split(' ')
        .map(|w| {
            let mut w = w.to_string();
            for _ in 0..2 {
                if let Some(i) = w.rfind(':') {
                    let tail = w[i + 1..].trim_end_matches([')', ',']);
                    if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
                        let rest = w[i + 1 + tail.len()..].to_string();
                        w = format!("{}{rest}", &w[..i]);
                    }
                }
            }
            w
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn fuzz_dir() -> PathBuf {
    root().join("tests/fixtures/fuzz")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Save a crashing input as `crashes/<target>/known/<id>/` with `<id>.txt` beside it.
fn save_crash(
    t: &Target,
    case: &Case,
    seed: u64,
    iter: u64,
    kind: &str,
    msg: &str,
    loc: &str,
) -> PathBuf {
    let base = fuzz_dir().join("crashes").join(t.name).join("known");
    let id = format!("s{seed}-i{iter}");
    let dir = base.join(&id);
    case.write(&dir);
    let note = format!(
        "target: {}\nseed: {seed}\niteration: {iter}\nkind: {kind}\nmessage: {msg}\nlocation: {loc}\nreproduce: SCSAE_FUZZ_REPRO={}:{seed}:{iter} cargo test --test reference fuzz_readers::fuzz_repro -- --ignored --nocapture\n",
        t.name, t.name
    );
    std::fs::write(base.join(format!("{id}.txt")), note).unwrap();
    dir
}

/// Regression inputs of a target: every case folder in `crashes/<target>/` (with `known`, only
/// those in `crashes/<target>/known/`).
fn regression_cases(target: &str, known: bool) -> Vec<(PathBuf, Case)> {
    let mut dir = fuzz_dir().join("crashes").join(target);
    if known {
        dir = dir.join("known");
    }
    sorted_entries(&dir)
        .into_iter()
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "known"))
        .map(|p| {
            let c = Case::read(&p);
            (p, c)
        })
        .collect()
}

#[derive(Default, Clone, Debug)]
struct Stats {
    execs: u64,
    ok: u64,
    err: u64,
    panics: u64,
    secs: f64,
}

// ---------------------------------------------------------------------------------------------
// Tests

/// CI: a short seeded pass over every target, and every saved regression input must not panic.
#[test]
fn fuzz_smoke() {
    let start = Instant::now();
    let iters = env_u64("SCSAE_FUZZ_SMOKE_ITERS", SMOKE_ITERS);
    let tmp = tempfile::tempdir().unwrap();
    let last = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz_last_input.txt");
    let mut failures = Vec::new();
    // A watchdog: a hang fails the test with the input that hung instead of blocking CI.
    let current = Arc::new(Mutex::new(String::new()));
    let tick = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let hang_secs = env_u64("SCSAE_FUZZ_HANG_SECS", 60);
    let handle = {
        let (current, tick, done) = (current.clone(), tick.clone(), done.clone());
        let tmp = tmp.path().to_path_buf();
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut report = Vec::new();
            for t in targets() {
                let t0 = Instant::now();
                let seeds = (t.seeds)();
                assert!(!seeds.is_empty(), "no seeds for target {}", t.name);
                let mut st = Stats::default();
                let mut cases: Vec<(String, Case)> = regression_cases(t.name, false)
                    .into_iter()
                    .map(|(p, c)| (format!("regression {}", p.display()), c))
                    .collect();
                for (i, s) in seeds.iter().enumerate() {
                    cases.push((format!("{} seed {i}", t.name), s.clone()));
                }
                for i in 0..iters {
                    cases.push((
                        format!("SCSAE_FUZZ_REPRO={}:{SMOKE_SEED}:{i}", t.name),
                        make_input(&t, &seeds, SMOKE_SEED, i),
                    ));
                }
                let n_seeds = seeds.len();
                let n_reg = cases.len() - n_seeds - iters as usize;
                let mut seeds_ok = 0;
                for (k, (label, case)) in cases.into_iter().enumerate() {
                    *current.lock().unwrap() = label.clone();
                    let _ = std::fs::write(&last, &label);
                    tick.fetch_add(1, Ordering::SeqCst);
                    st.execs += 1;
                    match run_case(&t, &case, &tmp.join(t.name)) {
                        Outcome::Ok => {
                            st.ok += 1;
                            if (n_reg..n_reg + n_seeds).contains(&k) {
                                seeds_ok += 1;
                            }
                        }
                        Outcome::Err => st.err += 1,
                        Outcome::Panic(msg, loc) => {
                            st.panics += 1;
                            failures.push(format!("{label}: panicked at {loc}: {msg}"));
                        }
                    }
                }
                st.secs = t0.elapsed().as_secs_f64();
                report.push(format!(
                    "{:<10} {:>5} inputs ({} accepted, {} refused, {} panics; {seeds_ok}/{n_seeds} seeds and {n_reg} regression inputs) in {:.2} s",
                    t.name, st.execs, st.ok, st.err, st.panics, st.secs
                ));
            }
            done.store(true, Ordering::SeqCst);
            (failures, report)
        })
    };
    let mut last_tick = 0;
    let mut since = Instant::now();
    while !done.load(Ordering::SeqCst) && !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        let now = tick.load(Ordering::SeqCst);
        if now != last_tick {
            last_tick = now;
            since = Instant::now();
        } else if since.elapsed() > Duration::from_secs(hang_secs) {
            panic!(
                "fuzz_smoke: no progress for {hang_secs} s (hang?) on {}",
                current.lock().unwrap()
            );
        }
    }
    let (f, report) = handle.join().expect("fuzz_smoke worker thread died");
    failures.extend(f);
    for l in &report {
        println!("fuzz_smoke {l}");
    }
    for (k, n) in INNER_PANICS.lock().unwrap().iter() {
        println!("fuzz_smoke panic caught inside the library ({n}x): {k}");
    }
    println!("fuzz_smoke: {:.1} s", start.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} fuzz input(s) panicked a reader (reproduce with the SCSAE_FUZZ_REPRO value and the \
         fuzz_repro test):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Replays the known crashes (`crashes/<target>/known/`), each in a child process under the memory
/// limit (an abort ends only the child), and says which still fail and which are fixed.
#[test]
#[ignore]
fn fuzz_known() {
    let mem_mb = env_u64("SCSAE_FUZZ_MEM_MB", 6144);
    let exe = std::env::current_exe().unwrap();
    let (mut still, mut fixed) = (0, 0);
    for t in targets() {
        for (p, _) in regression_cases(t.name, true) {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", mem_mb * 1024))
                .arg(&exe)
                .args([
                    "reference::fuzz_readers::fuzz_replay",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("SCSAE_FUZZ_WORKER", t.name)
                .env("SCSAE_FUZZ_REPLAY", &p)
                .env("RUST_BACKTRACE", "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let verdict = stdout
                .lines()
                .find_map(|l| l.find("@@FUZZ R ").map(|i| l[i + 9..].to_string()));
            match verdict.as_deref() {
                Some("ok") | Some("err") => {
                    fixed += 1;
                    println!(
                        "FIXED        {} (move it to {})",
                        p.display(),
                        p.parent().unwrap().parent().unwrap().display()
                    );
                }
                Some(v) => {
                    still += 1;
                    println!("STILL PANICS {}: {v}", p.display());
                }
                None => {
                    still += 1;
                    let msg = stderr
                        .lines()
                        .find(|l| {
                            l.contains("memory allocation")
                                || l.contains("overflowed")
                                || l.contains("panicked")
                        })
                        .unwrap_or("");
                    let at = crate_frame(&stderr).unwrap_or_else(|| "?".into());
                    println!(
                        "STILL DIES   {} ({}): {msg} [first scsae frame: {at}]",
                        p.display(),
                        out.status
                    );
                }
            }
        }
    }
    println!("fuzz_known: {still} still failing, {fixed} fixed");
}

/// Child of `fuzz_known`: run the case folder `SCSAE_FUZZ_REPLAY` through target `SCSAE_FUZZ_WORKER`.
#[test]
#[ignore]
fn fuzz_replay() {
    let (Ok(name), Ok(dir)) = (
        std::env::var("SCSAE_FUZZ_WORKER"),
        std::env::var("SCSAE_FUZZ_REPLAY"),
    ) else {
        return;
    };
    let t = targets()
        .into_iter()
        .find(|t| t.name == name)
        .expect("unknown target");
    let case = Case::read(Path::new(&dir));
    let tmp = tempfile::tempdir().unwrap();
    let v = match run_case(&t, &case, &tmp.path().join("case")) {
        Outcome::Ok => "ok".to_string(),
        Outcome::Err => "err".to_string(),
        Outcome::Panic(msg, loc) => format!("panicked at {loc}: {msg}"),
    };
    println!("@@FUZZ R {v}");
}

/// `SCSAE_FUZZ_REPRO=target:seed:iter`: write that input into `SCSAE_FUZZ_OUT` and run it.
#[test]
#[ignore]
fn fuzz_repro() {
    let spec = std::env::var("SCSAE_FUZZ_REPRO").expect("set SCSAE_FUZZ_REPRO=target:seed:iter");
    let parts: Vec<&str> = spec.split(':').collect();
    let (name, seed, iter) = (
        parts[0],
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
    );
    let t = targets()
        .into_iter()
        .find(|t| t.name == name)
        .expect("unknown target");
    let case = make_input(&t, &(t.seeds)(), seed, iter);
    let out = std::env::var("SCSAE_FUZZ_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/fuzz-repro"));
    case.write(&out);
    println!("input written to {}", out.display());
    // run without catching, so the panic (and RUST_BACKTRACE) shows
    let ok = (t.run)(&out, &case);
    println!("reader returned {}", if ok { "Ok" } else { "an error" });
}

/// Child process of `fuzz_long`: runs one target from `SCSAE_FUZZ_START` until
/// `SCSAE_FUZZ_DEADLINE_MS` (ms since the epoch), reporting progress on stdout.
#[test]
#[ignore]
fn fuzz_worker() {
    let Ok(name) = std::env::var("SCSAE_FUZZ_WORKER") else {
        return;
    };
    let t = targets()
        .into_iter()
        .find(|t| t.name == name)
        .expect("unknown target");
    let seeds = (t.seeds)();
    let seed = env_u64("SCSAE_FUZZ_SEED", 0);
    let start = env_u64("SCSAE_FUZZ_START", 0);
    let deadline = env_u64("SCSAE_FUZZ_DEADLINE_MS", 0);
    let tmp = tempfile::tempdir().unwrap();
    let mut out = std::io::stdout();
    let mut i = start;
    let (mut ok, mut err) = (0u64, 0u64);
    loop {
        if i.is_multiple_of(16) && now_ms() >= deadline {
            break;
        }
        let case = make_input(&t, &seeds, seed, i);
        writeln!(out, "@@FUZZ I {i}\t{ok}\t{err}").unwrap();
        match run_case(&t, &case, &tmp.path().join("case")) {
            Outcome::Ok => ok += 1,
            Outcome::Err => err += 1,
            Outcome::Panic(msg, loc) => {
                let msg = msg.replace(['\n', '\t'], " ");
                writeln!(out, "@@FUZZ P {i}\t{loc}\t{msg}").unwrap();
            }
        }
        i += 1;
    }
    for (k, n) in INNER_PANICS.lock().unwrap().iter() {
        writeln!(out, "@@FUZZ C {n}\t{k}").unwrap();
    }
    writeln!(out, "@@FUZZ D {i}\t{ok}\t{err}").unwrap();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Long run: `SCSAE_FUZZ_SECS` (default 60) over the targets in `SCSAE_FUZZ_TARGETS` (default all,
/// comma-separated), seed `SCSAE_FUZZ_SEED`, slices of `SCSAE_FUZZ_SLICE_SECS` (default 120),
/// children limited to `SCSAE_FUZZ_MEM_MB` (default 6144) of address space.
#[test]
#[ignore]
fn fuzz_long() {
    let secs = env_u64("SCSAE_FUZZ_SECS", 60);
    let seed = env_u64("SCSAE_FUZZ_SEED", 1);
    let slice = env_u64("SCSAE_FUZZ_SLICE_SECS", 120);
    let mem_mb = env_u64("SCSAE_FUZZ_MEM_MB", 6144);
    let hang = env_u64("SCSAE_FUZZ_HANG_SECS", 30);
    let filter: Option<Vec<String>> = std::env::var("SCSAE_FUZZ_TARGETS")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let all = targets();
    let ts: Vec<&Target> = all
        .iter()
        .filter(|t| {
            filter
                .as_ref()
                .is_none_or(|f| f.iter().any(|x| x == t.name))
        })
        .collect();
    assert!(!ts.is_empty(), "no target selected");
    let seeds: BTreeMap<&str, Vec<Case>> = ts.iter().map(|t| (t.name, (t.seeds)())).collect();
    // A private copy of this test binary for the children: a rebuild (`cargo test`) during the run
    // replaces the original file.
    let exe_dir = tempfile::tempdir().unwrap();
    let exe = exe_dir.path().join("fuzz-worker");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next: BTreeMap<&str, u64> = ts.iter().map(|t| (t.name, 0)).collect();
    let mut stats: BTreeMap<&str, Stats> = ts.iter().map(|t| (t.name, Stats::default())).collect();
    let mut inner: BTreeMap<String, u64> = BTreeMap::new();
    let mut crashes: Vec<String> = Vec::new();
    let mut seen_sig: BTreeMap<String, u64> = BTreeMap::new();
    println!(
        "fuzz_long: {secs} s, seed {seed}, targets {:?}",
        ts.iter().map(|t| t.name).collect::<Vec<_>>()
    );
    'outer: loop {
        for t in &ts {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break 'outer;
            }
            let this = Duration::from_secs(slice).min(left);
            let t0 = Instant::now();
            let slice_end = now_ms() + this.as_millis() as u64;
            // restart the child after every crash until the slice is over
            while now_ms() + 200 < slice_end {
                let start_iter = next[t.name];
                let mut child = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", mem_mb * 1024))
                    .arg(&exe)
                    .args([
                        "reference::fuzz_readers::fuzz_worker",
                        "--exact",
                        "--ignored",
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env("SCSAE_FUZZ_WORKER", t.name)
                    .env("SCSAE_FUZZ_SEED", seed.to_string())
                    .env("SCSAE_FUZZ_START", start_iter.to_string())
                    .env("SCSAE_FUZZ_DEADLINE_MS", slice_end.to_string())
                    .env("RUST_BACKTRACE", "1")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let stdout = child.stdout.take().unwrap();
                let mut stderr = child.stderr.take().unwrap();
                let err_thread = std::thread::spawn(move || {
                    let mut s = String::new();
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
                    s
                });
                let lines: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
                let progress = Arc::new(AtomicU64::new(0));
                let eof = Arc::new(AtomicBool::new(false));
                let reader = {
                    let (lines, progress, eof) = (lines.clone(), progress.clone(), eof.clone());
                    std::thread::spawn(move || {
                        for l in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                            progress.fetch_add(1, Ordering::SeqCst);
                            // the first line follows the harness's "test ... ... " on the same line
                            if let Some(i) = l.find("@@FUZZ ") {
                                lines.lock().unwrap().push(l[i + 7..].to_string());
                            }
                        }
                        eof.store(true, Ordering::SeqCst);
                    })
                };
                let mut last_p = 0;
                let mut since = Instant::now();
                let mut hung = false;
                while !eof.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                    let p = progress.load(Ordering::SeqCst);
                    if p != last_p {
                        last_p = p;
                        since = Instant::now();
                    } else if since.elapsed() > Duration::from_secs(hang) {
                        hung = true;
                        let _ = child.kill();
                        break;
                    }
                }
                let status = child.wait().unwrap();
                reader.join().unwrap();
                let stderr_text = err_thread.join().unwrap();
                let st = stats.get_mut(t.name).unwrap();
                let mut last_started: Option<u64> = None;
                let mut finished = false;
                let mut last_counts = (0u64, 0u64);
                for l in lines.lock().unwrap().iter() {
                    let (kind, rest) = l.split_at(1);
                    let rest = rest.trim_start();
                    match kind {
                        "I" => {
                            let f: Vec<u64> =
                                rest.split('\t').map(|x| x.parse().unwrap()).collect();
                            last_started = Some(f[0]);
                            last_counts = (f[1], f[2]);
                            st.execs += 1;
                        }
                        "P" => {
                            let f: Vec<&str> = rest.splitn(3, '\t').collect();
                            let iter: u64 = f[0].parse().unwrap();
                            st.panics += 1;
                            let sig = format!("{} panic {}", t.name, signature(f[1]));
                            let n = seen_sig.entry(sig.clone()).or_default();
                            *n += 1;
                            if *n == 1 {
                                let case = make_input(t, &seeds[t.name], seed, iter);
                                let d = save_crash(t, &case, seed, iter, "panic", f[2], f[1]);
                                crashes.push(format!("{sig}: {} -> {}", f[2], d.display()));
                            }
                        }
                        "C" => {
                            let (n, k) = rest.split_once('\t').unwrap();
                            *inner.entry(k.to_string()).or_default() += n.parse::<u64>().unwrap();
                        }
                        "D" => {
                            let f: Vec<u64> =
                                rest.split('\t').map(|x| x.parse().unwrap()).collect();
                            st.ok += f[1];
                            st.err += f[2];
                            next.insert(t.name, f[0]);
                            finished = true;
                        }
                        _ => {}
                    }
                }
                if !finished {
                    st.ok += last_counts.0;
                    st.err += last_counts.1;
                    // abort, signal, or hang: the last started input is the culprit
                    let iter = last_started.unwrap_or(start_iter);
                    let kind = if hung {
                        format!("hang (no progress for {hang} s)")
                    } else {
                        format!("process died: {status}")
                    };
                    let keys = [
                        "memory allocation of",
                        "overflowed its stack",
                        "panicked at",
                        "fatal runtime error",
                        "panic in a",
                    ];
                    // the last fatal message in stderr, and the first scsae frame of its backtrace
                    let at = keys
                        .iter()
                        .filter_map(|k| stderr_text.rfind(k))
                        .max()
                        .unwrap_or(0);
                    let fatal = &stderr_text[stderr_text[..at].rfind('\n').map_or(0, |i| i + 1)..];
                    let tail: String = fatal
                        .lines()
                        .find(|l| !l.trim().is_empty() && !l.starts_with("note:"))
                        .unwrap_or("")
                        .to_string();
                    let loc = crate_frame(fatal).unwrap_or_else(|| "?".into());
                    st.panics += 1;
                    let sig = format!("{} {kind} at {}", t.name, signature(&loc));
                    let n = seen_sig.entry(sig.clone()).or_default();
                    *n += 1;
                    if *n == 1 {
                        let case = make_input(t, &seeds[t.name], seed, iter);
                        let d = save_crash(t, &case, seed, iter, &kind, &tail, &loc);
                        crashes.push(format!("{sig}: {tail} -> {}", d.display()));
                    }
                    next.insert(t.name, iter + 1);
                }
            }
            stats.get_mut(t.name).unwrap().secs += t0.elapsed().as_secs_f64();
        }
    }
    println!("\nfuzz_long results (seed {seed}):");
    println!(
        "{:<10} {:>9} {:>8} {:>9} {:>8} {:>8} {:>9}",
        "target", "execs", "accepted", "refused", "crashes", "secs", "execs/s"
    );
    for (name, s) in &stats {
        println!(
            "{name:<10} {:>9} {:>8} {:>9} {:>8} {:>8.0} {:>9.1}   (next iteration {})",
            s.execs,
            s.ok,
            s.err,
            s.panics,
            s.secs,
            s.execs as f64 / s.secs.max(1e-9),
            next[name]
        );
    }
    for (k, n) in &inner {
        println!("panic caught inside the library ({n}x): {k}");
    }
    println!("crashes saved ({}):", crashes.len());
    for c in &crashes {
        println!("  {c}");
    }
    let _ = std::io::stdout().flush();
}
