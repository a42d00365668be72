#!/usr/bin/env bash
# Regenerate the notebooks from their tests (scripts/make_notebook.py) and execute each one under the
# evcxr Rust kernel with `jupyter nbconvert --execute --inplace`, leaving them executed (text and
# figures) for committing; then scripts/notebooks/clean.py prints each cell's time and removes
# machine-specific paths and timing metadata from the outputs.
#
# Needs: the evcxr kernel (`cargo install evcxr_jupyter --locked && evcxr_jupyter --install`) and
# Jupyter (`pip install jupyter nbconvert nbclient ipykernel`). Run from anywhere:
#
#   bash scripts/notebooks/run.sh                      # all notebooks
#   bash scripts/notebooks/run.sh paper_analysis       # some of them
#
# The notebooks share one evcxr build folder (EVCXR_TMPDIR; a fresh temporary folder unless set), so
# the first notebook's `:dep scsae = { path = ".." }` compiles the dependency tree and the others
# reuse it. Set EVCXR_TMPDIR to a kept folder to make later runs warm too.
set -euo pipefail
cd "$(dirname "$0")/../.."
JUPYTER=${JUPYTER:-jupyter}
PYTHON=${PYTHON:-python3}
notebooks=("$@")
if [ ${#notebooks[@]} -eq 0 ]; then
    notebooks=(quickstart explain paper_analysis)
fi
if [ -z "${EVCXR_TMPDIR:-}" ]; then
    EVCXR_TMPDIR=$(mktemp -d -t scsae-evcxr-XXXXXX)
    trap 'rm -rf "$EVCXR_TMPDIR"' EXIT
fi
export EVCXR_TMPDIR
mkdir -p "$EVCXR_TMPDIR"
"$PYTHON" scripts/make_notebook.py "${notebooks[@]}"
for nb in "${notebooks[@]}"; do
    file="notebooks/$nb.ipynb"
    [ -f "$file" ] || { echo "no notebook $file" >&2; exit 1; }
    start=$(date +%s)
    # no cell time limit (a cold first cell compiles for many minutes); a long kernel start limit (evcxr
    # builds an empty crate at start, which waits for any build holding the folder)
    "$JUPYTER" nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.timeout=-1 --ExecutePreprocessor.startup_timeout=3600 \
        --ExecutePreprocessor.kernel_name=rust "$file"
    echo "$nb: executed in $(( $(date +%s) - start )) s"
    "$PYTHON" scripts/notebooks/clean.py --build-dir "$EVCXR_TMPDIR" "$file"
done
