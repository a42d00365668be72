//! AnnData `.h5ad` files, in both on-disk layouts users meet:
//!
//! - AnnData >= 0.8: elements carry `encoding-type` attributes; `X` is a dense dataset or a
//!   `csr_matrix`/`csc_matrix` group; `obs`/`var` are `dataframe` groups with `_index`, plain,
//!   `string-array`, `categorical` and `nullable-*` columns; raw data lives in `raw/X`, `raw/var`.
//! - AnnData 0.7: `obs`/`var` are `dataframe` groups as above (`_index` names the index dataset),
//!   but a categorical column is a plain integer dataset of codes whose `categories` attribute is
//!   an object reference to `<frame>/__categories/<col>` (the category names); code -1 = missing.
//!   `__categories` is not a column (it is absent from `column-order`).
//! - AnnData < 0.7: `obs`/`var` are compound (structured-array) datasets with an `index` field,
//!   categories of integer columns in `uns/<col>_categories`, sparse matrices as groups with
//!   `h5sparse_format`/`h5sparse_shape` attributes, raw data in groups named `raw.X` and `raw.var`.
//!
//! Read with the pure-Rust `hdf5-pure` crate: no system HDF5 library is needed.

use std::path::Path;

use hdf5_pure::{AttrValue, Datatype, File, Group};

use crate::data::h5ad_rows::H5adRows;
use crate::data::obs::{Obs, ObsColumn, ObsValues};
use crate::data::{CsrMatrix, Dataset, LoadOptions, MatrixLayer};
use crate::error::{Error, Result};

type Res<T> = std::result::Result<T, String>;

/// The end-of-file address recorded in an HDF5 superblock at the start of the file (versions 0-3,
/// base address 0), as the HDF5 library checks it on open; `None` when it cannot be read.
fn superblock_eof(head: &[u8]) -> Option<u64> {
    let version = *head.get(8)?;
    let addr = |at: usize, size: usize| -> Option<u64> {
        let b = head.get(at..at + size)?;
        let mut v = [0u8; 8];
        v[..size].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    };
    let (offsets, base_at) = match version {
        // sig 8, versions 5 bytes (incl. reserved), offsets 1, lengths 1, reserved 1, K 2+2, flags 4
        0 => (*head.get(13)? as usize, 24),
        1 => (*head.get(13)? as usize, 28),
        // sig 8, version 1, offsets 1, lengths 1, flags 1
        2 | 3 => (*head.get(9)? as usize, 12),
        _ => return None,
    };
    if !matches!(offsets, 2 | 4 | 8) {
        return None;
    }
    let base = addr(base_at, offsets)?;
    // v0/1: base, free-space info, end of file; v2/3: base, superblock extension, end of file
    let eof = addr(base_at + 2 * offsets, offsets)?;
    (eof != u64::MAX >> (64 - 8 * offsets as u32) && base == 0).then_some(eof)
}

/// Read an `.h5ad` file.
pub fn read_h5ad(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    read_h5ad_with(path, opts, false).map(|(ds, _)| ds)
}

/// Read an `.h5ad` file's obs and var, and open its matrix to be read a window of cells at a time:
/// the returned data set's matrix has the shape but no stored values. A CSC matrix, which cannot
/// be read by rows, is read whole (and no reader is returned).
pub fn read_h5ad_by_rows(path: &Path, opts: &LoadOptions) -> Result<(Dataset, Option<H5adRows>)> {
    read_h5ad_with(path, opts, true)
}

fn read_h5ad_with(
    path: &Path,
    opts: &LoadOptions,
    by_rows: bool,
) -> Result<(Dataset, Option<H5adRows>)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() == 0 {
        return Err(Error::input(path, "file is empty"));
    }
    let mut head = [0u8; 96];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.read(&mut head).map_err(|e| Error::io(path, e))?
    };
    if n < 8 || &head[..8] != b"\x89HDF\r\n\x1a\n" {
        return Err(Error::input(
            path,
            "not an HDF5 file (an .h5ad must be HDF5; bad signature)",
        ));
    }
    if let Some(eof) = superblock_eof(&head[..n]) {
        if eof > meta.len() {
            return Err(Error::input(
                path,
                format!(
                    "truncated HDF5 file: {} bytes, but its superblock says {eof} (an interrupted copy or download?)",
                    meta.len()
                ),
            ));
        }
    }
    // streaming reads: the file is never buffered whole, only the parts read
    let file = File::open_streaming(path)
        .map_err(|e| Error::input(path, format!("corrupt or truncated HDF5 file: {e}")))?;
    read_file(&file, path, opts, by_rows)
        .map_err(|msg| Error::input(path, msg))
        .map(|(mut ds, rows)| {
            ds.source = path.to_path_buf();
            (ds, rows)
        })
}

fn read_file(
    file: &File,
    path: &Path,
    opts: &LoadOptions,
    by_rows: bool,
) -> Res<(Dataset, Option<H5adRows>)> {
    let root = file.root();
    let groups = root
        .groups()
        .map_err(|e| format!("cannot list root: {e}"))?;
    let datasets = root
        .datasets()
        .map_err(|e| format!("cannot list root: {e}"))?;
    let has = |name: &str| groups.iter().any(|g| g == name) || datasets.iter().any(|d| d == name);
    let legacy = datasets.iter().any(|d| d == "obs");
    if !has("obs") || !has("var") || !has("X") {
        return Err("not an AnnData file (needs X, obs and var)".into());
    }

    let (matrix_path, var_path) = match opts.layer {
        MatrixLayer::X => ("X".to_string(), "var".to_string()),
        MatrixLayer::Raw => {
            if has("raw.X") {
                ("raw.X".into(), "raw.var".into())
            } else if groups.iter().any(|g| g == "raw") {
                ("raw/X".into(), "raw/var".into())
            } else {
                return Err(
                    "file has no raw matrix (neither raw/X nor raw.X); use --layer X".into(),
                );
            }
        }
    };

    let uns = if legacy { file.group("uns").ok() } else { None };
    let obs = read_frame(file, "obs", uns.as_ref())?;
    let var = read_frame(file, &var_path, uns.as_ref())?;
    let dims = (obs.index.len(), var.index.len());
    let format = matrix_format(file, &matrix_path, dims, &var_path)?;
    let rows = if by_rows {
        H5adRows::open(file, path, &matrix_path, format.as_deref(), dims)?
    } else {
        None
    };
    let matrix = match rows {
        Some(_) => CsrMatrix::zeros(dims.0, dims.1),
        None => read_matrix(file, &matrix_path, format.as_deref(), dims)?,
    };
    let gene_symbols = match &opts.gene_key {
        None => var.index,
        Some(k) if k == "index" || k == "_index" => var.index,
        Some(k) => {
            let col = var.columns.get(k).ok_or_else(|| {
                format!(
                    "--gene-key {k}: no such column in {var_path} (available: {})",
                    var.columns.names().join(", ")
                )
            })?;
            col.values
                .as_strings()
                .into_iter()
                .enumerate()
                .map(|(i, v)| v.ok_or_else(|| format!("gene {i} has no value in {var_path}/{k}")))
                .collect::<Res<Vec<_>>>()?
        }
    };
    let ds = Dataset {
        matrix,
        cell_ids: obs.index,
        gene_symbols,
        obs: obs.columns,
        source: Default::default(),
        labels_file: None,
    };
    Ok((ds, rows))
}

struct Frame {
    index: Vec<String>,
    columns: Obs,
}

fn attrs_of_group(g: &Group) -> std::collections::HashMap<String, AttrValue> {
    g.attrs().unwrap_or_default()
}

fn encoding(attrs: &std::collections::HashMap<String, AttrValue>) -> Option<String> {
    attrs
        .get("encoding-type")
        .and_then(|a| a.as_str())
        .map(str::to_string)
}

fn read_frame(file: &File, path: &str, uns: Option<&Group>) -> Res<Frame> {
    if let Ok(g) = file.group(path) {
        read_frame_group(&g, path)
    } else {
        let ds = file
            .dataset(path)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        read_frame_compound(&ds, path, uns)
    }
}

fn read_frame_group(g: &Group, path: &str) -> Res<Frame> {
    let attrs = attrs_of_group(g);
    let enc = encoding(&attrs);
    if enc.as_deref() != Some("dataframe") {
        return Err(format!(
            "{path} is a group without encoding-type 'dataframe' (found {:?})",
            enc
        ));
    }
    let index_name = attrs
        .get("_index")
        .and_then(|a| a.as_str())
        .unwrap_or("_index")
        .to_string();
    let index = read_strings_elem(g, &index_name, &format!("{path}/{index_name}"))?
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("{path}: index entry {i} is missing")))
        .collect::<Res<Vec<_>>>()?;
    let order: Vec<String> = attrs
        .get("column-order")
        .and_then(|a| a.as_strings().map(|s| s.to_vec()))
        .unwrap_or_default();
    let mut columns = Obs::default();
    for name in order {
        let values = read_column(g, &name, &format!("{path}/{name}"))?;
        if values.len() != index.len() {
            return Err(format!(
                "{path}/{name} has {} values for {} rows",
                values.len(),
                index.len()
            ));
        }
        columns.insert(ObsColumn { name, values });
    }
    Ok(Frame { index, columns })
}

fn read_strings_elem(g: &Group, name: &str, full: &str) -> Res<Vec<Option<String>>> {
    let ds = g
        .dataset(name)
        .map_err(|e| format!("cannot read {full}: {e}"))?;
    let s = ds
        .read_string()
        .map_err(|e| format!("cannot read strings from {full}: {e}"))?;
    Ok(s.into_iter().map(Some).collect())
}

fn read_column(g: &Group, name: &str, full: &str) -> Res<ObsValues> {
    if let Ok(sub) = g.group(name) {
        let attrs = attrs_of_group(&sub);
        let enc = encoding(&attrs).unwrap_or_default();
        match enc.as_str() {
            "categorical" => {
                let codes = sub
                    .dataset("codes")
                    .and_then(|d| d.read_i64())
                    .map_err(|e| format!("cannot read {full}/codes: {e}"))?;
                let cats = read_strings_elem(&sub, "categories", &format!("{full}/categories"))?
                    .into_iter()
                    .map(|c| c.unwrap_or_default())
                    .collect::<Vec<_>>();
                categorical(codes, cats, full)
            }
            "nullable-integer" | "nullable-boolean" | "nullable-string-array" => {
                let mask = sub
                    .dataset("mask")
                    .and_then(|d| d.read_u8())
                    .map_err(|e| format!("cannot read {full}/mask: {e}"))?;
                let vals = sub
                    .dataset("values")
                    .map_err(|e| format!("cannot read {full}/values: {e}"))?;
                match enc.as_str() {
                    "nullable-string-array" => {
                        let s = vals
                            .read_string()
                            .map_err(|e| format!("cannot read {full}/values: {e}"))?;
                        Ok(ObsValues::Strings(
                            s.into_iter()
                                .zip(&mask)
                                .map(|(v, &m)| if m != 0 { None } else { Some(v) })
                                .collect(),
                        ))
                    }
                    "nullable-boolean" => {
                        let v = vals
                            .read_u8()
                            .map_err(|e| format!("cannot read {full}/values: {e}"))?;
                        // missing booleans become strings so they can be told apart
                        Ok(ObsValues::Strings(
                            v.into_iter()
                                .zip(&mask)
                                .map(|(x, &m)| {
                                    (m == 0)
                                        .then(|| if x != 0 { "True" } else { "False" }.to_string())
                                })
                                .collect(),
                        ))
                    }
                    _ => {
                        let v = vals
                            .read_f64()
                            .map_err(|e| format!("cannot read {full}/values: {e}"))?;
                        Ok(ObsValues::Numeric(
                            v.into_iter()
                                .zip(&mask)
                                .map(|(x, &m)| if m != 0 { f64::NAN } else { x })
                                .collect(),
                        ))
                    }
                }
            }
            other => Err(format!("{full}: unsupported column encoding '{other}'")),
        }
    } else {
        let ds = g
            .dataset(name)
            .map_err(|e| format!("cannot read {full}: {e}"))?;
        let dt = ds
            .datatype()
            .map_err(|e| format!("cannot read type of {full}: {e}"))?;
        if let Some(categories) = legacy_categories(g, &ds, name, full)? {
            if !matches!(dt, Datatype::FixedPoint { .. }) {
                return Err(format!(
                    "{full}: has a 'categories' attribute but its codes are not integers ({dt:?})"
                ));
            }
            let codes = ds
                .read_i64()
                .map_err(|e| format!("cannot read {full}: {e}"))?;
            return categorical(codes, categories, full);
        }
        dataset_values(&ds, &dt, full)
    }
}

/// Codes and category names as a categorical column, as `pandas.Categorical.from_codes` takes them:
/// -1 is missing, any other code outside the categories is an error.
fn categorical(codes: Vec<i64>, categories: Vec<String>, full: &str) -> Res<ObsValues> {
    if let Some(&bad) = codes
        .iter()
        .find(|&&c| c < -1 || c >= categories.len() as i64)
    {
        return Err(format!(
            "{full}: category code {bad} out of range ({} categories)",
            categories.len()
        ));
    }
    Ok(ObsValues::Categorical {
        codes: codes.into_iter().map(|c| c as i32).collect(),
        categories,
    })
}

/// The category names of an AnnData 0.7 categorical column: a codes dataset whose `categories`
/// attribute points at `<frame>/__categories/<name>` (an HDF5 object reference in `.h5ad`; a path
/// relative to the frame in other writers). `None` for a dataset without that attribute.
fn legacy_categories(
    frame: &Group,
    ds: &hdf5_pure::Dataset,
    name: &str,
    full: &str,
) -> Res<Option<Vec<String>>> {
    let types = ds
        .attr_datatypes()
        .map_err(|e| format!("cannot read attributes of {full}: {e}"))?;
    let Some(attr_type) = types.get("categories") else {
        return Ok(None);
    };
    let default = format!("__categories/{name}");
    // hdf5-pure does not dereference attribute references; anndata 0.7 always points the
    // reference at `__categories/<name>` beside the column, so that is where it is looked up.
    let target = match attr_type {
        Datatype::Reference { .. } => default,
        _ => ds
            .attrs()
            .ok()
            .and_then(|a| {
                a.get("categories")
                    .and_then(|v| v.as_str().map(str::to_string))
            })
            .filter(|p| !p.is_empty() && !p.starts_with('/'))
            .unwrap_or(default),
    };
    let cats = frame
        .dataset(&target)
        .map_err(|e| format!("{full}: cannot read its categories ({target}): {e}"))?
        .read_string()
        .map_err(|e| format!("cannot read strings from {target} (categories of {full}): {e}"))?;
    Ok(Some(cats))
}

fn dataset_values(ds: &hdf5_pure::Dataset, dt: &Datatype, full: &str) -> Res<ObsValues> {
    match dt {
        Datatype::String { .. } | Datatype::VariableLength { .. } => {
            let s = ds
                .read_string()
                .map_err(|e| format!("cannot read {full}: {e}"))?;
            Ok(ObsValues::Strings(s.into_iter().map(Some).collect()))
        }
        Datatype::Enumeration { .. } => {
            let v = ds
                .read_u8()
                .map_err(|e| format!("cannot read {full}: {e}"))?;
            Ok(ObsValues::Bool(v.into_iter().map(|x| x != 0).collect()))
        }
        Datatype::FixedPoint { .. } | Datatype::FloatingPoint { .. } => {
            let v = ds
                .read_f64()
                .map_err(|e| format!("cannot read {full}: {e}"))?;
            Ok(ObsValues::Numeric(v))
        }
        other => Err(format!("{full}: unsupported column type {other:?}")),
    }
}

/// Decode one field of a compound (structured-array) dataset.
fn decode_field(raw: &[u8], elem: usize, offset: usize, dt: &Datatype, n: usize) -> Res<ObsValues> {
    let field =
        |i: usize, size: usize| -> &[u8] { &raw[i * elem + offset..i * elem + offset + size] };
    match dt {
        Datatype::String { size, .. } => {
            let size = *size as usize;
            Ok(ObsValues::Strings(
                (0..n)
                    .map(|i| {
                        let b = field(i, size);
                        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                        Some(String::from_utf8_lossy(&b[..end]).trim_end().to_string())
                    })
                    .collect(),
            ))
        }
        Datatype::FixedPoint { size, layout, .. } => {
            let size = *size as usize;
            let signed = layout.signed;
            let v = (0..n)
                .map(|i| int_le(field(i, size), signed) as f64)
                .collect();
            Ok(ObsValues::Numeric(v))
        }
        Datatype::FloatingPoint { size, .. } => {
            let v = (0..n)
                .map(|i| match size {
                    4 => {
                        let b = field(i, 4);
                        f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64
                    }
                    _ => {
                        let b = field(i, 8);
                        f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                    }
                })
                .collect();
            Ok(ObsValues::Numeric(v))
        }
        Datatype::Enumeration { size, .. } => {
            let size = *size as usize;
            Ok(ObsValues::Bool(
                (0..n).map(|i| int_le(field(i, size), false) != 0).collect(),
            ))
        }
        other => Err(format!("unsupported field type {other:?}")),
    }
}

fn int_le(b: &[u8], signed: bool) -> i64 {
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    if signed && b.last().is_some_and(|&x| x & 0x80 != 0) {
        for x in buf.iter_mut().skip(b.len()) {
            *x = 0xff;
        }
    }
    i64::from_le_bytes(buf)
}

fn read_frame_compound(ds: &hdf5_pure::Dataset, path: &str, uns: Option<&Group>) -> Res<Frame> {
    let dt = ds
        .datatype()
        .map_err(|e| format!("cannot read type of {path}: {e}"))?;
    let (elem, members) = match &dt {
        Datatype::Compound { size, members } => (*size as usize, members.clone()),
        _ => {
            return Err(format!(
                "{path} is neither a dataframe group nor a structured array"
            ))
        }
    };
    let raw = ds
        .read_raw()
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    if elem == 0 || raw.len() % elem != 0 {
        return Err(format!("{path}: data size does not match its record size"));
    }
    let n = raw.len() / elem;
    let mut index = None;
    let mut columns = Obs::default();
    for m in &members {
        let values = decode_field(&raw, elem, m.byte_offset as usize, &m.datatype, n)
            .map_err(|e| format!("{path} field '{}': {e}", m.name))?;
        if m.name == "index" {
            index = Some(
                values
                    .as_strings()
                    .into_iter()
                    .map(|v| v.unwrap_or_default())
                    .collect::<Vec<_>>(),
            );
            continue;
        }
        // integer codes with categories stored in uns/<name>_categories
        let cats = uns
            .and_then(|u| u.dataset(&format!("{}_categories", m.name)).ok())
            .and_then(|d| d.read_string().ok());
        let values = match (values, cats) {
            (ObsValues::Numeric(codes), Some(categories)) => {
                if let Some(&bad) = codes
                    .iter()
                    .find(|&&c| c < -1.0 || c >= categories.len() as f64)
                {
                    return Err(format!(
                        "{path} field '{}': code {bad} outside its {} categories",
                        m.name,
                        categories.len()
                    ));
                }
                ObsValues::Categorical {
                    codes: codes.into_iter().map(|c| c as i32).collect(),
                    categories,
                }
            }
            (v, _) => v,
        };
        columns.insert(ObsColumn {
            name: m.name.clone(),
            values,
        });
    }
    let index = index.ok_or_else(|| format!("{path} has no 'index' field"))?;
    Ok(Frame { index, columns })
}

/// Error unless a matrix's claimed `(rows, cols)` agree with obs and var, checked before anything of
/// that size is allocated (the shape is only an attribute; obs and var hold real entries).
fn check_dims(
    path: &str,
    (r, c): (usize, usize),
    (n_obs, n_var): (usize, usize),
    var_path: &str,
) -> Res<()> {
    if r != n_obs {
        return Err(format!("{path} has {r} rows but obs has {n_obs} cells"));
    }
    if c != n_var {
        return Err(format!(
            "{path} has {c} columns but {var_path} has {n_var} genes"
        ));
    }
    Ok(())
}

/// The storage of the matrix at `path`: `Some("csr")`/`Some("csc")` for a sparse group, `None` for
/// a dense dataset; its shape must agree with obs and var (`dims`).
fn matrix_format(
    file: &File,
    path: &str,
    dims: (usize, usize),
    var_path: &str,
) -> Res<Option<String>> {
    if let Ok(g) = file.group(path) {
        let attrs = attrs_of_group(&g);
        let (format, shape) = if let Some(enc) = encoding(&attrs) {
            let f = match enc.as_str() {
                "csr_matrix" => "csr",
                "csc_matrix" => "csc",
                other => return Err(format!("{path}: unsupported matrix encoding '{other}'")),
            };
            (f.to_string(), attrs.get("shape").and_then(|a| a.to_i64s()))
        } else if let Some(f) = attrs.get("h5sparse_format").and_then(|a| a.as_str()) {
            (
                f.to_string(),
                attrs.get("h5sparse_shape").and_then(|a| a.to_i64s()),
            )
        } else {
            return Err(format!("{path} is a group but not a sparse matrix"));
        };
        if format != "csr" && format != "csc" {
            return Err(format!("{path}: unsupported sparse format '{format}'"));
        }
        let shape = shape.ok_or_else(|| format!("{path} has no shape attribute"))?;
        let (r, c) = match shape.as_slice() {
            [r, c] if *r >= 0 && *c >= 0 => (*r as usize, *c as usize),
            s => return Err(format!("{path}: bad shape {s:?}")),
        };
        check_dims(path, (r, c), dims, var_path)?;
        Ok(Some(format))
    } else {
        let ds = file
            .dataset(path)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let shape = ds.shape().map_err(|e| format!("cannot read {path}: {e}"))?;
        let (r, c) = match shape.as_slice() {
            [r, c] => (*r as usize, *c as usize),
            s => return Err(format!("{path}: expected a 2-D matrix, found shape {s:?}")),
        };
        check_dims(path, (r, c), dims, var_path)?;
        Ok(None)
    }
}

/// The whole matrix at `path` (of [`matrix_format`] `format`, shape `(r, c)`).
fn read_matrix(
    file: &File,
    path: &str,
    format: Option<&str>,
    (r, c): (usize, usize),
) -> Res<CsrMatrix> {
    let Some(format) = format else {
        let ds = file
            .dataset(path)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        return read_dense_rows(&ds, path, r, c, DENSE_WINDOW_BYTES);
    };
    let g = file
        .group(path)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let data = g
        .dataset("data")
        .and_then(|d| d.read_f32())
        .map_err(|e| format!("cannot read {path}/data: {e}"))?;
    let indices = g
        .dataset("indices")
        .and_then(|d| d.read_i64())
        .map_err(|e| format!("cannot read {path}/indices: {e}"))?;
    let indptr = g
        .dataset("indptr")
        .and_then(|d| d.read_i64())
        .map_err(|e| format!("cannot read {path}/indptr: {e}"))?;
    if indices.iter().any(|&i| i < 0 || i > u32::MAX as i64) || indptr.iter().any(|&p| p < 0) {
        return Err(format!("{path}: negative or oversized indices"));
    }
    let indices: Vec<u32> = indices.into_iter().map(|i| i as u32).collect();
    let indptr: Vec<usize> = indptr.into_iter().map(|p| p as usize).collect();
    let m = if format == "csr" {
        CsrMatrix::from_parts(r, c, indptr, indices, data)
    } else {
        CsrMatrix::from_csc(r, c, &indptr, &indices, &data)
    };
    m.map_err(|e| format!("{path}: {e}"))
}

/// Bytes of dense `f32` values decoded at a time when reading a dense matrix.
const DENSE_WINDOW_BYTES: usize = 32 << 20;

/// A dense `r x c` dataset as CSR (non-zero values only), decoded about `window_bytes` of rows at
/// a time so memory stays near the sparse result plus one window (a whole 13,576 x 14,053 `f32`
/// matrix would be 760 MB). Windows are whole storage chunks of rows, so no chunk is decompressed
/// twice.
fn read_dense_rows(
    ds: &hdf5_pure::Dataset,
    path: &str,
    r: usize,
    c: usize,
    window_bytes: usize,
) -> Res<CsrMatrix> {
    let chunk_rows = ds
        .chunk_shape()
        .ok()
        .flatten()
        .and_then(|s| s.first().copied())
        .map_or(1, |n| n.max(1) as usize);
    let per_window = (window_bytes / (4 * c.max(1))).max(1);
    let window = (per_window / chunk_rows).max(1) * chunk_rows;
    let mut indptr = Vec::with_capacity(r + 1);
    let mut indices = Vec::new();
    let mut data = Vec::new();
    indptr.push(0);
    let mut start = 0;
    while start < r {
        let n = window.min(r - start);
        let block = ds
            .read_f32_rows(start as u64, n as u64)
            .map_err(|e| format!("cannot read {path} rows {start}..{}: {e}", start + n))?;
        if block.len() != n * c {
            return Err(format!(
                "{path}: {} values for rows {start}..{} of {c} columns",
                block.len(),
                start + n
            ));
        }
        if c > 0 {
            for row in block.chunks_exact(c) {
                for (j, &v) in row.iter().enumerate() {
                    if v != 0.0 {
                        indices.push(j as u32);
                        data.push(v);
                    }
                }
                indptr.push(data.len());
            }
        } else {
            indptr.extend(std::iter::repeat_n(0, n));
        }
        start += n;
    }
    Ok(CsrMatrix {
        n_rows: r,
        n_cols: c,
        indptr,
        indices,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdf5_pure::FileBuilder;

    /// Windowed dense reads give the same CSR as one whole read, whatever the window and chunking.
    #[test]
    fn dense_rows_read_in_windows_match_a_whole_read() {
        let (r, c) = (10usize, 7usize);
        let dense: Vec<f32> = (0..r * c)
            .map(|i| if i % 3 == 0 { 0.0 } else { i as f32 * 0.5 })
            .collect();
        let mut b = FileBuilder::new();
        b.create_dataset("chunked")
            .with_f32_data(&dense)
            .with_shape(&[r as u64, c as u64])
            .with_chunks(&[3, 4])
            .with_deflate(4);
        b.create_dataset("contiguous")
            .with_f32_data(&dense)
            .with_shape(&[r as u64, c as u64]);
        let file = File::from_bytes(b.finish().unwrap()).unwrap();
        let whole = CsrMatrix::from_dense(r, c, &dense);
        for name in ["chunked", "contiguous"] {
            let ds = file.dataset(name).unwrap();
            for window_bytes in [
                1,
                4 * c,
                4 * c * 2,
                4 * c * 5,
                4 * c * 100,
                DENSE_WINDOW_BYTES,
            ] {
                let m = read_dense_rows(&ds, name, r, c, window_bytes).unwrap();
                assert_eq!(m, whole, "{name}, window {window_bytes} bytes");
            }
        }
    }
}
