"""Regenerate the notebooks from their tests: notebooks/quickstart.ipynb from
tests/pipelines/notebook_quickstart.rs and notebooks/explain.ipynb from
tests/pipelines/notebook_explain.rs (the code cells between `// ----- cell -----` markers), so that
every notebook is exactly code the test suite compiles and runs.

Run from the repository root:  python3 scripts/make_notebook.py
"""
import json

KERNEL = ("the [evcxr](https://github.com/evcxr/evcxr) Rust kernel (`cargo install evcxr_jupyter "
          "--locked && evcxr_jupyter --install`). Start Jupyter from this folder. The first cell "
          "compiles the library (a few minutes the first time).")

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


for name, spec in NOTEBOOKS.items():
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
    with open(f"notebooks/{name}.ipynb", "w") as f:
        json.dump(nb, f, indent=1)
