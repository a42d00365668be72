"""Regenerate notebooks/quickstart.ipynb from tests/notebook_quickstart.rs (the cells between
`// ----- cell -----` markers), so that the notebook is exactly the code the test suite compiles and runs.

Run from the repository root:  python3 scripts/make_notebook.py
"""
import json
import re

src = open("tests/notebook_quickstart.rs").read()
body = src[src.index("// ----- cell -----"):src.index("// ----- end -----")]
cells = [b for b in body.split("// ----- cell -----") if b.strip()]


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


nb_cells = [
    md("# scsae quickstart\n\nLoad single-cell data with the scsae library from Jupyter through the "
       "[evcxr](https://github.com/evcxr/evcxr) Rust kernel (`cargo install evcxr_jupyter --locked && "
       "evcxr_jupyter --install`). Start Jupyter from this folder. The first cell compiles the library "
       "(a few minutes the first time)."),
    code([':dep scsae = { path = ".." }', 'let root = std::path::PathBuf::from("..");']),
]
titles = ["## Load a data set", "## Cells, genes and labels", "## A marker gene per cell type"]
for i, c in enumerate(cells):
    if i < len(titles):
        nb_cells.append(md(titles[i]))
    nb_cells.append(code(dedent(c)))
nb = {"cells": nb_cells,
      "metadata": {"kernelspec": {"display_name": "Rust", "language": "rust", "name": "rust"},
                   "language_info": {"codemirror_mode": "rust", "file_extension": ".rs",
                                     "mimetype": "text/rust", "name": "Rust", "pygment_lexer": "rust",
                                     "version": ""}},
      "nbformat": 4, "nbformat_minor": 5}
json.dump(nb, open("notebooks/quickstart.ipynb", "w"), indent=1)
