"""Loading scGPT checkpoint folders and reproducing scGPT's zero-shot cell embeddings.

The reference here is independent of the package: plain ``torch.nn`` layers laid out under
scGPT's key names (``encoder.*``, ``value_encoder.*``, ``transformer_encoder.layers.*``), and
scGPT's token rule (``get_batch_cell_embeddings`` with its ``DataCollator``) written out with
numpy, one cell at a time.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from torch import nn

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.release import ReleaseCheckpointError, checkpoint_layout, scgpt_key

ARGS = {
    "embsize": 32,
    "nheads": 4,
    "d_hid": 64,
    "nlayers": 2,
    "n_layers_cls": 3,
    "dropout": 0.2,
    "pad_token": "<pad>",
    "pad_value": -2,
    "mask_value": -1,
    "n_bins": 51,
    "input_emb_style": "continuous",
    "max_seq_len": 33,
}
N_VOCAB_GENES = 60
N_SLOTS = ARGS["max_seq_len"] - 1


class ScGPTLikeEncoder(nn.Module):
    """scGPT's zero-shot encoder path under its own key names, in plain torch."""

    def __init__(self, n_tokens: int, pad_id: int):
        super().__init__()
        dim = ARGS["embsize"]
        self.encoder = nn.Module()  # scGPT's GeneEncoder: embedding + enc_norm
        self.encoder.embedding = nn.Embedding(n_tokens, dim, padding_idx=pad_id)
        self.encoder.enc_norm = nn.LayerNorm(dim)
        self.value_encoder = nn.Module()  # scGPT's ContinuousValueEncoder
        self.value_encoder.linear1 = nn.Linear(1, dim)
        self.value_encoder.linear2 = nn.Linear(dim, dim)
        self.value_encoder.norm = nn.LayerNorm(dim)
        layer = nn.TransformerEncoderLayer(dim, ARGS["nheads"], ARGS["d_hid"], batch_first=True)
        self.transformer_encoder = nn.TransformerEncoder(
            layer, ARGS["nlayers"], enable_nested_tensor=False
        )
        for p in self.parameters():  # scale the weights up so that cells differ clearly
            nn.init.normal_(p, std=0.3)

    @torch.no_grad()
    def cls_output(self, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        ids = torch.as_tensor(ids)[None]
        v = torch.as_tensor(values, dtype=torch.float32)[None, :, None].clamp(max=512)
        h = self.encoder.enc_norm(self.encoder.embedding(ids))
        ve = self.value_encoder
        h = h + ve.norm(ve.linear2(torch.relu(ve.linear1(v))))
        out = self.transformer_encoder(h)[0, 0].numpy()
        return out / np.linalg.norm(out)


def scgpt_bins(values: np.ndarray) -> np.ndarray:
    """scGPT's binning of a cell's non-zero values (tie-free data: no random spreading)."""
    edges = np.quantile(values, np.linspace(0, 1, ARGS["n_bins"] - 1))
    left, right = np.digitize(values, edges), np.digitize(values, edges, right=True)
    assert np.all(left - right <= 1), "the reference is for tie-free data"
    return left


def vocab_tokens() -> dict[str, int]:
    # scGPT's layout: genes first, <pad> stored at the end, <cls> and <eoc> appended on reading
    tokens = {f"G{i}": i for i in range(N_VOCAB_GENES)}
    tokens["<pad>"] = N_VOCAB_GENES
    return tokens


def scgpt_state(seed: int = 0) -> tuple[dict[str, torch.Tensor], ScGPTLikeEncoder]:
    torch.manual_seed(seed)
    n_tokens = N_VOCAB_GENES + 3  # <pad> stored, <cls> and <eoc> appended
    reference = ScGPTLikeEncoder(n_tokens, pad_id=N_VOCAB_GENES).eval()
    return dict(reference.state_dict()), reference


def write_scgpt(folder: Path, state: dict[str, torch.Tensor], args: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "best_model.pt")
    (folder / "args.json").write_text(json.dumps(args or ARGS))
    (folder / "vocab.json").write_text(json.dumps(vocab_tokens()))
    return folder


def flash_names(state: dict[str, torch.Tensor], nested: bool) -> dict[str, torch.Tensor]:
    """The same weights under flash-attention's names (scGPT's ``FlashMHA`` wrapper)."""
    inner = "self_attn._impl." if nested else "self_attn."
    renamed = {}
    for key, tensor in state.items():
        key = key.replace("self_attn.in_proj_", f"{inner}Wqkv.")
        key = key.replace("self_attn.out_proj.", f"{inner}out_proj.")
        renamed[key] = tensor
    return renamed


def make_cells(n_cells=24, n_expressed=(3, 30), seed=1) -> ad.AnnData:
    """Tie-free cells: distinct positive values; genes G0.. in the vocabulary, X0.. not."""
    rng = np.random.default_rng(seed)
    names = [f"G{i}" for i in range(N_VOCAB_GENES)] + [f"X{i}" for i in range(10)]
    order = rng.permutation(len(names))  # var order differs from vocabulary order
    x = np.zeros((n_cells, len(names)), dtype=np.float32)
    for c in range(n_cells):
        k = rng.integers(*n_expressed, endpoint=True)
        genes = rng.choice(N_VOCAB_GENES, size=k, replace=False)
        x[c, genes] = rng.uniform(0.5, 20.0, size=k)
        x[c, N_VOCAB_GENES:] = rng.uniform(50.0, 90.0, size=10)  # large, outside the vocabulary
    return ad.AnnData(x[:, order], var={"symbol": np.array(names)[order]})


def reference_embedding(reference: ScGPTLikeEncoder, adata: ad.AnnData) -> np.ndarray:
    vocab = vocab_tokens()
    cls_id = len(vocab)  # scGPT appends the missing <cls> with the next id
    names = adata.var_names
    in_vocab = np.array([g in vocab for g in names])
    out = []
    for row in np.asarray(adata.X):
        keep = np.flatnonzero(in_vocab & (row != 0))  # in var order
        ids = np.array([cls_id] + [vocab[names[j]] for j in keep])
        values = np.concatenate([[ARGS["pad_value"]], scgpt_bins(row[keep].astype(np.float64))])
        out.append(reference.cls_output(ids, values))
    return np.stack(out)


def cosine(a, b):
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def load(folder: Path, adata: ad.AnnData, **kwargs) -> CancerGPTModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return CancerGPTModel.load_pretrained(folder, adata, device="cpu", **kwargs)


@pytest.fixture(scope="module")
def scgpt_folder(tmp_path_factory):
    state, reference = scgpt_state()
    return write_scgpt(tmp_path_factory.mktemp("scgpt"), state), reference


def test_embeddings_equal_scgpts_procedure_on_tie_free_data(scgpt_folder):
    folder, reference = scgpt_folder
    adata = make_cells()
    adata.var_names = adata.var["symbol"].to_numpy()
    model = load(folder, adata)
    assert model.pretrained_layout_ == "scGPT"
    summary = model.summary_string
    digest = hashlib.sha256((folder / "best_model.pt").read_bytes()).hexdigest()
    assert model.pretrained_weights_.sha256 == digest
    assert f"(layout: scGPT), best_model.pt SHA-256 {digest}" in summary
    assert "tokens (scGPT rule)" in summary
    ours = model.get_latent_representation(seed=0, progress_bar=False, batch_size=7)
    expected = reference_embedding(reference, adata)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    # random weights put the cells close together, but far further apart than the tolerance
    assert np.abs(ours[1:] - ours[:-1]).max(axis=1).min() > 1e-3


def test_genes_are_matched_by_gene_symbols_key(scgpt_folder):
    folder, reference = scgpt_folder
    adata = make_cells(n_cells=6)
    by_symbol = adata.copy()
    adata.var_names = [f"ENSG{i}" for i in range(adata.n_vars)]
    model = load(folder, adata, gene_symbols_key="symbol")
    by_symbol.var_names = by_symbol.var["symbol"].to_numpy()
    ours = model.get_latent_representation(seed=0, progress_bar=False)
    np.testing.assert_allclose(ours, reference_embedding(reference, by_symbol), atol=1e-5)


def test_tokens_are_the_nonzero_vocabulary_genes_in_var_order(scgpt_folder):
    folder, _ = scgpt_folder
    adata = make_cells(n_cells=5)
    adata.var_names = adata.var["symbol"].to_numpy()
    model = load(folder, adata)
    vocab = vocab_tokens()
    tokens = model.module.tokenize(torch.as_tensor(adata.X))
    for c, row in enumerate(adata.X):
        expected = [vocab[g] for g, v in zip(adata.var_names, row, strict=True) if v and g in vocab]
        ids = tokens.gene_ids[c][~tokens.padding_mask[c]].tolist()
        assert ids[0] == model.vocab.cls_id
        assert ids[1:] == expected


def test_a_cell_with_too_many_genes_keeps_a_seeded_random_subset(scgpt_folder):
    folder, _ = scgpt_folder
    adata = make_cells(n_cells=4, n_expressed=(N_SLOTS + 10, N_VOCAB_GENES), seed=3)
    adata.var_names = adata.var["symbol"].to_numpy()
    model = load(folder, adata)
    x = torch.as_tensor(adata.X)
    ids = torch.as_tensor(model.vocab.lookup(adata.var_names))
    expressed = [set(ids[(row > 0) & (ids >= 0)].tolist()) for row in x]
    subsets = []
    for seed in (0, 0, 1):
        g = torch.Generator().manual_seed(seed)
        tokens = model.module.tokenize(x, generator=g)
        assert tokens.gene_ids.shape[1] == ARGS["max_seq_len"]
        assert not tokens.padding_mask.any()
        chosen = tokens.gene_ids[:, 1:]
        for c in range(len(x)):
            assert set(chosen[c].tolist()) <= expressed[c]
            assert len(set(chosen[c].tolist())) == N_SLOTS
        subsets.append(chosen)
    assert torch.equal(subsets[0], subsets[1])
    assert not torch.equal(subsets[0], subsets[2])
    # the embedding is repeatable with the same seed and moves with another subset
    a = model.get_latent_representation(seed=5, progress_bar=False)
    b = model.get_latent_representation(seed=5, progress_bar=False)
    c = model.get_latent_representation(seed=6, progress_bar=False)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_subset_keeps_the_bins_of_the_whole_cell(scgpt_folder):
    folder, _ = scgpt_folder
    adata = make_cells(n_cells=3, n_expressed=(N_SLOTS + 10, N_VOCAB_GENES), seed=4)
    adata.var_names = adata.var["symbol"].to_numpy()
    model = load(folder, adata)
    vocab = vocab_tokens()
    tokens = model.module.tokenize(torch.as_tensor(adata.X), generator=torch.Generator())
    for c, row in enumerate(np.asarray(adata.X)):
        keep = [j for j, g in enumerate(adata.var_names) if row[j] and g in vocab]
        bins = dict(
            zip(
                [vocab[adata.var_names[j]] for j in keep],
                scgpt_bins(row[keep].astype(np.float64)),
                strict=True,
            )
        )
        got = dict(zip(tokens.gene_ids[c, 1:].tolist(), tokens.values[c, 1:].tolist(), strict=True))
        assert {g: bins[g] for g in got} == got


@pytest.mark.parametrize("nested", [False, True])
def test_flash_attention_names_load_to_the_same_embeddings(scgpt_folder, tmp_path, nested):
    folder, _ = scgpt_folder
    state = torch.load(folder / "best_model.pt", weights_only=True)
    flash = flash_names(state, nested)
    wqkv = "_impl.Wqkv" if nested else "self_attn.Wqkv"
    assert any(wqkv in k for k in flash) and not any("in_proj" in k for k in flash)
    assert scgpt_key(next(k for k in flash if "Wqkv.weight" in k)).endswith(
        "self_attn.in_proj_weight"
    )
    flash_folder = write_scgpt(tmp_path / "flash", flash)
    adata = make_cells(n_cells=8)
    adata.var_names = adata.var["symbol"].to_numpy()
    plain = load(folder, adata.copy()).get_latent_representation(seed=0, progress_bar=False)
    fast = load(flash_folder, adata.copy()).get_latent_representation(seed=0, progress_bar=False)
    np.testing.assert_array_equal(plain, fast)


def test_keys_outside_the_encoder_are_named_in_a_warning(tmp_path):
    state, _ = scgpt_state()
    dim = ARGS["embsize"]
    extra = {
        "decoder.fc.0.weight": torch.zeros(dim, dim),
        "mvc_decoder.gene2query.weight": torch.zeros(dim, dim),
        "cls_decoder.out_layer.weight": torch.zeros(3, dim),
        "batch_encoder.embedding.weight": torch.zeros(4, dim),
        "dsbn.bns.0.running_mean": torch.zeros(dim),
    }
    folder = write_scgpt(tmp_path / "ft", {**state, **extra})
    adata = make_cells(n_cells=4)
    adata.var_names = adata.var["symbol"].to_numpy()
    with pytest.warns(UserWarning, match="outside the encoder") as record:
        CancerGPTModel.load_pretrained(folder, adata, device="cpu")
    message = next(str(w.message) for w in record if "outside the encoder" in str(w.message))
    for key in extra:
        assert key in message
    assert record[0].filename == __file__  # points at the caller's line


def _broken(tmp_path: Path, edit) -> Path:
    state, _ = scgpt_state()
    edit(state)
    return write_scgpt(tmp_path / "broken", state)


def test_a_missing_encoder_key_is_an_error_naming_it(tmp_path):
    folder = _broken(tmp_path, lambda s: s.pop("transformer_encoder.layers.1.linear2.weight"))
    adata = make_cells(n_cells=4)
    adata.var_names = adata.var["symbol"].to_numpy()
    with pytest.raises(ReleaseCheckpointError, match=r"missing.*layers\.1\.linear2\.weight"):
        CancerGPTModel.load_pretrained(folder, adata, device="cpu")


def test_a_misshapen_encoder_key_is_an_error_naming_it(tmp_path):
    def widen(state):
        state["encoder.embedding.weight"] = torch.zeros(N_VOCAB_GENES + 9, ARGS["embsize"])

    folder = _broken(tmp_path, widen)
    adata = make_cells(n_cells=4)
    adata.var_names = adata.var["symbol"].to_numpy()
    with pytest.raises(ReleaseCheckpointError, match=r"encoder\.embedding\.weight: \(69, 32\)"):
        CancerGPTModel.load_pretrained(folder, adata, device="cpu")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"pad_value": 0}, "pad_value"),
        ({"input_emb_style": "category"}, "input_emb_style"),
        ({"pre_norm": True}, "pre_norm"),
    ],
)
def test_architectures_not_reproduced_are_refused(tmp_path, change, match):
    state, _ = scgpt_state()
    folder = write_scgpt(tmp_path / "other", state, {**ARGS, **change})
    adata = make_cells(n_cells=4)
    adata.var_names = adata.var["symbol"].to_numpy()
    with pytest.raises(ReleaseCheckpointError, match=match):
        CancerGPTModel.load_pretrained(folder, adata, device="cpu")


def test_a_folder_with_both_weights_files_is_refused(scgpt_folder, tmp_path):
    folder, _ = scgpt_folder
    both = write_scgpt(tmp_path / "both", torch.load(folder / "best_model.pt", weights_only=True))
    assert checkpoint_layout(both) == "scGPT"
    (both / "model.pth").write_bytes((both / "best_model.pt").read_bytes())
    with pytest.raises(ReleaseCheckpointError, match="both"):
        checkpoint_layout(both)


def test_save_and_load_keep_scgpts_token_rule(scgpt_folder, tmp_path):
    folder, _ = scgpt_folder
    adata = make_cells(n_cells=6, n_expressed=(20, N_VOCAB_GENES))
    adata.var_names = adata.var["symbol"].to_numpy()
    model = load(folder, adata)
    model.save(tmp_path / "saved")
    again = CancerGPTModel.load(tmp_path / "saved", adata=adata, accelerator="cpu")
    assert again.module.gene_selection == "sampled"
    np.testing.assert_array_equal(
        model.get_latent_representation(seed=2, progress_bar=False),
        again.get_latent_representation(seed=2, progress_bar=False),
    )
