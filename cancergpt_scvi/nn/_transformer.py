"""Post-norm transformer encoder on ``scaled_dot_product_attention``.

The arithmetic and parameter names are those of ``torch.nn.TransformerEncoderLayer``
(``norm_first=False``, ReLU, ``batch_first=True``), which the published CancerGPT weights were
trained with; attention calls :func:`torch.nn.functional.scaled_dot_product_attention`
directly, which on CPU and GPU is far faster with a padding mask than the masked softmax of
torch's own encoder fast path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention with a stacked q/k/v projection (``in_proj_weight``)."""

    def __init__(self, embed_dim: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if embed_dim % n_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by n_heads={n_heads}.")
        self.n_heads = n_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        n_queries: int | None = None,
    ) -> torch.Tensor:
        """Attention output of every position, or of the first ``n_queries`` positions only.

        With ``n_queries``, keys and values still come from every position, so the output of
        those positions equals the full computation's.
        """
        batch, length, dim = x.shape
        shape = (batch, length, self.n_heads, dim // self.n_heads)
        if n_queries is None:  # one stacked projection of every position
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
            q, k, v = qkv.view(batch, length, 3, *shape[2:]).permute(2, 0, 3, 1, 4)
        else:  # the query of the first positions, keys and values of all
            q = F.linear(x[:, :n_queries], self.in_proj_weight[:dim], self.in_proj_bias[:dim])
            q = q.view(batch, n_queries, *shape[2:]).transpose(1, 2)
            kv = F.linear(x, self.in_proj_weight[dim:], self.in_proj_bias[dim:])
            k, v = kv.view(batch, length, 2, *shape[2:]).permute(2, 0, 3, 1, 4)
        # True where attention is allowed: every query may look at non-padding keys
        attn_mask = None if padding_mask is None else ~padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, q.shape[2], dim))


class TransformerLayer(nn.Module):
    """``x = norm1(x + SelfAttn(x)); x = norm2(x + Linear2(Dropout(ReLU(Linear1(x)))))``.

    ``attention_dropout`` defaults to 0: dropout on the attention matrix forces the slow
    non-fused attention kernel on CPU; the residual and feed-forward dropouts stay.
    """

    def __init__(
        self,
        embed_dim: int,
        n_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
    ):
        super().__init__()
        self.self_attn = SelfAttention(embed_dim, n_heads, attention_dropout)
        self.linear1 = nn.Linear(embed_dim, ffn_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        n_queries: int | None = None,
    ) -> torch.Tensor:
        """The layer's output at every position, or at the first ``n_queries`` positions."""
        attended = self.self_attn(x, padding_mask, n_queries)
        if n_queries is not None:
            x = x[:, :n_queries]
        x = self.norm1(x + self.dropout1(attended))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ffn))


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerLayer` (weights under ``layers.{i}``)."""

    def __init__(
        self,
        embed_dim: int,
        n_layers: int,
        n_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(embed_dim, n_heads, ffn_dim, dropout, attention_dropout)
            for _ in range(n_layers)
        )

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, first_only: bool = False
    ) -> torch.Tensor:
        """Encoder output ``(B, L, E)``; with ``first_only``, that of position 0, ``(B, 1, E)``.

        ``first_only`` is exact: the last layer computes keys and values of every position but
        the query, attention, feed-forward and norms of position 0 only (the ``<cls>`` readout
        needs nothing else), about a sixth of the work of a 6-layer encoder.
        """
        # a mask with no padding at all is dropped: unmasked attention takes the fastest kernel
        if padding_mask is not None and not bool(padding_mask.any()):
            padding_mask = None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, padding_mask, 1 if first_only and i == last else None)
        return x
