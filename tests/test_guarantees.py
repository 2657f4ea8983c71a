"""Nothing silently wrong: every route to an embedding agrees, and bad input gets a clear error."""

from __future__ import annotations

import json
import warnings

import anndata as ad
import numpy as np
import pytest
import scanpy as sc

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.release import ReleaseCheckpointError
from tests.conftest import TINY
from tests.test_pretrained import make_cells, write_release

QUIET = {"progress_bar": False}


def embed(model, adata=None, **kwargs) -> np.ndarray:
    return model.get_latent_representation(adata, progress_bar=False, **kwargs)


@pytest.fixture(scope="module")
def reference(trained_model):
    """The trained model's embedding of its own registered cells."""
    return embed(trained_model)


@pytest.fixture(scope="module")
def saved(trained_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "model"
    trained_model.save(folder)
    return folder


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("release") / "assets")


def load(folder, adata):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scvi-tools' generic var_names warning
        return CancerGPTModel.load(folder, adata=adata)


# --- the same cells give the same embedding on every route ------------------------------------


def test_every_route_gives_the_same_embedding(trained_model, reference, saved, tmp_path):
    """Random gene permutations and subsets of cells: registered, copy, backed file, load."""
    atlas = trained_model.adata
    rng = np.random.default_rng(0)
    backed_path = tmp_path / "cells.h5ad"
    for draw in range(3):
        genes = rng.permutation(atlas.n_vars)
        rows = rng.choice(atlas.n_obs, size=40, replace=draw == 2)  # repeats in the last draw
        shuffled = atlas[:, genes].copy()
        expected = reference[rows]
        np.testing.assert_allclose(embed(trained_model, indices=rows), expected, atol=1e-5)
        np.testing.assert_allclose(
            embed(trained_model, shuffled, indices=rows), expected, atol=1e-5
        )
        shuffled.write_h5ad(backed_path)
        backed = ad.read_h5ad(backed_path, backed="r")
        np.testing.assert_allclose(
            embed(trained_model, backed, indices=rows, chunk_size=16), expected, atol=1e-5
        )
        backed.file.close()
        loaded = load(saved, shuffled.copy())
        np.testing.assert_allclose(embed(loaded, indices=rows), expected, atol=1e-5)


def test_load_onto_reordered_genes_embeds_exactly(trained_model, reference, saved):
    loaded = load(saved, trained_model.adata[:, ::-1].copy())
    np.testing.assert_allclose(embed(loaded), reference, atol=1e-5)
    with pytest.raises(ValueError, match=r"not the model's input genes in their order"):
        loaded.train(max_epochs=1, enable_progress_bar=False)


def test_pretrained_save_load_onto_reordered_genes(release, tmp_path):
    cells = make_cells()
    model = CancerGPTModel.load_pretrained(release, cells.copy(), binning="deterministic")
    before = embed(model)
    model.save(tmp_path / "m")
    loaded = load(tmp_path / "m", cells[:, ::-1].copy())
    np.testing.assert_allclose(embed(loaded), before, atol=1e-5)


def test_unsorted_and_repeated_indices_and_boolean_masks(trained_model, reference):
    other = trained_model.adata.copy()
    for rows in ([5, 3, 7], [0, 0, 2]):
        np.testing.assert_allclose(
            embed(trained_model, other, indices=rows), reference[rows], atol=1e-5
        )
    mask = np.zeros(other.n_obs, dtype=bool)
    mask[[2, 9, 4]] = True
    expected = reference[[2, 4, 9]]
    np.testing.assert_allclose(embed(trained_model, other, indices=mask), expected, atol=1e-5)
    np.testing.assert_allclose(embed(trained_model, indices=mask), expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"boolean mask.*one entry per cell"):
        embed(trained_model, other, indices=mask[:-1])


def test_out_of_range_indices_are_named(trained_model):
    n = trained_model.adata.n_obs
    for adata in (None, trained_model.adata.copy()):
        with pytest.raises(IndexError, match=rf"{n}.*out of range|out of range.*{n} cells"):
            embed(trained_model, adata, indices=[0, n])
        with pytest.raises(IndexError, match=r"-1"):
            embed(trained_model, adata, indices=[-1])
    with pytest.raises(TypeError, match=r"integer positions or a boolean mask"):
        embed(trained_model, indices=[0.5, 1.0])


# --- genes that share a symbol ------------------------------------------------------------


def test_genes_sharing_a_symbol_are_refused_on_every_path(trained_model, atlas):
    dup = atlas.copy()
    names = list(dup.var_names)
    names[1] = names[0]
    dup.var_names = names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's own non-unique warning
        CancerGPTModel.setup_anndata(dup)
        with pytest.raises(ValueError, match=rf"more than one column of var_names: {names[0]}"):
            CancerGPTModel(dup, **TINY)
        with pytest.raises(ValueError, match=rf"{names[0]}.*var_names_make_unique"):
            embed(trained_model, dup)
    by_symbol = atlas.copy()
    by_symbol.var["symbol"] = list(by_symbol.var_names)
    by_symbol.var.iloc[3, by_symbol.var.columns.get_loc("symbol")] = by_symbol.var_names[2]
    CancerGPTModel.setup_anndata(by_symbol, gene_symbols_key="symbol")
    with pytest.raises(ValueError, match=r"adata.var\['symbol'\].*duplicated"):
        CancerGPTModel(by_symbol, **TINY)


# --- data changed after setup ---------------------------------------------------------------


def test_values_changed_after_setup_are_refused(atlas):
    adata = atlas.copy()
    CancerGPTModel.setup_anndata(adata)
    model = CancerGPTModel(adata, **TINY)
    adata.X[0, 0] = -1
    with pytest.raises(ValueError, match=r"negative or non-finite.*changed after setup_anndata"):
        embed(model)
    with pytest.raises(ValueError, match=r"negative values"):
        model.train(max_epochs=1, enable_progress_bar=False)


def test_genes_subset_in_place_after_setup(atlas):
    adata = atlas.copy()
    CancerGPTModel.setup_anndata(adata)
    model = CancerGPTModel(adata, **TINY)
    counts = np.asarray(adata.X.sum(0)).ravel()
    sc.pp.filter_genes(adata, min_counts=float(np.median(counts)))  # in place: about half
    assert 0 < adata.n_vars < atlas.n_vars
    # the same cells as a fresh copy of the subset: identical, as other data is embedded
    np.testing.assert_allclose(embed(model), embed(model, adata.copy()), atol=1e-6)
    with pytest.raises(ValueError, match=r"not the model's input genes"):
        model.train(max_epochs=1, enable_progress_bar=False)


# --- clear errors -------------------------------------------------------------------------------


def test_empty_data_is_refused(atlas, release):
    with pytest.raises(ValueError, match=r"no cells"):
        CancerGPTModel.setup_anndata(atlas[:0].copy())
    with pytest.raises(ValueError, match=r"no cells"):
        CancerGPTModel.load_pretrained(release, make_cells()[:0].copy())


def test_pretrained_needs_a_varying_gene(release):
    with pytest.raises(ValueError, match=r"No gene of the vocabulary varies.*1 cell"):
        CancerGPTModel.load_pretrained(release, make_cells()[:1].copy())
    flat = make_cells(n_cells=5)
    flat.X = flat.X.toarray() * 0 + 1.0
    with pytest.raises(ValueError, match=r"No gene of the vocabulary varies"):
        CancerGPTModel.load_pretrained(release, flat)


def test_load_names_what_the_folder_is(tmp_path, release, saved):
    with pytest.raises(FileNotFoundError, match=r"No model folder"):
        CancerGPTModel.load(tmp_path / "missing")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match=r"holds no model.pt.*readme.txt"):
        CancerGPTModel.load(tmp_path / "notes")
    with pytest.raises(FileNotFoundError, match=r"load_pretrained"):
        CancerGPTModel.load(release)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "model.pt").write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match=r"model.pt is not a readable saved model"):
        CancerGPTModel.load(garbage)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    data = (saved / "model.pt").read_bytes()
    (truncated / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"not a readable saved model"):
        CancerGPTModel.load(truncated)


@pytest.mark.parametrize("name", ["args.json", "vocab.json"])
def test_json_that_is_not_json_names_the_file(release, tmp_path, name):
    folder = tmp_path / "release"
    folder.mkdir()
    for file in release.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / name).write_text("{not json")
    error = ReleaseCheckpointError if name == "args.json" else ValueError
    with pytest.raises(error, match=rf"{name} is not valid JSON"):
        CancerGPTModel.load_pretrained(folder, make_cells())
    assert json.loads((release / name).read_text())  # the original is untouched


def test_training_on_very_few_cells_trains_without_validation(atlas):
    adata = atlas[:3].copy()
    CancerGPTModel.setup_anndata(adata)
    model = CancerGPTModel(adata, **TINY)
    with pytest.warns(UserWarning, match=r"3 cells leave no validation cells"):
        model.train(max_epochs=1, batch_size=2, enable_progress_bar=False)
    assert model.is_trained_ and len(model.validation_indices) == 0
    with pytest.raises(ValueError, match=r"early_stopping needs validation cells"):
        model.train(max_epochs=1, early_stopping=True, enable_progress_bar=False)


def test_silent_settings_are_refused_or_named(atlas):
    adata = atlas.copy()
    adata.obs["one_batch"] = "b"
    CancerGPTModel.setup_anndata(adata, batch_key="one_batch")
    model = CancerGPTModel(adata, **TINY)
    with pytest.raises(ValueError, match=r"max_epochs must be at least 1"):
        model.train(max_epochs=0)
    assert not model.is_trained_
    with pytest.raises(ValueError, match=r"batch_size must be positive"):
        model.train(max_epochs=1, batch_size=0)
    with pytest.raises(ValueError, match=r"batch_size must be positive"):
        embed(model, batch_size=0)
    with pytest.warns(UserWarning, match=r"batch_key='one_batch'.*one category.*no discriminator"):
        model.train(max_epochs=1, adversarial_weight=0.03, enable_progress_bar=False)


def test_survival_prediction_on_no_samples():
    from cancergpt_scvi.survival import SurvivalModel
    from tests.test_survival import linear_cohort

    adata = linear_cohort(n=60)
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    model = SurvivalModel(adata, alpha=0.1)
    model.train(enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match=r"no samples"):
        model.predict_risk(adata[:0])
    assert model.predict_risk(adata[:5]).shape == (5,)
