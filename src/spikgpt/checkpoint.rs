//! The training checkpoint of a SpikGPT model folder, `checkpoint/`, replaced atomically after every
//! epoch.
//!
//! Layout: `checkpoint/` holds the files the trainer names (`last.safetensors`,
//! `momentum.safetensors`, `best.safetensors`, `state.json`) and `manifest.json`, written last (format
//! `spikgpt-checkpoint/1`): every file's name, size in bytes and FNV-1a 64 hash.
//!
//! Writing ([`write()`]): every file goes into a fresh `checkpoint.tmp-<pid>/` inside the model folder
//! (each file synced, then the folder), the previous `checkpoint/` is renamed to
//! `checkpoint.old-<pid>/`, the new folder is renamed to `checkpoint/`, the model folder is synced and
//! the old folder removed. A kill at any moment leaves a complete `checkpoint/`, or (between the two
//! renames) a complete `checkpoint.old-<pid>/`, plus perhaps a stale temporary folder.
//!
//! Reading ([`recover`], then [`read`]): stale `checkpoint.tmp-*` folders are removed; a
//! `checkpoint.old-*` folder becomes `checkpoint/` again when that is missing (the run then repeats
//! one epoch, exactly) and is removed otherwise; the manifest is checked against the files. A
//! checkpoint without a manifest, or with a file missing or different from the manifest, is refused
//! with an error naming it, never half used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::io::atomic::{write_bytes_atomic, write_json_atomic};

/// The checkpoint folder's name inside the model folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The manifest inside the checkpoint folder, written last.
pub const MANIFEST_FILE: &str = "manifest.json";
/// `format` of the manifest.
pub const FORMAT: &str = "spikgpt-checkpoint/1";
/// Name prefix of a checkpoint being written (`checkpoint.tmp-<pid>`).
const TMP_PREFIX: &str = "checkpoint.tmp-";
/// Name prefix of the previous checkpoint during the swap (`checkpoint.old-<pid>`).
const OLD_PREFIX: &str = "checkpoint.old-";

/// `manifest.json`: the checkpoint's files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    format: String,
    files: Vec<Entry>,
}

/// One file of the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    name: String,
    bytes: u64,
    fnv1a64: String,
}

impl Entry {
    fn of(name: &str, bytes: &[u8]) -> Entry {
        Entry {
            name: name.to_string(),
            bytes: bytes.len() as u64,
            fnv1a64: format!("{:016x}", fnv1a64(bytes)),
        }
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// A verified checkpoint: its files' contents, by name.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The checkpoint folder.
    pub dir: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// The path of file `name` in the checkpoint folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The content of file `name` (an error when the manifest does not list it).
    pub fn file(&self, name: &str) -> Result<&[u8]> {
        self.files.get(name).map(Vec::as_slice).ok_or_else(|| {
            Error::input(
                self.dir.join(MANIFEST_FILE),
                format!(
                    "the checkpoint has no {name}; remove the checkpoint folder or drop --resume"
                ),
            )
        })
    }
}

/// Replace `out/checkpoint` by a checkpoint of `files` (name, content), atomically (see the module
/// documentation).
pub fn write(out: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let pid = std::process::id();
    let tmp = out.join(format!("{TMP_PREFIX}{pid}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    let mut entries = Vec::with_capacity(files.len());
    for &(name, bytes) in files {
        write_bytes_atomic(&tmp.join(name), bytes)?;
        entries.push(Entry::of(name, bytes));
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        files: entries,
    };
    write_json_atomic(&tmp.join(MANIFEST_FILE), &manifest)?;
    sync_dir(&tmp)?;
    let dir = out.join(CHECKPOINT_DIR);
    let old = out.join(format!("{OLD_PREFIX}{pid}"));
    if dir.exists() {
        std::fs::rename(&dir, &old).at(&dir)?;
    }
    std::fs::rename(&tmp, &dir).at(&dir)?;
    sync_dir(out)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).at(&old)?;
    }
    Ok(())
}

/// Tidy `out` after an interrupted [`write()`]: remove `checkpoint.tmp-*` folders; put a
/// `checkpoint.old-*` folder back as `checkpoint` when that is missing, remove it otherwise.
pub fn recover(out: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(out) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(out, e)),
    };
    let mut names = Vec::new();
    for e in entries {
        names.push(e.at(out)?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let dir = out.join(CHECKPOINT_DIR);
    for name in names.iter().filter(|n| n.starts_with(TMP_PREFIX)) {
        let p = out.join(name);
        std::fs::remove_dir_all(&p).at(&p)?;
    }
    for name in names.iter().filter(|n| n.starts_with(OLD_PREFIX)) {
        let p = out.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&p).at(&p)?;
        } else {
            std::fs::rename(&p, &dir).at(&p)?;
        }
    }
    Ok(())
}

/// The checkpoint in `out`, checked against its manifest; `None` when there is none. Call
/// [`recover`] first.
pub fn read(out: &Path) -> Result<Option<Checkpoint>> {
    let dir = out.join(CHECKPOINT_DIR);
    if !dir.exists() {
        return Ok(None);
    }
    let mpath = dir.join(MANIFEST_FILE);
    if !mpath.exists() {
        return Err(Error::input(
            &dir,
            "incomplete checkpoint (no manifest.json: interrupted, or written by an older version); remove the checkpoint folder or drop --resume",
        ));
    }
    let manifest: Manifest = crate::io::json::read_json(&mpath, "checkpoint manifest")?;
    if manifest.format != FORMAT {
        return Err(Error::input(
            &mpath,
            format!(
                "unknown checkpoint format '{}' (expected {FORMAT})",
                manifest.format
            ),
        ));
    }
    let mut files = BTreeMap::new();
    for entry in &manifest.files {
        let p = dir.join(&entry.name);
        let bytes = match std::fs::read(&p) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&p, e)),
        };
        match bytes {
            Some(b) if Entry::of(&entry.name, &b) == *entry => {
                files.insert(entry.name.clone(), b);
            }
            _ => {
                return Err(Error::input(
                    &p,
                    "damaged checkpoint: the file is missing or differs from manifest.json; remove the checkpoint folder or drop --resume",
                ))
            }
        }
    }
    Ok(Some(Checkpoint { dir, files }))
}

/// Make a folder's entries (new files, renames) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .at(dir)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_keeps_one_complete_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        write(out, &[("a", b"one"), ("b", b"two")]).unwrap();
        write(out, &[("a", b"three")]).unwrap();
        let ck = read(out).unwrap().unwrap();
        assert_eq!(ck.file("a").unwrap(), b"three");
        assert!(ck.file("b").is_err());
        let names: Vec<_> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CHECKPOINT_DIR)]);
    }

    #[test]
    fn interrupted_swap_recovers_the_previous_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        write(out, &[("a", b"one")]).unwrap();
        // killed between the renames: the old folder moved away, the new one still a temporary
        std::fs::rename(out.join(CHECKPOINT_DIR), out.join("checkpoint.old-7")).unwrap();
        std::fs::create_dir(out.join("checkpoint.tmp-7")).unwrap();
        std::fs::write(out.join("checkpoint.tmp-7/a"), b"tw").unwrap();
        recover(out).unwrap();
        assert!(!out.join("checkpoint.old-7").exists() && !out.join("checkpoint.tmp-7").exists());
        assert_eq!(read(out).unwrap().unwrap().file("a").unwrap(), b"one");
    }

    #[test]
    fn damaged_or_unlisted_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        assert!(read(out).unwrap().is_none());
        write(out, &[("a", b"one")]).unwrap();
        std::fs::write(out.join("checkpoint/a"), b"two").unwrap();
        let e = read(out).unwrap_err().to_string();
        assert!(e.contains("damaged checkpoint"), "{e}");
        std::fs::remove_file(out.join("checkpoint/a")).unwrap();
        assert!(read(out).is_err());
        std::fs::remove_file(out.join("checkpoint").join(MANIFEST_FILE)).unwrap();
        let e = read(out).unwrap_err().to_string();
        assert!(e.contains("no manifest.json"), "{e}");
    }
}
