"""Turn binned expression into token sequences: ``<cls>`` followed by gene tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

#: ``"sampled"`` is scGPT's zero-shot rule, built by
#: :func:`~cancergpt_scvi.data.sampled_tokens` rather than :func:`tokenize`.
GeneSelection = Literal["fixed", "expressed", "sampled"]

#: Value given to the ``<cls>`` position (the release's pad value).
CLS_VALUE = -2.0


@dataclass
class TokenBatch:
    """A minibatch of token sequences.

    Attributes
    ----------
    gene_ids
        ``(B, L)`` token ids, ``<cls>`` first, ``<pad>`` where there is no gene.
    values
        ``(B, L)`` binned expression (``CLS_VALUE`` at ``<cls>``, 0 at padding).
    padding_mask
        ``(B, L)`` bool, True at padding (ignored by attention and losses).
    """

    gene_ids: torch.Tensor
    values: torch.Tensor
    padding_mask: torch.Tensor

    @property
    def gene_positions(self) -> torch.Tensor:
        """Bool mask of real gene tokens (neither ``<cls>`` nor padding)."""
        mask = ~self.padding_mask
        mask[:, 0] = False
        return mask


def tokenize(
    bins: torch.Tensor,
    gene_ids: torch.Tensor,
    cls_id: int,
    pad_id: int,
    max_seq_len: int,
    selection: GeneSelection = "expressed",
    random: bool = False,
    generator: torch.Generator | None = None,
) -> TokenBatch:
    """Build ``<cls>`` + gene token sequences from binned expression.

    Parameters
    ----------
    bins
        ``(B, G)`` binned expression of the model's input genes.
    gene_ids
        ``(G,)`` token id of each input gene; ``pad_id`` marks a gene that is absent (it never
        becomes a token).
    cls_id, pad_id
        Ids of ``<cls>`` and ``<pad>``.
    max_seq_len
        Longest sequence, ``<cls>`` included.
    selection
        ``"fixed"``: every present input gene is a token, in input order (the release's
        zero-shot procedure; needs at most ``max_seq_len - 1`` genes). ``"expressed"``: each cell
        keeps its expressed genes; when there are more than ``max_seq_len - 1``, a random subset
        (``random=True``, pretraining) or the most expressed ones (deterministic).
    random
        Sample expressed genes at random rather than by expression.
    generator
        Random generator for ``random=True``.
    """
    n_cells, n_genes = bins.shape
    device = bins.device
    present = gene_ids != pad_id
    if selection == "fixed":
        keep = torch.nonzero(present).squeeze(-1)
        if keep.numel() > max_seq_len - 1:
            raise ValueError(
                f"{keep.numel()} genes for a fixed gene set but max_seq_len={max_seq_len} allows "
                f"{max_seq_len - 1}; select highly variable genes first."
            )
        tok_genes = gene_ids[keep].expand(n_cells, -1)
        tok_values = bins[:, keep]
        tok_pad = torch.zeros_like(tok_values, dtype=torch.bool)
    elif selection == "expressed":
        candidate = (bins > 0) & present
        n_keep = int(candidate.sum(dim=1).max().item()) if n_cells else 0
        n_keep = min(n_keep, max_seq_len - 1)
        if random:
            score = torch.rand(bins.shape, generator=generator, device=device)
        else:
            # highest bins first; ties go to the lower gene index so the choice is deterministic
            order = torch.arange(n_genes, 0, -1, device=device, dtype=torch.float64)
            score = bins.to(torch.float64) * (n_genes + 1) + order
        score = torch.where(candidate, score.to(torch.float64), -torch.inf)
        idx = torch.topk(score, n_keep, dim=1).indices
        # genes in input order, padding last
        order_key = idx + n_genes * (~candidate.gather(1, idx)).long()
        idx = idx.gather(1, order_key.argsort(dim=1))
        valid = candidate.gather(1, idx)
        tok_genes = torch.where(valid, gene_ids[idx], pad_id)
        tok_values = torch.where(valid, bins.gather(1, idx), torch.zeros((), device=device))
        tok_pad = ~valid
    else:
        raise ValueError(f"selection must be 'fixed' or 'expressed', got {selection!r}.")
    cls_col = torch.full((n_cells, 1), cls_id, dtype=tok_genes.dtype, device=device)
    return TokenBatch(
        gene_ids=torch.cat([cls_col, tok_genes], dim=1),
        values=torch.cat(
            [torch.full((n_cells, 1), CLS_VALUE, dtype=bins.dtype, device=device), tok_values],
            dim=1,
        ),
        padding_mask=torch.cat(
            [torch.zeros((n_cells, 1), dtype=torch.bool, device=device), tok_pad], dim=1
        ),
    )
