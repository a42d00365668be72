//! Figures in Jupyter notebooks run by the [evcxr](https://github.com/evcxr/evcxr) Rust kernel.
//!
//! evcxr turns a block printed to stdout as
//!
//! ```text
//! EVCXR_BEGIN_CONTENT image/png
//! <the PNG file, base64>
//! EVCXR_END_CONTENT
//! ```
//!
//! into a rich output of that MIME type (what `evcxr_display` implementations print). The library's
//! figures are PNG files (with an SVG twin), so a notebook cell shows one with
//! [`show_png`]`(&path)?`. Outside a notebook the block is just text on stdout. evcxr keeps one output
//! per MIME type and cell, so show one figure per cell.

use std::path::Path;

use base64::Engine as _;

use crate::error::{IoContext, Result};

/// The evcxr display block of a PNG image (`bytes` = the file's contents), ending in a newline.
pub fn png_block(bytes: &[u8]) -> String {
    format!(
        "EVCXR_BEGIN_CONTENT image/png\n{}\nEVCXR_END_CONTENT\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Show the PNG file at `path` in the current evcxr notebook cell (prints [`png_block`] to stdout).
///
/// Fails, naming the file, when it cannot be read or is not a PNG.
pub fn show_png(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).at(path)?;
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(crate::Error::input(path, "not a PNG file"));
    }
    print!("{}", png_block(&bytes));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_is_evcxr_mime_output_with_standard_padded_base64() {
        assert_eq!(
            png_block(b"Man"),
            "EVCXR_BEGIN_CONTENT image/png\nTWFu\nEVCXR_END_CONTENT\n"
        );
        // RFC 4648 test vectors: padding and the standard alphabet (+ and /)
        assert!(png_block(b"Ma").contains("\nTWE=\n"));
        assert!(png_block(b"M").contains("\nTQ==\n"));
        assert!(png_block(&[0xfb, 0xff]).contains("\n+/8=\n"));
    }

    #[test]
    fn show_png_refuses_missing_and_non_png_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.png");
        assert!(show_png(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing.png"));
        let text = dir.path().join("x.png");
        std::fs::write(&text, "not an image").unwrap();
        assert!(show_png(&text)
            .unwrap_err()
            .to_string()
            .contains("not a PNG file"));
        let png = dir.path().join("ok.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\n").unwrap();
        show_png(&png).unwrap();
    }
}
