//! The library's error type.
//!
//! Every error that comes from user input names the file (or option) and the problem in one line, so
//! the binaries can print it without a backtrace and exit non-zero.

use std::path::{Path, PathBuf};

/// Errors raised by the scsae library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user-supplied file is unreadable, malformed or inconsistent.
    #[error("{}: {msg}", path.display())]
    Input {
        /// The offending file or folder.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// An option or argument has an invalid value, or options contradict each other.
    #[error("{0}")]
    Invalid(String),
    /// An operating-system I/O error while touching `path`. The OS message is part of this error's
    /// text (and deliberately not a `source`, so that printing the error chain does not repeat it).
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or folder being read or written.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// An error from the candle tensor runtime.
    #[error("tensor runtime: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An input error about `path`.
    pub fn input(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Input {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    /// An invalid-argument error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// An I/O error about `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            error: source,
        }
    }
}

/// Attach a path to I/O results: `fs::read(p).at(p)?`.
pub trait IoContext<T> {
    /// Convert an `std::io::Error` into [`Error::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_state_the_os_message_once_in_the_chain() {
        let e = Error::io("x.txt", std::io::Error::from(std::io::ErrorKind::NotFound));
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches("not found").count(), 1, "{chain}");
    }
}
