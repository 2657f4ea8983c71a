"""Out-of-core corpora (h5ad files, TileDB-SOMA), distributed sampling, DDP, resume."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.corpus import CorpusDataModule, H5adCorpus, SomaCorpus
from cancergpt_scvi.data import GeneVocab, oversampling_weights
from cancergpt_scvi.datasets import write_simulated_corpus
from cancergpt_scvi.train import DistributedOversampler, StepCheckpoint, StepSeed
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[1]
OBS_KEYS = ["technology", "tissue"]
SETUP = {"batch_key": "study", "technology_key": "technology", "tissue_key": "tissue"}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    write_simulated_corpus(folder, n_files=3, n_cells_per_file=70, n_genes=200, seed=0)
    return folder


def _files(folder):
    return sorted(Path(folder).glob("*.h5ad"))


def _model(corpus, **kwargs):
    adata = corpus.reference_adata(n_cells=32)
    CancerGPTModel.setup_anndata(adata, **SETUP)
    scvi.settings.seed = 0
    return CancerGPTModel(adata, vocab=corpus.vocab, **{**TINY, **kwargs})


def test_corpus_reads_every_file_in_the_union_gene_space(corpus_dir):
    adatas = [ad.read_h5ad(f) for f in _files(corpus_dir)]
    gene_sets = [set(a.var_names) for a in adatas]
    assert len(set.union(*gene_sets)) > max(map(len, gene_sets))  # studies measure other genes
    corpus = H5adCorpus(_files(corpus_dir), obs_keys=OBS_KEYS)
    assert set(corpus.genes) == set.union(*gene_sets) and not corpus.measures_all_genes
    assert corpus.n_obs == sum(a.n_obs for a in adatas)
    assert list(corpus.obs["study"].cat.categories) == [f.stem for f in _files(corpus_dir)]

    whole = ad.concat(adatas, join="outer", fill_value=0)[:, list(corpus.genes)]
    start = np.cumsum([0] + [a.n_obs for a in adatas])
    idx = np.array([start[2] + 5, 3, start[1], 3, start[1] + 9])  # unordered, repeated
    np.testing.assert_array_equal(corpus.read(idx).toarray(), whole.X[idx].toarray())
    mask = np.zeros(corpus.n_obs, dtype=bool)
    mask[[3, start[1]]] = True
    np.testing.assert_array_equal(
        corpus.read(mask).toarray(), whole.X[np.flatnonzero(mask)].toarray()
    )
    with pytest.raises(TypeError, match="integer positions or a boolean mask"):
        corpus.read([0.9, 1.7])  # never cells 0 and 1
    with pytest.raises(IndexError, match="out of range"):
        corpus.read([corpus.n_obs])
    assert (corpus.obs["tissue"].astype(str) == whole.obs["tissue"].astype(str).to_numpy()).all()

    # a study's unmeasured genes never become tokens of its cells
    model = _model(corpus)
    first = np.arange(20)
    tokens = model.module.tokenize(torch.as_tensor(corpus.read(first).toarray()))
    measured = corpus.vocab.lookup(adatas[0].var_names)
    used = tokens.gene_ids[tokens.gene_positions].numpy()
    assert len(used) and np.isin(used, measured).all()
    assert not np.isin(corpus.vocab.lookup(set.union(*gene_sets) - gene_sets[0]), used).any()


def test_oversampling_comes_from_obs_alone(corpus_dir, tmp_path):
    files = _files(corpus_dir)
    model = _model(H5adCorpus(files, obs_keys=OBS_KEYS))
    copies = [Path(shutil.copy(f, tmp_path / f.name)) for f in files]
    with h5py.File(copies[0], "r+") as handle:
        del handle["X"]["data"]  # the first study's expression is gone
    corpus = H5adCorpus(copies, obs_keys=OBS_KEYS)
    datamodule = CorpusDataModule(corpus, model.adata_manager, validation_size=0.2, seed=4)
    weights = datamodule.train_weights()

    obs = pd.concat([ad.read_h5ad(f, backed="r").obs for f in files])
    cells = datamodule.train_indices
    expected, _ = oversampling_weights(
        obs["tissue"].astype(str).to_numpy()[cells],
        obs["technology"].astype(str).to_numpy()[cells],
    )
    np.testing.assert_allclose(weights, expected)
    assert len(datamodule.validation_indices) == round(0.2 * corpus.n_obs)
    with pytest.raises(KeyError):
        corpus.read([0])


def test_given_vocabulary_and_bad_corpora_are_handled(corpus_dir, tmp_path):
    files = _files(corpus_dir)
    common = set.intersection(*(set(ad.read_h5ad(f, backed="r").var_names) for f in files))
    vocab = GeneVocab.from_genes(sorted(common))
    corpus = H5adCorpus(files, obs_keys=OBS_KEYS, vocab=vocab)
    assert set(corpus.genes) == common and corpus.measures_all_genes

    with pytest.raises(ValueError, match="None of the corpus"):
        H5adCorpus(files, vocab=GeneVocab.from_genes(["TP53", "MYC"]))
    with pytest.raises(KeyError, match="donor"):
        H5adCorpus(files, obs_keys=["donor"])
    csc = ad.read_h5ad(files[0])
    csc.X = csc.X.tocsc()
    csc.write_h5ad(tmp_path / "csc.h5ad")
    with pytest.raises(ValueError, match="CSC"):
        H5adCorpus([tmp_path / "csc.h5ad"])
    with pytest.raises(FileNotFoundError):
        H5adCorpus([tmp_path / "missing.h5ad"])

    # categories the model was not set up with are refused, not mislabelled
    small = H5adCorpus(files[:2], obs_keys=OBS_KEYS)
    model = _model(small)
    with pytest.raises(ValueError, match="not set up with"):
        CorpusDataModule(H5adCorpus(files, obs_keys=OBS_KEYS), model.adata_manager)
    # a fixed gene set over studies that measure different genes is refused
    model = _model(H5adCorpus(files, obs_keys=OBS_KEYS), gene_selection="fixed")
    datamodule = CorpusDataModule(H5adCorpus(files, obs_keys=OBS_KEYS), model.adata_manager)
    with pytest.raises(ValueError, match="measured zero"):
        model.train(max_epochs=1, datamodule=datamodule, enable_progress_bar=False)


def test_soma_experiment_corpus_reads_and_trains(atlas, tmp_path):
    import tiledbsoma.io as soma_io  # the [atlas] extra, installed with the tests

    uri = str(tmp_path / "soma")
    soma_io.from_anndata(uri, atlas, measurement_name="RNA", X_layer_name="raw")
    corpus = SomaCorpus(
        uri,
        obs_keys=["batch", "technology", "tissue"],
        gene_symbols_key="var_id",
        obs_value_filter="tissue != 'Kidney'",
    )
    kept = atlas[(atlas.obs["tissue"] != "Kidney").to_numpy()]
    assert corpus.n_obs == kept.n_obs and list(corpus.genes) == list(atlas.var_names)
    idx = [7, 0, 7, kept.n_obs - 1]
    np.testing.assert_array_equal(corpus.read(idx).toarray(), kept.X[idx].toarray())

    adata = corpus.reference_adata(n_cells=32)
    CancerGPTModel.setup_anndata(
        adata, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    model = CancerGPTModel(adata, vocab=corpus.vocab, **TINY)
    datamodule = CorpusDataModule(corpus, model.adata_manager, batch_size=32, validation_size=0.1)
    model.train(
        max_epochs=1, datamodule=datamodule, precision="bf16-mixed", enable_progress_bar=False
    )
    losses = model.history["train_loss"].to_numpy().astype(float)
    assert np.isfinite(losses).all()
    assert datamodule.sampling_summary["tissue"].isin(["Breast", "Brain"]).all()


def test_soma_corpus_without_tiledbsoma_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tiledbsoma", None)  # import tiledbsoma now fails
    with pytest.raises(ImportError, match=r"pip install 'cancergpt-scvi\[atlas\]'"):
        SomaCorpus(tmp_path / "soma")


class _Positions(torch.utils.data.Dataset):
    """Returns the positions of each batch, to see what a loader serves."""

    def __len__(self):
        return 100

    def __getitem__(self, positions):
        return np.asarray(positions)


def test_ranks_share_one_oversampled_stream():
    weights = np.r_[np.full(50, 0.5), np.full(10, 3.0)]  # 55 draws per epoch
    whole = DistributedOversampler(weights, batch_size=4, seed=3, num_replicas=1, rank=0)
    ranks = [
        DistributedOversampler(weights, batch_size=4, seed=3, num_replicas=3, rank=r)
        for r in range(3)
    ]
    stream = whole.epoch_draws(0)
    assert len(stream) == 55
    served = [np.concatenate(list(s)) for s in ranks]
    assert {len(s) for s in served} == {19} and {len(s) for s in ranks} == {5}
    padded = np.resize(stream, 57)
    for rank in range(3):
        np.testing.assert_array_equal(served[rank], padded[rank::3])

    many = DistributedOversampler(weights, batch_size=64, n_draws=60_000, num_replicas=1, rank=0)
    counts = np.bincount(many.epoch_draws(0), minlength=len(weights))
    expected = 60_000 * weights / weights.sum()
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))

    ranks[0].set_epoch(1)
    next_epoch = np.concatenate(list(ranks[0]))
    assert not np.array_equal(next_epoch, served[0])

    # a stateful loader saved after two batches of epoch 1 resumes at the third
    def loader():
        sampler = DistributedOversampler(weights, batch_size=4, seed=3, num_replicas=3, rank=0)
        sampler.set_epoch(1)  # as Lightning does at every epoch start
        return StatefulDataLoader(_Positions(), sampler=sampler, batch_size=None)

    interrupted = loader()
    batches = iter(interrupted)
    next(batches), next(batches)
    resumed = loader()
    resumed.load_state_dict(interrupted.state_dict())
    np.testing.assert_array_equal(np.concatenate(list(resumed)), next_epoch[8:])
    np.testing.assert_array_equal(np.concatenate(list(resumed)), next_epoch)  # then whole epochs

    once = DistributedOversampler(
        np.ones(30), batch_size=7, replacement=False, seed=1, num_replicas=1, rank=0
    )
    assert sorted(np.concatenate(list(once))) == list(range(30))


@pytest.mark.parametrize("source", ["corpus", "anndata"])
def test_resumed_run_continues_the_uninterrupted_run(source, corpus_dir, tmp_path):
    corpus = H5adCorpus(_files(corpus_dir), obs_keys=OBS_KEYS)

    def run(folder, **kwargs):
        model = _model(corpus)
        if source == "corpus":
            data = {"datamodule": CorpusDataModule(corpus, model.adata_manager, batch_size=32)}
        else:
            model = CancerGPTModel(model.adata, vocab=corpus.vocab, **TINY)
            data = {"batch_size": 8, "datasplitter_kwargs": {"seed": 0}}
        callbacks = [StepCheckpoint(tmp_path / folder, every_n_train_steps=3), StepSeed(0)]
        model.train(
            max_epochs=2,
            callbacks=callbacks,
            deterministic=True,
            enable_progress_bar=False,
            **data,
            **kwargs,
        )
        return model

    with pytest.warns(UserWarning, match="no last checkpoint"):
        full = run("full", ckpt_path="last")  # nothing to resume yet: a fresh start
    steps_per_epoch = full.trainer.num_training_batches
    assert full.trainer.global_step == 2 * steps_per_epoch and steps_per_epoch > 3
    stopped = run("stopped", max_steps=3)  # stops mid-epoch, after the step-3 checkpoint
    assert {p.name for p in (tmp_path / "stopped").iterdir()} == {"step=3.ckpt", "last.ckpt"}
    resumed = run("stopped", ckpt_path="last")  # relaunched the same way, in the same folder
    assert resumed.trainer.global_step == full.trainer.global_step
    a, b, c = (m.module.state_dict() for m in (full, stopped, resumed))
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_on_two_cpu_processes(corpus_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(REPO / "tests" / "_ddp_worker.py"), str(corpus_dir), str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-4000:]
    info = [json.loads((tmp_path / f"info{r}.json").read_text()) for r in range(2)]
    assert [(i["backend"], i["world_size"], i["rank"]) for i in info] == [
        ("gloo", 2, 0),
        ("gloo", 2, 1),
    ]
    for prefix in ("weights", "in_memory_weights"):
        w0, w1 = (torch.load(tmp_path / f"{prefix}{r}.pt") for r in range(2))
        assert all(torch.equal(w0[k], w1[k]) for k in w0)

    # the stream the sampler says, for the same corpus, model registry and seed
    corpus = H5adCorpus(_files(corpus_dir), obs_keys=OBS_KEYS)
    adata = corpus.reference_adata(n_cells=64)
    CancerGPTModel.setup_anndata(adata, **SETUP)
    model = CancerGPTModel(adata, vocab=corpus.vocab, **TINY)
    initial = model.module.state_dict()
    assert not all(torch.equal(initial[k], w0[k]) for k in initial)  # training moved them
    datamodule = CorpusDataModule(corpus, model.adata_manager, batch_size=16, seed=1)
    sampler = datamodule.train_sampler(num_replicas=1, rank=0)
    stream = datamodule.train_indices[sampler.epoch_draws(0)]
    served = [np.load(tmp_path / f"served{r}.npy") for r in range(2)]
    assert len(served[0]) == len(served[1]) == -(-len(stream) // 2)
    padded = np.resize(stream, 2 * len(served[0]))
    np.testing.assert_array_equal(served[0], padded[0::2])
    np.testing.assert_array_equal(served[1], padded[1::2])
    assert info[0]["global_step"] == -(-len(served[0]) // 16)

    # together the ranks draw each tissue at the rate of its oversampling weights
    weights = datamodule.train_weights()
    tissue = corpus.obs["tissue"].astype(str).to_numpy()
    drawn = pd.Series(tissue[np.concatenate(served)]).value_counts()
    target = pd.Series(weights).groupby(tissue[datamodule.train_indices]).sum()
    p = target / target.sum()
    n = drawn.sum()
    assert (np.abs(drawn[p.index] - n * p) < 4 * np.sqrt(n * p * (1 - p)) + 1).all()
