"""Per-cell expression binning (the scGPT / CancerGPT value tokenisation), vectorised."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

BinningMode = Literal["deterministic", "release"]


def quantile_edges(x: torch.Tensor, n_edges: int) -> torch.Tensor:
    """Per-row quantiles of the positive values, as ``numpy.quantile`` (linear) computes them.

    Parameters
    ----------
    x
        ``(n_cells, n_genes)`` float64 values.
    n_edges
        Number of equally spaced quantile levels in ``[0, 1]``.

    Returns
    -------
    ``(n_cells, n_edges)`` edges; rows without positive values get ``+inf`` edges.
    """
    n_genes = x.shape[1]
    positive = x > 0
    n_pos = positive.sum(dim=1, keepdim=True)  # (n_cells, 1)
    # Non-positive values sort first, so each row's positive values are its last n_pos entries.
    ordered = torch.sort(torch.where(positive, x, torch.full_like(x, -torch.inf)), dim=1).values
    # numpy's linspace, not torch's: the two differ in the last bits, which moves edges
    q = torch.from_numpy(np.linspace(0.0, 1.0, n_edges)).to(x.device)
    # numpy's 'linear' method: virtual index (n - 1) * q, then lerp between its neighbours
    virtual = (n_pos.clamp(min=1) - 1).to(torch.float64) * q  # (n_cells, n_edges)
    lo = virtual.floor()
    gamma = virtual - lo
    lo = lo.long()
    hi = torch.minimum(lo + 1, (n_pos - 1).clamp(min=0))
    offset = n_genes - n_pos
    a = ordered.gather(1, (offset + lo).clamp(max=n_genes - 1))
    b = ordered.gather(1, (offset + hi).clamp(max=n_genes - 1))
    diff = b - a
    # numpy's _lerp switches formula at gamma >= 0.5 for accuracy; match it bit for bit
    edges = torch.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return torch.where(n_pos > 0, edges, torch.full_like(edges, torch.inf))


def bin_expression(
    x: torch.Tensor | np.ndarray,
    n_bins: int = 51,
    mode: BinningMode = "deterministic",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bin each cell's expression into bins 0 to ``n_bins - 1`` by the cell's own quantiles.

    The rule of the published CancerGPT release (``release-format.md``, step 4): zeros stay 0;
    the other values are placed among ``n_bins - 1`` quantile edges of the cell's positive
    values, so the smallest positive value gets bin 1 and the largest ``n_bins - 1``. A value
    equal to one or more edges spans the bins ``r + 1 .. l`` (``r`` edges below it, ``l``
    edges at or below it).

    Parameters
    ----------
    x
        ``(n_cells, n_genes)`` non-negative expression.
    n_bins
        Number of bins, including the zero bin.
    mode
        ``"deterministic"``: a tied value takes the middle of its range (may be fractional,
        e.g. 2.5), so the same input always gives the same bins. ``"release"``: the authors'
        rule, a tied value is drawn uniformly from its range.
    generator
        Random generator for ``"release"`` mode.

    Returns
    -------
    ``(n_cells, n_genes)`` float32 bins.
    """
    if mode not in ("deterministic", "release"):
        raise ValueError(f"mode must be 'deterministic' or 'release', got {mode!r}.")
    if n_bins < 3:
        raise ValueError(f"n_bins must be at least 3, got {n_bins}.")
    x = torch.as_tensor(x)
    squeeze = x.ndim == 1
    if squeeze:
        x = x[None]
    x64 = x.to(torch.float64)
    edges = quantile_edges(x64, n_bins - 1)
    at_or_below = torch.searchsorted(edges, x64, right=True)  # l = #edges <= x
    below = torch.searchsorted(edges, x64, right=False)  # r = #edges < x
    tied = at_or_below > below
    if mode == "release":
        u = torch.rand(x64.shape, generator=generator, dtype=torch.float64, device=x.device)
        spread = below + 1 + (u * (at_or_below - below)).floor().long()
        tie_bin = spread.to(torch.float64)
    else:
        tie_bin = (below + 1 + at_or_below).to(torch.float64) / 2
    bins = torch.where(tied, tie_bin, at_or_below.to(torch.float64))
    bins = torch.where(x64 > 0, bins, torch.zeros_like(bins)).to(torch.float32)
    return bins[0] if squeeze else bins
