//! Which activations to extract: `--layers all|0,6,11|last|embeddings,...`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::scgpt::model::Site;

/// A parsed `--layers` value: a comma-separated list of block indices (negative counts from the
/// end: -1 = last), `all` (every block), `last`, and `embeddings` (the encoder input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSelection(pub String);

impl Default for LayerSelection {
    fn default() -> Self {
        LayerSelection("all".to_string())
    }
}

impl std::str::FromStr for LayerSelection {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.trim().is_empty() {
            return Err(Error::invalid(
                "--layers is empty (use all, or e.g. 0,6,11)",
            ));
        }
        Ok(LayerSelection(s.to_string()))
    }
}

impl LayerSelection {
    /// The selected sites for a model with `nlayers` blocks, sorted (embeddings first) and
    /// deduplicated. Errors name the bad item.
    pub fn resolve(&self, nlayers: usize) -> Result<Vec<Site>> {
        let mut out = Vec::new();
        for item in self.0.split(',').map(str::trim) {
            match item {
                "" => continue,
                "all" => out.extend((0..nlayers).map(Site::Block)),
                "last" => out.push(Site::Block(nlayers - 1)),
                "embeddings" | "emb" => out.push(Site::Embeddings),
                _ => {
                    let i: i64 = item.parse().map_err(|_| {
                        Error::invalid(format!(
                            "--layers: '{item}' is not a layer (use all, last, embeddings or block numbers 0..{})",
                            nlayers - 1
                        ))
                    })?;
                    let idx = if i < 0 { nlayers as i64 + i } else { i };
                    if idx < 0 || idx >= nlayers as i64 {
                        return Err(Error::invalid(format!(
                            "--layers: block {i} does not exist (the model has blocks 0..{})",
                            nlayers - 1
                        )));
                    }
                    out.push(Site::Block(idx as usize));
                }
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(Error::invalid("--layers selects nothing"));
        }
        Ok(out)
    }
}

/// Store name of a site: `"embeddings"` or the block index as text.
pub fn site_name(site: Site) -> String {
    match site {
        Site::Embeddings => "embeddings".to_string(),
        Site::Block(i) => i.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str, n: usize) -> Result<Vec<Site>> {
        s.parse::<LayerSelection>()?.resolve(n)
    }

    #[test]
    fn parses_lists_all_last_negative_and_embeddings() {
        assert_eq!(
            r("all", 3).unwrap(),
            vec![Site::Block(0), Site::Block(1), Site::Block(2)]
        );
        assert_eq!(
            r("11,0,6,6", 12).unwrap(),
            vec![Site::Block(0), Site::Block(6), Site::Block(11)]
        );
        assert_eq!(
            r("last,-2", 12).unwrap(),
            vec![Site::Block(10), Site::Block(11)]
        );
        assert_eq!(
            r("embeddings,0", 2).unwrap(),
            vec![Site::Embeddings, Site::Block(0)]
        );
        assert_eq!(site_name(Site::Block(4)), "4");
        assert_eq!(site_name(Site::Embeddings), "embeddings");
    }

    #[test]
    fn bad_items_are_named() {
        assert!(r("12", 12)
            .unwrap_err()
            .to_string()
            .contains("block 12 does not exist"));
        assert!(r("x", 12).unwrap_err().to_string().contains("'x'"));
        assert!(r(" ", 12).is_err());
        assert!(r(",", 12).is_err());
    }
}
