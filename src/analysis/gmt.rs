//! Gene sets from GMT files (MSigDB format: `name <TAB> description <TAB> gene <TAB> gene ...`).
//!
//! Reading never drops sets silently: a malformed line is an error naming the file and line; an empty
//! set, a repeated gene or an exact duplicate set is a warning naming the line; two different sets
//! with one name are an error naming both lines. [`resolve`] maps genes onto a data set's genes and
//! warns, per set, about genes the data does not measure.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::io::table::LIST_SEP;

/// One gene set as read from a GMT file.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneSet {
    /// Set name (first field).
    pub name: String,
    /// Description or URL (second field).
    pub description: String,
    /// Gene symbols, de-duplicated, in file order.
    pub genes: Vec<String>,
    /// File the set came from.
    pub source: PathBuf,
    /// 1-based line number in that file.
    pub line: usize,
}

/// Gene sets plus the warnings raised while reading them.
#[derive(Debug, Clone, Default)]
pub struct GeneSetCollection {
    /// The sets, in file order (files in the order given; folders in name order).
    pub sets: Vec<GeneSet>,
    /// Human-readable warnings, each naming a file and line.
    pub warnings: Vec<String>,
}

/// Parse GMT text; `path` is only used in messages.
pub fn parse_gmt(text: &str, path: &Path) -> Result<GeneSetCollection> {
    let mut out = GeneSetCollection::default();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 2 {
            let hint = if line.contains(' ') {
                " (fields must be separated by tabs, not spaces)"
            } else {
                ""
            };
            return Err(Error::input(
                path,
                format!(
                    "line {line_no}: malformed GMT line: expected name, description and genes separated by tabs{hint}"
                ),
            ));
        }
        let name = fields[0].trim();
        if name.is_empty() {
            return Err(Error::input(
                path,
                format!("line {line_no}: malformed GMT line: empty gene-set name"),
            ));
        }
        if name.contains(LIST_SEP) {
            return Err(Error::input(
                path,
                format!(
                    "line {line_no}: gene-set name '{name}' contains '{LIST_SEP}', the separator of \
                     set lists in the result tables"
                ),
            ));
        }
        let mut seen = HashSet::new();
        let mut genes = Vec::new();
        let mut repeated = 0usize;
        for g in fields[2.min(fields.len())..].iter().map(|g| g.trim()) {
            if g.is_empty() {
                continue;
            }
            if seen.insert(g.to_string()) {
                genes.push(g.to_string());
            } else {
                repeated += 1;
            }
        }
        if repeated > 0 {
            out.warnings.push(format!(
                "{}:{line_no}: gene set '{name}' lists {repeated} gene(s) more than once; counted once",
                path.display()
            ));
        }
        if genes.is_empty() {
            out.warnings.push(format!(
                "{}:{line_no}: gene set '{name}' has no genes; skipped",
                path.display()
            ));
            continue;
        }
        out.sets.push(GeneSet {
            name: name.to_string(),
            description: fields[1].trim().to_string(),
            genes,
            source: path.to_path_buf(),
            line: line_no,
        });
    }
    Ok(out)
}

/// Read one GMT file.
pub fn read_gmt(path: &Path) -> Result<GeneSetCollection> {
    let bytes = std::fs::read(path).at(path)?;
    let text =
        String::from_utf8(bytes).map_err(|e| Error::input(path, format!("not UTF-8 text: {e}")))?;
    let c = parse_gmt(&text, path)?;
    if c.sets.is_empty() {
        return Err(Error::input(path, "no gene sets in this file"));
    }
    Ok(c)
}

/// Read GMT files and folders (every `*.gmt` inside, sorted by name), checking set names across all
/// of them: an identical repeat is skipped with a warning, a different set under a used name is an
/// error naming both places.
pub fn read_gene_sets(paths: &[PathBuf]) -> Result<GeneSetCollection> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .at(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| e.eq_ignore_ascii_case("gmt"))
                })
                .collect();
            inside.sort();
            if inside.is_empty() {
                return Err(Error::input(p, "folder holds no .gmt files"));
            }
            files.extend(inside);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(Error::input(p, "gene-set file not found"));
        }
    }
    let mut out = GeneSetCollection::default();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for f in files {
        let c = read_gmt(&f)?;
        out.warnings.extend(c.warnings);
        for s in c.sets {
            if let Some(&k) = by_name.get(&s.name) {
                let prev = &out.sets[k];
                let same = {
                    let a: HashSet<&String> = prev.genes.iter().collect();
                    let b: HashSet<&String> = s.genes.iter().collect();
                    a == b
                };
                if same {
                    out.warnings.push(format!(
                        "{}:{}: gene set '{}' repeats {}:{} with the same genes; skipped",
                        s.source.display(),
                        s.line,
                        s.name,
                        prev.source.display(),
                        prev.line
                    ));
                    continue;
                }
                return Err(Error::input(
                    &s.source,
                    format!(
                        "line {}: duplicate gene-set name '{}' (first defined at {}:{} with different genes); rename one",
                        s.line,
                        s.name,
                        prev.source.display(),
                        prev.line
                    ),
                ));
            }
            by_name.insert(s.name.clone(), out.sets.len());
            out.sets.push(s);
        }
    }
    Ok(out)
}

/// A gene set mapped onto the columns of an expression matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSet {
    /// Set name.
    pub name: String,
    /// Source file name (no folder), for tables.
    pub source: String,
    /// Column indices of the set's measured genes, ascending.
    pub genes: Vec<usize>,
    /// Number of genes the set lists.
    pub n_listed: usize,
}

/// Map sets onto `gene_symbols`, keeping only genes with `measured[g]`. Warns per set about unmeasured
/// genes (naming a few) and skips sets with no measured gene; errors when no set keeps any gene.
pub fn resolve(
    sets: &GeneSetCollection,
    gene_symbols: &[String],
    measured: &[bool],
    min_set_size: usize,
) -> Result<(Vec<ResolvedSet>, Vec<String>)> {
    let index: HashMap<&str, usize> = gene_symbols
        .iter()
        .enumerate()
        .rev()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for s in &sets.sets {
        let mut genes = Vec::new();
        let mut missing = Vec::new();
        for g in &s.genes {
            match index.get(g.as_str()) {
                Some(&i) if measured.get(i).copied().unwrap_or(false) => genes.push(i),
                _ => missing.push(g.as_str()),
            }
        }
        genes.sort_unstable();
        genes.dedup();
        let at = format!("{}:{}", s.source.display(), s.line);
        if genes.len() < min_set_size.max(1) {
            warnings.push(format!(
                "{at}: gene set '{}' has {} of {} genes measured (minimum {}); skipped",
                s.name,
                genes.len(),
                s.genes.len(),
                min_set_size.max(1)
            ));
            continue;
        }
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(5).copied().collect();
            let more = if missing.len() > 5 { ", ..." } else { "" };
            warnings.push(format!(
                "{at}: gene set '{}': {} of {} genes not measured in the data ({}{more})",
                s.name,
                missing.len(),
                s.genes.len(),
                shown.join(", ")
            ));
        }
        out.push(ResolvedSet {
            name: s.name.clone(),
            source: s
                .source
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            genes,
            n_listed: s.genes.len(),
        });
    }
    if out.is_empty() && !sets.sets.is_empty() {
        let first = &sets.sets[0];
        return Err(Error::input(
            &first.source,
            format!(
                "none of the {} gene sets shares a measured gene with the data (first set '{}' at line {}); check that the data's gene names are symbols (--gene-key)",
                sets.sets.len(),
                first.name,
                first.line
            ),
        ));
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_warns_per_line() {
        let p = Path::new("x.gmt");
        let c = parse_gmt(
            "A\tdesc\tG1\tG2\tG1\n\nEMPTY\tdesc\n# comment\nB\t\tG3\r\n",
            p,
        )
        .unwrap();
        assert_eq!(c.sets.len(), 2);
        assert_eq!(c.sets[0].genes, vec!["G1", "G2"]);
        assert_eq!(c.sets[1].line, 5);
        assert!(c.warnings[0].contains("x.gmt:1") && c.warnings[0].contains("more than once"));
        assert!(c.warnings[1].contains("x.gmt:3") && c.warnings[1].contains("no genes"));
        // a set name with the list separator of the result tables is refused, naming the line
        let e = parse_gmt("A\td\tG1\nB;C\td\tG2\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("'B;C'"), "{e}");
    }

    #[test]
    fn malformed_line_is_an_error_naming_it() {
        let e = parse_gmt("A\td\tG1\nB G1 G2 G3\n", Path::new("s.gmt")).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("s.gmt") && m.contains("line 2") && m.contains("tabs"),
            "{m}"
        );
    }

    #[test]
    fn resolve_warns_about_unknown_genes_and_errors_when_nothing_left() {
        let c = parse_gmt("A\td\tG1\tZZ\nB\td\tQQ\n", Path::new("s.gmt")).unwrap();
        let genes: Vec<String> = ["G0", "G1"].map(String::from).to_vec();
        let (r, w) = resolve(&c, &genes, &[true, true], 1).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].genes, vec![1]);
        assert!(w[0].contains("s.gmt:1") && w[0].contains("ZZ"));
        assert!(w[1].contains("s.gmt:2") && w[1].contains("skipped"));
        let e = resolve(&c, &genes, &[true, false], 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none of the 2 gene sets"), "{e}");
    }
}
