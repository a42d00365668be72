//! Shared check of the notebook tests: a notebook's code cells (after its setup cell) must be exactly
//! the blocks between `// ----- cell -----` markers of the test that runs them.

use std::path::Path;

fn normalise(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Code cells of the notebook at `path`, without the first (setup) cell, whitespace-trimmed per line.
pub fn notebook_cells(path: &Path) -> Vec<String> {
    let nb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cell_type"] == "code")
        .skip(1)
        .map(|c| {
            let src: String = match &c["source"] {
                serde_json::Value::Array(lines) => {
                    lines.iter().map(|l| l.as_str().unwrap()).collect()
                }
                s => s.as_str().unwrap().to_string(),
            };
            normalise(&src)
        })
        .collect()
}

/// The blocks between the cell markers of a test file's source.
pub fn test_cells(src: &str) -> Vec<String> {
    let body =
        &src[src.find("// ----- cell -----").unwrap()..src.find("// ----- end -----").unwrap()];
    body.split("// ----- cell -----")
        .filter(|b| !b.trim().is_empty())
        .map(normalise)
        .collect()
}
