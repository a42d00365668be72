//! Where activations or embeddings came from, and the one check that two of them are compatible.
//!
//! The same record is saved in an SAE's `cfg.json` (`scsae.source`) and in a SpikGPT model's
//! `config.json` (`embedding`); every consumer (`scsae encode`, `scsae analyze`, `spikgpt annotate
//! --sae`, `spikgpt ablate`) compares records with [`Provenance::check_matches`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ActivationStore;
use crate::error::{Error, Result};

/// The kind of input the activations were read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// An extraction folder written by `scsae extract`.
    Activations,
    /// A matrix file (`.safetensors`, `.npy`, CSV/TSV, Parquet).
    #[default]
    Matrix,
}

/// Where a matrix of activations or cell embeddings came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// An extraction folder or a matrix file.
    pub kind: SourceKind,
    /// The folder or file given.
    pub path: PathBuf,
    /// Layer name (`"11"`, `"embeddings"`, `"cls"`), when known.
    pub layer: Option<String>,
    /// The extraction manifest's model description (null for a matrix file).
    pub model: serde_json::Value,
    /// The extraction manifest's data description (null for a matrix file).
    pub data: serde_json::Value,
}

impl Provenance {
    /// Provenance of `layer` of the extraction `store` (`None`: a layer not chosen yet).
    pub fn of_store(store: &ActivationStore, layer: Option<&str>) -> Provenance {
        Provenance {
            kind: SourceKind::Activations,
            path: store.dir().to_path_buf(),
            layer: layer.map(str::to_string),
            model: store.manifest.model.clone(),
            data: store.manifest.data.clone(),
        }
    }

    /// Provenance of a matrix file; `layer` is recorded as given (it cannot be checked).
    pub fn of_matrix(path: &Path, layer: Option<&str>) -> Provenance {
        Provenance {
            kind: SourceKind::Matrix,
            path: path.to_path_buf(),
            layer: layer.map(str::to_string),
            model: serde_json::Value::Null,
            data: serde_json::Value::Null,
        }
    }

    /// The recorded model description, `None` when unknown (a matrix file).
    pub fn known_model(&self) -> Option<&serde_json::Value> {
        Some(&self.model).filter(|m| !m.is_null())
    }

    /// Error (naming `blame`) unless `other` can be used where `self` was trained on: where both
    /// record a layer the layers agree, and where both record the scGPT model the models agree.
    /// Unknown values on either side (a matrix file) are accepted. `mine` and `theirs` describe the
    /// two sides in the message, e.g. "the SAE in sae/" and "the embeddings (acts/)".
    pub fn check_matches(
        &self,
        other: &Provenance,
        mine: &str,
        theirs: &str,
        blame: &Path,
    ) -> Result<()> {
        if let (Some(a), Some(b)) = (&self.layer, &other.layer) {
            if a != b {
                return Err(Error::input(
                    blame,
                    format!(
                        "{mine} was trained on layer {a} activations but {theirs} are layer {b}"
                    ),
                ));
            }
        }
        if let (Some(a), Some(b)) = (self.known_model(), other.known_model()) {
            if a != b {
                return Err(Error::input(
                    blame,
                    format!(
                        "{mine} was trained on activations of another scGPT model than {theirs}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(layer: &str, model: &str) -> Provenance {
        Provenance {
            kind: SourceKind::Activations,
            path: PathBuf::from("acts"),
            layer: Some(layer.into()),
            model: serde_json::json!({ "checkpoint": model }),
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn layers_and_models_must_agree_where_known() {
        let p = Path::new("x");
        let a = store("11", "m1");
        assert!(a.check_matches(&store("11", "m1"), "A", "B", p).is_ok());
        let e = a
            .check_matches(&store("0", "m1"), "A", "B", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("trained on layer 11") && e.contains("layer 0"),
            "{e}"
        );
        let e = a
            .check_matches(&store("11", "m2"), "A", "B", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another scGPT model"), "{e}");
        // a matrix file records nothing checkable
        let m = Provenance::of_matrix(Path::new("m.npy"), None);
        assert!(a.check_matches(&m, "A", "B", p).is_ok());
        assert!(m.check_matches(&a, "A", "B", p).is_ok());
    }

    #[test]
    fn serialises_like_the_saved_records() {
        let p = Provenance::of_matrix(Path::new("m.npy"), Some("3"));
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(
            s,
            r#"{"kind":"matrix","path":"m.npy","layer":"3","model":null,"data":null}"#
        );
        // an older record without `kind` still reads
        let old: Provenance =
            serde_json::from_str(r#"{"path":"a","layer":"cls","model":{"x":1},"data":null}"#)
                .unwrap();
        assert_eq!(old.layer.as_deref(), Some("cls"));
        assert_eq!(old.known_model(), Some(&serde_json::json!({"x":1})));
    }
}
