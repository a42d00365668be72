//! Options shared by every subcommand: the runtime (`--device`, `--dtype`, `--threads`, `--seed`)
//! and how to read a data file (`--layer`, `--gene-key`, `--labels`).

use std::path::PathBuf;

use clap::Args;

use crate::data::{LoadOptions, MatrixLayer};
use crate::error::Result;
use crate::runtime::{DeviceSpec, Precision, Runtime, RuntimeConfig};

/// Runtime options, accepted by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Device: cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Precision of model computations: f32 (default), bf16 or f16 (CUDA only).
    #[arg(long, global = true, default_value = "f32")]
    pub dtype: Precision,
    /// Worker threads for rayon and candle (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Global seed for every random choice.
    #[arg(long, global = true, default_value_t = 42)]
    pub seed: u64,
}

impl RuntimeArgs {
    /// Build the shared runtime.
    pub fn runtime(&self) -> Result<Runtime> {
        Runtime::new(RuntimeConfig {
            device: self.device,
            precision: self.dtype,
            threads: self.threads,
            seed: self.seed,
        })
    }
}

/// The scGPT checkpoint a subcommand runs.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// scGPT checkpoint folder: args.json, vocab.json and best_model.pt (or model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Weights file to use instead of the folder's best_model.pt / model.safetensors.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

/// How to read single-cell data.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Matrix to read from an .h5ad: X or raw.
    #[arg(long, default_value = "X")]
    pub layer: MatrixLayer,
    /// var column with gene symbols (default: the var index; for 10x folders gene_ids or gene_symbols).
    #[arg(long)]
    pub gene_key: Option<String>,
    /// CSV/TSV/Parquet table of cell labels, joined on cell id (first column or cell_id/barcode).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Rename duplicate gene symbols / cell ids (`X`, `X-1`, ...) as AnnData's
    /// `var_names_make_unique` does, instead of refusing the file.
    #[arg(long)]
    pub make_unique: bool,
}

impl DataArgs {
    /// The corresponding load options.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            layer: self.layer,
            gene_key: self.gene_key.clone(),
            labels: self.labels.clone(),
            make_unique: self.make_unique,
        }
    }
}

/// Error unless `--threshold` is a probability (the library's one check).
pub use crate::spikgpt::calibration::check_threshold;

/// Parse the command line. Help and `--version` print as clap does; a usage error becomes one line
/// on stderr (clap's first paragraph, e.g. the invalid value and why, or the missing options) and
/// exit status 2.
pub fn parse_args<P: clap::Parser>() -> P {
    use clap::error::ErrorKind;
    match P::try_parse() {
        Ok(p) => p,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("{}", usage_error_line(&e.render().to_string()));
                std::process::exit(2);
            }
        },
    }
}

/// The first paragraph of a clap error as one line.
fn usage_error_line(text: &str) -> String {
    let first: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    if first.is_empty() {
        "error: invalid command line (see --help)".into()
    } else {
        format!("{} (see --help)", first.join(" "))
    }
}

/// Print `text` and a newline on stdout; a closed pipe (`scsae inspect ... | head`) ends quietly.
pub fn print_out(text: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_become_one_line() {
        let clap_text = "error: the following required arguments were not provided:\n  --data <DATA>\n  --out <OUT>\n\nUsage: scsae extract --data <DATA>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(clap_text),
            "error: the following required arguments were not provided: --data <DATA> --out <OUT> (see --help)"
        );
        assert_eq!(
            usage_error_line("error: invalid value 'x' for '--lambda <LAMBDA>': invalid float literal\n\nFor more information, try '--help'.\n"),
            "error: invalid value 'x' for '--lambda <LAMBDA>': invalid float literal (see --help)"
        );
    }
}
