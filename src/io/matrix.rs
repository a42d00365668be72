//! Dense `rows x cols` float matrices: activations, embeddings, SAE codes.
//!
//! [`read_matrix`] accepts the formats users bring: safetensors (one 2-D tensor, or the one named by
//! `key`), NumPy `.npy`, and CSV/TSV/Parquet tables whose first column may hold row ids (cell ids).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, IoContext, Result};
use crate::io::atomic::write_bytes_atomic;
use crate::io::npy::read_npy;

use crate::data::DenseMatrix;

impl DenseMatrix {
    /// Save as a safetensors file with the matrix under `name`, row ids (if any) in the metadata
    /// entry `row_ids` (a JSON array), atomically.
    pub fn write_safetensors(&self, path: &Path, name: &str) -> Result<()> {
        let mut meta = HashMap::new();
        if let Some(ids) = &self.row_ids {
            meta.insert(
                "row_ids".to_string(),
                serde_json::to_string(ids).unwrap_or_default(),
            );
        }
        let bytes = f32_bytes(&self.data);
        let view = TensorView::new(Dtype::F32, vec![self.n_rows, self.n_cols], &bytes)
            .map_err(|e| Error::input(path, format!("cannot build tensor: {e}")))?;
        let out = safetensors::serialize([(name, view)], Some(meta))
            .map_err(|e| Error::input(path, format!("cannot serialise: {e}")))?;
        write_bytes_atomic(path, &out)
    }
}

/// Little-endian bytes of an `f32` slice.
pub fn f32_bytes(data: &[f32]) -> Vec<u8> {
    f32_le_bytes(data).into_owned()
}

/// Little-endian bytes of an `f32` slice, borrowed where the target is little-endian (no copy).
pub fn f32_le_bytes(data: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: any f32 is 4 initialised bytes without padding, and u8 needs no alignment; on a
        // little-endian target these are the values' little-endian bytes
        let bytes =
            unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), data.len() * 4) };
        return std::borrow::Cow::Borrowed(bytes);
    }
    std::borrow::Cow::Owned(data.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// Read a dense matrix from `.safetensors`, `.npy`, `.csv`, `.tsv` or `.parquet`.
///
/// `key` picks a tensor in a safetensors file (otherwise the file must hold exactly one 2-D tensor).
/// In tables, a first column of text is taken as row ids; every other column must be numeric.
/// Non-finite values are an error.
pub fn read_matrix(path: &Path, key: Option<&str>) -> Result<DenseMatrix> {
    if !path.exists() {
        return Err(Error::input(path, "file not found"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let m = match ext.as_str() {
        "safetensors" => read_safetensors_matrix(path, key)?,
        "npy" => {
            let a = read_npy(path)?;
            match a.shape.as_slice() {
                [r, c] => DenseMatrix::new(*r, *c, a.data)?,
                [n] => {
                    return Err(Error::input(
                        path,
                        format!(
                            "expected a 2-D array (rows x columns), found a 1-D array of {n} values; save it with shape ({n}, 1) if it is one column"
                        ),
                    ))
                }
                s => {
                    return Err(Error::input(
                        path,
                        format!("expected a 2-D array, found shape {s:?}"),
                    ))
                }
            }
        }
        "csv" | "tsv" | "txt" => crate::io::table::read_table_matrix(path, ext == "tsv")?,
        "parquet" | "pq" => crate::io::table::read_table_matrix(path, false)?,
        _ => {
            return Err(Error::input(
                path,
                "unknown matrix format (expected .safetensors, .npy, .csv, .tsv or .parquet)",
            ))
        }
    };
    if m.n_rows == 0 || m.n_cols == 0 {
        return Err(Error::input(
            path,
            format!("matrix is empty ({} x {})", m.n_rows, m.n_cols),
        ));
    }
    m.check_finite(path)?;
    Ok(m)
}

fn read_safetensors_matrix(path: &Path, key: Option<&str>) -> Result<DenseMatrix> {
    let bytes = std::fs::read(path).at(path)?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::input(path, format!("not a valid safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::input(path, format!("not a valid safetensors file: {e}")))?;
    let name = match key {
        Some(k) => k.to_string(),
        None => {
            let mut two_d: Vec<String> = st
                .tensors()
                .into_iter()
                .filter(|(_, v)| v.shape().len() == 2)
                .map(|(n, _)| n)
                .collect();
            two_d.sort();
            match two_d.len() {
                1 => two_d.remove(0),
                0 => return Err(Error::input(path, "no 2-D tensor in this file")),
                _ => {
                    return Err(Error::input(
                        path,
                        format!(
                            "several 2-D tensors ({}); name one with --key",
                            two_d.join(", ")
                        ),
                    ))
                }
            }
        }
    };
    let view = st.tensor(&name).map_err(|_| {
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        Error::input(
            path,
            format!("no tensor named '{name}' (found: {})", names.join(", ")),
        )
    })?;
    let shape = view.shape().to_vec();
    let (r, c) = match shape.as_slice() {
        [r, c] => (*r, *c),
        [n] => (*n, 1),
        s => {
            return Err(Error::input(
                path,
                format!("tensor '{name}' has shape {s:?}; expected 2-D"),
            ))
        }
    };
    let data = tensor_to_f32(view.dtype(), view.data()).ok_or_else(|| {
        Error::input(
            path,
            format!("tensor '{name}' has unsupported dtype {:?}", view.dtype()),
        )
    })?;
    let mut m = DenseMatrix::new(r, c, data)?;
    if let Some(meta) = header.metadata() {
        if let Some(ids) = meta.get("row_ids") {
            let ids: Vec<String> = serde_json::from_str(ids).map_err(|e| {
                Error::input(path, format!("metadata row_ids is not a JSON list: {e}"))
            })?;
            if ids.len() != r {
                return Err(Error::input(
                    path,
                    format!("metadata has {} row ids for {r} rows", ids.len()),
                ));
            }
            m.row_ids = Some(ids);
        }
    }
    Ok(m)
}

/// Convert raw little-endian tensor bytes to `f32` (F32, F64, F16, BF16, I64, I32, U8).
pub fn tensor_to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        Dtype::I32 => bytes
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        Dtype::U8 => bytes.iter().map(|&b| b as f32).collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_with_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut m = DenseMatrix::new(2, 2, vec![1., 2., 3., 4.]).unwrap();
        m.row_ids = Some(vec!["a".into(), "b".into()]);
        m.write_safetensors(&p, "x").unwrap();
        let back = read_matrix(&p, None).unwrap();
        assert_eq!(back, m);
        assert!(read_matrix(&p, Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("no tensor named"));
    }

    #[test]
    fn nan_is_rejected_with_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        DenseMatrix::new(2, 2, vec![1., 2., f32::NAN, 4.])
            .unwrap()
            .write_safetensors(&p, "x")
            .unwrap();
        let e = read_matrix(&p, None).unwrap_err().to_string();
        assert!(e.contains("row 1, column 0"), "{e}");
    }
}
