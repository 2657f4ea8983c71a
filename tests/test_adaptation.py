"""CancerGPTModel.adapt: continued self-supervised training on a query, without labels."""

from __future__ import annotations

import numpy as np
import pytest
import scvi
import torch

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.datasets import simulate_malignant_atlas
from tests.conftest import TINY


@pytest.fixture(scope="module")
def reference_and_query():
    adata = simulate_malignant_atlas(
        n_cells=300, n_genes=200, tissues={"Breast": 1.0}, n_patients_per_tissue=4, seed=5
    )
    patients = sorted(adata.obs["patient"].unique())
    is_query = adata.obs["patient"].isin(patients[:2]).to_numpy()
    reference, query = adata[~is_query].copy(), adata[is_query].copy()
    CancerGPTModel.setup_anndata(reference, batch_key="patient", technology_key="technology")
    scvi.settings.seed = 0
    model = CancerGPTModel(reference, **TINY)
    model.train(max_epochs=2, enable_progress_bar=False)
    return model, query


def _weights(model: CancerGPTModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def test_adapt_starts_from_the_pretrained_encoder_and_leaves_it_alone(reference_and_query):
    model, query = reference_and_query
    before = _weights(model)
    # no step size: the adapted model is the pretrained encoder as it was copied
    frozen = model.adapt(
        query.copy(),
        batch_key="patient",
        max_epochs=1,
        lr=0.0,
        weight_decay=0.0,
        enable_progress_bar=False,
    )
    z_model = model.get_latent_representation(query, progress_bar=False)
    z_frozen = frozen.get_latent_representation(query, progress_bar=False)
    np.testing.assert_allclose(z_frozen, z_model, atol=1e-6)
    adapted = model.adapt(
        query.copy(), batch_key="patient", max_epochs=2, enable_progress_bar=False
    )
    after = _weights(model)
    for name, value in before.items():  # the pretrained model is untouched
        assert torch.equal(value, after[name]), name
    moved = adapted.module.gene_encoder.embedding.weight.detach()
    assert not torch.equal(moved, before["gene_encoder.embedding.weight"])
    assert len(adapted.history_["train_loss"]) == 2
    z = adapted.get_latent_representation(query, progress_bar=False)
    assert z.shape == (query.n_obs, model.module.embed_dim)
    assert np.isfinite(z).all()
    # the query's two patients are the adapted model's batches, not the reference's
    assert adapted.summary_stats["n_batch"] == 2


def test_adapt_refuses_other_genes(reference_and_query):
    model, query = reference_and_query
    with pytest.raises(ValueError, match="input genes in their order"):
        model.adapt(query[:, ::-1].copy(), batch_key="patient", max_epochs=1)
    with pytest.raises(ValueError, match="input genes in their order"):
        model.adapt(query[:, :100].copy(), batch_key="patient", max_epochs=1)
