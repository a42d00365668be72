//! One progress-bar style for the long loops (SAE and SpikGPT training, extraction, attribution).
//!
//! Bars draw on stderr only (indicatif hides them when stderr is not a terminal), so they never change
//! an output file or the commands' stdout.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over `len` units named `unit` (a plain word such as `"steps"` or `"cells"`), drawn
/// as `{prefix} [=====>    ] pos/len unit {msg} (elapsed < eta)`: callers put the phase in the
/// prefix (`set_prefix`) and live numbers in the message (`set_message`). When `enabled` is false the
/// bar is hidden: every call on it is a no-op.
pub fn bar(enabled: bool, len: u64, unit: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template =
        format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}} ({{elapsed}} < {{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
