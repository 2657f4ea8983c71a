"""DrugResponseModel: SMILES featurisation, bad input, leak-free splits, save/load, accuracy."""

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
    ATOM_FEATURE_NAMES,
    DrugFeaturizer,
    DrugResponseDataSplitter,
    DrugResponseModel,
    DrugResponsePairs,
    drug_response_metrics,
    morgan_fingerprint,
    smiles_to_graph,
)

scvi.settings.verbosity = logging.ERROR
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def feature(graph, name: str) -> np.ndarray:
    return graph.atom_features[:, ATOM_FEATURE_NAMES.index(name)]


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
    model = DrugResponseModel(adata, n_hidden=32, n_latent=16, n_graph_layers=2)
    held_out = list(adata.obs_names[:10])
    model.train(max_epochs=3, holdout_cell_lines=held_out, holdout_drugs=["Imatinib"], **QUIET)
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
    assert smiles_to_graph("CCO").n_atoms == 3


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
@pytest.mark.parametrize(
    ("smiles", "n_atoms", "n_bonds"),
    [
        ("c1ccccc1", 6, 6),  # benzene
        ("CCO", 3, 2),  # ethanol
        ("CC(=O)Oc1ccccc1C(=O)O", 13, 13),  # aspirin
        ("Cn1cnc2c1c(=O)n(C)c(=O)n2C", 14, 15),  # caffeine
        ("O=c1[nH]cc(F)c(=O)[nH]1", 9, 9),  # 5-fluorouracil
        ("N.N.Cl[Pt]Cl", 5, 2),  # cisplatin: two ammonia fragments
    ],
)
def test_graph_atom_and_bond_counts(smiles, n_atoms, n_bonds):
    g = smiles_to_graph(smiles)
    assert (g.n_atoms, g.n_bonds) == (n_atoms, n_bonds)
    assert g.atom_features.shape == (n_atoms, len(ATOM_FEATURE_NAMES))
    assert g.bond_index.shape == (2, 2 * n_bonds)
    # every bond appears in both directions
    edges = set(map(tuple, g.bond_index.T.tolist()))
    assert edges == {(j, i) for i, j in edges}
    # five one-hot blocks (element, degree, hybridisation, charge, hydrogens) plus two flags
    flags = feature(g, "aromatic") + feature(g, "in_ring")
    np.testing.assert_allclose(g.atom_features.sum(1) - flags, 5)


def test_atom_features_are_chemically_right():
    benzene = smiles_to_graph("c1ccccc1")
    assert feature(benzene, "aromatic").all() and feature(benzene, "in_ring").all()
    assert feature(benzene, "hydrogens=1").all() and feature(benzene, "degree=2").all()
    assert feature(benzene, "element=C").all()
    ethanol = smiles_to_graph("CCO")
    assert feature(ethanol, "hydrogens=3")[0] == 1 and feature(ethanol, "hydrogens=1")[2] == 1
    assert feature(ethanol, "element=O").tolist() == [0, 0, 1]
    assert not feature(ethanol, "in_ring").any()
    assert not feature(ethanol, "aromatic").any()
    cisplatin = smiles_to_graph("N.N.Cl[Pt]Cl")
    assert feature(cisplatin, "element=other").sum() == 1  # platinum
    charged = smiles_to_graph("C[N+](C)(C)C")  # tetramethylammonium
    assert feature(charged, "charge=+1").sum() == 1
    assert feature(charged, "degree=4").sum() == 1


def test_morgan_fingerprint():
    a = morgan_fingerprint("CCO", n_bits=512)
    assert a.shape == (512,) and set(np.unique(a)) <= {0.0, 1.0} and a.sum() > 0
    np.testing.assert_array_equal(a, morgan_fingerprint("OCC", n_bits=512))  # same molecule
    assert not np.array_equal(a, morgan_fingerprint("CCN", n_bits=512))


def test_example_smiles_all_parse():
    for name, smiles in EXAMPLE_DRUG_SMILES.items():
        assert smiles_to_graph(smiles, name).n_atoms > 0


def test_featurizer_batches_unique_drugs():
    names = ["Erlotinib", "Cisplatin", "Imatinib"]
    feats = DrugFeaturizer({n: EXAMPLE_DRUG_SMILES[n] for n in names})
    batch = feats.batch(np.array([2, 0]))
    sizes = [smiles_to_graph(EXAMPLE_DRUG_SMILES[n]).n_atoms for n in ("Imatinib", "Erlotinib")]
    assert batch["atom_to_drug"].tolist() == [0] * sizes[0] + [1] * sizes[1]
    assert batch["bond_index"].max() == sum(sizes) - 1
    # bonds of the second drug point into its own atoms only
    second = batch["bond_index"][:, batch["atom_to_drug"][batch["bond_index"][0]] == 1]
    assert second.min() >= sizes[0]


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


def test_training_never_sees_held_out_pairs(trained):
    model, held_out = trained
    pairs = model.responses()
    seen = np.concatenate([model.train_indices, model.validation_indices])
    assert not pairs.iloc[seen]["cell_line"].isin(held_out).any()
    assert not (pairs.iloc[seen]["drug"] == "Imatinib").any()
    test = pairs.iloc[model.test_indices]
    assert (test["cell_line"].isin(held_out) | (test["drug"] == "Imatinib")).all()
    assert len(seen) + len(test) == len(pairs)


@pytest.mark.parametrize("validation_by", ["pairs", "cell_lines", "drugs"])
def test_validation_split_by_whole_groups(validation_by):
    rng = np.random.default_rng(0)
    cell_index = np.repeat(np.arange(20), 5)
    drug_index = np.tile(np.arange(5), 20)
    drugs = DrugFeaturizer(dict(list(EXAMPLE_DRUG_SMILES.items())[:5]), "fingerprint", n_bits=8)
    dataset = DrugResponsePairs(rng.normal(size=(20, 3)), drugs, cell_index, drug_index)
    held_out = cell_index < 2  # 10 pairs
    split = DrugResponseDataSplitter(dataset, held_out, validation_by, train_size=0.8, seed=3)
    groups = {"pairs": np.arange(100), "cell_lines": cell_index, "drugs": drug_index}
    g = groups[validation_by]
    n_groups = len(np.unique(g[~held_out]))
    assert len(np.unique(g[split.val_idx])) == int(np.floor(0.2 * n_groups))
    assert not set(g[split.train_idx]) & set(g[split.val_idx])
    used = np.concatenate([split.train_idx, split.val_idx])
    assert sorted(used) == list(np.flatnonzero(~held_out))
    assert list(split.test_idx) == list(np.flatnonzero(held_out))
    everything = DrugResponseDataSplitter(dataset, held_out, validation_by, train_size=1.0)
    assert everything.n_val == 0 and everything.n_train == 90
    with pytest.raises(ValueError, match=r"train_size must be in \(0, 1\]"):
        DrugResponseDataSplitter(dataset, held_out, validation_by, train_size=0.0)


def test_holding_out_everything_is_an_error(small):
    adata = setup(small)
    model = DrugResponseModel(adata, n_hidden=16, n_latent=8)
    with pytest.raises(ValueError, match=r"no training pairs"):
        model.train(max_epochs=1, holdout_drugs=list(small.smiles), **QUIET)
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
    pd.testing.assert_frame_equal(loaded.predict(), before)
    pd.testing.assert_frame_equal(with_adata.predict(), before)
    # a model without AnnData predicts for any cell lines that have its representation
    pd.testing.assert_frame_equal(registry_only.predict(adata=model.adata), before)
    assert loaded.drug_smiles_ == model.drug_smiles_


def test_fingerprint_branch_trains(small):
    adata = setup(small)
    model = DrugResponseModel(adata, drug_representation="fingerprint", n_fingerprint_bits=256)
    model.train(max_epochs=2, **QUIET)
    assert np.isfinite(model.predict()["prediction"]).all()
    assert model.history["elbo_train"].shape[0] == 2


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
        train_kwargs={"max_epochs": 80, "batch_size": 128, **QUIET},
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
