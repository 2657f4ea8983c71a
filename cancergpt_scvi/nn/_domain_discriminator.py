"""Classifier of a domain covariate (batch, technology) from the cell embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DomainDiscriminator(nn.Module):
    """MLP predicting a categorical domain from the cell embedding.

    The embedding is first standardised per dimension over the minibatch (batch
    normalisation without affine parameters): ``<cls>`` embeddings share a large common
    direction and differ from cell to cell by a small fraction of their norm, which a plain
    MLP only sees once its weights have grown by orders of magnitude. Without it the
    discriminator stays at chance and the adversarial loss does nothing.

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
        self.standardize = nn.BatchNorm1d(embed_dim, affine=False)
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
        bn = self.standardize
        # a minibatch of one cell has no spread: use the running statistics instead
        batch_stats = self.training and cell_emb.shape[0] > 1
        x = F.batch_norm(
            cell_emb,
            bn.running_mean,
            bn.running_var,
            training=batch_stats,
            momentum=bn.momentum,
            eps=bn.eps,
        )
        return self.net(x)
