"""Shared fixtures: small simulated data and a tiny, quickly trained model."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

#: A model small enough to train in seconds on a 2-core CPU.
TINY = {"embed_dim": 32, "n_layers": 1, "n_heads": 2, "ffn_dim": 64, "max_seq_len": 64}

#: Fixtures the tests ship: the published release's gene vocabulary (gzipped) and the
#: published pretraining corpus's tissue composition. Tests read nothing outside the repository.
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def release_vocab_path(tmp_path_factory) -> Path:
    """The published CancerGPT vocabulary (28,725 tokens) as a plain ``vocab.json``."""
    path = tmp_path_factory.mktemp("release_vocab") / "vocab.json"
    with gzip.open(DATA / "cancergpt_vocab.json.gz", "rb") as src:
        path.write_bytes(src.read())
    return path


@pytest.fixture(scope="session")
def atlas():
    from cancergpt_scvi.datasets import simulate_malignant_atlas

    return simulate_malignant_atlas(
        n_cells=400,
        n_genes=300,
        tissues={"Breast": 0.7, "Brain": 0.2, "Kidney": 0.1},
        n_patients_per_tissue=2,
        seed=3,
    )


@pytest.fixture(scope="session")
def trained_model(atlas):
    import scvi

    from cancergpt_scvi import CancerGPTModel

    scvi.settings.seed = 0
    adata = atlas.copy()
    CancerGPTModel.setup_anndata(
        adata, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    model = CancerGPTModel(adata, **TINY)
    # the adversary on (the library's default is off), so its mechanics are exercised
    model.train(max_epochs=4, batch_size=64, adversarial_weight=0.003, enable_progress_bar=False)
    return model


def input_cells(model, n_obs: int):
    """The first ``n_obs`` of a model's cells as a user's file holds them: X, obs and var only.

    Tests share ``trained_model``; what one test stores in its ``adata.obsm`` must not reach
    another test's input file.
    """
    import anndata as ad

    cells = model.adata[:n_obs]
    return ad.AnnData(X=cells.X.copy(), obs=cells.obs.copy(), var=cells.var.copy())
