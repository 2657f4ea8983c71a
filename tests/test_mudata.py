"""MuData: setup_mudata, embedding a MuData's RNA modality, save / load, the CLI on .h5mu."""

from __future__ import annotations

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scvi
from mudata import MuData

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.cli import main
from tests.conftest import TINY
from tests.test_pretrained import make_cells, write_release

COVARIATES = {"batch_key": "batch", "technology_key": "technology", "tissue_key": "tissue"}
IN_RNA = {"rna_layer": "rna", **dict.fromkeys(COVARIATES, "rna")}


def _protein(cells: ad.AnnData, seed: int = 0) -> ad.AnnData:
    """A second modality over the same cells: a small antibody panel."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(5, size=(cells.n_obs, 6)).astype(np.float32)
    return ad.AnnData(
        counts,
        obs=pd.DataFrame(index=cells.obs_names.copy()),
        var=pd.DataFrame(index=[f"CD{i}" for i in range(6)]),
    )


def _mdata(cells: ad.AnnData, rna: str = "rna") -> MuData:
    return MuData({rna: cells.copy(), "prot": _protein(cells)})


@pytest.fixture(scope="module")
def mudata_model(atlas):
    scvi.settings.seed = 0
    mdata = _mdata(atlas)
    CancerGPTModel.setup_mudata(mdata, **COVARIATES, modalities=IN_RNA)
    model = CancerGPTModel(mdata, **TINY)
    model.train(max_epochs=1, batch_size=64, adversarial_weight=0.003, enable_progress_bar=False)
    return model


def _embed(model, data=None, **kwargs) -> np.ndarray:
    return model.get_latent_representation(data, progress_bar=False, **kwargs)


def test_setup_mudata_registers_the_fields_of_setup_anndata(mudata_model, trained_model):
    # the same covariates, read from the RNA modality, with the categories of the AnnData setup
    assert set(mudata_model.adata_manager.data_registry) == set(
        trained_model.adata_manager.data_registry
    )
    for name in ("n_batch", "n_technology", "n_tissue", "n_vars"):
        assert mudata_model.summary_stats[name] == trained_model.summary_stats[name], name
    assert mudata_model.module.adversary.covariates == trained_model.module.adversary.covariates
    assert mudata_model.input_genes_ == trained_model.input_genes_
    assert len(mudata_model.history_["train_loss"]) == 1 and mudata_model.is_trained_


def test_the_embedding_of_a_mudata_is_that_of_its_rna_modality(mudata_model, trained_model):
    mdata = mudata_model.adata
    registered = _embed(mudata_model)
    assert registered.shape == (mdata.n_obs, TINY["embed_dim"])
    np.testing.assert_allclose(_embed(mudata_model, mdata["rna"]), registered, atol=1e-6)
    # another MuData (not registered) is read from its RNA modality, genes matched by symbol
    other = _mdata(mdata["rna"][:, ::-1].copy())
    np.testing.assert_allclose(_embed(mudata_model, other), registered, atol=1e-5)
    other.obsm["X_cancergpt"] = _embed(mudata_model, other)
    assert other.obsm["X_cancergpt"].shape[0] == other.n_obs
    # a model set up on an AnnData embeds a MuData's "rna" modality as that AnnData
    np.testing.assert_allclose(
        _embed(trained_model, _mdata(trained_model.adata)), _embed(trained_model), atol=1e-6
    )


def test_save_and_load_round_trip_with_the_mudata(mudata_model, tmp_path):
    expected = _embed(mudata_model)
    mudata_model.save(tmp_path / "with_data", save_anndata=True)
    assert (tmp_path / "with_data" / "mdata.h5mu").is_file()
    loaded = CancerGPTModel.load(tmp_path / "with_data")
    assert isinstance(loaded.adata, MuData) and set(loaded.adata.mod) == {"rna", "prot"}
    np.testing.assert_allclose(_embed(loaded), expected, atol=1e-6)

    mudata_model.save(tmp_path / "weights_only")
    mdata = _mdata(mudata_model.adata["rna"])
    reloaded = CancerGPTModel.load(tmp_path / "weights_only", adata=mdata)
    assert reloaded.adata is mdata
    assert reloaded.registry_["setup_args"]["modalities"] == IN_RNA
    np.testing.assert_allclose(_embed(reloaded), expected, atol=1e-6)
    bare = CancerGPTModel.load(tmp_path / "weights_only")
    np.testing.assert_allclose(_embed(bare, mdata), expected, atol=1e-6)
    # training goes on from the registered MuData
    reloaded.train(max_epochs=1, enable_progress_bar=False)
    assert not np.allclose(_embed(reloaded), expected, atol=1e-4)


def test_a_mudata_without_an_rna_modality_is_refused_naming_its_modalities(atlas, mudata_model):
    mdata = _mdata(atlas, rna="gex")
    with pytest.raises(KeyError, match=r"no modality 'rna' \(its modalities: gex, prot\)") as err:
        CancerGPTModel.setup_mudata(mdata)
    assert "modalities={'rna_layer': name}" in str(err.value)
    with pytest.raises(KeyError, match="its modalities: gex, prot"):
        _embed(mudata_model, mdata)
    # naming the modality is the way
    CancerGPTModel.setup_mudata(mdata, modalities={"rna_layer": "gex"})
    model = CancerGPTModel(mdata, gene_embedding_init="random", **TINY)
    assert model.input_genes_ == list(atlas.var_names)
    with pytest.raises(KeyError, match=r"modalities\['batch_key'\]='atac' is not a modality"):
        CancerGPTModel.setup_mudata(mdata, batch_key="b", modalities={"batch_key": "atac"})


def test_a_mudata_where_an_anndata_is_expected_points_to_setup_mudata(atlas, trained_model):
    mdata = _mdata(atlas)
    with pytest.raises(TypeError, match=r"setup_anndata takes an AnnData.*setup_mudata\(mdata\)"):
        CancerGPTModel.setup_anndata(mdata)
    with pytest.raises(TypeError, match=r"adapt takes an AnnData.*mdata.mod\['rna'\]"):
        trained_model.adapt(mdata)
    with pytest.raises(TypeError, match=r"setup_mudata takes a MuData.*setup_anndata"):
        CancerGPTModel.setup_mudata(atlas.copy())


def test_setup_mudata_says_where_a_covariate_or_cell_is_missing(atlas):
    mdata = _mdata(atlas)
    # batch is a column of the RNA modality, not of mdata.obs (the default place, as in scvi-tools)
    with pytest.raises(KeyError, match=r"not a column of mdata.obs.*\{'batch_key': 'rna'\}"):
        CancerGPTModel.setup_mudata(mdata, batch_key="batch")
    with pytest.raises(ValueError, match="not arguments that read a modality"):
        CancerGPTModel.setup_mudata(mdata, modalities={"layer": "rna"})
    # an RNA modality with only some of the cells cannot give one row per cell
    partial = MuData({"rna": atlas[:300].copy(), "prot": _protein(atlas)})
    with pytest.raises(ValueError, match="holds 300 cells, 300 of the MuData's 400") as err:
        CancerGPTModel.setup_mudata(partial)
    # the advice given works
    kept = partial[partial.mod["rna"].obs_names].copy()
    assert "mdata[mdata.mod['rna'].obs_names].copy()" in str(err.value)
    CancerGPTModel.setup_mudata(kept)
    assert kept.n_obs == 300


def test_load_pretrained_takes_a_mudata(tmp_path):
    release = write_release(tmp_path / "release")
    cells = make_cells(n_cells=40)
    expected = CancerGPTModel.load_pretrained(
        release, cells.copy(), batch_key="batch", binning="deterministic"
    ).get_latent_representation(progress_bar=False)
    mdata = MuData({"gex": cells.copy(), "prot": _protein(cells)})
    model = CancerGPTModel.load_pretrained(
        release, mdata, batch_key="batch", binning="deterministic", modality="gex"
    )
    assert model.adata is mdata
    mdata.obsm["X_cancergpt"] = model.get_latent_representation(progress_bar=False)
    np.testing.assert_allclose(mdata.obsm["X_cancergpt"], expected, atol=1e-6)
    with pytest.raises(KeyError, match="its modalities: gex, prot"):
        CancerGPTModel.load_pretrained(release, mdata)
    with pytest.raises(ValueError, match="adata is not one"):
        CancerGPTModel.load_pretrained(release, cells.copy(), modality="gex")


def test_the_cli_embeds_an_h5mu_file_into_its_obsm(mudata_model, tmp_path, capsys):
    mudata_model.save(tmp_path / "model")
    cells = mudata_model.adata[:40].copy()
    cells.write_h5mu(tmp_path / "in.h5mu")
    out = tmp_path / "out.h5mu"
    args = ["embed", str(tmp_path / "in.h5mu"), "--model", str(tmp_path / "model")]
    assert main([*args, "--out", str(out)]) == 0
    written = mudata.read_h5mu(out)
    expected = _embed(mudata_model, indices=np.arange(40))
    np.testing.assert_allclose(written.obsm["X_cancergpt"], expected, atol=1e-6)
    assert set(written.mod) == {"rna", "prot"} and written.n_obs == 40
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]

    # the RNA modality under another name: --modality chooses it
    renamed = MuData({"gex": cells["rna"].copy(), "prot": cells["prot"].copy()})
    renamed.write_h5mu(tmp_path / "gex.h5mu")
    gex = ["embed", str(tmp_path / "gex.h5mu"), "--model", str(tmp_path / "model")]
    assert main([*gex, "--out", str(tmp_path / "gex_out.h5mu")]) == 2
    err = capsys.readouterr().err
    assert "no modality 'rna' (its modalities: gex, prot)" in err and "--modality" in err
    assert not (tmp_path / "gex_out.h5mu").exists()
    assert main([*gex, "--out", str(tmp_path / "gex_out.h5mu"), "--modality", "gex"]) == 0
    written = mudata.read_h5mu(tmp_path / "gex_out.h5mu")
    np.testing.assert_allclose(written.obsm["X_cancergpt"], expected, atol=1e-6)

    # an .h5mu input is written as .h5mu
    assert main([*args, "--out", str(tmp_path / "out.h5ad")]) == 2
    assert "ending in .h5mu" in capsys.readouterr().err
    assert not (tmp_path / "out.h5ad").exists()
