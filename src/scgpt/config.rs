//! `args.json`: the hyper-parameters a released scGPT checkpoint was trained with.
//!
//! Only the keys the embedding path reads are kept; unknown keys are ignored, and missing keys take
//! the values of the released whole-human model (`scGPT_human`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// The hyper-parameters read from `args.json` (defaults = the released 12-layer, d = 512 model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScgptConfig {
    /// Model width `d` (512).
    pub embsize: usize,
    /// Attention heads (8); `embsize` must be divisible by it.
    pub nheads: usize,
    /// Feed-forward width (512).
    pub d_hid: usize,
    /// Number of transformer blocks (12).
    pub nlayers: usize,
    /// Layers of the classification head (3; the head is not used for embeddings).
    pub n_layers_cls: usize,
    /// Dropout during training (0.2; inactive in eval mode).
    pub dropout: f64,
    /// Padding token (`<pad>`).
    pub pad_token: String,
    /// Value given to `<cls>` and padding positions (-2).
    pub pad_value: f32,
    /// Number of expression bins (51: zero plus 50 quantile bins).
    pub n_bins: usize,
    /// Value encoder style; only `continuous` (all released models) is supported.
    pub input_emb_style: String,
    /// Input style during training (`binned`); `embed_data` always bins.
    pub input_style: String,
    /// Longest sequence seen in training (1200).
    pub max_seq_len: usize,
}

impl Default for ScgptConfig {
    fn default() -> Self {
        ScgptConfig {
            embsize: 512,
            nheads: 8,
            d_hid: 512,
            nlayers: 12,
            n_layers_cls: 3,
            dropout: 0.2,
            pad_token: "<pad>".to_string(),
            pad_value: -2.0,
            n_bins: 51,
            input_emb_style: "continuous".to_string(),
            input_style: "binned".to_string(),
            max_seq_len: 1200,
        }
    }
}

impl ScgptConfig {
    /// Read and validate `args.json`. Errors name the file and the offending key.
    pub fn read(path: &Path) -> Result<ScgptConfig> {
        if !path.exists() {
            return Err(Error::input(path, "no args.json in the model folder"));
        }
        let text = std::fs::read_to_string(path).at(path)?;
        Self::parse(&text).map_err(|msg| Error::input(path, msg))
    }

    /// Parse and validate the JSON text of `args.json`.
    pub fn parse(text: &str) -> std::result::Result<ScgptConfig, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| "expected a JSON object of training arguments".to_string())?;
        // Deserialise key by key so that a bad value names its key.
        let mut known = serde_json::Map::new();
        let defaults =
            serde_json::to_value(ScgptConfig::default()).map_err(|e| format!("internal: {e}"))?;
        if let Some(d) = defaults.as_object() {
            for k in d.keys() {
                if let Some(v) = obj.get(k) {
                    if !v.is_null() {
                        known.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        for (k, v) in &known {
            let mut probe = serde_json::Map::new();
            probe.insert(k.clone(), v.clone());
            serde_json::from_value::<ScgptConfig>(serde_json::Value::Object(probe))
                .map_err(|e| format!("key '{k}' has an invalid value {v}: {e}"))?;
        }
        let cfg: ScgptConfig = serde_json::from_value(serde_json::Value::Object(known))
            .map_err(|e| format!("invalid arguments: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the sizes are usable.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.embsize == 0 || self.nheads == 0 || self.d_hid == 0 || self.nlayers == 0 {
            return Err("embsize, nheads, d_hid and nlayers must be positive".to_string());
        }
        if !self.embsize.is_multiple_of(self.nheads) {
            return Err(format!(
                "embsize {} is not divisible by nheads {}",
                self.embsize, self.nheads
            ));
        }
        if self.input_emb_style != "continuous" {
            return Err(format!(
                "input_emb_style '{}' is not supported (only 'continuous', used by every released scGPT model)",
                self.input_emb_style
            ));
        }
        if self.n_bins < 2 {
            return Err(format!("n_bins must be at least 2, found {}", self.n_bins));
        }
        if !self.pad_value.is_finite() {
            return Err("pad_value must be finite".to_string());
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.embsize / self.nheads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_keys_parse_and_unknown_keys_are_ignored() {
        let text = r#"{"data_source": "/scratch/cellxgene", "embsize": 64, "nheads": 4, "d_hid": 64,
            "nlayers": 2, "n_layers_cls": 3, "dropout": 0.2, "pad_token": "<pad>", "pad_value": -2,
            "n_bins": 51, "input_emb_style": "continuous", "input_style": "binned",
            "max_seq_len": 1200, "fast_transformer": true, "lr": 0.0001, "mask_ratio": [0.25, 0.5]}"#;
        let c = ScgptConfig::parse(text).unwrap();
        assert_eq!(c.embsize, 64);
        assert_eq!(c.nlayers, 2);
        assert_eq!(c.pad_value, -2.0);
        assert_eq!(c.head_dim(), 16);
        // missing keys take the released model's values
        let c = ScgptConfig::parse("{}").unwrap();
        assert_eq!(c, ScgptConfig::default());
        assert_eq!((c.embsize, c.nheads, c.nlayers, c.n_bins), (512, 8, 12, 51));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = ScgptConfig::parse(r#"{"embsize": "big"}"#).unwrap_err();
        assert!(e.contains("'embsize'"), "{e}");
        let e = ScgptConfig::parse(r#"{"embsize": 60, "nheads": 8}"#).unwrap_err();
        assert!(e.contains("not divisible"), "{e}");
        let e = ScgptConfig::parse(r#"{"input_emb_style": "category"}"#).unwrap_err();
        assert!(e.contains("category"), "{e}");
        assert!(ScgptConfig::parse("[1]").is_err());
        assert!(ScgptConfig::parse("{").unwrap_err().contains("malformed"));
    }
}
