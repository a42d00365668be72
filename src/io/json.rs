//! Reading JSON files with errors that name the file.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, IoContext, Result};

/// Read and parse the JSON file `path`; a parse failure is an input error
/// `"<path>: malformed <what>: <reason>"`.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| Error::input(path, format!("malformed {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_file_and_what_it_should_be() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, "{not json").unwrap();
        let e = read_json::<serde_json::Value>(&p, "manifest")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.json") && e.contains("malformed manifest"),
            "{e}"
        );
        std::fs::write(&p, "[1, 2]").unwrap();
        assert_eq!(read_json::<Vec<u8>>(&p, "list").unwrap(), vec![1, 2]);
    }
}
