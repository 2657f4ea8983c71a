"""Token encoders: gene identity and expression value."""

from __future__ import annotations

import torch
from torch import nn


class GeneEncoder(nn.Module):
    """Gene-token embedding followed by LayerNorm (release names ``embedding``, ``enc_norm``).

    Parameters
    ----------
    n_tokens
        Rows of the embedding table (vocabulary size).
    embed_dim
        Embedding width.
    padding_idx
        Id of ``<pad>``; its row stays zero and gets no gradient.
    """

    def __init__(self, n_tokens: int, embed_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, embed_dim, padding_idx=padding_idx)
        self.enc_norm = nn.LayerNorm(embed_dim)

    def forward(self, gene_ids: torch.Tensor) -> torch.Tensor:
        return self.enc_norm(self.embedding(gene_ids))


class ContinuousValueEncoder(nn.Module):
    """Encode a scalar value (an expression bin) into a token vector.

    ``Dropout(LayerNorm(Linear2(ReLU(Linear1(min(v, max_value))))))``, as in the release.
    """

    def __init__(self, embed_dim: int, dropout: float = 0.1, max_value: float = 512.0):
        super().__init__()
        self.linear1 = nn.Linear(1, embed_dim)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(embed_dim, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.max_value = max_value

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        v = values.unsqueeze(-1).clamp(max=self.max_value)
        return self.dropout(self.norm(self.linear2(self.activation(self.linear1(v)))))
