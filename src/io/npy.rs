//! Minimal reader and writer for NumPy `.npy` files (format versions 1-3) holding 1-D or 2-D
//! little-endian float or integer arrays.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// An array read from a `.npy` file, converted to `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The array's shape (C order).
    pub shape: Vec<usize>,
    /// Elements in C (row-major) order.
    pub data: Vec<f32>,
}

/// Read a `.npy` file. Supports dtypes `<f4`, `<f8`, `<f2`, `<i4`, `<i8`, `|u1`, `|i1`, C or Fortran order.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).at(path)?;
    parse_npy(&bytes).map_err(|msg| Error::input(path, msg))
}

fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (missing \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let end = start + header_len;
    if bytes.len() < end {
        return Err("truncated .npy header".into());
    }
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
    let descr = header_field(header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = header_field(header, "fortran_order")
        .ok_or("header has no 'fortran_order'")?
        .starts_with("True");
    let shape_txt = header_field(header, "shape").ok_or("header has no 'shape'")?;
    let shape: Vec<usize> = shape_txt
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry '{s}'"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let body = &bytes[end..];
    let (size, conv): (usize, fn(&[u8]) -> f32) = match descr {
        "<f4" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "<f8" => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "<f2" => (2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        "<i4" => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        "<i8" => (8, |b| {
            i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "|u1" => (1, |b| b[0] as f32),
        "|i1" => (1, |b| b[0] as i8 as f32),
        other => {
            return Err(format!(
                "unsupported dtype '{other}' (expected float or int)"
            ))
        }
    };
    let need = n
        .checked_mul(size)
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if body.len() < need {
        return Err(format!(
            "truncated data: expected {need} bytes for shape {shape:?}, found {}",
            body.len()
        ));
    }
    let mut data: Vec<f32> = body[..need].chunks_exact(size).map(conv).collect();
    if fortran && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut out = vec![0f32; n];
        for j in 0..c {
            for i in 0..r {
                out[i * c + j] = data[j * r + i];
            }
        }
        data = out;
    } else if fortran && shape.len() > 2 {
        return Err("Fortran-order arrays with more than 2 dimensions are not supported".into());
    }
    Ok(NpyArray { shape, data })
}

fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_a = format!("'{key}':");
    let pat_b = format!("\"{key}\":");
    let pos = header
        .find(&pat_a)
        .map(|p| p + pat_a.len())
        .or_else(|| header.find(&pat_b).map(|p| p + pat_b.len()))?;
    let rest = header[pos..].trim_start();
    if rest.starts_with('(') {
        let close = rest.find(')')?;
        Some(&rest[..=close])
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }
}

/// Write a 2-D `f32` array as `.npy` (version 1, C order) into `w`.
pub fn write_npy_f32(
    w: &mut dyn Write,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> std::io::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // pad so that magic(6)+version(2)+len(2)+header is a multiple of 64, ending in '\n'
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for v in data {
        w.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fortran_order() {
        let mut buf = Vec::new();
        write_npy_f32(&mut buf, 2, 3, &[1., 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!((buf.len() - 6 * 4) % 64, 0);
        let a = parse_npy(&buf).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1., 2., 3., 4., 5., 6.]);
        // hand-built Fortran-order f8 array [[1,2],[3,4]] stored column-major
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }\n";
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend_from_slice(&(header.len() as u16).to_le_bytes());
        f.extend_from_slice(header.as_bytes());
        for v in [1f64, 3., 2., 4.] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        let b = parse_npy(&f).unwrap();
        assert_eq!(b.data, vec![1., 2., 3., 4.]);
        assert!(parse_npy(&f[..f.len() - 3])
            .unwrap_err()
            .contains("truncated"));
        assert!(parse_npy(b"hello world").is_err());
    }
}
