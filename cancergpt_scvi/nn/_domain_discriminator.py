"""Classifier of a domain covariate (batch, technology) from the cell embedding."""

from __future__ import annotations

import torch
from torch import nn


class DomainDiscriminator(nn.Module):
    """MLP predicting a categorical domain from the cell embedding.

    Parameters
    ----------
    embed_dim
        Width of the cell embedding.
    n_domains
        Number of categories of the covariate.
    hidden_dim
        Width of the hidden layers.
    """

    def __init__(self, embed_dim: int, n_domains: int, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or embed_dim
        self.net = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim),
            nn.LeakyReLU(),
            nn.LayerNorm(hidden_dim),
            nn.Linear(hidden_dim, hidden_dim),
            nn.LeakyReLU(),
            nn.LayerNorm(hidden_dim),
            nn.Linear(hidden_dim, n_domains),
        )

    def forward(self, cell_emb: torch.Tensor) -> torch.Tensor:
        return self.net(cell_emb)
