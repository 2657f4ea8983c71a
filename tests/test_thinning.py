"""Binomial count thinning, and the check that expression holds counts."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

from cancergpt_scvi.data import holds_counts, thin_counts


def test_thinning_keeps_a_share_of_each_cells_counts_between_min_keep_and_one():
    generator = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((200, 500), 20.0), generator=generator)
    thinned = thin_counts(x, 0.3, generator=generator)
    assert thinned.shape == x.shape and thinned.dtype == x.dtype
    assert torch.equal(thinned, thinned.round())
    assert bool((thinned <= x).all()) and bool((thinned >= 0).all())
    share = thinned.sum(1) / x.sum(1)
    # 10,000 molecules a cell: the kept share is within ~0.01 of the cell's keep probability
    assert share.min() > 0.28 and share.max() < 1.0
    assert share.max() - share.min() > 0.5  # drawn per cell, not one share for all
    assert torch.equal(thin_counts(x, 1.0), x)
    for dtype in (torch.int64, torch.float64):
        typed = thin_counts(x.to(dtype), 0.5)
        assert typed.dtype == dtype and bool((typed <= x.to(dtype)).all())


@pytest.mark.parametrize("min_keep", [0.0, -0.1, 1.5])
def test_thinning_refuses_a_keep_probability_outside_zero_one(min_keep):
    with pytest.raises(ValueError, match=r"min_keep must be in \(0, 1\]"):
        thin_counts(torch.ones(2, 3), min_keep)


def test_holds_counts_takes_whole_non_negative_numbers_only(tmp_path):
    counts = np.array([[0, 3, 1], [2, 0, 5]], dtype=np.float32)
    assert holds_counts(ad.AnnData(counts))
    assert holds_counts(ad.AnnData(counts.astype(np.int64)))
    assert holds_counts(ad.AnnData(sparse.csr_matrix(counts)))
    assert not holds_counts(ad.AnnData(np.log1p(counts)))
    assert not holds_counts(ad.AnnData(sparse.csr_matrix(np.log1p(counts))))
    assert not holds_counts(ad.AnnData(-counts))
    with_nan = counts.copy()
    with_nan[0, 0] = np.nan
    assert not holds_counts(ad.AnnData(with_nan))
    layered = ad.AnnData(np.log1p(counts), layers={"counts": counts})
    assert holds_counts(layered, layer="counts") and not holds_counts(layered)
    ad.AnnData(sparse.csr_matrix(counts)).write_h5ad(tmp_path / "cells.h5ad")
    assert holds_counts(ad.read_h5ad(tmp_path / "cells.h5ad", backed="r"))
    assert not holds_counts(ad.AnnData(obs=pd.DataFrame(index=["a", "b"])))  # no X
