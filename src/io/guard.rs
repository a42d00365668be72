//! Malformed input that makes a dependency panic (polars on a corrupt Parquet file, candle's pickle
//! reader on a corrupt `.pt`) becomes an input error naming the file, not a crash.
//!
//! [`catch_panics`] runs the reader under `catch_unwind` (panics on rayon worker threads are
//! re-raised on the calling thread, so they are caught too) and, while any guarded reader runs,
//! keeps the panic hook quiet so that the error stays one line. Outside guarded readers the
//! previous hook runs unchanged.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use crate::error::{Error, Result};

/// Guarded readers running now (any thread).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

fn install_quiet_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ACTIVE.load(Ordering::SeqCst) == 0 {
                previous(info);
            }
        }));
    });
}

/// The panic's message, when it is text.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown failure".into())
}

/// Run `f`; a panic inside it becomes `Error::input(path, "<what>: the file is malformed (...)")`.
pub(crate) fn catch_panics<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_quiet_hook();
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(f));
    ACTIVE.fetch_sub(1, Ordering::SeqCst);
    match r {
        Ok(v) => v,
        Err(p) => Err(Error::input(
            path,
            format!(
                "{what}: the file is malformed (the reader failed: {})",
                message(p.as_ref()).lines().next().unwrap_or("")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_input_error_naming_the_file() {
        let e = catch_panics::<()>(Path::new("x.parquet"), "Parquet", || {
            panic!("thrift bool field")
        })
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "x.parquet: Parquet: the file is malformed (the reader failed: thrift bool field)"
        );
        assert_eq!(catch_panics(Path::new("y"), "t", || Ok(3)).unwrap(), 3);
    }
}
