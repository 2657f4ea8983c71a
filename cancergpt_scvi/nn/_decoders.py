"""Expression decoders used by the pretraining objectives."""

from __future__ import annotations

import torch
from torch import nn


class ExpressionDecoder(nn.Module):
    """Predict each token's expression bin from its transformer output (masked prediction)."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(embed_dim, embed_dim),
            nn.LeakyReLU(),
            nn.Linear(embed_dim, 1),
        )

    def forward(self, token_out: torch.Tensor) -> torch.Tensor:
        return self.fc(token_out).squeeze(-1)


class MVCDecoder(nn.Module):
    """Masked value prediction from the cell embedding (MVC).

    Each gene's bin is predicted as the inner product of a query made from the gene's
    embedding and a projection of the cell embedding, so the cell embedding alone has to carry
    the cell's expression profile.
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        self.gene_query = nn.Linear(embed_dim, embed_dim)
        self.cell_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, cell_emb: torch.Tensor, gene_emb: torch.Tensor) -> torch.Tensor:
        query = torch.sigmoid(self.gene_query(gene_emb))  # (B, L, E)
        cell = self.cell_proj(cell_emb).unsqueeze(-1)  # (B, E, 1)
        return torch.bmm(query, cell).squeeze(-1)
