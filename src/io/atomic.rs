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
    if dir.exists() && !dir.is_dir() {
        return Err(Error::input(dir, "is a file, not a folder"));
    }
    fs::create_dir_all(dir).at(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(crate::io::lock::TMP_PREFIX);
    // temporary files are private (0600); the output gets the mode of any new file (0666 minus the
    // umask), as `open(2)` applies the umask to the requested mode
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let tmp = builder.tempfile_in(dir).at(dir)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        fill(&mut w)?;
        w.flush().at(path)?;
    }
    tmp.as_file().sync_all().at(path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Error naming the first of `paths` that exists, unless `force`: a finished output is never
/// overwritten without being told.
pub fn check_new_output(paths: &[&Path], force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(Error::input(
            p,
            "already exists; choose another --out or pass --force to overwrite it",
        )),
        None => Ok(()),
    }
}

/// Write `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes).at(path))
}

/// An atomic write ([`write_bytes_atomic`]) running on its own thread, so that a long training run
/// does not wait for its periodic checkpoint to reach the disk. At most one is in flight:
/// [`BackgroundWrite::start`] waits for the previous one first. Its outcome is reported by the next
/// `start` or by [`BackgroundWrite::wait`]; dropping it waits too (ignoring the outcome), so the
/// process never exits with a write half-done.
#[derive(Debug, Default)]
pub struct BackgroundWrite {
    handle: Option<std::thread::JoinHandle<Result<()>>>,
}

impl BackgroundWrite {
    /// Wait for the write in flight, then start writing `bytes` to `path` atomically.
    pub fn start(&mut self, path: std::path::PathBuf, bytes: Vec<u8>) -> Result<()> {
        self.wait()?;
        self.handle = Some(std::thread::spawn(move || {
            write_bytes_atomic(&path, &bytes)
        }));
        Ok(())
    }

    /// Wait for the write in flight, if any, and return its outcome.
    pub fn wait(&mut self) -> Result<()> {
        match self.handle.take() {
            None => Ok(()),
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(Error::invalid("the background write panicked"))),
        }
    }
}

impl Drop for BackgroundWrite {
    fn drop(&mut self) {
        let _ = self.wait();
    }
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
    fn background_writes_land_in_order_and_report_failures() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.bin");
        let mut w = BackgroundWrite::default();
        w.start(p.clone(), b"first".to_vec()).unwrap();
        w.start(p.clone(), b"second".to_vec()).unwrap();
        w.wait().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        // a folder in the way of the temporary file: the failure comes back from `wait`
        let blocked = dir.path().join("file").join("state.bin");
        fs::write(dir.path().join("file"), b"x").unwrap();
        w.start(blocked, b"third".to_vec()).unwrap();
        assert!(w.wait().is_err());
        assert_eq!(fs::read(&p).unwrap(), b"second");
    }

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

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_mode_of_a_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        write_bytes_atomic(&p, b"x").unwrap();
        // the mode `touch` would give: 0666 minus the process umask
        let q = dir.path().join("plain.txt");
        fs::File::create(&q).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), mode(&q));
    }
}
