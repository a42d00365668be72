"""Import the OFFICIAL scGPT 0.2.4 code without its heavy, unused dependencies.

Used by make_fixtures.py and bench_torch.py (not run on its own).

Setup (once):
    pip install --no-deps scgpt==0.2.4 safetensors

`scgpt/__init__.py` imports scanpy, scib, torchtext, wandb, matplotlib, IPython, ...
none of which the embedding path needs.  This module

* registers light *parent package* objects for `scgpt`, `scgpt.model`,
  `scgpt.tokenizer` and `scgpt.tasks` whose `__path__` points at the installed
  wheel, so the real submodules (`scgpt/model/model.py`, `scgpt/preprocess.py`,
  `scgpt/data_collator.py`, `scgpt/tasks/cell_emb.py`,
  `scgpt/tokenizer/gene_tokenizer.py`, `scgpt/utils/util.py`) are loaded from
  the wheel, unmodified, without executing the package `__init__` files;
* puts stub modules into `sys.modules` for imports the embedding path never
  calls (`scanpy` except `sc.AnnData`, `matplotlib`, `IPython`), and a small
  pure-Python replacement of `torchtext.vocab.Vocab` (torchtext is
  discontinued and has no build for the installed torch).  Its semantics are
  those of torchtext's Vocab for the calls GeneVocab makes (insert_token,
  append_token, lookup with a default index, __call__ = lookup_indices).

Everything numerical (TransformerModel, ContinuousValueEncoder, GeneEncoder,
binning/_digitize, DataCollator padding, get_batch_cell_embeddings, embed_data,
load_pretrained with its Wqkv -> in_proj_ renaming) is the official code.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types
import warnings
from collections import OrderedDict

import anndata


_ROOT: str | None = None


def _scgpt_dir() -> str:
    """Locate the installed scgpt package directory without importing it."""
    global _ROOT
    if _ROOT is not None:
        return _ROOT
    import importlib.util

    spec = importlib.util.find_spec("scgpt")
    if spec is None or spec.submodule_search_locations is None:
        raise SystemExit(
            "scgpt is not installed: run "
            "`pip install --no-deps scgpt==0.2.4`"
        )
    _ROOT = list(spec.submodule_search_locations)[0]
    return _ROOT


class _Vocab:
    """Minimal stand-in for torchtext.vocab.Vocab (same semantics for the calls used)."""

    def __init__(self, vocab=None):
        if vocab is None:
            vocab = _VocabCore([])
        self.vocab = vocab

    # torchtext delegates everything to the C++ object `self.vocab`
    def __len__(self):
        return len(self.vocab.itos)

    def __contains__(self, token):
        return token in self.vocab.stoi

    def __getitem__(self, token):
        if token in self.vocab.stoi:
            return self.vocab.stoi[token]
        if self.vocab.default_index is None:
            raise RuntimeError(f"Token {token} not found and default index is not set")
        return self.vocab.default_index

    def __call__(self, tokens):
        return self.lookup_indices(tokens)

    def lookup_indices(self, tokens):
        return [self[t] for t in tokens]

    def set_default_index(self, index):
        self.vocab.default_index = index

    def get_default_index(self):
        return self.vocab.default_index

    def insert_token(self, token, index):
        if token in self.vocab.stoi:
            raise RuntimeError(f"Token {token} already exists in the Vocab")
        if index < 0 or index > len(self.vocab.itos):
            raise RuntimeError(f"Specified index {index} is out of bounds")
        if index == len(self.vocab.itos):  # the common case (from_dict): append
            self.vocab.itos.append(token)
            self.vocab.stoi[token] = index
            return
        self.vocab.itos.insert(index, token)
        self.vocab.stoi = {t: i for i, t in enumerate(self.vocab.itos)}

    def append_token(self, token):
        if token in self.vocab.stoi:
            raise RuntimeError(f"Token {token} already exists in the Vocab")
        self.vocab.itos.append(token)
        self.vocab.stoi[token] = len(self.vocab.itos) - 1

    def get_stoi(self):
        return dict(self.vocab.stoi)

    def get_itos(self):
        return list(self.vocab.itos)


class _VocabCore:
    def __init__(self, tokens):
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.default_index = None


def _vocab_factory(ordered_dict: OrderedDict, min_freq: int = 1, **_kw):
    return _Vocab(_VocabCore([t for t, f in ordered_dict.items() if f >= min_freq]))


def _install_stubs() -> None:
    def stub(name, **attrs):
        if name in sys.modules:
            return sys.modules[name]
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    def _unused(*_a, **_k):
        raise RuntimeError("stubbed dependency called: not part of the embedding path")

    # scanpy: only `sc.AnnData` and `sc.read_h5ad` are reachable from embed_data.
    sc = stub("scanpy", AnnData=anndata.AnnData, read_h5ad=anndata.read_h5ad)
    sc.get = stub("scanpy.get", _get_obs_rep=_unused, _set_obs_rep=_unused)
    plt = stub("matplotlib.pyplot")
    stub("matplotlib", pyplot=plt, axes=stub("matplotlib.axes", Axes=object))
    stub("IPython", get_ipython=lambda: None)
    tv = stub("torchtext.vocab", Vocab=_Vocab, vocab=_vocab_factory)
    stub("torchtext", vocab=tv)


def _package(name: str, path: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__path__ = [path]
    m.__package__ = name
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


_LOADED: dict | None = None


def load() -> types.SimpleNamespace:
    """Import the official modules; returns a namespace with the useful objects."""
    global _LOADED
    if _LOADED is not None:
        return types.SimpleNamespace(**_LOADED)
    root = _scgpt_dir()
    _install_stubs()
    logger = logging.getLogger("scGPT")
    logger.setLevel(logging.ERROR)
    pkg = _package("scgpt", root, logger=logger, __version__="0.2.4")
    model_pkg = _package("scgpt.model", os.path.join(root, "model"))
    tok_pkg = _package("scgpt.tokenizer", os.path.join(root, "tokenizer"))
    tasks_pkg = _package("scgpt.tasks", os.path.join(root, "tasks"))
    utils_pkg = _package("scgpt.utils", os.path.join(root, "utils"))
    pkg.model, pkg.tokenizer, pkg.tasks, pkg.utils = model_pkg, tok_pkg, tasks_pkg, utils_pkg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_mod = importlib.import_module("scgpt.model.model")
    model_pkg.TransformerModel = model_mod.TransformerModel
    tok_mod = importlib.import_module("scgpt.tokenizer.gene_tokenizer")
    tok_pkg.GeneVocab = tok_mod.GeneVocab
    util_mod = importlib.import_module("scgpt.utils.util")
    utils_pkg.load_pretrained = util_mod.load_pretrained
    preprocess = importlib.import_module("scgpt.preprocess")
    collator = importlib.import_module("scgpt.data_collator")
    cell_emb = importlib.import_module("scgpt.tasks.cell_emb")

    _LOADED = dict(
        root=root,
        model_mod=model_mod,
        TransformerModel=model_mod.TransformerModel,
        GeneVocab=tok_mod.GeneVocab,
        load_pretrained=util_mod.load_pretrained,
        binning=preprocess.binning,
        digitize=preprocess._digitize,
        DataCollator=collator.DataCollator,
        get_batch_cell_embeddings=cell_emb.get_batch_cell_embeddings,
        embed_data=cell_emb.embed_data,
    )
    return types.SimpleNamespace(**_LOADED)


def census_vocab_path() -> str:
    """Path of the real 60,694-gene vocabulary shipped in the wheel."""
    return os.path.join(_scgpt_dir(), "tokenizer", "default_census_vocab.json")
