//! Atomic file output: write to a temporary file beside the target, then rename.
//!
//! A crash or an error part-way never leaves a half-written file under the final name, and an existing
//! file is replaced only once the new one is complete.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Create `path` atomically: `fill` writes the content into a buffered temporary file in the same
/// folder, which is renamed onto `path` only if `fill` succeeds.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).at(dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(".scsae-tmp-")
        .tempfile_in(dir)
        .at(dir)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        fill(&mut w)?;
        w.flush().at(path)?;
    }
    tmp.as_file().sync_all().at(path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Write `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes).at(path))
}

/// Serialise `value` as pretty JSON to `path` atomically.
pub fn write_json_atomic<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::input(path, format!("cannot serialise JSON: {e}")))?;
    write_bytes_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_previous_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        write_bytes_atomic(&p, b"first").unwrap();
        let r = write_atomic(&p, |w| {
            w.write_all(b"partial").unwrap();
            Err(Error::invalid("boom"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"first");
        // no temporary files left behind
        let n = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(n, 1);
    }
}
