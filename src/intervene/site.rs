//! Where an SAE plugs into scGPT: the residual-stream site of the layer it was trained on, checked
//! against the model that will run.

use std::path::Path;

use crate::error::{Error, Result};
use crate::sae::{InputLevel, Sae};
use crate::scgpt::model::Site;
use crate::scgpt::Scgpt;

/// The site of `sae` in `scgpt`: block `i`'s output for an SAE of layer `i`, the encoder input for
/// one of `embeddings`. `layer` names the layer when the SAE does not record it (trained on a matrix
/// file) and must agree with it when it does. Errors (naming `sae_dir`): an SAE of the pooled
/// per-cell vectors or of the CLS embedding (no per-token site), a width or model that differs from
/// `scgpt`, a layer the model does not have.
pub fn sae_site(sae: &Sae, sae_dir: &Path, scgpt: &Scgpt, layer: Option<&str>) -> Result<Site> {
    let d = scgpt.config.embsize;
    if sae.d_in() != d {
        return Err(Error::input(
            sae_dir,
            format!(
                "the SAE reads {}-dimensional activations but the model's width is {d}: it belongs to another model",
                sae.d_in()
            ),
        ));
    }
    if sae.cfg.scsae.level == InputLevel::Cells {
        return Err(Error::input(
            sae_dir,
            "the SAE was trained on per-cell mean activations; splicing into the residual stream needs an SAE of token activations (scsae train --level tokens)",
        ));
    }
    let recorded = sae.source_layer();
    let name =
        match (recorded.as_deref(), layer) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::input(
                    sae_dir,
                    format!("the SAE was trained on layer {a} activations, not layer {b}"),
                ))
            }
            (Some(a), _) => a.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => return Err(Error::input(
                sae_dir,
                "the SAE does not record its layer (trained on a matrix file): pass --sae-layer",
            )),
        };
    let site = match name.as_str() {
        "embeddings" => Site::Embeddings,
        "cls" => {
            return Err(Error::input(
                sae_dir,
                "the SAE was trained on the final CLS embedding, which is not a residual-stream site; use an SAE of a block's output (scsae train --layer N)",
            ))
        }
        other => {
            let i: usize = other.parse().map_err(|_| {
                Error::input(sae_dir, format!("the SAE's layer '{other}' is not a block number or 'embeddings'"))
            })?;
            if i >= scgpt.config.nlayers {
                return Err(Error::input(
                    sae_dir,
                    format!(
                        "the SAE was trained on layer {i} but the model has {} blocks (0..{})",
                        scgpt.config.nlayers,
                        scgpt.config.nlayers - 1
                    ),
                ));
            }
            Site::Block(i)
        }
    };
    check_model(sae, sae_dir, scgpt)?;
    Ok(site)
}

/// Error unless the model recorded in the SAE's provenance (when recorded) has the sizes and
/// `args.json` values of `scgpt`. Paths may differ (a moved checkpoint folder is the same model).
fn check_model(sae: &Sae, sae_dir: &Path, scgpt: &Scgpt) -> Result<()> {
    let Some(theirs) = sae.provenance().known_model() else {
        return Ok(());
    };
    let mine = scgpt.describe();
    for key in ["sizes", "args"] {
        if let (Some(a), Some(b)) = (theirs.get(key), mine.get(key)) {
            if a != b {
                return Err(Error::input(
                    sae_dir,
                    format!(
                        "the SAE was trained on activations of another scGPT model ({key} differ: {a} vs {b} in {})",
                        scgpt.dir.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}
