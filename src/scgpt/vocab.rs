//! `vocab.json`: gene symbol -> token id, as `GeneVocab.from_file` reads it.
//!
//! The file is a JSON object of token -> index with consecutive indices `0..n` (the official
//! `GeneVocab.from_dict` inserts tokens in index order and needs that). `embed_data` appends the special
//! tokens `<pad>`, `<cls>`, `<eoc>` when missing, in that order; so does [`Vocab::read`].

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Special tokens `embed_data` makes sure exist, in the order it appends them.
pub const SPECIAL_TOKENS: [&str; 3] = ["<pad>", "<cls>", "<eoc>"];

/// A gene vocabulary: token strings and their ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    /// Specials that were missing from the file and appended.
    pub appended: Vec<String>,
}

impl Vocab {
    /// Read `vocab.json`, check the indices are consecutive, and append missing special tokens.
    pub fn read(path: &Path) -> Result<Vocab> {
        if !path.exists() {
            return Err(Error::input(path, "no vocab.json in the model folder"));
        }
        let text = std::fs::read_to_string(path).at(path)?;
        Self::parse(&text).map_err(|msg| Error::input(path, msg))
    }

    /// Parse the JSON text of a vocabulary file.
    pub fn parse(text: &str) -> std::result::Result<Vocab, String> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| format!("not a JSON object of token -> id: {e}"))?;
        let mut pairs = Vec::with_capacity(map.len());
        for (tok, v) in map {
            let id = v
                .as_u64()
                .filter(|&i| i <= u32::MAX as u64)
                .ok_or_else(|| {
                    format!("token '{tok}' has id {v}, expected a non-negative integer")
                })?;
            pairs.push((id as usize, tok));
        }
        Self::from_pairs(pairs)
    }

    /// Build from (id, token) pairs; ids must be exactly `0..n`.
    pub fn from_pairs(mut pairs: Vec<(usize, String)>) -> std::result::Result<Vocab, String> {
        pairs.sort();
        for (expect, (id, tok)) in pairs.iter().enumerate() {
            if *id != expect {
                return Err(if *id < expect {
                    format!("id {id} is used twice (token '{tok}')")
                } else {
                    format!("ids are not consecutive: no token has id {expect}")
                });
            }
        }
        let mut vocab = Vocab {
            ids: HashMap::with_capacity(pairs.len() + 3),
            tokens: Vec::with_capacity(pairs.len() + 3),
            appended: Vec::new(),
        };
        for (_, tok) in pairs {
            vocab.push(tok);
        }
        for s in SPECIAL_TOKENS {
            if !vocab.ids.contains_key(s) {
                vocab.push(s.to_string());
                vocab.appended.push(s.to_string());
            }
        }
        Ok(vocab)
    }

    fn push(&mut self, tok: String) {
        self.ids.insert(tok.clone(), self.tokens.len() as u32);
        self.tokens.push(tok);
    }

    /// Number of tokens, specials included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the vocabulary holds no token (never after [`Vocab::read`]).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Id of a token (exact, case-sensitive match as in the official code).
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Token of an id.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Id of `<cls>`.
    pub fn cls_id(&self) -> u32 {
        self.ids["<cls>"]
    }

    /// Id of a required token, or an error naming it.
    pub fn require(&self, token: &str) -> std::result::Result<u32, String> {
        self.id(token)
            .ok_or_else(|| format!("token '{token}' is not in the vocabulary"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_missing_specials_after_the_genes() {
        let v = Vocab::parse(r#"{"B2M": 1, "CD3E": 0, "<cls>": 2}"#).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v.id("CD3E"), Some(0));
        assert_eq!(v.id("<cls>"), Some(2));
        assert_eq!(v.id("<pad>"), Some(3));
        assert_eq!(v.id("<eoc>"), Some(4));
        assert_eq!(v.appended, vec!["<pad>", "<eoc>"]);
        assert_eq!(v.token(1), Some("B2M"));
        assert_eq!(
            v.id("b2m"),
            None,
            "matching is case-sensitive like the official code"
        );
    }

    #[test]
    fn rejects_gaps_duplicates_and_bad_ids() {
        assert!(Vocab::parse(r#"{"A": 0, "B": 2}"#)
            .unwrap_err()
            .contains("no token has id 1"));
        assert!(Vocab::parse(r#"{"A": 0, "B": 0}"#)
            .unwrap_err()
            .contains("used twice"));
        assert!(Vocab::parse(r#"{"A": -1}"#).unwrap_err().contains("'A'"));
        assert!(Vocab::parse(r#"["A"]"#).is_err());
    }
}
