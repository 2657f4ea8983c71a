"""Adversarial covariates count the categories in use, not the categories declared."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cancergpt_scvi import CancerGPTModel
from tests.conftest import TINY

QUIET = {"progress_bar": False}


def with_batch(atlas, values, categories):
    adata = atlas.copy()
    adata.obs["patient"] = pd.Categorical(values, categories=categories)
    CancerGPTModel.setup_anndata(adata, batch_key="patient", technology_key="technology")
    return adata


@pytest.fixture(scope="module")
def ghost(atlas):
    """One patient in use; a second category declared but never used."""
    return with_batch(atlas, ["p0"] * atlas.n_obs, ["p0", "ghost"])


def test_an_unused_category_gets_no_discriminator_and_is_warned(ghost):
    assert ghost.obs["technology"].nunique() > 1  # the other covariate keeps its discriminator
    model = CancerGPTModel(ghost, **TINY)
    assert model.module.adversary.covariates == ["technology"]
    assert "adversarial covariates: ['technology']" in model.summary_string
    assert "batch" not in model.module.decoder_domains
    assert "technology" in model.module.decoder_domains
    with pytest.warns(UserWarning, match=r"batch_key='patient'.*one category.*no discriminator"):
        model.train(max_epochs=1, adversarial_weight=0.03, enable_progress_bar=False)


def test_unused_categories_keep_the_codes_of_those_in_use(atlas):
    # "ghost" comes first, so the patients in use have codes 1 and 2
    values = np.where(np.arange(atlas.n_obs) % 2 == 0, "p0", "p1")
    adata = with_batch(atlas, values, ["ghost", "p0", "p1"])
    model = CancerGPTModel(adata, **TINY)
    assert model.module.adversary.discriminators["batch"].n_domains == 3
    assert model.module.decoder_domains["batch"].num_embeddings == 3
    model.train(max_epochs=1, adversarial_weight=0.03, enable_progress_bar=False)
    assert model.is_trained_


def test_models_load_as_they_were_built(ghost, atlas, tmp_path):
    model = CancerGPTModel(ghost, **TINY)
    z = model.get_latent_representation(**QUIET)
    model.save(tmp_path / "ghost")
    # from the saved registry alone (no AnnData), and onto the data
    for adata in (None, ghost):
        loaded = CancerGPTModel.load(tmp_path / "ghost", adata=adata)
        assert loaded.module.adversary.covariates == ["technology"]
        np.testing.assert_allclose(loaded.get_latent_representation(ghost, **QUIET), z, atol=1e-5)
    # a model built with two patients loads onto cells of one of them
    values = np.where(np.arange(atlas.n_obs) % 2 == 0, "p0", "p1")
    two = with_batch(atlas, values, ["p0", "p1"])
    CancerGPTModel(two, **TINY).save(tmp_path / "two")
    one = two[two.obs["patient"] == "p0"].copy()
    loaded = CancerGPTModel.load(tmp_path / "two", adata=one)
    assert loaded.module.adversary.covariates == ["batch", "technology"]
