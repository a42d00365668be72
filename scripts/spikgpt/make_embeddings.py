"""Stand-in cell embeddings for the SpikGPT tests: 50 PCA components of data/immune1000.h5ad.

No pretrained scGPT checkpoint exists on the build machines, so the end-to-end SpikGPT tests train on
the first 50 principal components of the bundled immune data's log expression (X = log2(1 + scaled
counts)), computed with scikit-learn PCA (full SVD, centred, no scaling), cells in file order.

Writes tests/fixtures/spikgpt/immune1000_pca50.safetensors: tensor `embeddings` [1000, 50] float32, with
the cell ids (obs index) in the metadata entry `row_ids` (a JSON list), as `scsae::io::matrix` reads it.

Run from the repository root:  python scripts/spikgpt/make_embeddings.py
"""
import json
import os
import sys

import anndata
import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

sys.path.insert(0, os.path.dirname(__file__))
from safetensors_np import save  # noqa: E402

a = anndata.read_h5ad("data/immune1000.h5ad")
X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
emb = PCA(n_components=50, svd_solver="full").fit_transform(X.astype(np.float64)).astype(np.float32)
ids = [str(x) for x in a.obs_names]
save("tests/fixtures/spikgpt/immune1000_pca50.safetensors", {"embeddings": emb}, {"row_ids": json.dumps(ids)})
print("wrote", emb.shape, "label counts:", a.obs["cell_type_annotations"].value_counts().to_dict())
