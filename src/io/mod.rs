//! File input/output shared by every component: atomic writes, dense matrices (safetensors, `.npy`,
//! CSV, Parquet) and tables.

pub mod atomic;
pub mod checksum;
pub(crate) mod guard;
pub(crate) mod json;
pub(crate) mod lock;
pub mod matrix;
pub mod npy;
pub(crate) mod parquet_check;
pub mod table;

pub use atomic::{write_atomic, write_bytes_atomic, write_json_atomic};
pub use json::read_json;
pub use matrix::read_matrix;

/// The last part of `p` (the whole path when it has none), for titles and messages.
pub(crate) fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}
