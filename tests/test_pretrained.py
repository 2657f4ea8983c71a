"""Loading the published CancerGPT release folder and reproducing its zero-shot embeddings.

The reference here is independent of the package: plain ``torch.nn`` layers laid out under the
release's key names, and the authors' procedure written out with scanpy and numpy as
``release-format.md`` describes it.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from scipy import sparse
from scipy.stats import chisquare
from torch import nn

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.data import cell_ranger_hvg
from cancergpt_scvi.release import ReleaseCheckpointError

ARGS = {
    "n_bins": 51,
    "max_seq_len": 65,
    "trunc_by_sample": True,
    "nlayers": 2,
    "nheads": 4,
    "embsize": 32,
    "d_hid": 64,
    "dropout": 0.2,
    "n_layers_cls": 3,
}
N_VOCAB_GENES = 180
TRAINING_ONLY = {
    "decoder.fc.0.weight": (32, 32),
    "mvc_decoder.gene2query.weight": (32, 32),
    "grad_reverse_discriminator._decoder.0.weight": (32, 32),
}


# -- the independent reference ------------------------------------------------------------
class _GeneEncoder(nn.Module):
    def __init__(self, n_tokens, dim, pad):
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, dim, padding_idx=pad)
        self.enc_norm = nn.LayerNorm(dim)


class _ValueEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear1 = nn.Linear(1, dim)
        self.linear2 = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)


class ReferenceEncoder(nn.Module):
    """The release encoder from torch.nn parts, under the release's key names."""

    def __init__(self, args: dict, n_tokens: int, pad: int):
        super().__init__()
        e = args["embsize"]
        self.pad = pad
        self.gene_encoder = _GeneEncoder(n_tokens, e, pad)
        self.value_encoder = _ValueEncoder(e)
        layer = nn.TransformerEncoderLayer(
            e,
            args["nheads"],
            args["d_hid"],
            args["dropout"],
            activation="relu",
            batch_first=True,
            norm_first=False,
        )
        self.encoder = nn.TransformerEncoder(layer, args["nlayers"], enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        g = self.gene_encoder.enc_norm(self.gene_encoder.embedding(ids))
        v = values.unsqueeze(-1).clamp(max=512)
        v = self.value_encoder.linear2(torch.relu(self.value_encoder.linear1(v)))
        h = g + self.value_encoder.norm(v)
        out = self.encoder(h, src_key_padding_mask=ids == self.pad)
        return nn.functional.normalize(out[:, 0], dim=-1)


def authors_bins(row: np.ndarray, n_bins: int, rng: np.random.Generator) -> np.ndarray:
    """Step 4 of the authors' procedure, for one cell."""
    out = np.zeros_like(row, dtype=np.float64)
    if row.max() == 0:
        return out
    keep = row != 0 if row.min() <= 0 else np.ones(row.shape, dtype=bool)
    edges = np.quantile(row[keep], np.linspace(0, 1, n_bins - 1))
    left = np.digitize(row[keep], edges)  # number of edges <= x
    right = np.digitize(row[keep], edges, right=True)  # number of edges < x
    out[keep] = np.ceil(rng.random(keep.sum()) * (right - left) + left)
    return out


def authors_embedding(model_dir: Path, adata: ad.AnnData, batch_key=None, seed=0):
    """The authors' zero-shot procedure, plainly, with the reference encoder."""
    args = json.loads((model_dir / "args.json").read_text())
    vocab = json.loads((model_dir / "vocab.json").read_text())
    data = adata[:, [g in vocab for g in adata.var_names]].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(
            data,
            flavor="cell_ranger",
            n_top_genes=args["max_seq_len"] - 1,
            batch_key=batch_key,
            subset=True,
        )
    assert data.n_vars == args["max_seq_len"] - 1  # nothing to sample in these tests
    x = data.X.toarray() if sparse.issparse(data.X) else np.asarray(data.X)
    rng = np.random.default_rng(seed)
    bins = np.stack([authors_bins(row, args["n_bins"], rng) for row in x])
    ids = np.array([vocab[g] for g in data.var_names])
    gene_ids = np.c_[np.full(len(x), vocab["<cls>"]), np.tile(ids, (len(x), 1))]
    values = np.c_[np.full(len(x), -2.0), bins]
    ref = ReferenceEncoder(args, max(vocab.values()) + 1, vocab["<pad>"])
    state = torch.load(model_dir / "model.pth", weights_only=True)
    ref.load_state_dict({k: v for k, v in state.items() if k not in TRAINING_ONLY})
    with torch.no_grad():
        z = ref.eval()(torch.as_tensor(gene_ids), torch.as_tensor(values, dtype=torch.float32))
    return z.numpy(), list(data.var_names)


def write_release(folder: Path, seed: int = 0, nested: bool = False) -> Path:
    """A release folder (model.pth, args.json, vocab.json) with random weights."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    genes = [f"GENE{i}" for i in range(N_VOCAB_GENES)]
    ids = rng.permutation(len(genes)) + 3
    vocab = {
        "<cls>": 0,
        "<pad>": 1,
        "<eoc>": 2,
        **{g: int(i) for g, i in zip(genes, ids, strict=True)},
    }
    ref = ReferenceEncoder(ARGS, len(vocab), vocab["<pad>"])
    state = ref.state_dict()
    for key, tensor in state.items():  # move LayerNorms off 1 / 0 so every tensor matters
        if "norm" in key:
            tensor += 0.2 * torch.randn_like(tensor)
    state.update({k: torch.randn(s) for k, s in TRAINING_ONLY.items()})
    if nested:
        state = {k.replace(".self_attn.", ".self_attn.self_attn."): v for k, v in state.items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "model.pth")
    (folder / "args.json").write_text(json.dumps(ARGS))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return folder


def make_cells(n_cells=90, counts=False, seed=1) -> ad.AnnData:
    """150 vocabulary genes and 40 others, shuffled, with two batches."""
    rng = np.random.default_rng(seed)
    names = [f"GENE{i}" for i in range(150)] + [f"OTHER{i}" for i in range(40)]
    names = list(rng.permutation(names))
    scale = rng.gamma(0.6, 2.0, size=len(names)) * rng.gamma(3, 1 / 3, size=(n_cells, 1))
    if counts:
        x = rng.poisson(scale).astype(np.float32)
    else:  # continuous, so no two values of a cell tie
        x = (scale * rng.lognormal(0, 0.5, size=scale.shape)).astype(np.float32)
        x[rng.random(x.shape) < 0.4] = 0
    obs = pd.DataFrame(
        {"batch": pd.Categorical(rng.choice(["b1", "b2"], n_cells))},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    return ad.AnnData(sparse.csr_matrix(x), obs=obs, var=pd.DataFrame(index=names))


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_release(tmp_path_factory.mktemp("release") / "assets")


def cosine(a, b):
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# -- reproduction -------------------------------------------------------------------------
@pytest.mark.parametrize("batch_key", [None, "batch"])
def test_embeddings_equal_the_authors_procedure_on_tie_free_data(release, batch_key):
    adata = make_cells()
    before = adata.copy()
    expected, hvg = authors_embedding(release, adata, batch_key)
    model = CancerGPTModel.load_pretrained(release, adata, batch_key=batch_key)
    tokens = model.module.gene_ids != model.vocab.pad_id
    assert list(adata.var_names[tokens.numpy()]) == hvg
    for binning in ("release", "deterministic"):
        z = model.get_latent_representation(binning=binning, progress_bar=False)
        assert z.shape == (adata.n_obs, ARGS["embsize"]) and z.dtype == np.float32
        assert cosine(z, expected).min() >= 0.9999
    # adata keeps all its genes and values; registration only adds its _scvi_ entries
    assert list(adata.var_names) == list(before.var_names)
    assert (adata.X != before.X).nnz == 0
    assert {c for c in adata.obs if not c.startswith("_scvi")} == set(before.obs)
    assert list(adata.var.columns) == list(before.var.columns)


def test_nested_attention_keys_load_as_the_same_tensors(release, tmp_path):
    nested = write_release(tmp_path / "nested", nested=True)
    state = torch.load(nested / "model.pth", weights_only=True)
    assert "encoder.layers.0.self_attn.self_attn.in_proj_weight" in state
    adata = make_cells(n_cells=30)
    z = CancerGPTModel.load_pretrained(release, adata.copy()).get_latent_representation(
        binning="deterministic", progress_bar=False
    )
    z_nested = CancerGPTModel.load_pretrained(nested, adata.copy()).get_latent_representation(
        binning="deterministic", progress_bar=False
    )
    np.testing.assert_array_equal(z, z_nested)


def test_release_binning_spreads_ties_over_their_bins(release):
    adata = make_cells(n_cells=60, counts=True)
    model = CancerGPTModel.load_pretrained(release, adata)
    tokens = (model.module.gene_ids != model.vocab.pad_id).numpy()
    x = adata.X.toarray()
    # r = #edges < x and l = #edges <= x over the cell's token genes only
    lo, hi = [], []
    for row in x[:, tokens]:
        nz = row > 0
        edges = np.quantile(row[nz], np.linspace(0, 1, ARGS["n_bins"] - 1))
        below, at_or_below = np.digitize(row, edges, right=True), np.digitize(row, edges)
        tied = at_or_below > below
        lo.append(np.where(nz, np.where(tied, below + 1, at_or_below), 0))  # untied: l
        hi.append(np.where(nz, at_or_below, 0))
    lo, hi = np.array(lo), np.array(hi)
    spans = hi - lo + 1
    assert spans.max() >= 8  # count data: many genes share a count spanning many bins
    draws = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        batch = model.module.tokenize(torch.as_tensor(x), generator=generator)
        assert (batch.values[:, 0] == -2).all()
        draws.append(batch.values[:, 1:].numpy())
    draws = np.array(draws)
    assert ((draws >= lo) & (draws <= hi)).all()
    assert np.array_equal(draws == 0, np.broadcast_to(x[:, tokens] == 0, draws.shape))
    # uniform over r + 1 .. l: every bin of a wide tie is drawn, with the expected mean
    wide = spans >= 8
    offsets = (draws - lo)[:, wide]
    mean_expected = ((spans[wide] - 1) / 2).mean()
    sd = np.sqrt(((spans[wide] ** 2 - 1) / 12).mean() / offsets.size)
    assert abs(offsets.mean() - mean_expected) < 5 * sd
    span = np.bincount(spans[wide]).argmax()  # the commonest wide span: a pooled histogram
    counts = np.bincount((draws - lo)[:, spans == span].astype(int).ravel(), minlength=span)
    assert len(counts) == span and chisquare(counts).pvalue > 1e-3
    # seeded runs agree; unseeded release binning differs from deterministic binning
    z1 = model.get_latent_representation(seed=3, progress_bar=False)
    z2 = model.get_latent_representation(seed=3, progress_bar=False)
    np.testing.assert_array_equal(z1, z2)
    z_det = model.get_latent_representation(binning="deterministic", progress_bar=False)
    assert not np.array_equal(z1, z_det)


# -- strict loading ------------------------------------------------------------------------
def _edit(folder: Path, edit) -> Path:
    state = torch.load(folder / "model.pth", weights_only=True)
    edit(state)
    torch.save(state, folder / "model.pth")
    return folder


def test_a_missing_encoder_key_is_named(tmp_path):
    folder = _edit(
        write_release(tmp_path / "r"), lambda s: s.pop("encoder.layers.1.linear2.weight")
    )
    with pytest.raises(
        ReleaseCheckpointError,
        match=r"missing encoder keys: encoder\.layers\.1"
        r"\.linear2\.weight",
    ):
        CancerGPTModel.load_pretrained(folder, make_cells(n_cells=20))


def test_a_wrong_shape_is_named(tmp_path):
    def widen(state):
        state["encoder.layers.0.linear1.weight"] = torch.zeros(65, 32)

    folder = _edit(write_release(tmp_path / "r"), widen)
    with pytest.raises(
        ReleaseCheckpointError,
        match=r"encoder\.layers\.0\.linear1\.weight: "
        r"\(65, 32\) \(expected \(64, 32\)\)",
    ):
        CancerGPTModel.load_pretrained(folder, make_cells(n_cells=20))


def test_a_vocabulary_without_the_data_genes_is_refused(release):
    adata = make_cells(n_cells=20)
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    with pytest.raises(ValueError, match="Only 0 of 190 genes"):
        CancerGPTModel.load_pretrained(release, adata)


def test_a_symbol_repeated_outside_the_vocabulary_is_let_be(release):
    adata = make_cells(n_cells=20)
    expected = CancerGPTModel.load_pretrained(
        release, adata.copy(), binning="deterministic"
    ).get_latent_representation(progress_bar=False)
    names = list(adata.var_names)
    others = [i for i, g in enumerate(names) if g.startswith("OTHER")]
    names[others[1]] = names[others[0]]  # a repeat the release never reads
    repeated = adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's own non-unique warning
        repeated.var_names = names
        model = CancerGPTModel.load_pretrained(release, repeated, binning="deterministic")
    np.testing.assert_allclose(model.get_latent_representation(progress_bar=False), expected)
    # and so does other data with that repeat (here a copy, not registered with the model)
    np.testing.assert_allclose(
        model.get_latent_representation(repeated.copy(), progress_bar=False), expected, atol=1e-6
    )
    in_vocab = [i for i, g in enumerate(names) if g.startswith("GENE")]
    names[in_vocab[1]] = names[in_vocab[0]]  # a repeat it would read: refused by name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repeated.var_names = names
        with pytest.raises(ValueError, match=rf"{names[in_vocab[0]]}.*var_names_make_unique"):
            CancerGPTModel.load_pretrained(release, repeated)


def test_a_folder_without_args_json_is_refused(tmp_path):
    folder = write_release(tmp_path / "r")
    (folder / "args.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no args\.json"):
        CancerGPTModel.load_pretrained(folder, make_cells(n_cells=20))


def test_training_only_keys_are_ignored_and_listed_at_debug_level(release, caplog):
    with caplog.at_level(logging.DEBUG, logger="cancergpt_scvi.release._checkpoint"):
        CancerGPTModel.load_pretrained(release, make_cells(n_cells=20))
    listed = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert all(key in listed for key in TRAINING_ONLY)


def test_args_json_drives_the_architecture(tmp_path):
    folder = write_release(tmp_path / "r")
    args = {**ARGS, "nlayers": 1}
    (folder / "args.json").write_text(json.dumps(args))
    with pytest.raises(ReleaseCheckpointError, match="does not account for"):
        CancerGPTModel.load_pretrained(folder, make_cells(n_cells=20))


# -- the loaded weights in our own model ----------------------------------------------------
def test_bf16_stays_close_to_fp32(release, monkeypatch):
    import cancergpt_scvi.model._precision as precision
    from cancergpt_scvi.model import cpu_has_native_bf16

    assert isinstance(cpu_has_native_bf16(), bool)
    model = CancerGPTModel.load_pretrained(release, make_cells(n_cells=40), binning="deterministic")
    z32 = model.get_latent_representation(progress_bar=False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"no native bfloat16.*3.7x slower.*precision='fp32'"):
        z16 = model.get_latent_representation(precision="bf16", progress_bar=False)
    assert cosine(z32, z16).min() >= 0.999
    assert not np.array_equal(z32, z16)  # autocast did change the arithmetic
    with pytest.raises(ValueError, match="precision"):
        model.get_latent_representation(precision="fp16", progress_bar=False)


def test_save_load_and_fine_tune_keep_the_weights_and_vocabulary(release, tmp_path):
    adata = make_cells(n_cells=48, counts=True)
    model = CancerGPTModel.load_pretrained(release, adata, batch_key="batch")
    z = model.get_latent_representation(seed=0, progress_bar=False)
    model.save(tmp_path / "saved", overwrite=True)
    loaded = CancerGPTModel.load(tmp_path / "saved", adata=adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(seed=0, progress_bar=False), z)
    assert loaded.vocab == model.vocab
    before = loaded.module.encoder.layers[0].linear1.weight.detach().clone()
    loaded.train(max_epochs=1, batch_size=32, enable_progress_bar=False)
    assert loaded.vocab == model.vocab and "train_loss" in loaded.history
    assert not torch.equal(loaded.module.encoder.layers[0].linear1.weight.cpu(), before)
    tuned = loaded.get_latent_representation(seed=0, progress_bar=False)
    assert tuned.shape == z.shape and np.isfinite(tuned).all()


def test_backed_and_chunked_inputs_give_the_same_embedding(release, tmp_path):
    adata = make_cells(n_cells=50)
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    in_memory = CancerGPTModel.load_pretrained(release, adata, binning="deterministic")
    z = in_memory.get_latent_representation(progress_bar=False)
    backed = ad.read_h5ad(path, backed="r")
    on_disk = CancerGPTModel.load_pretrained(release, backed, binning="deterministic")
    np.testing.assert_allclose(on_disk.get_latent_representation(progress_bar=False), z, atol=1e-6)
    # a foreign backed AnnData, with its genes in another order, read 13 cells at a time
    other = adata[:, ::-1].copy()
    other.write_h5ad(tmp_path / "other.h5ad")
    other = ad.read_h5ad(tmp_path / "other.h5ad", backed="r")
    chunked = in_memory.get_latent_representation(other, chunk_size=13, progress_bar=False)
    np.testing.assert_allclose(chunked, z, atol=1e-6)
    some = in_memory.get_latent_representation(
        other, indices=[3, 7, 8, 40], chunk_size=2, progress_bar=False
    )
    np.testing.assert_allclose(some, z[[3, 7, 8, 40]], atol=1e-6)


# -- gene selection --------------------------------------------------------------------------
@pytest.mark.parametrize("batch_key", [None, "batch"])
@pytest.mark.parametrize("counts", [True, False])
def test_streamed_cell_ranger_genes_equal_scanpy(batch_key, counts):
    adata = make_cells(n_cells=120, counts=counts, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sc.pp.highly_variable_genes(
            adata.copy(),
            flavor="cell_ranger",
            n_top_genes=40,
            batch_key=batch_key,
            inplace=False,
        )
    ours = cell_ranger_hvg(adata, 40, batch_key=batch_key, chunk_size=17)
    np.testing.assert_array_equal(ours["highly_variable"], expected["highly_variable"])
    np.testing.assert_allclose(ours["dispersions_norm"], expected["dispersions_norm"], rtol=1e-9)


def test_the_real_release_vocabulary_reads(tmp_path, release_vocab_path):
    vocab_path = release_vocab_path
    vocab = json.loads(vocab_path.read_text())
    assert len(vocab) == 28_725 and vocab["<cls>"] == 0 and vocab["<pad>"] == 1
    from cancergpt_scvi.release import read_release_checkpoint, release_encoder

    # a release-layout folder with the real vocabulary and a small encoder reads and checks
    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / "vocab.json").write_text(vocab_path.read_text())
    args = {**ARGS, "embsize": 8, "nheads": 2, "d_hid": 16, "nlayers": 1}
    (folder / "args.json").write_text(json.dumps(args))
    shapes = {k: v.shape for k, v in release_encoder(args, len(vocab)).state_dict().items()}
    torch.save({k: torch.zeros(s) for k, s in shapes.items()}, folder / "model.pth")
    checkpoint = read_release_checkpoint(folder)
    assert checkpoint.encoder_state["gene_encoder.embedding.weight"].shape == (28_725, 8)
