//! `scsae merge`: join the stores of a sharded extraction (`scsae extract --shard I/N`) into one
//! store whose files are byte for byte those of the same extraction run unsharded.
//!
//! Every shard processes whole blocks of consecutive input rows exactly as an unsharded run does, so
//! merging is checking that the shards belong together and renumbering their part files.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Manifest, PartInfo};
use crate::error::{Error, IoContext, Result};
use crate::io::atomic::write_json_atomic;
use crate::io::lock::{OutputLock, TMP_PREFIX};

/// What [`merge_shards`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    /// The merged store.
    pub out: PathBuf,
    /// Shards merged.
    pub n_shards: usize,
    /// Cells in the store.
    pub n_cells: usize,
    /// Cell part files.
    pub n_parts: usize,
}

impl std::fmt::Display for MergeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "merged {} shards into {}: {} cells in {} parts",
            self.n_shards,
            self.out.display(),
            self.n_cells,
            self.n_parts
        )
    }
}

/// Check that `shards` are all the shards of one extraction (same model, data checksum, options;
/// every index once; no gap or overlap; each complete) and write the merged store to `out`, which
/// must not exist. The store appears under `out` only once complete.
pub fn merge_shards(shards: &[PathBuf], out: &Path) -> Result<MergeReport> {
    if shards.is_empty() {
        return Err(Error::invalid("give the shard folders to merge"));
    }
    if out.exists() {
        return Err(Error::input(out, "already exists; merge into a new folder"));
    }
    let mut read = Vec::with_capacity(shards.len());
    for dir in shards {
        let m = Manifest::read(dir)?;
        let sh = m
            .shard
            .clone()
            .ok_or_else(|| Error::input(dir, "is not a shard (written without --shard I/N)"))?;
        if !m.complete {
            return Err(Error::input(
                dir,
                "shard is incomplete; finish it with `scsae extract ... --shard I/N --resume`",
            ));
        }
        read.push((dir.clone(), m, sh));
    }
    read.sort_by_key(|(_, _, sh)| sh.index);
    let (first_dir, first, first_sh) = read[0].clone();
    for (dir, m, sh) in &read[1..] {
        let differs = if m.model != first.model {
            Some("model")
        } else if sh.data_sha256 != first_sh.data_sha256 || m.data != first.data {
            Some("data")
        } else if m.options != first.options
            || m.layers != first.layers
            || m.seed != first.seed
            || m.tokens != first.tokens
            || m.format != first.format
        {
            Some("options, layers or seed")
        } else if sh.count != first_sh.count {
            Some("number of shards")
        } else {
            None
        };
        if let Some(what) = differs {
            return Err(Error::input(
                dir,
                format!(
                    "comes from another extraction than {} ({what} differ)",
                    first_dir.display()
                ),
            ));
        }
    }
    let count = first_sh.count;
    for w in read.windows(2) {
        if w[0].2.index == w[1].2.index {
            return Err(Error::input(
                &w[1].0,
                format!(
                    "is shard {} of {count} again (also {})",
                    w[1].2.index,
                    w[0].0.display()
                ),
            ));
        }
    }
    for k in 0..count {
        if !read.iter().any(|(_, _, sh)| sh.index == k) {
            return Err(Error::input(
                &first_dir,
                format!("shard {k} of {count} is missing from the folders given"),
            ));
        }
    }
    let mut expected_start = 0;
    for (dir, _, sh) in &read {
        if sh.start != expected_start {
            return Err(Error::input(
                dir,
                format!(
                    "covers rows {}..{} but the previous shard ends at row {expected_start}",
                    sh.start, sh.end
                ),
            ));
        }
        expected_start = sh.end;
    }
    if expected_start != first.n_cells {
        return Err(Error::input(
            &read[read.len() - 1].0,
            format!(
                "the shards end at row {expected_start} of {} cells",
                first.n_cells
            ),
        ));
    }
    let ids = std::fs::read(first_dir.join("cell_ids.json")).at(first_dir.join("cell_ids.json"))?;
    for (dir, _, _) in &read[1..] {
        let p = dir.join("cell_ids.json");
        if std::fs::read(&p).at(&p)? != ids {
            return Err(Error::input(&p, "lists other cells than the first shard"));
        }
    }

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).at(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempdir_in(&parent)
        .at(&parent)?;
    let lock = OutputLock::acquire(tmp.path())?;
    std::fs::create_dir_all(tmp.path().join("cells")).at(tmp.path())?;
    if first.tokens {
        std::fs::create_dir_all(tmp.path().join("tokens")).at(tmp.path())?;
    }
    let mut merged = first.clone();
    merged.shard = None;
    merged.cell_parts.clear();
    merged.token_parts.clear();
    for (dir, m, _) in &read {
        if m.tokens && m.token_parts.len() != m.cell_parts.len() {
            return Err(Error::input(dir, "token and cell part lists disagree"));
        }
        for (j, p) in m.cell_parts.iter().enumerate() {
            let k = merged.cell_parts.len();
            copy_part(
                dir,
                p,
                tmp.path(),
                &format!("cells/part-{k:05}.safetensors"),
                &mut merged.cell_parts,
            )?;
            if m.tokens {
                let t = &m.token_parts[j];
                copy_part(
                    dir,
                    t,
                    tmp.path(),
                    &format!("tokens/part-{k:05}.safetensors"),
                    &mut merged.token_parts,
                )?;
            }
        }
    }
    std::fs::write(tmp.path().join("cell_ids.json"), &ids).at(tmp.path())?;
    write_json_atomic(&tmp.path().join("manifest.json"), &merged)?;
    drop(lock);
    if out.exists() {
        return Err(Error::input(out, "already exists; merge into a new folder"));
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        Error::io(out, e)
    })?;
    Ok(MergeReport {
        out: out.to_path_buf(),
        n_shards: read.len(),
        n_cells: merged.n_cells,
        n_parts: merged.cell_parts.len(),
    })
}

fn copy_part(
    dir: &Path,
    p: &PartInfo,
    to: &Path,
    file: &str,
    parts: &mut Vec<PartInfo>,
) -> Result<()> {
    let src = dir.join(&p.file);
    let dst = to.join(file);
    std::fs::copy(&src, &dst).at(&src)?;
    parts.push(PartInfo {
        file: file.to_string(),
        rows: p.rows,
    });
    Ok(())
}
