"""Binomial thinning of counts: a cell profiled at a lower depth, for training augmentation."""

from __future__ import annotations

import torch


def thin_counts(
    x: torch.Tensor, min_keep: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep each count of a cell with one probability drawn per cell from ``U(min_keep, 1)``.

    Every molecule of cell ``i`` is kept independently with probability ``p_i``, so the cell
    looks sequenced at ``p_i`` of its depth (Binomial(x, p_i) per gene), with the sampling
    noise and dropouts of a shallower profile.

    Parameters
    ----------
    x
        ``(n_cells, n_genes)`` non-negative integer counts (any float or integer dtype).
    min_keep
        Lowest keep probability, in ``(0, 1]``; 1 returns the counts unchanged.
    generator
        Random generator on ``x``'s device (default: torch's global one).

    Returns
    -------
    Thinned counts, ``x``'s shape, dtype and device.
    """
    if not 0.0 < min_keep <= 1.0:
        raise ValueError(f"min_keep must be in (0, 1], got {min_keep}.")
    keep = torch.rand(x.shape[0], 1, dtype=torch.float32, device=x.device, generator=generator)
    keep = min_keep + (1.0 - min_keep) * keep
    counts = x.float()
    thinned = torch.binomial(counts, keep.expand_as(counts).contiguous(), generator=generator)
    return thinned.to(x.dtype)
