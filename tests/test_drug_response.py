"""DrugResponseModel: SMILES, bad input, leak-free splits, unseen drugs, save/load, accuracy."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch

matplotlib.use("Agg")

import scvi

import cancergpt_scvi
from cancergpt_scvi.benchmark import (
    cross_validate_drug_response,
    drug_response_splits,
    plot_drug_response,
)
from cancergpt_scvi.datasets import EXAMPLE_DRUG_SMILES, simulate_drug_response
from cancergpt_scvi.drug_response import (
    DrugResponseModel,
    drug_response_metrics,
    morgan_fingerprint,
    nearest_drugs_average,
    tanimoto_similarity,
)

scvi.settings.verbosity = logging.ERROR
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture(scope="module")
def small():
    """60 cell lines x 12 drugs, PCA representation."""
    sim = simulate_drug_response(
        n_cell_lines=60, n_drugs=12, n_genes=400, tissues=["Lung", "Breast", "Skin"], seed=2
    )
    sc.pp.pca(sim.adata, n_comps=16)
    return sim


def setup(sim, **kwargs):
    adata = sim.adata.copy()
    args = {"embedding_key": "X_pca", "tissue_key": "tissue", **kwargs}
    DrugResponseModel.setup_anndata(adata, responses=sim.responses, smiles=sim.smiles, **args)
    return adata


@pytest.fixture(scope="module")
def trained(small):
    torch.manual_seed(0)
    adata = setup(small)
    model = DrugResponseModel(adata, n_hidden=32, n_latent=16, n_ensemble=2)
    held_out = list(adata.obs_names[:10])
    model.train(max_epochs=20, holdout_cell_lines=held_out, holdout_drugs=["Imatinib"], **QUIET)
    return model, held_out


# --------------------------------------------------------------------------- extra [drug]
INSTALL_DRUG = "pip install 'cancergpt-scvi[drug]'"


@pytest.fixture
def without_rdkit(monkeypatch):
    """Imports of RDKit fail, and this package's RDKit users are imported afresh."""
    saved = dict(sys.modules)
    for name in list(sys.modules):
        if name.startswith(("cancergpt_scvi.drug_response", "cancergpt_scvi.datasets")):
            del sys.modules[name]
        elif name == "rdkit" or name.startswith("rdkit."):
            sys.modules[name] = None  # an import of it raises ImportError
    sys.modules["rdkit"] = None
    for name in ("drug_response", "datasets"):
        monkeypatch.delattr(cancergpt_scvi, name, raising=False)
    try:
        yield
    finally:
        for name in set(sys.modules) - set(saved):
            del sys.modules[name]
        sys.modules.update(saved)


def test_without_rdkit_the_error_names_the_extra(without_rdkit):
    with pytest.raises(ImportError, match=r"DrugResponseModel needs rdkit") as err:
        cancergpt_scvi.DrugResponseModel  # noqa: B018 (the lazy attribute imports the head)
    assert INSTALL_DRUG in str(err.value)
    with pytest.raises(ImportError, match=r"DrugResponseModel needs rdkit") as err:
        importlib.import_module("cancergpt_scvi.drug_response")
    assert INSTALL_DRUG in str(err.value)
    # the other simulators work; the screen simulator names the extra it needs
    from cancergpt_scvi.datasets import simulate_drug_response, simulate_glioblastoma

    assert simulate_glioblastoma(n_cells=60, n_patients=2, n_genes=200).n_obs == 60
    with pytest.raises(ImportError, match=r"simulate_drug_response needs rdkit") as err:
        simulate_drug_response(n_cell_lines=5, n_drugs=2, n_genes=50)
    assert INSTALL_DRUG in str(err.value)


def test_rdkit_restored_after_the_test_without_it():
    """The fixture above leaves the modules as they were (this test runs after it)."""
    assert sys.modules["cancergpt_scvi.drug_response"].DrugResponseModel is DrugResponseModel
    assert morgan_fingerprint("CCO").sum() > 0


def test_package_and_datasets_import_no_rdkit():
    code = (
        "import sys, cancergpt_scvi, cancergpt_scvi.datasets; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rdkit'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- featurisation
def test_morgan_fingerprint():
    a = morgan_fingerprint("CCO", n_bits=512)
    assert a.shape == (512,) and set(np.unique(a)) <= {0.0, 1.0} and a.sum() > 0
    np.testing.assert_array_equal(a, morgan_fingerprint("OCC", n_bits=512))  # same molecule
    assert not np.array_equal(a, morgan_fingerprint("CCN", n_bits=512))


def test_tanimoto_similarity_of_fingerprints():
    same = morgan_fingerprint("CCO"), morgan_fingerprint("OCC"), morgan_fingerprint("c1ccccc1")
    sim = tanimoto_similarity(np.stack(same[:1]), np.stack(same))
    assert sim[0, 0] == pytest.approx(1.0) and sim[0, 1] == pytest.approx(1.0)
    assert 0.0 <= sim[0, 2] < 0.5


def test_example_smiles_all_parse():
    for name, smiles in EXAMPLE_DRUG_SMILES.items():
        assert morgan_fingerprint(smiles, name).sum() > 0


# --------------------------------------------------------------------------- bad input
def test_invalid_smiles_names_the_drug(small):
    smiles = {**small.smiles, "Erlotinib": "C1CC(N"}
    with pytest.raises(ValueError, match=r"Erlotinib"):
        DrugResponseModel.setup_anndata(
            small.adata.copy(), responses=small.responses, smiles=smiles
        )


def test_drug_without_smiles(small):
    smiles = {k: v for k, v in small.smiles.items() if k != "Gefitinib"}
    with pytest.raises(ValueError, match=r"have no SMILES.*Gefitinib"):
        DrugResponseModel.setup_anndata(
            small.adata.copy(), responses=small.responses, smiles=smiles
        )
    with pytest.raises(ValueError, match=r"Gefitinib"):
        DrugResponseModel.setup_anndata(
            small.adata.copy(), responses=small.responses, smiles={**smiles, "Gefitinib": ""}
        )


def test_unknown_cell_lines_reported_and_dropped_on_request(small):
    extra = pd.DataFrame(
        {"cell_line": ["NOPE1", "NOPE1", "NOPE2"], "drug": ["Erlotinib"] * 3, "response": 1.0}
    )
    responses = pd.concat([small.responses, extra], ignore_index=True)
    adata = small.adata.copy()
    with pytest.raises(ValueError, match=r"3 response row.*2 cell line"):
        DrugResponseModel.setup_anndata(adata, responses=responses, smiles=small.smiles)
    with pytest.warns(UserWarning, match=r"3 response row.*dropped"):
        DrugResponseModel.setup_anndata(
            adata, responses=responses, smiles=small.smiles, drop_unknown_cell_lines=True
        )
    assert int(np.isfinite(adata.obsm["drug_response"].to_numpy()).sum()) == len(small.responses)


def test_non_finite_responses(small):
    responses = small.responses.copy()
    responses.loc[[3, 7], "response"] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"2 response.*not finite"):
        DrugResponseModel.setup_anndata(
            small.adata.copy(), responses=responses, smiles=small.smiles
        )


def test_duplicates_refused_or_averaged(small):
    first = small.responses.iloc[[0]]
    replicate = first.assign(response=first["response"] + 2.0)
    responses = pd.concat([small.responses, replicate], ignore_index=True)
    adata = small.adata.copy()
    with pytest.raises(ValueError, match=r"1 \(cell line, drug\) pair.*duplicates='mean'"):
        DrugResponseModel.setup_anndata(adata, responses=responses, smiles=small.smiles)
    DrugResponseModel.setup_anndata(
        adata, responses=responses, smiles=small.smiles, duplicates="mean"
    )
    cell, drug, value = first.iloc[0][["cell_line", "drug", "response"]]
    assert adata.obsm["drug_response"].loc[cell, drug] == pytest.approx(value + 1.0)


def test_representation_must_exist_and_be_finite(small):
    adata = small.adata.copy()
    with pytest.raises(ValueError, match=r"X_cancergpt"):
        DrugResponseModel.setup_anndata(
            adata, responses=small.responses, smiles=small.smiles, embedding_key="X_cancergpt"
        )
    adata.obsm["X_bad"] = adata.obsm["X_pca"].copy()
    adata.obsm["X_bad"][4, 0] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*CL0004"):
        DrugResponseModel.setup_anndata(
            adata, responses=small.responses, smiles=small.smiles, embedding_key="X_bad"
        )


def test_raw_counts_as_expression_warn(small):
    adata = small.adata.copy()
    adata.X = adata.layers["counts"]
    with pytest.warns(UserWarning, match="raw counts"):
        DrugResponseModel.setup_anndata(adata, responses=small.responses, smiles=small.smiles)


# --------------------------------------------------------------------------- splits
@pytest.mark.parametrize("holdout", ["cell_lines", "drugs"])
def test_splits_never_leak(small, holdout):
    r = small.responses
    tissue = small.adata.obs["tissue"]
    folds = drug_response_splits(r, holdout, n_folds=4, tissue=tissue, seed=1)
    key = "cell_line" if holdout == "cell_lines" else "drug"
    tested = []
    for train, test in folds:
        assert not set(r[key].iloc[train]) & set(r[key].iloc[test])
        assert len(train) + len(test) == len(r)
        tested += list(r[key].iloc[test].unique())
    assert sorted(tested) == sorted(r[key].unique())  # each group is tested exactly once


def test_cell_line_folds_are_stratified_by_tissue(small):
    r = small.responses
    tissue = small.adata.obs["tissue"].astype(str)
    for _, test in drug_response_splits(r, "cell_lines", n_folds=3, tissue=tissue):
        assert set(tissue[r["cell_line"].iloc[test].unique()]) == set(tissue)


def test_split_that_leaves_a_fold_empty(small):
    with pytest.raises(ValueError, match=r"fold empty.*only 12 drugs"):
        drug_response_splits(small.responses, "drugs", n_folds=13)
    with pytest.raises(ValueError, match=r"at least 2"):
        drug_response_splits(small.responses, "cell_lines", n_folds=1)


def test_training_never_sees_held_out_cell_lines_or_drugs(trained):
    model, held_out = trained
    names = model.adata.obs_names
    seen = np.concatenate([model.train_indices, model.validation_indices])
    assert not names[seen].isin(held_out).any()
    assert sorted(names[model.test_indices]) == sorted(held_out)
    assert len(seen) + len(model.test_indices) == model.adata.n_obs
    trained_drugs = model.module.trained_drugs.numpy()
    assert not trained_drugs[model.drugs.index("Imatinib")] and trained_drugs.sum() == 11
    # the loss cannot read a held-out drug's responses
    module = model.module.eval()
    x = torch.from_numpy(model.cell_features()[:8])
    response = torch.tensor(model.adata.obsm["drug_response"].to_numpy()[:8], dtype=torch.float32)
    changed = response.clone()
    changed[:, model.drugs.index("Imatinib")] += 100.0
    with torch.no_grad():
        losses = [module({"cell_features": x, "response": r})[2].loss for r in (response, changed)]
    assert float(losses[0]) == pytest.approx(float(losses[1]))
    # nor the linear term: its coefficients for the held-out drug are zero
    assert not module.linear_weight[:, model.drugs.index("Imatinib")].any()


def test_validation_is_whole_cell_lines(small):
    adata = setup(small)
    model = DrugResponseModel(adata, n_hidden=16, n_latent=8, n_ensemble=1)
    held_out = list(adata.obs_names[:10])
    model.train(max_epochs=2, train_size=0.8, holdout_cell_lines=held_out, seed=3, **QUIET)
    assert len(model.validation_indices) == 10  # 50 available - ceil(0.8 * 50) that train
    assert not set(model.train_indices) & set(model.validation_indices)
    used = sorted(np.concatenate([model.train_indices, model.validation_indices]))
    assert used == list(range(10, 60))
    model.train(max_epochs=1, train_size=1.0, early_stopping=False, **QUIET)
    assert len(model.validation_indices) == 0 and len(model.train_indices) == 60
    with pytest.raises(ValueError, match=r"early_stopping needs validation cell lines"):
        model.train(max_epochs=1, train_size=1.0, **QUIET)
    with pytest.raises(ValueError, match=r"train_size must lie in \(0, 1\]"):
        model.train(max_epochs=1, train_size=0.0, **QUIET)


def test_the_best_validation_epoch_is_kept(small):
    adata = setup(small)
    torch.manual_seed(1)
    model = DrugResponseModel(adata, n_hidden=16, n_latent=8, n_ensemble=1)
    model.train(max_epochs=40, early_stopping_patience=5, lr=3e-2, batch_size=16, **QUIET)
    logged = model.history["reconstruction_loss_validation"].to_numpy().ravel()
    val = np.sort(model.validation_indices)
    module = model.module.eval()
    tensors = {
        "cell_features": torch.from_numpy(model.cell_features()[val]),
        "response": torch.tensor(
            model.adata.obsm["drug_response"].to_numpy()[val], dtype=torch.float32
        ),
    }
    with torch.no_grad():
        now = float(module(tensors)[2].reconstruction_loss_sum) / len(val)
    assert now == pytest.approx(logged.min(), rel=1e-4)
    assert len(logged) < 40 and logged[-1] > logged.min()  # stopped early, after the best


def test_holding_out_everything_is_an_error(small):
    adata = setup(small)
    model = DrugResponseModel(adata, n_hidden=16, n_latent=8)
    with pytest.raises(ValueError, match=r"nothing to train on"):
        model.train(max_epochs=1, holdout_drugs=list(small.smiles), **QUIET)
    with pytest.raises(ValueError, match=r"nothing to train on"):
        model.train(max_epochs=1, holdout_cell_lines=list(adata.obs_names), **QUIET)
    with pytest.raises(ValueError, match=r"not in the data"):
        model.train(max_epochs=1, holdout_cell_lines=["CL9999"], **QUIET)


# --------------------------------------------------------------------------- prediction
def test_predictions_do_not_depend_on_batch_composition(trained):
    model, _ = trained
    whole = model.predict(batch_size=4096)
    one_by_one = model.predict(pairs=whole.iloc[::37], batch_size=1)
    np.testing.assert_allclose(
        one_by_one["prediction"], whole["prediction"].iloc[::37], rtol=1e-5, atol=1e-5
    )
    assert len(whole) == model.adata.n_obs * 12


def test_predict_unseen_drug_and_cell_line(trained, small):
    model, _ = trained
    with pytest.raises(ValueError, match=r"does not know drug.*Aspirin"):
        model.predict(drugs=["Aspirin"])
    out = model.predict(
        cell_lines=["CL0001"],
        drugs=["Aspirin", "Erlotinib"],
        smiles={"Aspirin": "CC(=O)Oc1ccccc1C(=O)O"},
    )
    assert out["drug"].tolist() == ["Aspirin", "Erlotinib"] and np.isfinite(out["prediction"]).all()
    new = small.adata[:5].copy()
    new.obs_names = [f"NEW{i}" for i in range(5)]
    out = model.predict(adata=new, drugs=["Erlotinib"])
    reference = model.predict(cell_lines=list(small.adata.obs_names[:5]), drugs=["Erlotinib"])
    np.testing.assert_allclose(out["prediction"], reference["prediction"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"not in adata.obs_names"):
        model.predict(cell_lines=["NEW0"])


def test_save_load_round_trip(trained, tmp_path):
    model, _ = trained
    before = model.predict()
    model.save(tmp_path / "m", save_anndata=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = DrugResponseModel.load(tmp_path / "m")
        with_adata = DrugResponseModel.load(tmp_path / "m", adata=model.adata.copy())
        registry_only = DrugResponseModel.load(tmp_path / "m", adata=False)
        new = model.adata[:7].copy()
        del new.obsm["drug_response"]
        for_new_cells = DrugResponseModel.load(tmp_path / "m", adata=new)
    pd.testing.assert_frame_equal(loaded.predict(), before)
    pd.testing.assert_frame_equal(with_adata.predict(), before)
    # a model without AnnData predicts for any cell lines that have its representation
    pd.testing.assert_frame_equal(registry_only.predict(adata=model.adata), before)
    assert loaded.drug_smiles_ == model.drug_smiles_
    pd.testing.assert_series_equal(loaded.cell_line_sensitivity_, model.cell_line_sensitivity_)
    # cell lines without responses, given to the saved model: an empty matrix, same predictions
    assert for_new_cells.adata.obsm["drug_response"].isna().all().all()
    first = before[before["cell_line"].isin(new.obs_names)].reset_index(drop=True)
    pd.testing.assert_frame_equal(for_new_cells.predict(), first)


def test_unseen_drugs_from_their_most_similar_trained_drugs(trained):
    """An unseen drug: mean of the similarity-weighted neighbours and the cell line's average."""
    model, held_out = trained
    cells = [held_out[0], model.adata.obs_names[20]]  # one never trained on, one trained on
    trained_drugs = [d for d in model.drugs if d != "Imatinib"]
    known = model.predict(cell_lines=cells, drugs=trained_drugs)
    known = known.pivot(index="cell_line", columns="drug", values="prediction").loc[cells]
    similarity = tanimoto_similarity(
        morgan_fingerprint(model.drug_smiles_["Imatinib"])[None],
        np.stack([morgan_fingerprint(model.drug_smiles_[d]) for d in trained_drugs]),
    )[0]
    nearest = np.argsort(-similarity, kind="stable")[: model.n_neighbor_drugs]
    weights = similarity[nearest] / similarity[nearest].sum()
    by_structure = known[[trained_drugs[i] for i in nearest]].to_numpy() @ weights
    measured = model.adata.obsm["drug_response"].loc[cells[1], trained_drugs].mean()
    assert cells[0] not in model.cell_line_sensitivity_.index
    average = np.array([known.loc[cells[0]].mean(), measured])
    expected = (by_structure + average) / 2
    out = model.predict(cell_lines=cells, drugs=["Imatinib"])["prediction"].to_numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    # a new structure identical to a trained drug's has it as its nearest neighbour
    copy = model.predict(
        cell_lines=cells, drugs=["copy"], smiles={"copy": model.drug_smiles_["Erlotinib"]}
    )
    assert np.isfinite(copy["prediction"]).all()
    # a structure similar to no example drug (neon) weighs all trained drugs alike
    neon = model.predict(cell_lines=cells, drugs=["neon"], smiles={"neon": "[Ne]"})
    alike = (known.to_numpy().mean(1) + average) / 2
    np.testing.assert_allclose(neon["prediction"].to_numpy(), alike, rtol=1e-5)


def test_nearest_drugs_average():
    nan = np.nan
    responses = np.array([[1.0, 2.0, 4.0], [nan, 2.0, 4.0]])
    similarity = np.array([[0.5, 0.25, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    out = nearest_drugs_average(responses, similarity, k=1)
    # the most similar drug with a response; NaN where none is similar
    np.testing.assert_allclose(out, [[1.0, nan, 1.0], [2.0, nan, 2.0]])
    out = nearest_drugs_average(responses, similarity, k=5)
    np.testing.assert_allclose(out[:, 0], [(0.5 * 1 + 0.25 * 2) / 0.75, 2.0])
    np.testing.assert_allclose(out[:, 2], [7 / 3, 3.0])
    # a query may be kept from one reference (itself, leaving it out)
    out = nearest_drugs_average(responses, similarity, k=1, exclude=np.array([0, 1, 1]))
    np.testing.assert_allclose(out[:, [0, 2]], [[2.0, 1.0], [2.0, 4.0]])


def test_column_names_of_the_users_table(small):
    names = {"cell_line": "CELL_LINE_NAME", "drug": "DRUG_NAME", "response": "LN_IC50"}
    table = small.responses.rename(columns=names)
    adata = small.adata.copy()
    DrugResponseModel.setup_anndata(
        adata,
        responses=table,
        smiles=small.smiles,
        embedding_key="X_pca",
        **{"cell_line_key": "CELL_LINE_NAME", "drug_key": "DRUG_NAME", "response_key": "LN_IC50"},
    )
    model = DrugResponseModel(adata, n_hidden=16, n_latent=8)
    assert list(model.responses().columns[:3]) == list(names.values())
    model.train(max_epochs=1, holdout_drugs=["Erlotinib"], **QUIET)
    out = model.predict(pairs=table.iloc[:5])
    assert list(out.columns) == ["CELL_LINE_NAME", "DRUG_NAME", "prediction"]
    metrics, _ = cross_validate_drug_response(
        adata,
        "drugs",
        n_folds=3,
        folds=1,
        model_kwargs={"n_hidden": 16, "n_latent": 8},
        train_kwargs={"max_epochs": 1, **QUIET},
    )
    assert set(metrics["method"]) == {"DrugResponseModel", "cell-line mean"}


# --------------------------------------------------------------------------- evaluation
def test_metrics_and_plot():
    rng = np.random.default_rng(0)
    drugs = np.repeat(["a", "b", "c"], 20)
    potency = np.repeat([0.0, 3.0, 6.0], 20)
    cell = rng.normal(size=60)
    observed = potency + cell
    drug_mean = drug_response_metrics(observed, potency + 0 * cell, drugs)
    perfect = drug_response_metrics(observed, observed, drugs)
    assert drug_mean["pearson"] > 0.8 and np.isnan(drug_mean["per_drug_pearson_mean"])
    assert perfect["per_drug_pearson_mean"] == pytest.approx(1.0)
    assert perfect["rmse"] == pytest.approx(0.0)
    frame = pd.DataFrame({"drug": drugs, "response": observed, "prediction": observed + cell})
    fig = plot_drug_response(frame)
    assert len(fig.axes) == 2


def test_cross_validation_beats_the_drug_mean(small):
    """Accuracy on held-out cell lines, against the drug mean and the generating function."""
    torch.manual_seed(0)
    sim = simulate_drug_response(
        n_cell_lines=150, n_drugs=16, n_genes=600, tissues=["Lung", "Breast", "Skin"], seed=5
    )
    sc.pp.pca(sim.adata, n_comps=32)
    adata = setup(sim)
    metrics, predictions = cross_validate_drug_response(
        adata,
        "cell_lines",
        n_folds=5,
        folds=1,
        oracle=sim.expected_response,
        train_kwargs=QUIET,
    )
    m = metrics.set_index("method")
    assert set(m.index) == {"DrugResponseModel", "drug mean", "true function"}
    assert m.loc["DrugResponseModel", "pearson"] > m.loc["drug mean", "pearson"]
    ratio = (
        m.loc["DrugResponseModel", "per_drug_pearson_mean"]
        / m.loc["true function", "per_drug_pearson_mean"]
    )
    assert ratio >= 0.8, metrics
    assert set(predictions["method"]) == set(m.index)
