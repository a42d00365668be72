"""Regenerate the notebooks from their tests: notebooks/quickstart.ipynb from
tests/pipelines/notebook_quickstart.rs, notebooks/explain.ipynb from tests/pipelines/notebook_explain.rs
and notebooks/paper_analysis.ipynb from tests/pipelines/notebook_paper.rs (the code cells between
`// ----- cell -----` markers), so that every notebook is exactly code the test suite compiles and runs.

The notebooks come out without outputs; `bash scripts/notebooks/run.sh` regenerates them and executes
them under the evcxr kernel, which is how the committed (executed) notebooks are made.

Run from the repository root:  python3 scripts/make_notebook.py [NAME ...]   (default: all)
"""
import json
import sys

KERNEL = ("the [evcxr](https://github.com/evcxr/evcxr) Rust kernel (`cargo install evcxr_jupyter "
          "--locked && evcxr_jupyter --install`). Start Jupyter from this folder. The first code cell "
          "(`:dep scsae = { path = \"..\" }`) compiles scsae and its whole dependency tree (candle, "
          "polars, plotters, ...) with optimisations the first time: measured 19 minutes on a shared "
          "2-core machine (about 330 crates, some already built), a few minutes on a many-core laptop; "
          "with the build folder kept, the same cell takes about a minute in a new kernel. A restarted "
          "kernel compiles it all again unless evcxr reuses its build folder: start Jupyter with "
          "`EVCXR_TMPDIR` set to a folder of your own (one kernel at a time).")

NOTEBOOKS = {
    "quickstart": {
        "test": "tests/pipelines/notebook_quickstart.rs",
        "intro": "# scsae quickstart\n\nLoad single-cell data with the scsae library from Jupyter through "
                 + KERNEL,
        "setup": [':dep scsae = { path = ".." }', 'let root = std::path::PathBuf::from("..");'],
        "titles": ["## Load a data set", "## Cells, genes and labels", "## A marker gene per cell type"],
    },
    "explain": {
        "test": "tests/pipelines/notebook_explain.rs",
        "intro": "# Explaining SpikGPT's calls through SAE features\n\nTrain the spiking annotator and "
                 "a sparse autoencoder on the bundled immune embeddings (a PCA-50 stand-in for scGPT "
                 "CLS embeddings), attribute every call to SAE features, and check causally that the "
                 "top features matter more than random ones. Runs in Jupyter through " + KERNEL,
        "setup": [':dep scsae = { path = ".." }', ':dep tempfile = "3"',
                  'let root = std::path::PathBuf::from("..");'],
        "titles": ["## Embeddings and labels", "## Train SpikGPT (NK held out)",
                   "## Train an SAE on the same embeddings",
                   "## Attribute one call to SAE features",
                   "## Causal check: remove the top features vs random ones"],
    },
    "paper_analysis": {
        "test": "tests/pipelines/notebook_paper.rs",
        "intro": "# The paper's analysis, in miniature\n\n"
                 "Every step of the paper's SAE analysis of scGPT, on bundled data small enough to run in "
                 "a minute: activations of every layer, a layer x λ sweep of sparse autoencoders, "
                 "cell-type AUROC of every feature, the PCA baseline, and gene-set enrichment.\n\n"
                 "**What the numbers mean here.** The model is the committed *tiny* scGPT checkpoint "
                 "(`tests/fixtures/scgpt/tiny`: the official format, 2 layers of width 64, **random "
                 "weights**), so the layers differ only by a random transformation of the binned "
                 "expression; the cells are the 1000 labelled immune cells of `data/immune1000.h5ad`. The "
                 "code is the paper's pipeline unchanged: to run it on real scGPT, point `Scgpt::load` at "
                 "a whole-human checkpoint folder (`args.json`, `best_model.pt`, `vocab.json`), and use "
                 "its layers (`0`, `6`, `11`) and the paper's λ values (1, 3, 10) with more features and "
                 "epochs. The command-line equivalent is `scsae extract`, `scsae sweep` and "
                 "`scsae analyze --sae` (README).\n\nRuns in Jupyter through " + KERNEL,
        "setup": [':dep scsae = { path = ".." }', 'let root = std::path::PathBuf::from("..");'],
        "titles": [
            "## Activations of every layer\n\nRead the cells, tokenise them as scGPT does (genes in "
            "the vocabulary, per-cell binned values, `<cls>` first) and store the per-cell mean of "
            "every layer's residual stream (`scsae extract`).",
            "## A layer x λ sweep\n\nOne SAE (256 features, L1 penalty λ) per layer and λ on the "
            "cell-level activations (`scsae sweep`), the paper's Table 2 in small: L0 is the mean "
            "number of active features per cell, R² the variance of the activations the SAE "
            "reconstructs. A larger λ buys sparsity (lower L0) with reconstruction.",
            "## Cell-type AUROC and enrichment of every run, against PCA\n\nFor each run, "
            "`scsae::analyze` (`scsae analyze --sae`) scores every feature as a one-feature classifier "
            "of every cell type (AUROC, one type against the rest), correlates features with genes, "
            "tests the correlated genes of each feature for enrichment in the paper's immune gene sets "
            "(Fisher's exact test, Benjamini-Hochberg FDR 0.05), and analyses the principal "
            "components of the same layer's activations as the baseline. *Mean best AUROC* is the "
            "best single-feature AUROC of each cell type, averaged over the types.",
            "## The AUROC heatmap\n\nThe run with the highest mean best AUROC: its most "
            "type-specific features (rows) against the cell types (columns).",
            "## SAE vs PCA\n\nThe headline numbers of the SAE features and of the principal "
            "components side by side, then per cell type: the best feature of each and its AUROC.",
            "## Gene-set enrichment\n\nThe (feature, gene set) tests with the smallest q-values, and "
            "the summary figure of enriched sets.",
        ],
    },
}


def dedent(block):
    lines = [l for l in block.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    pad = min(len(l) - len(l.lstrip()) for l in lines if l.strip())
    return [l[pad:] for l in lines]


def code(lines):
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": [l + "\n" for l in lines[:-1]] + [lines[-1]]}


def md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


for name in sys.argv[1:] or list(NOTEBOOKS):
    spec = NOTEBOOKS[name]
    src = open(spec["test"]).read()
    body = src[src.index("// ----- cell -----"):src.index("// ----- end -----")]
    cells = [b for b in body.split("// ----- cell -----") if b.strip()]
    nb_cells = [md(spec["intro"]), code(spec["setup"])]
    for i, c in enumerate(cells):
        if i < len(spec["titles"]):
            nb_cells.append(md(spec["titles"][i]))
        nb_cells.append(code(dedent(c)))
    nb = {"cells": nb_cells,
          "metadata": {"kernelspec": {"display_name": "Rust", "language": "rust", "name": "rust"},
                       "language_info": {"codemirror_mode": "rust", "file_extension": ".rs",
                                         "mimetype": "text/rust", "name": "Rust",
                                         "pygment_lexer": "rust", "version": ""}},
          "nbformat": 4, "nbformat_minor": 5}
    for i, c in enumerate(nb_cells):  # nbformat 4.5 cell ids, stable across regenerations
        c["id"] = f"{name}-{i}"
    with open(f"notebooks/{name}.ipynb", "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
