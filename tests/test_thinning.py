"""Binomial count thinning: whole counts, never more than given, about the drawn share kept."""

from __future__ import annotations

import pytest
import torch

from cancergpt_scvi.data import thin_counts


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


@pytest.mark.parametrize("min_keep", [0.0, -0.1, 1.5])
def test_thinning_refuses_a_keep_probability_outside_zero_one(min_keep):
    with pytest.raises(ValueError, match=r"min_keep must be in \(0, 1\]"):
        thin_counts(torch.ones(2, 3), min_keep)
