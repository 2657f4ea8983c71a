"""Heads read new data's genes by name, on the training scale (issue 35, items 2, 3, 7)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scvi
from scipy import sparse

from cancergpt_scvi.bulk import embed_bulk
from cancergpt_scvi.data import check_expression_scale, expression_scale, match_genes_by_name
from cancergpt_scvi.datasets import simulate_drug_response, simulate_survival_cohort
from cancergpt_scvi.drug_response import DrugResponseModel
from cancergpt_scvi.survival import SurvivalModel

scvi.settings.verbosity = logging.ERROR
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def log_cpm(adata):
    sc.pp.normalize_total(adata, target_sum=1e6)
    sc.pp.log1p(adata)
    return adata


@pytest.fixture(scope="module")
def survival():
    adata = simulate_survival_cohort(n_patients=80, n_genes=200, seed=3, cells_per_patient=10)
    adata = log_cpm(adata[:, :40].copy())
    SurvivalModel.setup_anndata(adata, "duration", "event")
    model = SurvivalModel(adata, alpha=0.1)
    model.train(max_epochs=20, **QUIET)
    return model, adata


@pytest.fixture(scope="module")
def drug():
    sim = simulate_drug_response(n_cell_lines=40, n_drugs=4, n_genes=200, seed=0)
    DrugResponseModel.setup_anndata(sim.adata, responses=sim.responses, smiles=sim.smiles)
    model = DrugResponseModel(sim.adata, n_ensemble=1, n_hidden=16, n_latent=8)
    model.train(max_epochs=3, **QUIET)
    new = sim.adata[:6].copy()
    new.obs_names = [f"NEW{i}" for i in range(6)]
    del new.obsm["drug_response"]
    return model, new


def renamed(adata, names):
    out = adata.copy()
    out.var_names = names
    return out


# --- item 2: genes matched by name ---------------------------------------------------------------


def test_survival_reads_genes_by_name(survival):
    model, adata = survival
    risk = model.predict_risk(adata.copy())
    # the same samples with the genes reversed, and among other genes: the same risks
    np.testing.assert_allclose(model.predict_risk(adata[:, ::-1].copy()), risk, rtol=1e-6)
    extra = sc.concat([adata, renamed(adata, [f"EXTRA{i}" for i in range(40)])], axis=1)
    extra.obs = adata.obs.copy()
    np.testing.assert_allclose(model.predict_risk(extra), risk, rtol=1e-6)
    # a few genes under other names: refused, naming them
    other = renamed(adata, [*adata.var_names[:-2], "OTHER1", "OTHER2"])
    with pytest.raises(ValueError, match=r"lacks 2 of the 40 genes.*GENE00038, GENE00039"):
        model.predict_risk(other)
    with pytest.raises(ValueError, match="None match"):
        model.predict_risk(renamed(adata, [f"X{i}" for i in range(40)]))


def test_drug_response_reads_genes_by_name(drug):
    model, new = drug
    before = model.predict(adata=new)
    pd.testing.assert_frame_equal(model.predict(adata=new[:, ::-1].copy()), before)
    other = renamed(new, [*new.var_names[:-1], "OTHER"])
    with pytest.raises(ValueError, match=r"lacks 1 of the 200 genes.*GENE00199"):
        model.predict(adata=other)


def test_repeated_model_gene_is_refused():
    with pytest.raises(ValueError, match=r"more than once \(B\)"):
        match_genes_by_name(["A", "B", "B", "C"], ["C", "B", "A"])
    assert match_genes_by_name(["A", "B"], ["A", "B"]) is None
    np.testing.assert_array_equal(match_genes_by_name(["X", "B", "A", "X"], ["A", "B"]), [2, 1])


# --- item 3: the scale of the training data ------------------------------------------------------


def test_survival_refuses_counts_after_log_training(survival):
    model, adata = survival
    assert model.expression_scale_["kind"] == "log"
    counts = adata.copy()
    counts.X = counts.layers["counts"]
    with pytest.raises(ValueError, match=r"adata.X holds counts.*trained on log-scaled.*log1p"):
        model.predict_risk(counts)


def test_drug_response_refuses_counts_after_log_training(drug, tmp_path):
    model, new = drug
    counts = new.copy()
    counts.X = counts.layers["counts"]
    with pytest.raises(ValueError, match=r"holds counts.*trained on log-scaled"):
        model.predict(adata=counts)
    # the scale is saved with the model: checked by a model loaded without data too
    model.save(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = DrugResponseModel.load(tmp_path / "m", adata=False)
    assert loaded.expression_scale_ == model.expression_scale_
    with pytest.raises(ValueError, match=r"holds counts"):
        loaded.predict(adata=counts)
    pd.testing.assert_frame_equal(loaded.predict(adata=new), model.predict(adata=new))


def test_expression_scale_kinds_and_warning():
    rng = np.random.default_rng(0)
    counts = rng.poisson(5.0, size=(30, 50)).astype(np.float32)
    cpm = counts / counts.sum(1, keepdims=True) * 1e6
    assert expression_scale(counts)["kind"] == "counts"
    assert expression_scale(sparse.csr_matrix(counts))["kind"] == "counts"
    assert expression_scale(np.log1p(cpm))["kind"] == "log"
    assert expression_scale(cpm)["kind"] == "linear"
    assert expression_scale(rng.normal(size=(30, 50)))["kind"] == "centred"
    assert expression_scale(np.zeros((3, 4))) is None
    with pytest.raises(ValueError, match="not log-scaled"):
        check_expression_scale(expression_scale(np.log1p(cpm)), cpm)
    # same kind, another log base and normalisation: a warning, not an error
    with pytest.warns(UserWarning, match="another normalisation or log base"):
        check_expression_scale(expression_scale(np.log1p(cpm)), np.log1p(cpm / 1e4) / 2)


# --- item 7: values centred per gene cannot be embedded -------------------------------------------


def test_microarray_z_scores_are_refused(trained_model, atlas):
    bulk = simulate_survival_cohort(n_patients=30, n_genes=atlas.n_vars, cells_per_patient=20)
    log_intensity = np.log2(bulk.layers["tpm"] + 1.0)
    z = bulk.copy()
    z.X = ((log_intensity - log_intensity.mean(0)) / (log_intensity.std(0) + 1e-9)).astype(
        np.float32
    )
    with pytest.raises(ValueError, match=r"centred per gene.*cannot be embedded"):
        embed_bulk(trained_model, z, kind="microarray", progress_bar=False)
    # log intensities, even shifted below zero, are embedded
    shifted = bulk.copy()
    shifted.X = (log_intensity - 4.0).astype(np.float32)
    assert np.isfinite(
        embed_bulk(trained_model, shifted, kind="microarray", progress_bar=False)
    ).all()


# --- load(adata=) with other genes: the fix is named -------------------------------------------
@pytest.mark.parametrize("head", ["survival", "drug"])
def test_load_with_fewer_genes_names_the_fix(head, survival, drug, tmp_path):
    model, adata = survival if head == "survival" else drug
    model.save(tmp_path / "head")
    fewer = (model.adata if head == "drug" else adata)[:, 1:].copy()
    method = "predict_risk" if head == "survival" else "predict"
    with pytest.raises(ValueError, match=rf"genes are not the model's.*model\.{method}\(adata"):
        type(model).load(tmp_path / "head", adata=fewer)
    # the advice holds: loaded without data, the head predicts on the full-gene data
    loaded = type(model).load(tmp_path / "head")
    if head == "survival":
        cohort = r"loaded without its training cohort.*load\(path, adata=cohort\)"
        with pytest.raises(ValueError, match=cohort):
            loaded.predict_risk()
        new = adata.copy()
        del new.obs["duration"], new.obs["event"]  # new patients: no outcomes
        np.testing.assert_allclose(loaded.predict_risk(new), model.predict_risk(adata))
        # the samples scored never become a cohort to train or evaluate on
        for use in (loaded.predict_risk, loaded.concordance, loaded.risk_groups, loaded.train):
            with pytest.raises(ValueError, match=cohort):
                use()
    else:
        new = drug[1]
        pd.testing.assert_frame_equal(loaded.predict(adata=new), model.predict(adata=new))
