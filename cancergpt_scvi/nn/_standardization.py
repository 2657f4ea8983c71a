"""Feature standardisation fixed from training statistics, stored with a module's weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Standardization(nn.Module):
    """Centre and scale features by statistics of the training samples.

    The statistics are buffers, so they are saved and loaded with the module's weights and
    move with it between devices; they are set once per training run with :meth:`set`.

    Parameters
    ----------
    n_features
        Number of features (the last dimension of the input).
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    @torch.no_grad()
    def set(
        self,
        mean: torch.Tensor | np.ndarray,
        scale: torch.Tensor | np.ndarray | float,
        min_scale: float = 0.0,
    ) -> None:
        """Fix the statistics; a ``scale`` at or below ``min_scale`` becomes 1 (left unscaled).

        Parameters
        ----------
        mean
            Per-feature mean of the training samples.
        scale
            Per-feature scale, or one scale shared by every feature.
        min_scale
            Scales at or below this value are treated as 1: such a feature does not vary in
            the training samples and is only centred.
        """
        scale = torch.as_tensor(scale, dtype=self.scale.dtype).expand_as(self.scale)
        scale = torch.where(scale > min_scale, scale, torch.ones_like(scale))
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.scale.copy_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / scale``."""
        return (x - self.mean) / self.scale

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``z * scale + mean``: back to the features' own scale."""
        return z * self.scale + self.mean
