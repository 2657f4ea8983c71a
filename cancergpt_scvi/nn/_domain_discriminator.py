"""Classifier of a domain covariate (batch, technology) from the cell embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DomainDiscriminator(nn.Module):
    """MLP predicting a categorical domain from the cell embedding.

    The embedding is first standardised per dimension over the minibatch (batch
    normalisation without affine parameters or running statistics): ``<cls>`` embeddings share a
    large common direction and differ from cell to cell by a small fraction of their norm, which
    a plain MLP only sees once its weights have grown by orders of magnitude. Without it the
    discriminator stays at chance and the adversarial loss does nothing. No running statistics
    are kept, so data-parallel ranks hold identical state.

    Parameters
    ----------
    embed_dim
        Width of the cell embedding.
    n_domains
        Number of categories of the covariate.
    hidden_dim
        Width of the hidden layers.
    n_conditions
        Categories of a covariate the discriminator is told (one-hot, next to the embedding),
        e.g. tissue. A domain nested in it (patients of one tissue each) is then recognised
        only from what the embedding adds to the condition, so the reversed gradient removes
        the domain *within* the condition instead of the condition itself. 0: unconditioned.
    """

    def __init__(
        self,
        embed_dim: int,
        n_domains: int,
        hidden_dim: int | None = None,
        n_conditions: int = 0,
    ):
        super().__init__()
        hidden_dim = hidden_dim or embed_dim
        self.eps = 1e-5
        self.n_conditions = int(n_conditions)
        self.n_domains = int(n_domains)
        self.net = nn.Sequential(
            nn.Linear(embed_dim + self.n_conditions, hidden_dim),
            nn.LeakyReLU(),
            nn.LayerNorm(hidden_dim),
            nn.Linear(hidden_dim, hidden_dim),
            nn.LeakyReLU(),
            nn.LayerNorm(hidden_dim),
            nn.Linear(hidden_dim, n_domains),
        )

    def forward(
        self, cell_emb: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Domain logits ``(B, n_domains)``; ``condition`` holds category codes ``(B,)``."""
        # a minibatch of one cell has no spread: it standardises to zeros (no domain signal)
        centred = cell_emb - cell_emb.mean(dim=0, keepdim=True)
        scale = torch.rsqrt(centred.pow(2).mean(dim=0, keepdim=True) + self.eps)
        features = centred * scale
        if self.n_conditions:
            if condition is None:
                raise ValueError("This discriminator is conditioned: pass the condition codes.")
            onehot = F.one_hot(condition.long().view(-1), self.n_conditions)
            features = torch.cat([features, onehot.to(features.dtype)], dim=-1)
        return self.net(features)
