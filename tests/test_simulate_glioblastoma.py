"""Tests of the glioblastoma-like evaluation scenario."""

from __future__ import annotations

import numpy as np
import pytest

from cancergpt_scvi.datasets import (
    GLIOBLASTOMA_STATES,
    simulate_glioblastoma,
    simulate_malignant_atlas,
)
from cancergpt_scvi.datasets._malignant_atlas import make_genetic_background


@pytest.fixture(scope="module")
def gbm():
    return simulate_glioblastoma(n_cells=1200, n_patients=8, n_genes=400, seed=1)


def test_structure(gbm):
    obs = gbm.obs
    assert set(obs["cell_state"].cat.categories) == set(GLIOBLASTOMA_STATES)
    assert obs["patient"].nunique() == 8
    assert (obs["batch"].astype(str) == obs["patient"].astype(str)).all()
    assert set(obs["tissue"]) == {"Brain"}
    # one technology per patient, both technologies used
    tech_per_patient = obs.groupby("patient", observed=True)["technology"].nunique()
    assert (tech_per_patient == 1).all()
    assert set(obs["technology"]) == {"Smart-seq2", "10x 3'"}
    # patient-specific state proportions
    props = obs.groupby("patient", observed=True)["cell_state"].value_counts(normalize=True)
    assert props.unstack().std().max() > 0.05
    assert abs(gbm.n_obs - 1200) < 50
    values = gbm.X.data
    assert values.min() >= 0 and np.allclose(values, np.round(values))


def test_same_gene_space_as_atlas_and_distinct_patients(gbm):
    atlas = simulate_malignant_atlas(n_cells=300, n_genes=400, seed=5)
    assert list(atlas.var_names) == list(gbm.var_names)
    np.testing.assert_array_equal(atlas.var["chromosome"], gbm.var["chromosome"])
    assert not set(atlas.obs["patient"]) & set(gbm.obs["patient"])


def test_mes_like_uses_the_atlas_mesenchymal_program(gbm):
    program = make_genetic_background(400, states=("mesenchymal",)).state_programs["mesenchymal"]
    genes = program > 0
    x = gbm.X.toarray()
    x = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    score = x[:, genes].mean(1) - x[:, ~genes].mean(1)
    mes = (gbm.obs["cell_state"] == "MES-like").to_numpy()
    assert score[mes].mean() > score[~mes].mean() + 0.3


def test_technologies_differ_in_depth(gbm):
    depth = np.asarray(gbm.X.sum(1)).ravel()
    smart = (gbm.obs["technology"] == "Smart-seq2").to_numpy()
    assert np.median(depth[smart]) > 5 * np.median(depth[~smart])


def test_seeds_and_errors():
    a = simulate_glioblastoma(n_cells=200, n_patients=3, n_genes=200, seed=2)
    b = simulate_glioblastoma(n_cells=200, n_patients=3, n_genes=200, seed=2)
    assert (a.X != b.X).nnz == 0
    with pytest.raises(ValueError, match="at least 2"):
        simulate_glioblastoma(n_cells=200, n_patients=1)
    with pytest.raises(ValueError, match="too small"):
        simulate_glioblastoma(n_cells=50, n_patients=10)
    with pytest.raises(ValueError, match="Unknown technologies"):
        simulate_glioblastoma(n_cells=200, n_patients=3, technologies={"inDrop": 1.0})
