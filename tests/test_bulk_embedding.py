"""embed_bulk: bulk RNA samples as CancerGPT pseudo-cells."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scvi
import torch

from cancergpt_scvi.bulk import bulk_log_expression, embed_bulk
from cancergpt_scvi.data import bin_expression
from cancergpt_scvi.datasets import simulate_survival_cohort
from cancergpt_scvi.survival import SurvivalModel

scvi.settings.verbosity = logging.ERROR


@pytest.fixture(scope="module")
def bulk(atlas):
    # same genes and programs as the conftest atlas the tiny model was trained on
    return simulate_survival_cohort(
        n_patients=60, n_genes=atlas.n_vars, cells_per_patient=20, seed=5
    )


def test_binning_ignores_scale_and_monotone_transforms():
    # the reason bulk data need no normalisation: bins depend on the order within a sample
    rng = np.random.default_rng(0)
    x = rng.gamma(0.5, 50.0, size=(5, 200)).round() + 1.0
    bins = bin_expression(torch.tensor(x), 51)
    for transformed in (7.3 * x, np.log1p(x), np.log2(x) + 0.5):
        np.testing.assert_array_equal(bin_expression(torch.tensor(transformed), 51), bins)


def test_embedding_shape_norm_and_library_size_invariance(trained_model, bulk):
    z = embed_bulk(trained_model, bulk, kind="counts", progress_bar=False)
    assert z.shape == (bulk.n_obs, trained_model.module.embed_dim)
    assert z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    deeper = bulk.copy()
    deeper.X = deeper.X * np.linspace(0.2, 5.0, bulk.n_obs)[:, None].astype(np.float32)
    np.testing.assert_allclose(
        embed_bulk(trained_model, deeper, kind="counts", progress_bar=False), z, atol=1e-5
    )
    # samples differ from one another
    assert np.abs(z - z.mean(axis=0)).max() > 1e-3


def test_gene_order_symbols_and_foreign_genes(trained_model, bulk):
    z = embed_bulk(trained_model, bulk, kind="tpm", layer="tpm", progress_bar=False)
    other = bulk[:, ::-1].copy()
    other.var["symbol"] = other.var_names
    other.var_names = [f"ENSG{i:011d}" for i in range(other.n_vars)]
    z2 = embed_bulk(
        trained_model,
        other,
        kind="tpm",
        layer="tpm",
        gene_symbols_key="symbol",
        progress_bar=False,
    )
    np.testing.assert_allclose(z2, z, atol=1e-5)
    with pytest.raises(ValueError, match="None of the bulk genes"):
        embed_bulk(trained_model, other, kind="tpm", layer="tpm", progress_bar=False)
    with pytest.raises(KeyError, match="gene_symbols_key"):
        embed_bulk(trained_model, other, gene_symbols_key="nope", progress_bar=False)


def test_microarray_values_and_negative_input(trained_model, bulk):
    log_intensity = np.log2(bulk.layers["tpm"] + 1.0) - 4.0  # negative values, log scale
    array = bulk.copy()
    array.X = log_intensity.astype(np.float32)
    with pytest.raises(ValueError, match="kind='microarray'"):
        embed_bulk(trained_model, array, kind="counts", progress_bar=False)
    z = embed_bulk(trained_model, array, kind="microarray", progress_bar=False)
    assert np.isfinite(z).all() and z.shape[0] == bulk.n_obs
    shifted = bulk_log_expression(log_intensity, "microarray")
    assert shifted.min() > 0
    # the shift keeps each sample's order of genes
    np.testing.assert_array_equal(np.argsort(shifted, axis=1), np.argsort(log_intensity, axis=1))
    bad = array.copy()
    bad.X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        embed_bulk(trained_model, bad, kind="microarray", progress_bar=False)


def test_top_expressed_genes_and_survival_on_embedding(trained_model, bulk):
    z = embed_bulk(trained_model, bulk, genes="top_expressed", progress_bar=False)
    assert z.shape == (bulk.n_obs, trained_model.module.embed_dim)
    with pytest.raises(ValueError, match="genes must be"):
        embed_bulk(trained_model, bulk, genes="all", progress_bar=False)
    bulk = bulk.copy()
    bulk.obsm["X_cancergpt"] = embed_bulk(trained_model, bulk, progress_bar=False)
    SurvivalModel.setup_anndata(bulk, "duration", "event", embedding_key="X_cancergpt")
    table = SurvivalModel(bulk, alpha=0.1).cross_validate(n_folds=3, progress_bar=False)
    assert 0.0 <= table.loc["mean", "c_index_harrell"] <= 1.0
