//! Exclusive locks on output folders, so that two runs never write into one folder at once.
//!
//! The lock is the operating system's advisory lock on `DIR/.scsae.lock` (`flock` on Unix), held
//! for as long as the [`OutputLock`] lives and released by the OS when the process ends, even on
//! `kill -9`. The empty lock file stays in the folder.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Name of the lock file inside an output folder.
pub const LOCK_FILE: &str = ".scsae.lock";

/// Prefix of the temporary files written by [`crate::io::atomic`].
pub const TMP_PREFIX: &str = ".scsae-tmp-";

/// An exclusive lock on an output folder (released on drop).
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Create `dir` if needed and lock it; an error naming `dir` when another run holds the lock.
    pub fn acquire(dir: &Path) -> Result<OutputLock> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::input(
                dir,
                "output path is a file; --out must be a folder",
            ));
        }
        std::fs::create_dir_all(dir).at(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(OutputLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::input(
                dir,
                "another run is writing into this output folder (it holds .scsae.lock); wait for it or choose another --out",
            )),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Error unless `dir` holds no finished output, or `allowed` (`--force`, `--resume`): a folder is
/// finished when its `marker`, the file written last, exists. `what` names the output in the
/// message ("a finished analysis").
pub(crate) fn check_not_finished(
    dir: &Path,
    marker: &str,
    what: &str,
    allowed: bool,
) -> Result<()> {
    if !allowed && dir.join(marker).exists() {
        return Err(Error::input(
            dir,
            format!("already holds {what} ({marker}); choose another --out or pass --force to overwrite it"),
        ));
    }
    Ok(())
}

/// Lock `dir` to write an output whose `marker` file is written last and vouches for the rest:
/// re-check [`check_not_finished`] under the lock (another run may have finished meanwhile); with
/// `force`, remove the marker first, so a killed overwrite never looks finished; remove stale
/// temporaries.
pub(crate) fn lock_for_writing(
    dir: &Path,
    marker: &str,
    what: &str,
    force: bool,
    resume: bool,
) -> Result<OutputLock> {
    let lock = OutputLock::acquire(dir)?;
    check_not_finished(dir, marker, what, force || resume)?;
    let m = dir.join(marker);
    if force && m.exists() {
        std::fs::remove_file(&m).at(&m)?;
    }
    remove_stale_temporaries(dir)?;
    Ok(lock)
}

/// Remove the temporary files an interrupted run left in `dir` (not recursive); returns how many.
/// Call it while holding the folder's [`OutputLock`], so no live writer's temporaries are removed.
pub fn remove_stale_temporaries(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with(TMP_PREFIX) && e.path().is_file() {
            std::fs::remove_file(e.path()).at(e.path())?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_a_folder_is_refused_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        let a = OutputLock::acquire(&out).unwrap();
        let e = OutputLock::acquire(&out).unwrap_err().to_string();
        assert!(e.contains("another run") && e.contains("run"), "{e}");
        drop(a);
        let _b = OutputLock::acquire(&out).unwrap();
    }

    #[test]
    fn stale_temporaries_are_removed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".scsae-tmp-abc"), b"half").unwrap();
        std::fs::write(d.path().join("keep.json"), b"{}").unwrap();
        assert_eq!(remove_stale_temporaries(d.path()).unwrap(), 1);
        assert!(d.path().join("keep.json").exists());
        assert!(!d.path().join(".scsae-tmp-abc").exists());
    }
}
