//! Helpers shared by the three integration-test binaries (`cli`, `reference`, `pipelines`).
//!
//! Each binary compiles this whole module but uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

pub mod notebook;
pub mod sae;
pub mod spikgpt;

/// The crate root (`cargo test` also runs integration tests there, so relative paths work too).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `scsae` binary built for these tests.
pub fn scsae() -> Command {
    Command::cargo_bin("scsae").unwrap()
}

/// A JSON file.
pub fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A JSON array of numbers.
pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A JSON array of numbers, as f32.
pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A JSON array of strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Every file under `dir`: its path relative to `dir` (with `/`) -> its bytes.
pub fn tree_bytes(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Command-line options `--key value`: `defaults` in order, each replaced by its entry in `set`
/// (clap refuses repeated options), then the entries of `set` that are not defaults, in order.
pub fn with_options(defaults: &[(&str, &str)], set: &[(&str, &str)]) -> Vec<String> {
    let mut opts: Vec<(String, String)> = defaults
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in set {
        match opts.iter_mut().find(|(a, _)| a == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => opts.push((k.to_string(), v.to_string())),
        }
    }
    opts.into_iter().flat_map(|(k, v)| [k, v]).collect()
}

/// The manifest of an unfinished extraction folder written by a test (`StoreWriter::create`): model
/// `model`, data file `data`, `layers`, `n_cells` cells of width `d`, with or without tokens.
pub fn test_manifest(
    model: Value,
    data: &str,
    layers: &[&str],
    (n_cells, d): (usize, usize),
    tokens: bool,
) -> scsae::activations::Manifest {
    scsae::activations::Manifest {
        format: scsae::activations::FORMAT.into(),
        software_version: "test".into(),
        model,
        data: serde_json::json!({ "file": data }),
        options: serde_json::json!({}),
        layers: layers.iter().map(|s| s.to_string()).collect(),
        d_model: d,
        n_cells,
        seed: 0,
        tokens,
        cell_parts: vec![],
        token_parts: vec![],
        complete: false,
        shard: None,
    }
}
