//! Writing SAE codes: safetensors (with row ids and token index), `.npy`, or a CSV/Parquet table.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;
use safetensors::tensor::{Dtype, TensorView};

use crate::activations::TokenIndex;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::io::atomic::{write_atomic, write_bytes_atomic};
use crate::io::matrix::f32_bytes;
use crate::io::npy::write_npy_f32;

/// Output formats, chosen by the file extension.
pub fn check_output_path(path: &Path) -> Result<()> {
    match ext(path).as_str() {
        "safetensors" | "npy" | "csv" | "parquet" => Ok(()),
        _ => Err(Error::input(
            path,
            "unknown output format (expected .safetensors, .npy, .csv or .parquet)",
        )),
    }
}

fn ext(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Write `codes` (`[n, d_sae]`) to `path`, atomically. safetensors: tensor `codes`, plus `cell_index`,
/// `gene_id`, `position` (I64) for tokens, row ids in the metadata entry `row_ids`. CSV/Parquet: a
/// `row_id` column then `f0..f{d_sae-1}`. `.npy`: the bare matrix.
pub fn write_codes(path: &Path, codes: &DenseMatrix, tokens: Option<&TokenIndex>) -> Result<()> {
    check_output_path(path)?;
    match ext(path).as_str() {
        "safetensors" => {
            let mut meta = HashMap::new();
            if let Some(ids) = &codes.row_ids {
                meta.insert(
                    "row_ids".to_string(),
                    serde_json::to_string(ids).unwrap_or_default(),
                );
            }
            let cb = f32_bytes(&codes.data);
            let ints: Vec<(&str, Vec<u8>)> = match tokens {
                Some(t) => [
                    ("cell_index", &t.cell_index),
                    ("gene_id", &t.gene_id),
                    ("position", &t.position),
                ]
                .into_iter()
                .map(|(n, v)| (n, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
                .collect(),
                None => Vec::new(),
            };
            let mut views = vec![(
                "codes".to_string(),
                TensorView::new(Dtype::F32, vec![codes.n_rows, codes.n_cols], &cb)
                    .map_err(|e| Error::input(path, format!("codes: {e}")))?,
            )];
            for (name, b) in &ints {
                views.push((
                    name.to_string(),
                    TensorView::new(Dtype::I64, vec![b.len() / 8], b)
                        .map_err(|e| Error::input(path, format!("{name}: {e}")))?,
                ));
            }
            let bytes = safetensors::serialize(views, Some(meta))
                .map_err(|e| Error::input(path, format!("cannot serialise: {e}")))?;
            write_bytes_atomic(path, &bytes)
        }
        "npy" => write_atomic(path, |w| {
            write_npy_f32(w, codes.n_rows, codes.n_cols, &codes.data)
                .map_err(|e| Error::io(path, e))
        }),
        fmt => {
            let ids: Vec<String> = codes
                .row_ids
                .clone()
                .unwrap_or_else(|| (0..codes.n_rows).map(|i| i.to_string()).collect());
            let mut cols = vec![Column::new("row_id".into(), ids)];
            for j in 0..codes.n_cols {
                cols.push(Column::new(format!("f{j}").into(), codes.column(j)));
            }
            let mut df = DataFrame::new(codes.n_rows, cols)
                .map_err(|e| Error::input(path, format!("cannot build table: {e}")))?;
            if fmt == "csv" {
                write_atomic(path, |w| {
                    CsvWriter::new(w)
                        .include_header(true)
                        .finish(&mut df)
                        .map_err(|e| Error::input(path, format!("cannot write CSV: {e}")))
                })
            } else {
                write_atomic(path, |w| {
                    ParquetWriter::new(w)
                        .finish(&mut df)
                        .map(|_| ())
                        .map_err(|e| Error::input(path, format!("cannot write Parquet: {e}")))
                })
            }
        }
    }
}
