"""Data holding only part of a model's genes: the share found is reported on every route."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.model._gene_alignment import GENE_SHARE_WARNING, MIN_GENE_SHARE
from tests.test_pretrained import ARGS, make_cells, write_release

QUIET = {"progress_bar": False}


def n_token_genes(model) -> int:
    return int((model.module.gene_ids != model.vocab.pad_id).sum())


def pct(n: int, total: int) -> str:
    """``n / total`` in percent, rounded down to 0.1."""
    return f"{n * 1000 // total / 10:g}%"


def fewest(share: float, total: int) -> int:
    """The fewest of ``total`` genes that make up ``share`` of them."""
    return int(np.ceil(round(share * total, 9)))


def share_warnings(record) -> list[str]:
    messages = [str(w.message) for w in record]
    return [m for m in messages if "token genes" in m or "gene tokens" in m]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("release") / "assets")


# --- get_latent_representation on other data ------------------------------------------------


def test_half_the_genes_warns_with_the_share(trained_model):
    adata = trained_model.adata
    n_tokens = n_token_genes(trained_model)
    assert n_tokens == adata.n_vars  # every gene of the atlas is a token gene
    half = adata[:30, : n_tokens // 2].copy()
    expected = f"adata holds {n_tokens // 2} of the model's {n_tokens} token genes (50%)"
    with pytest.warns(UserWarning, match=re.escape(expected)) as record:
        z = trained_model.get_latent_representation(half, **QUIET)
    # the warning points at the line that asked for the embedding
    assert [w.filename for w in record if expected in str(w.message)] == [__file__]
    # the missing genes are still left out of the tokens: the report changes no number
    unchecked = trained_model.get_latent_representation(half, check_genes=False, **QUIET)
    np.testing.assert_array_equal(z, unchecked)


def test_the_warning_starts_below_the_threshold(trained_model):
    adata = trained_model.adata
    n_tokens = n_token_genes(trained_model)
    at_threshold = fewest(GENE_SHARE_WARNING, n_tokens)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trained_model.get_latent_representation(adata[:20, :at_threshold].copy(), **QUIET)
    assert share_warnings(record) == []
    with pytest.warns(UserWarning, match=rf"holds {at_threshold - 1} of the model's {n_tokens}"):
        trained_model.get_latent_representation(adata[:20, : at_threshold - 1].copy(), **QUIET)


def test_below_the_floor_is_refused_with_the_share(trained_model):
    adata = trained_model.adata
    n_tokens = n_token_genes(trained_model)
    n = fewest(MIN_GENE_SHARE, n_tokens) - 1
    assert n / n_tokens < MIN_GENE_SHARE
    with pytest.raises(
        ValueError,
        match=rf"adata holds {n} of the model's {n_tokens} token genes "
        rf"\({re.escape(pct(n, n_tokens))}\): below the floor of {MIN_GENE_SHARE:.0%}"
        r".*model.input_genes_",
    ):
        trained_model.get_latent_representation(adata[:20, :n].copy(), **QUIET)
    # check_genes=False embeds what there is (for data that leave genes out on purpose)
    z = trained_model.get_latent_representation(adata[:20, :n].copy(), check_genes=False, **QUIET)
    assert z.shape == (20, trained_model.module.embed_dim) and np.isfinite(z).all()


def test_all_genes_in_another_order_give_no_warning(trained_model):
    adata = trained_model.adata
    shuffled = adata[:40, np.random.default_rng(0).permutation(adata.n_vars)].copy()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trained_model.get_latent_representation(shuffled, **QUIET)
        trained_model.get_latent_representation(**QUIET)  # the registered data
    assert share_warnings(record) == []


# --- load_pretrained ----------------------------------------------------------------------------


def test_pretrained_on_all_genes_reports_the_full_share(release):
    n_slots = ARGS["max_seq_len"] - 1
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = CancerGPTModel.load_pretrained(release, make_cells(n_cells=40))
    assert share_warnings(record) == []
    assert n_token_genes(model) == n_slots
    assert (
        f"fill {n_slots} of the release's {n_slots} gene tokens per cell (100%)"
        in model.summary_string
    )


def test_pretrained_on_part_of_the_genes_warns_and_says_so_in_the_summary(release):
    n_slots = ARGS["max_seq_len"] - 1
    cells = make_cells(n_cells=40)
    part = cells[:, [f"GENE{i}" for i in range(40)] + [f"OTHER{i}" for i in range(40)]].copy()
    with pytest.warns(UserWarning, match=r"gene tokens per cell \(\d") as record:
        model = CancerGPTModel.load_pretrained(release, part)
    n = n_token_genes(model)
    assert 0 < n <= 40
    filled = f"fill {n} of the release's {n_slots} gene tokens per cell ({pct(n, n_slots)})"
    assert any(filled in str(w.message) for w in record)
    assert filled in model.summary_string


def test_pretrained_below_the_floor_is_refused_naming_too_few_genes(release):
    n_slots = ARGS["max_seq_len"] - 1
    cells = make_cells(n_cells=40)
    few = [f"GENE{i}" for i in range(5)] + [g for g in cells.var_names if g.startswith("OTHER")]
    assert 5 / n_slots < MIN_GENE_SHARE
    with pytest.raises(
        ValueError,
        match=rf"fill only 5 of the release's {n_slots} gene tokens per cell "
        rf"\({re.escape(pct(5, n_slots))}\): below "
        rf"the floor.*5 of adata's {len(few)} genes are in the release vocabulary",
    ):
        CancerGPTModel.load_pretrained(release, cells[:, few].copy())
