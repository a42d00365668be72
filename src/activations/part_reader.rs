//! Reading row ranges of one tensor of a part file without loading the file: the safetensors header
//! is parsed, then only the bytes of the requested rows are read. Memory is that of the rows asked
//! for, whatever the part's size and however many layers it holds (the streaming SAE trainer reads
//! one layer of a token part holding every layer).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use serde::Deserialize;

use crate::error::{Error, IoContext, Result};
use crate::io::matrix::tensor_to_f32;

/// Longest safetensors header accepted (the format's own limit).
const MAX_HEADER: u64 = 100_000_000;

#[derive(Debug, Deserialize)]
struct HeaderEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// Where a tensor lies in the file.
#[derive(Debug, Clone)]
struct TensorPlace {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte offset of its first element.
    start: u64,
}

/// An open part file with its parsed header.
pub struct PartReader {
    path: PathBuf,
    file: File,
    tensors: HashMap<String, TensorPlace>,
}

fn dtype_size(d: Dtype) -> Option<usize> {
    match d {
        Dtype::F32 | Dtype::I32 => Some(4),
        Dtype::F64 | Dtype::I64 => Some(8),
        Dtype::F16 | Dtype::BF16 => Some(2),
        _ => None,
    }
}

impl PartReader {
    /// Open `path` and parse its header; every tensor must lie inside the file.
    pub fn open(path: &Path) -> Result<PartReader> {
        let mut file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        let bad = |why: String| Error::input(path, format!("corrupt activation part: {why}"));
        let mut n8 = [0u8; 8];
        file.read_exact(&mut n8)
            .map_err(|_| bad("shorter than a safetensors header".into()))?;
        let n = u64::from_le_bytes(n8);
        if n > MAX_HEADER || 8 + n > len {
            return Err(bad(format!("header length {n} does not fit the file")));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header).at(path)?;
        let raw: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| bad(format!("unreadable header: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, v) in raw {
            if name == "__metadata__" {
                continue;
            }
            let e: HeaderEntry = serde_json::from_value(v)
                .map_err(|e| bad(format!("tensor {name}: unreadable header entry: {e}")))?;
            let (s, t) = e.data_offsets;
            let elems: usize = e.shape.iter().product();
            let size = dtype_size(e.dtype).map(|b| b * elems);
            if t < s || size != Some(t - s) || 8 + n + t as u64 > len {
                return Err(bad(format!(
                    "tensor {name}: offsets {s}..{t} do not match its shape {:?} or the file size",
                    e.shape
                )));
            }
            tensors.insert(
                name,
                TensorPlace {
                    dtype: e.dtype,
                    shape: e.shape,
                    start: 8 + n + s as u64,
                },
            );
        }
        Ok(PartReader {
            path: path.to_path_buf(),
            file,
            tensors,
        })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows of the 2-D tensor `name`, checking its width is `d`.
    pub fn rows(&self, name: &str, d: usize) -> Result<usize> {
        let t = self.place(name)?;
        if t.shape.len() != 2 || t.shape[1] != d {
            return Err(Error::input(
                &self.path,
                format!("tensor '{name}' has shape {:?}, expected [_, {d}]", t.shape),
            ));
        }
        Ok(t.shape[0])
    }

    fn place(&self, name: &str) -> Result<&TensorPlace> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::input(&self.path, format!("missing tensor '{name}'")))
    }

    /// The whole 1-D `I64` tensor `name` (a part's `cell_index`), without reading the others.
    pub fn read_i64(&mut self, name: &str) -> Result<Vec<i64>> {
        let t = self.place(name)?.clone();
        if t.dtype != Dtype::I64 || t.shape.len() != 1 {
            return Err(Error::input(
                &self.path,
                format!("tensor '{name}' is not a 1-D I64 tensor"),
            ));
        }
        let mut bytes = vec![0u8; t.shape[0] * 8];
        self.file.seek(SeekFrom::Start(t.start)).at(&self.path)?;
        self.file.read_exact(&mut bytes).at(&self.path)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect())
    }

    /// Rows `start..start + count` of the 2-D tensor `name` (`d` wide) as f32, row-major; non-finite
    /// values are an error naming the file.
    pub fn read_rows(
        &mut self,
        name: &str,
        d: usize,
        start: usize,
        count: usize,
    ) -> Result<Vec<f32>> {
        let total = self.rows(name, d)?;
        if start + count > total {
            return Err(Error::input(
                &self.path,
                format!(
                    "rows {start}..{} of '{name}' past its {total} rows",
                    start + count
                ),
            ));
        }
        let t = self.place(name)?.clone();
        let b = dtype_size(t.dtype).unwrap_or(4);
        let mut bytes = vec![0u8; count * d * b];
        self.file
            .seek(SeekFrom::Start(t.start + (start * d * b) as u64))
            .at(&self.path)?;
        self.file.read_exact(&mut bytes).at(&self.path)?;
        let v = match t.dtype {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64 => tensor_to_f32(t.dtype, &bytes),
            _ => None,
        }
        .ok_or_else(|| {
            Error::input(&self.path, format!("tensor '{name}' is not floating point"))
        })?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                &self.path,
                format!(
                    "non-finite value in '{name}' at row {}, column {}",
                    start + i / d.max(1),
                    i % d.max(1)
                ),
            ));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn write(dir: &Path, a: &[f32], d: usize) -> PathBuf {
        let ab: Vec<u8> = a.iter().flat_map(|x| x.to_le_bytes()).collect();
        let hb: Vec<u8> = a
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect();
        let idx: Vec<u8> = (0..(a.len() / d) as i64)
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let views = vec![
            (
                "cell_index",
                TensorView::new(Dtype::I64, vec![a.len() / d], &idx).unwrap(),
            ),
            (
                "layer_0",
                TensorView::new(Dtype::F32, vec![a.len() / d, d], &ab).unwrap(),
            ),
            (
                "layer_1",
                TensorView::new(Dtype::F16, vec![a.len() / d, d], &hb).unwrap(),
            ),
        ];
        let p = dir.join("part.safetensors");
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
        p
    }

    #[test]
    fn reads_row_ranges_of_any_tensor_and_refuses_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<f32> = (0..15).map(|x| x as f32 * 0.5).collect();
        let p = write(dir.path(), &a, 3);
        let mut r = PartReader::open(&p).unwrap();
        assert_eq!(r.rows("layer_0", 3).unwrap(), 5);
        assert_eq!(r.read_rows("layer_0", 3, 1, 2).unwrap(), a[3..9].to_vec());
        // f16 values that are exact halves read back exactly
        assert_eq!(r.read_rows("layer_1", 3, 4, 1).unwrap(), a[12..15].to_vec());
        assert_eq!(r.read_rows("layer_0", 3, 0, 5).unwrap(), a);
        assert!(r.read_rows("layer_0", 3, 4, 2).is_err());
        assert!(r
            .rows("layer_0", 4)
            .unwrap_err()
            .to_string()
            .contains("expected [_, 4]"));
        assert!(r.read_rows("cell_index", 1, 0, 1).is_err());
        assert!(r
            .rows("layer_9", 3)
            .unwrap_err()
            .to_string()
            .contains("missing tensor"));
        // a truncated file is refused at open
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let e = PartReader::open(&p).err().unwrap().to_string();
        assert!(e.contains("corrupt activation part"), "{e}");
    }
}
