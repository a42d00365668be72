//! AnnData out: a copy of an input `.h5ad` with results added to `obs`, `obsm` and `uns`, the way
//! `adata.obs[...] = ...; adata.write_h5ad(...)` would leave them (AnnData >= 0.8 element encodings).
//!
//! The input is copied byte for byte and the new elements are added to the copy in place
//! (`hdf5-pure`'s editor), so everything the file held (layers, `raw`, `obsp`, `uns`, ...) survives
//! untouched. The copy is written under a temporary name beside the output and appears under its
//! final name only once complete; the input itself is never written to. Rows are matched to the
//! file's cells by cell id, so results may come in any order, but every cell of the file must have
//! exactly one result row.
//!
//! Editing a file written by h5py (superblock v0) holds the whole file in memory while the copy is
//! edited.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use hdf5_pure::{make_i8_type, AttrValue, DatasetBuilder, EnumTypeBuilder, File};

use crate::error::{Error, IoContext, Result};

/// One `obs` column to add (replacing a column of the same name).
#[derive(Debug, Clone, PartialEq)]
pub enum ObsAddition {
    /// A pandas categorical; categories in the given order (every value must be one of them).
    Categorical {
        /// Per-row values.
        values: Vec<String>,
        /// Category order.
        categories: Vec<String>,
    },
    /// Strings (`object` dtype).
    Str(Vec<String>),
    /// `float64`.
    F64(Vec<f64>),
    /// `bool`.
    Bool(Vec<bool>),
}

impl ObsAddition {
    /// A categorical whose categories are the distinct values, sorted.
    pub fn categorical(values: Vec<String>) -> Self {
        let categories = sorted_distinct(values.iter());
        ObsAddition::Categorical { values, categories }
    }

    fn len(&self) -> usize {
        match self {
            ObsAddition::Categorical { values, .. } => values.len(),
            ObsAddition::Str(v) => v.len(),
            ObsAddition::F64(v) => v.len(),
            ObsAddition::Bool(v) => v.len(),
        }
    }
}

/// One `obsm` entry to add: rows x columns.
#[derive(Debug, Clone, PartialEq)]
pub enum ObsmAddition {
    /// A dense `float32` array, row-major.
    Dense {
        /// Columns.
        n_cols: usize,
        /// `rows * n_cols` values.
        data: Vec<f32>,
    },
    /// A sparse matrix, written as a `scipy.sparse.csr_matrix` (mostly zero codes).
    Csr {
        /// Columns.
        n_cols: usize,
        /// Per row, its `(column, value)` entries in column order.
        rows: Vec<Vec<(u32, f32)>>,
    },
}

impl ObsmAddition {
    fn n_rows(&self) -> usize {
        match self {
            ObsmAddition::Dense { n_cols, data } => data.len() / (*n_cols).max(1),
            ObsmAddition::Csr { rows, .. } => rows.len(),
        }
    }
}

/// A column of a data frame stored in `uns`.
#[derive(Debug, Clone, PartialEq)]
pub enum UnsColumn {
    /// Strings; with a missing value the column is written as a categorical (missing: NaN).
    Str(Vec<Option<String>>),
    /// `float64`; a missing value is NaN.
    F64(Vec<Option<f64>>),
    /// `Int64` (pandas' nullable integer when a value is missing).
    I64(Vec<Option<i64>>),
    /// `bool`.
    Bool(Vec<bool>),
}

impl UnsColumn {
    fn len(&self) -> usize {
        match self {
            UnsColumn::Str(v) => v.len(),
            UnsColumn::F64(v) => v.len(),
            UnsColumn::I64(v) => v.len(),
            UnsColumn::Bool(v) => v.len(),
        }
    }
}

/// A `pandas.DataFrame` for `uns`: an index and named columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnsFrame {
    /// Row names.
    pub index: Vec<String>,
    /// Columns in order.
    pub columns: Vec<(String, UnsColumn)>,
}

/// One `uns` entry to add (replacing an entry of the same name).
#[derive(Debug, Clone, PartialEq)]
pub enum UnsAddition {
    /// A string array (`numpy` object array of `str`).
    Strings(Vec<String>),
    /// A data frame.
    Frame(UnsFrame),
    /// A nested dictionary.
    Dict(Vec<(String, UnsAddition)>),
}

/// What to add to the copy, with rows given in the order of `row_ids` (matched to the file's cells
/// by id).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct H5adAdditions {
    /// Cell id of each result row.
    pub row_ids: Vec<String>,
    /// `obs` columns.
    pub obs: Vec<(String, ObsAddition)>,
    /// `obsm` arrays.
    pub obsm: Vec<(String, ObsmAddition)>,
    /// `uns` entries.
    pub uns: Vec<(String, UnsAddition)>,
}

/// Refuse, before any work is done, an output that is not a new `.h5ad` beside an AnnData input the
/// writer can extend: `out` must end in `.h5ad`, must not be the input (or a link to it), must not
/// exist unless `force`, and the input must be an AnnData >= 0.7 file (`obs` a group). Returns the
/// input's cell ids (its `obs` index), for [`check_h5ad_rows`].
pub fn check_h5ad_target(input: &Path, out: &Path, force: bool) -> Result<Vec<String>> {
    if out.extension().and_then(|e| e.to_str()) != Some("h5ad") {
        return Err(Error::input(
            out,
            "--write-h5ad needs a file name ending in .h5ad",
        ));
    }
    if input.is_dir() || input.extension().and_then(|e| e.to_str()) != Some("h5ad") {
        return Err(Error::input(
            input,
            "--write-h5ad writes a copy of an .h5ad input; this input is not an .h5ad file",
        ));
    }
    if same_file(input, out) {
        return Err(Error::input(
            out,
            "is the input file itself; --write-h5ad never overwrites its input: choose another name",
        ));
    }
    if !force && out.exists() {
        return Err(Error::input(
            out,
            "already exists; --write-h5ad does not replace a finished file: choose another name",
        ));
    }
    if out.is_dir() {
        return Err(Error::input(
            out,
            "is a folder; --write-h5ad needs a file name",
        ));
    }
    obs_names(&open_read(input)?, input)
}

/// Refuse, before the work, results whose cell ids do not match `input`'s cells (`file_ids`, from
/// [`check_h5ad_target`]) one to one.
pub fn check_h5ad_rows(input: &Path, file_ids: &[String], row_ids: &[String]) -> Result<()> {
    align(file_ids, row_ids, input).map(|_| ())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn open_read(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::input(path, format!("cannot open as HDF5: {e}")))
}

/// The file's cell ids (`obs` index), refusing the pre-0.7 layout.
fn obs_names(file: &File, path: &Path) -> Result<Vec<String>> {
    let obs = file.group("obs").map_err(|_| {
        Error::input(
            path,
            "uses the AnnData layout before 0.7 (obs is a table, not a group), which --write-h5ad \
             cannot extend; re-save it with anndata first (anndata.read_h5ad(f).write_h5ad(f2))",
        )
    })?;
    let attrs = obs
        .attrs()
        .map_err(|e| Error::input(path, format!("cannot read obs attributes: {e}")))?;
    let index = attrs
        .get("_index")
        .and_then(|a| a.as_str())
        .unwrap_or("_index")
        .to_string();
    obs.dataset(&index)
        .and_then(|d| d.read_string())
        .map_err(|e| Error::input(path, format!("cannot read the cell ids obs/{index}: {e}")))
}

/// For each file row, the result row holding it; errors name `path` and the first cell that does
/// not match.
fn align(file_ids: &[String], row_ids: &[String], path: &Path) -> Result<Vec<usize>> {
    if let Some((id, _, _)) = crate::data::first_duplicate(file_ids) {
        return Err(Error::input(
            path,
            format!("cell id '{id}' appears twice in obs; results cannot be matched to its rows"),
        ));
    }
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(row_ids.len());
    for (r, id) in row_ids.iter().enumerate() {
        if at.insert(id.as_str(), r).is_some() {
            return Err(Error::invalid(format!(
                "result cell id '{id}' appears twice"
            )));
        }
    }
    let perm =
        file_ids
            .iter()
            .map(|id| {
                at.get(id.as_str()).copied().ok_or_else(|| {
                    Error::input(
                        path,
                        format!(
                        "cell '{id}' has no result ({} of {} cells have one); --write-h5ad needs \
                         a result for every cell of the file",
                        file_ids.iter().filter(|i| at.contains_key(i.as_str())).count(),
                        file_ids.len()
                    ),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
    if row_ids.len() != file_ids.len() {
        let known: HashSet<&str> = file_ids.iter().map(String::as_str).collect();
        let extra = row_ids.iter().find(|i| !known.contains(i.as_str()));
        return Err(Error::input(
            path,
            format!(
                "results hold {} cells that are not in this file (e.g. '{}'): the results do not \
                 come from this data",
                row_ids.len() - file_ids.len(),
                extra.map(String::as_str).unwrap_or("?")
            ),
        ));
    }
    Ok(perm)
}

fn enc(b: &mut DatasetBuilder, kind: &str, version: &str) {
    b.set_attr("encoding-type", AttrValue::String(kind.into()));
    b.set_attr("encoding-version", AttrValue::String(version.into()));
}

/// The distinct values, sorted (pandas' default category order).
fn sorted_distinct<'a>(values: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<String> = values
        .collect::<HashSet<_>>()
        .into_iter()
        .cloned()
        .collect();
    v.sort();
    v
}

/// numpy's `bool` as h5py stores it: an int8 enum `FALSE = 0`, `TRUE = 1`.
fn bool_type() -> Result<hdf5_pure::Datatype> {
    EnumTypeBuilder::with_base(make_i8_type())
        .value("FALSE", 0)
        .value("TRUE", 1)
        .build()
        .map_err(|e| Error::invalid(format!("bool type: {e}")))
}

fn bool_bytes(v: impl Iterator<Item = bool>) -> Vec<u8> {
    v.map(u8::from).collect()
}

fn h5(path: &Path) -> impl Fn(hdf5_pure::Error) -> Error + '_ {
    move |e| Error::input(path, format!("cannot write: {e}"))
}

/// Stage a new or replacing element at `name` (deleting any element already there).
struct Stager<'a> {
    file: &'a File,
    path: &'a Path,
}

impl Stager<'_> {
    fn exists(&self, name: &str) -> bool {
        self.file.group(name).is_ok() || self.file.dataset(name).is_ok()
    }

    fn clear(&self, name: &str) -> Result<()> {
        if self.exists(name) {
            self.file.root().delete(name).map_err(h5(self.path))?;
        }
        Ok(())
    }

    fn group(&self, name: &str, kind: &str, version: &str) -> Result<()> {
        self.group_with(name, kind, version, Vec::new())
    }

    /// A new (or replacing) group at `name` with its encoding attributes and `extra` ones.
    fn group_with(
        &self,
        name: &str,
        kind: &str,
        version: &str,
        extra: Vec<(&str, AttrValue)>,
    ) -> Result<()> {
        self.clear(name)?;
        self.file
            .root()
            .create_group_with(name, |g| {
                g.set_attr("encoding-type", AttrValue::String(kind.into()));
                g.set_attr("encoding-version", AttrValue::String(version.into()));
                for (k, v) in extra {
                    g.set_attr(k, v);
                }
            })
            .map_err(h5(self.path))?;
        Ok(())
    }

    fn ensure_dict(&self, name: &str) -> Result<()> {
        if self.file.group(name).is_err() {
            self.group(name, "dict", "0.1.0")?;
        }
        Ok(())
    }

    fn dataset(&self, name: &str, build: impl FnOnce(&mut DatasetBuilder)) -> Result<()> {
        self.clear(name)?;
        self.file
            .root()
            .create_dataset(name, build)
            .map_err(h5(self.path))?;
        Ok(())
    }

    fn strings(&self, name: &str, values: &[String]) -> Result<()> {
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        self.dataset(name, |b| {
            b.with_vlen_strings(&refs);
            enc(b, "string-array", "0.2.0");
        })
    }

    fn bools(&self, name: &str, values: &[bool]) -> Result<()> {
        let ty = bool_type()?;
        self.dataset(name, |b| {
            b.with_enum_u8_data(ty, &bool_bytes(values.iter().copied()));
            enc(b, "array", "0.2.0");
        })
    }

    fn f64s(&self, name: &str, values: &[f64]) -> Result<()> {
        self.dataset(name, |b| {
            b.with_f64_data(values);
            enc(b, "array", "0.2.0");
        })
    }

    /// A categorical of `values` (sorted categories; `None` is code -1) at `full`.
    fn categorical(&self, full: &str, values: &[Option<String>]) -> Result<()> {
        let categories = sorted_distinct(values.iter().flatten());
        let code_of: HashMap<&str, i32> = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as i32))
            .collect();
        let codes: Vec<i32> = values
            .iter()
            .map(|v| v.as_deref().map_or(-1, |c| code_of[c]))
            .collect();
        self.categorical_codes(full, &categories, &codes)
    }

    fn categorical_codes(&self, full: &str, categories: &[String], codes: &[i32]) -> Result<()> {
        self.group_with(
            full,
            "categorical",
            "0.2.0",
            vec![("ordered", AttrValue::I8(0))],
        )?;
        self.strings(&format!("{full}/categories"), categories)?;
        self.dataset(&format!("{full}/codes"), |b| {
            b.with_i32_data(codes);
            enc(b, "array", "0.2.0");
        })
    }

    fn obs_column(&self, name: &str, col: &ObsAddition, perm: &[usize]) -> Result<()> {
        let full = format!("obs/{name}");
        match col {
            ObsAddition::Categorical { values, categories } => {
                let code_of: HashMap<&str, usize> = categories
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.as_str(), i))
                    .collect();
                let codes = perm
                    .iter()
                    .map(|&r| {
                        code_of
                            .get(values[r].as_str())
                            .map(|&c| c as i32)
                            .ok_or_else(|| {
                                Error::invalid(format!("{name}: '{}' is not a category", values[r]))
                            })
                    })
                    .collect::<Result<Vec<i32>>>()?;
                self.categorical_codes(&full, categories, &codes)
            }
            ObsAddition::Str(v) => {
                let v: Vec<String> = perm.iter().map(|&r| v[r].clone()).collect();
                self.strings(&full, &v)
            }
            ObsAddition::F64(v) => {
                let v: Vec<f64> = perm.iter().map(|&r| v[r]).collect();
                self.f64s(&full, &v)
            }
            ObsAddition::Bool(v) => {
                let v: Vec<bool> = perm.iter().map(|&r| v[r]).collect();
                self.bools(&full, &v)
            }
        }
    }

    fn obsm_entry(&self, name: &str, m: &ObsmAddition, perm: &[usize]) -> Result<()> {
        let full = format!("obsm/{name}");
        let n = perm.len() as u64;
        match m {
            ObsmAddition::Dense { n_cols, data } => {
                let d = *n_cols;
                let mut out = Vec::with_capacity(perm.len() * d);
                for &r in perm {
                    out.extend_from_slice(&data[r * d..(r + 1) * d]);
                }
                self.dataset(&full, |b| {
                    b.with_f32_data(&out).with_shape(&[n, d as u64]);
                    enc(b, "array", "0.2.0");
                })
            }
            ObsmAddition::Csr { n_cols, rows } => {
                let mut indptr = Vec::with_capacity(perm.len() + 1);
                let mut indices = Vec::new();
                let mut values = Vec::new();
                indptr.push(0i64);
                for &r in perm {
                    for &(c, v) in &rows[r] {
                        indices.push(c as i32);
                        values.push(v);
                    }
                    indptr.push(indices.len() as i64);
                }
                let shape = AttrValue::I64Array(vec![n as i64, *n_cols as i64]);
                self.group_with(&full, "csr_matrix", "0.1.0", vec![("shape", shape)])?;
                self.dataset(&format!("{full}/data"), |b| {
                    b.with_f32_data(&values);
                })?;
                self.dataset(&format!("{full}/indices"), |b| {
                    b.with_i32_data(&indices);
                })?;
                self.dataset(&format!("{full}/indptr"), |b| {
                    b.with_i64_data(&indptr);
                })
            }
        }
    }

    fn uns_entry(&self, full: &str, u: &UnsAddition) -> Result<()> {
        match u {
            UnsAddition::Strings(v) => self.strings(full, v),
            UnsAddition::Dict(items) => {
                self.group(full, "dict", "0.1.0")?;
                for (k, v) in items {
                    self.uns_entry(&format!("{full}/{k}"), v)?;
                }
                Ok(())
            }
            UnsAddition::Frame(f) => self.frame(full, f),
        }
    }

    fn frame(&self, full: &str, f: &UnsFrame) -> Result<()> {
        let names: Vec<String> = f.columns.iter().map(|(n, _)| n.clone()).collect();
        let index_name = if names.iter().any(|n| n == "_index") {
            "__index".to_string()
        } else {
            "_index".to_string()
        };
        self.group_with(
            full,
            "dataframe",
            "0.2.0",
            vec![
                ("_index", AttrValue::String(index_name.clone())),
                ("column-order", AttrValue::VarLenStringArray(names)),
            ],
        )?;
        self.strings(&format!("{full}/{index_name}"), &f.index)?;
        for (name, col) in &f.columns {
            if col.len() != f.index.len() {
                return Err(Error::invalid(format!(
                    "uns table column {name} has {} values for {} rows",
                    col.len(),
                    f.index.len()
                )));
            }
            let at = format!("{full}/{name}");
            match col {
                UnsColumn::Str(v) if v.iter().all(Option::is_some) => {
                    let v: Vec<String> = v.iter().map(|s| s.clone().unwrap_or_default()).collect();
                    self.strings(&at, &v)?
                }
                // missing strings: a categorical with code -1 (NaN in pandas)
                UnsColumn::Str(v) => self.categorical(&at, v)?,
                UnsColumn::F64(v) => {
                    let v: Vec<f64> = v.iter().map(|x| x.unwrap_or(f64::NAN)).collect();
                    self.f64s(&at, &v)?
                }
                UnsColumn::Bool(v) => self.bools(&at, v)?,
                UnsColumn::I64(v) => {
                    let vals: Vec<i64> = v.iter().map(|x| x.unwrap_or(0)).collect();
                    if v.iter().all(Option::is_some) {
                        self.dataset(&at, |b| {
                            b.with_i64_data(&vals);
                            enc(b, "array", "0.2.0");
                        })?
                    } else {
                        self.group(&at, "nullable-integer", "0.1.0")?;
                        self.dataset(&format!("{at}/values"), |b| {
                            b.with_i64_data(&vals);
                        })?;
                        let mask: Vec<bool> = v.iter().map(Option::is_none).collect();
                        let ty = bool_type()?;
                        self.dataset(&format!("{at}/mask"), |b| {
                            b.with_enum_u8_data(ty, &bool_bytes(mask.iter().copied()));
                        })?
                    }
                }
            }
        }
        Ok(())
    }
}

/// Write `out`: a copy of `input` with `add` in it. `out` is checked with [`check_h5ad_target`]
/// first; on any error nothing is left under `out`.
pub fn write_h5ad_copy(input: &Path, out: &Path, add: &H5adAdditions, force: bool) -> Result<()> {
    let file_ids = check_h5ad_target(input, out, force)?;
    let perm = align(&file_ids, &add.row_ids, input)?;
    let n = add.row_ids.len();
    for (name, c) in &add.obs {
        if c.len() != n {
            return Err(Error::invalid(format!(
                "obs column {name}: {} values for {n} cells",
                c.len()
            )));
        }
    }
    for (name, m) in &add.obsm {
        if m.n_rows() != n {
            return Err(Error::invalid(format!(
                "obsm {name}: {} rows for {n} cells",
                m.n_rows()
            )));
        }
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).at(&dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(crate::io::lock::TMP_PREFIX)
        .suffix(".h5ad")
        .tempfile_in(&dir)
        .at(&dir)?;
    std::fs::copy(input, tmp.path()).at(tmp.path())?;
    edit_copy(tmp.path(), input, add, &perm)?;
    // the finished copy must read back before it is published
    let check = open_read(tmp.path())?;
    if obs_names(&check, tmp.path())?.len() != file_ids.len() {
        return Err(Error::input(out, "the written copy does not read back"));
    }
    tmp.as_file().sync_all().at(out)?;
    if force {
        tmp.persist(out).map_err(|e| Error::io(out, e.error))?;
    } else {
        tmp.persist_noclobber(out).map_err(|e| {
            if out.exists() {
                Error::input(out, "already exists; choose another name or pass --force")
            } else {
                Error::io(out, e.error)
            }
        })?;
    }
    Ok(())
}

fn edit_copy(copy: &Path, input: &Path, add: &H5adAdditions, perm: &[usize]) -> Result<()> {
    let file = File::open_rw(copy)
        .map_err(|e| Error::input(input, format!("cannot open a copy for editing: {e}")))?;
    let st = Stager {
        file: &file,
        path: input,
    };
    if !add.obs.is_empty() {
        let obs = file.group("obs").map_err(h5(input))?;
        let attrs = obs
            .attrs()
            .map_err(|e| Error::input(input, format!("cannot read obs attributes: {e}")))?;
        let mut order: Vec<String> = attrs
            .get("column-order")
            .and_then(|a| a.as_strings().map(|s| s.to_vec()))
            .unwrap_or_default();
        for (name, col) in &add.obs {
            st.obs_column(name, col, perm)?;
            if !order.contains(name) {
                order.push(name.clone());
            }
        }
        obs.set_attr("column-order", AttrValue::VarLenStringArray(order))
            .map_err(h5(input))?;
    }
    if !add.obsm.is_empty() {
        st.ensure_dict("obsm")?;
        for (name, m) in &add.obsm {
            st.obsm_entry(name, m, perm)?;
        }
    }
    if !add.uns.is_empty() {
        st.ensure_dict("uns")?;
        for (name, u) in &add.uns {
            st.uns_entry(&format!("uns/{name}"), u)?;
        }
    }
    file.commit().map_err(h5(input))?;
    Ok(())
}

impl UnsFrame {
    /// A polars table as an `uns` data frame indexed by its `index` column: strings stay strings,
    /// floats `float64`, integers `Int64`, booleans `bool` (missing: false), lists are joined with
    /// `;` (AnnData data frames hold no lists).
    pub fn from_dataframe(
        df: &polars::prelude::DataFrame,
        index: &str,
    ) -> std::result::Result<UnsFrame, String> {
        use polars::prelude::DataType;
        let err = |name: &str, e: polars::prelude::PolarsError| format!("column {name}: {e}");
        let strings =
            |c: &polars::prelude::Column| -> std::result::Result<Vec<Option<String>>, String> {
                let name = c.name().to_string();
                let s = c.cast(&DataType::String).map_err(|e| err(&name, e))?;
                let s = s.str().map_err(|e| err(&name, e))?;
                Ok(s.iter().map(|v| v.map(str::to_string)).collect())
            };
        let mut out = UnsFrame::default();
        for c in df.columns() {
            let name = c.name().to_string();
            if name == index {
                out.index = strings(c)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| v.unwrap_or_else(|| i.to_string()))
                    .collect();
                continue;
            }
            let col = match c.dtype() {
                DataType::Boolean => UnsColumn::Bool(
                    c.bool()
                        .map_err(|e| err(&name, e))?
                        .iter()
                        .map(|v| v.unwrap_or(false))
                        .collect(),
                ),
                DataType::Float32 | DataType::Float64 => {
                    let f = c.cast(&DataType::Float64).map_err(|e| err(&name, e))?;
                    UnsColumn::F64(f.f64().map_err(|e| err(&name, e))?.iter().collect())
                }
                d if d.is_integer() => {
                    let f = c.cast(&DataType::Int64).map_err(|e| err(&name, e))?;
                    UnsColumn::I64(f.i64().map_err(|e| err(&name, e))?.iter().collect())
                }
                DataType::List(_) => UnsColumn::Str(
                    crate::io::table::str_list_column(c)?
                        .into_iter()
                        .map(|items| Some(items.join(&crate::io::table::LIST_SEP.to_string())))
                        .collect(),
                ),
                _ => UnsColumn::Str(strings(c)?),
            };
            out.columns.push((name, col));
        }
        if out.index.is_empty() && df.height() > 0 {
            out.index = (0..df.height()).map(|i| i.to_string()).collect();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, LoadOptions, ObsValues};

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// Results in reversed row order, so the writer has to match them to the file's rows by id.
    fn additions(ids: &[String]) -> H5adAdditions {
        let rev: Vec<String> = ids.iter().rev().cloned().collect();
        let n = rev.len();
        H5adAdditions {
            row_ids: rev.clone(),
            obs: vec![
                (
                    "call".into(),
                    ObsAddition::categorical(
                        (0..n)
                            .map(|i| {
                                if i.is_multiple_of(3) {
                                    "Unknown"
                                } else {
                                    "T cell"
                                }
                                .to_string()
                            })
                            .collect(),
                    ),
                ),
                (
                    "score".into(),
                    ObsAddition::F64((0..n).map(|i| i as f64 * 0.5).collect()),
                ),
                (
                    "flag".into(),
                    ObsAddition::Bool((0..n).map(|i| i % 2 == 1).collect()),
                ),
                ("id_copy".into(), ObsAddition::Str(rev.clone())),
            ],
            obsm: vec![
                (
                    "X_dense".into(),
                    ObsmAddition::Dense {
                        n_cols: 2,
                        data: (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect(),
                    },
                ),
                (
                    "X_sparse".into(),
                    ObsmAddition::Csr {
                        n_cols: 5,
                        rows: (0..n)
                            .map(|i| vec![((i % 5) as u32, i as f32 + 1.0)])
                            .collect(),
                    },
                ),
            ],
            uns: vec![(
                "run".into(),
                UnsAddition::Dict(vec![
                    (
                        "classes".into(),
                        UnsAddition::Strings(vec!["a".into(), "b".into()]),
                    ),
                    (
                        "table".into(),
                        UnsAddition::Frame(UnsFrame {
                            index: vec!["f0".into(), "f1".into()],
                            columns: vec![
                                ("name".into(), UnsColumn::Str(vec![Some("x".into()), None])),
                                ("n".into(), UnsColumn::I64(vec![Some(3), None])),
                                ("v".into(), UnsColumn::F64(vec![Some(0.25), None])),
                                ("ok".into(), UnsColumn::Bool(vec![true, false])),
                            ],
                        }),
                    ),
                ]),
            )],
        }
    }

    fn round_trip(input: &Path) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.h5ad");
        let before = load(input, &LoadOptions::default()).unwrap();
        let ids = before.cell_ids.clone();
        let n = ids.len();
        write_h5ad_copy(input, &out, &additions(&ids), false).unwrap();
        // our own reader sees the same cells and matrix, the old columns and the new ones in
        // file order: file row i holds result row n-1-i
        let after = load(&out, &LoadOptions::default()).unwrap();
        assert_eq!(after.cell_ids, ids);
        assert_eq!(after.matrix, before.matrix);
        for c in before.obs.names() {
            assert_eq!(after.obs.get(&c), before.obs.get(&c), "{c}");
        }
        let call = after.obs.get("call").unwrap().values.as_strings();
        let score = match &after.obs.get("score").unwrap().values {
            ObsValues::Numeric(v) => v.clone(),
            other => panic!("score read as {}", other.kind()),
        };
        let copy = after.obs.get("id_copy").unwrap().values.as_strings();
        for i in 0..n {
            let r = n - 1 - i;
            let want = if r.is_multiple_of(3) {
                "Unknown"
            } else {
                "T cell"
            };
            assert_eq!(call[i].as_deref(), Some(want));
            assert_eq!(score[i], r as f64 * 0.5);
            assert_eq!(copy[i].as_deref(), Some(ids[i].as_str()));
        }
        let flag = after.obs.get("flag").unwrap().values.as_strings();
        assert_eq!(
            flag[0].as_deref(),
            Some(if (n - 1) % 2 == 1 { "True" } else { "False" })
        );
        // obsm and uns through hdf5 directly
        let f = File::open(&out).unwrap();
        let dense = f.dataset("obsm/X_dense").unwrap();
        assert_eq!(dense.shape().unwrap(), vec![n as u64, 2]);
        let d = dense.read_f32().unwrap();
        assert_eq!(&d[..2], &[(n - 1) as f32, -((n - 1) as f32)]);
        let indptr = f
            .dataset("obsm/X_sparse/indptr")
            .unwrap()
            .read_i64()
            .unwrap();
        assert_eq!(indptr, (0..=n as i64).collect::<Vec<_>>());
        let idx = f
            .dataset("obsm/X_sparse/indices")
            .unwrap()
            .read_i64()
            .unwrap();
        assert_eq!(idx[0] as usize, (n - 1) % 5);
        let t = f.group("uns/run/table").unwrap().attrs().unwrap();
        assert_eq!(t["encoding-type"].as_str(), Some("dataframe"));
        let mask = f
            .dataset("uns/run/table/n/mask")
            .unwrap()
            .read_u8()
            .unwrap();
        assert_eq!(mask, vec![0, 1]);
        // the input is untouched
        let again = load(input, &LoadOptions::default()).unwrap();
        assert!(again.obs.get("call").is_none());
    }

    #[test]
    fn round_trip_anndata_08_layout() {
        round_trip(&root().join("data/immune1000.h5ad"));
    }

    #[test]
    fn round_trip_anndata_07_layout() {
        round_trip(&root().join("tests/fixtures/data/kang2018_ifnb_400.h5ad"));
    }

    #[test]
    fn refuses_legacy_mismatch_and_existing_output() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = root().join("data/pbmc68k_reduced.h5ad");
        let err = check_h5ad_target(&legacy, &dir.path().join("o.h5ad"), false).unwrap_err();
        assert!(err.to_string().contains("before 0.7"), "{err}");
        let input = root().join("data/immune1000.h5ad");
        let ids = load(&input, &LoadOptions::default()).unwrap().cell_ids;
        // a missing cell and a foreign cell are both refused, and nothing is written
        let out = dir.path().join("o.h5ad");
        let mut add = additions(&ids);
        add.row_ids[0] = "not-a-cell".into();
        let err = write_h5ad_copy(&input, &out, &add, false).unwrap_err();
        assert!(err.to_string().contains("has no result"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(&out, b"finished").unwrap();
        let err = write_h5ad_copy(&input, &out, &additions(&ids), false).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&out).unwrap(), b"finished");
        let err = check_h5ad_target(&input, &input, true).unwrap_err();
        assert!(err.to_string().contains("input file itself"), "{err}");
    }
}
