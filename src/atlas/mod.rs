//! `scsae atlas`: a static HTML site with a page per SAE feature, opened from disk (no server, no
//! external resources).
//!
//! [`build_atlas`] re-encodes the cells with the SAE (a chunk at a time, into column-sparse codes)
//! for each feature's activation histogram and top cells, and joins what the other commands wrote:
//! the `scsae analyze` folder (AUROC per type, correlated genes, enriched sets), optionally an
//! `scsae concepts` folder and the class drivers of an explained `spikgpt annotate` run, and the
//! decoder directions of other SAEs to name each feature's nearest features there.
//!
//! - [`inputs`]: reading and checking the tables; [`stats`]: histogram, top cells, decoder cosine;
//! - [`html`], [`svg`], [`pages`]: the pages.
//!
//! Every input is read and checked before anything is written; the site is written into a temporary
//! folder beside `--out` and renamed into place, its manifest ([`MANIFEST_FILE`]) written last. The
//! same inputs give the same bytes.

pub mod html;
pub mod inputs;
pub mod pages;
pub mod stats;
pub mod svg;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::activations::read_cells;
use crate::analysis::pipeline::match_cells;
use crate::analysis::sparse_codes::SparseCodes;
use crate::data::{load_obs, LoadOptions};
use crate::error::{Error, IoContext, Result};
use crate::io::file_name;
use crate::io::lock::TMP_PREFIX;
use crate::sae::Sae;

use pages::{FeaturePage, Neighbours, Site};

/// Per feature: (feature index, cosine) of its nearest features, highest first.
type Nearest = Vec<Vec<(usize, f32)>>;

/// The file written last: what the site shows and which files it holds.
pub const MANIFEST_FILE: &str = "atlas.json";

/// Format tag of [`MANIFEST_FILE`].
pub const FORMAT: &str = "scsae-atlas/1";

/// What [`build_atlas`] reads and where it writes.
#[derive(Debug, Clone)]
pub struct AtlasRequest {
    /// The SAE folder.
    pub sae: PathBuf,
    /// Extraction folder (or matrix file) with the cells' activations.
    pub activations: PathBuf,
    /// Its layer (the SAE's).
    pub layer: String,
    /// Single-cell data with the labels.
    pub data: PathBuf,
    /// How to read it.
    pub load: LoadOptions,
    /// obs column with the cell types.
    pub label_key: String,
    /// `scsae analyze` folder of this SAE on these activations.
    pub analysis: PathBuf,
    /// `scsae concepts` folder (or its `concepts.csv`) of this SAE.
    pub concepts: Option<PathBuf>,
    /// `<stem>_class_drivers.csv` (or `<stem>_explain.json`) of `spikgpt annotate --sae` with this SAE.
    pub explain: Option<PathBuf>,
    /// Other SAE folders (other layers or sizes, same activation width) to find nearest features in.
    pub compare: Vec<PathBuf>,
    /// Top cells per feature.
    pub top_cells: usize,
    /// Nearest features listed per SAE.
    pub neighbours: usize,
    /// Histogram bins.
    pub bins: usize,
    /// Output folder (must not exist).
    pub out: PathBuf,
}

/// What [`build_atlas`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct AtlasReport {
    /// The site.
    pub out: PathBuf,
    /// Features (pages).
    pub n_features: usize,
    /// Cells encoded.
    pub n_cells: usize,
    /// Files written.
    pub n_files: usize,
}

impl std::fmt::Display for AtlasReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: atlas of {} features over {} cells ({} files); open {}",
            self.out.display(),
            self.n_features,
            self.n_cells,
            self.n_files,
            self.out.join("index.html").display()
        )
    }
}

/// The manifest, [`MANIFEST_FILE`].
#[derive(Debug, Clone, Serialize)]
struct Manifest<'a> {
    format: &'static str,
    software_version: &'static str,
    sae: String,
    activations: String,
    layer: &'a str,
    data: String,
    label_key: &'a str,
    analysis: String,
    concepts: Option<String>,
    explain: Option<String>,
    compare: Vec<String>,
    top_cells: usize,
    neighbours: usize,
    bins: usize,
    n_cells: usize,
    n_features: usize,
    files: Vec<String>,
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

impl AtlasRequest {
    fn check_options(&self) -> Result<()> {
        if self.top_cells == 0 {
            return Err(Error::invalid("--top-cells must be at least 1"));
        }
        if self.neighbours == 0 {
            return Err(Error::invalid("--neighbours must be at least 1"));
        }
        if self.bins == 0 {
            return Err(Error::invalid("--bins must be at least 1"));
        }
        if self.out.exists() || self.out.is_symlink() {
            return Err(Error::input(
                &self.out,
                "already exists; the atlas is written into a new folder (choose another --out)",
            ));
        }
        Ok(())
    }
}

/// An SAE to compare with: checked to read the same activation width and, where both record one,
/// the same scGPT model as `sae`.
fn load_compare(dir: &Path, sae: &Sae) -> Result<(String, Vec<f32>, usize)> {
    let other = Sae::load(dir)?;
    if other.d_in() != sae.d_in() {
        return Err(Error::input(
            dir,
            format!(
                "--compare-sae reads {}-dimensional activations but the SAE reads {}: SAEs of another model cannot be compared",
                other.d_in(),
                sae.d_in()
            ),
        ));
    }
    if let (Some(a), Some(b)) = (
        sae.provenance().known_model(),
        other.provenance().known_model(),
    ) {
        if a != b {
            return Err(Error::input(
                dir,
                "--compare-sae was trained on activations of another scGPT model than the SAE",
            ));
        }
    }
    let label = format!("{} ({})", file_name(dir), other.cfg.run_name());
    Ok((label, stats::decoder_directions(&other), other.d_sae()))
}

/// Build the atlas of `req` (see the module documentation).
pub fn build_atlas(req: &AtlasRequest) -> Result<AtlasReport> {
    req.check_options()?;
    // ---- read and check every input
    let sae = Sae::load(&req.sae)?;
    let acts = read_cells(&req.activations, Some(&req.layer), None)?;
    sae.check_source(&acts.provenance, &req.activations)?;
    if acts.matrix.n_cols != sae.d_in() {
        return Err(Error::input(
            &req.sae,
            format!(
                "the SAE reads {}-dimensional activations but layer {} of {} has {} dimensions",
                sae.d_in(),
                req.layer,
                req.activations.display(),
                acts.matrix.n_cols
            ),
        ));
    }
    let (cell_ids, labels) = {
        let ds = load_obs(&req.data, &req.load)?;
        let all = ds.labels(&req.label_key)?;
        let rows = match_cells(
            acts.matrix.row_ids.as_deref(),
            &req.activations,
            &ds.cell_ids,
            &req.data,
        )?;
        let labels: Vec<String> = rows.iter().map(|&r| all[r].clone()).collect();
        let ids: Vec<String> = rows.iter().map(|&r| ds.cell_ids[r].clone()).collect();
        (ids, labels)
    };
    let d_sae = sae.d_sae();
    let analysis = inputs::read_analysis(&req.analysis, d_sae, &req.sae)?;
    let names = analysis.names();
    let concepts = req
        .concepts
        .as_deref()
        .map(|p| inputs::read_concepts(p, &names))
        .transpose()?;
    let drivers = req
        .explain
        .as_deref()
        .map(|p| inputs::read_drivers(p, d_sae))
        .transpose()?;
    let compares = req
        .compare
        .iter()
        .map(|p| load_compare(p, &sae))
        .collect::<Result<Vec<_>>>()?;

    // ---- encode and summarise
    let mut codes = SparseCodes::new(d_sae);
    sae.encode_chunks(&acts.matrix, |chunk, rows| codes.push_rows(chunk, rows))?;
    drop(acts);
    let n_cells = codes.n_rows;
    let (nnz, _) = codes.column_sums();
    analysis.check_activity(&nnz, n_cells, &req.sae)?;
    let dirs = stats::decoder_directions(&sae);
    let d = sae.d_in();
    let k = req.neighbours;
    let within = stats::nearest(&dirs, &dirs, d, k, true);
    let across: Vec<(String, Nearest)> = compares
        .iter()
        .map(|(label, other, _)| (label.clone(), stats::nearest(&dirs, other, d, k, false)))
        .collect();

    let site = Site {
        title: format!("{} ({})", sae.cfg.run_name(), file_name(&req.sae)),
        subtitle: format!(
            "{} cells of {} (cell types: obs '{}'), activations {} layer {}; analysis {}",
            n_cells,
            file_name(&req.data),
            req.label_key,
            file_name(&req.activations),
            req.layer,
            file_name(&req.analysis)
        ),
        names: names.clone(),
        best: analysis
            .features
            .iter()
            .map(|f| f.best_type.clone().zip(f.best_auroc))
            .collect(),
        n_cells,
        fdr: analysis.fdr,
        auroc_threshold: analysis.auroc_threshold,
        concepts: concepts.is_some(),
        explain: drivers.is_some(),
    };

    // ---- render into a temporary folder beside --out, then rename it into place
    let parent = match req.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).at(&parent)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(TMP_PREFIX);
    // the site gets the mode of any new folder (0777 minus the umask), not a temporary's 0700
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o777));
    }
    let tmp = builder.tempdir_in(&parent).at(&parent)?;
    let root = tmp.path();
    let features_dir = root.join("features");
    std::fs::create_dir_all(&features_dir).at(&features_dir)?;
    let mut files = Vec::with_capacity(d_sae + 3);
    let mut put = |rel: String, text: &str| -> Result<()> {
        let p = root.join(&rel);
        std::fs::write(&p, text).at(&p)?;
        files.push(rel);
        Ok(())
    };
    put("style.css".into(), html::STYLE)?;
    put(
        "index.html".into(),
        &pages::index_page(
            &site,
            &analysis.features,
            concepts.as_deref(),
            drivers.as_deref(),
        ),
    )?;
    let no_drives: Vec<inputs::Drive> = Vec::new();
    for (j, row) in analysis.features.iter().enumerate() {
        let col = &codes.columns[j];
        let top = stats::top_cells(col, req.top_cells)
            .into_iter()
            .map(|(r, v)| (cell_ids[r].as_str(), labels[r].as_str(), v))
            .collect();
        let page = FeaturePage {
            index: j,
            row,
            hist: stats::histogram(&col.values, req.bins),
            n_zero: n_cells - col.nnz(),
            top_cells: top,
            auroc: &analysis.auroc[j],
            sets: analysis.sets.as_ref().map(|s| s[j].as_slice()),
            within: within[j].clone(),
            compare: across
                .iter()
                .map(|(label, nn)| Neighbours {
                    label: label.clone(),
                    features: nn[j].clone(),
                })
                .collect(),
            concept: concepts.as_ref().and_then(|c| c[j].as_ref()),
            drives: drivers
                .as_ref()
                .map(|d| d[j].as_slice())
                .unwrap_or(&no_drives),
        };
        put(
            format!("features/f{j}.html"),
            &pages::feature_page(&site, &page),
        )?;
    }
    files.sort();
    let manifest = Manifest {
        format: FORMAT,
        software_version: env!("CARGO_PKG_VERSION"),
        sae: shown(&req.sae),
        activations: shown(&req.activations),
        layer: &req.layer,
        data: shown(&req.data),
        label_key: &req.label_key,
        analysis: shown(&req.analysis),
        concepts: req.concepts.as_deref().map(shown),
        explain: req.explain.as_deref().map(shown),
        compare: req.compare.iter().map(|p| shown(p)).collect(),
        top_cells: req.top_cells,
        neighbours: req.neighbours,
        bins: req.bins,
        n_cells,
        n_features: d_sae,
        files,
    };
    let n_files = manifest.files.len() + 1;
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::invalid(format!("cannot serialise the atlas manifest: {e}")))?;
    let mp = root.join(MANIFEST_FILE);
    std::fs::write(&mp, text + "\n").at(&mp)?;
    if req.out.exists() {
        return Err(Error::input(
            &req.out,
            "appeared while the atlas was being built; choose another --out",
        ));
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, &req.out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        Error::io(&req.out, e)
    })?;
    Ok(AtlasReport {
        out: req.out.clone(),
        n_features: d_sae,
        n_cells,
        n_files,
    })
}
