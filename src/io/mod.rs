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
