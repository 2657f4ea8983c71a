"""scGPT's zero-shot token rule: each cell's non-zero genes, a random subset when too many."""

from __future__ import annotations

import torch

from ._binning import BinningMode, bin_expression
from ._tokenize import TokenBatch, tokenize


def sampled_tokens(
    x: torch.Tensor,
    gene_ids: torch.Tensor,
    cls_id: int,
    pad_id: int,
    max_seq_len: int,
    n_bins: int = 51,
    binning: BinningMode = "release",
    generator: torch.Generator | None = None,
) -> TokenBatch:
    """``<cls>`` + the cell's non-zero genes, as scGPT's ``get_batch_cell_embeddings`` builds them.

    Genes absent from the vocabulary (``pad_id``) are dropped first; each cell's non-zero
    values among the others are binned by the cell's own quantiles (all of them, before any
    subset is drawn); the non-zero genes become tokens in input order, and a cell with more
    than ``max_seq_len - 1`` of them keeps a uniform random subset of that many. scGPT
    shuffles the subset's order; without positional encoding the order does not change the
    ``<cls>`` output.

    Parameters
    ----------
    x
        ``(B, G)`` non-negative expression of the model's input genes.
    gene_ids
        ``(G,)`` token id of each input gene, ``pad_id`` for genes outside the vocabulary.
    cls_id, pad_id
        Ids of ``<cls>`` and ``<pad>``.
    max_seq_len
        Longest sequence, ``<cls>`` included.
    n_bins
        Number of bins, including the zero bin.
    binning
        Tie rule of :func:`~cancergpt_scvi.data.bin_expression` (scGPT's: ``"release"``).
    generator
        Random generator of the tie spreading and of the subset (default: torch's global one).
    """
    keep = torch.nonzero(gene_ids != pad_id).squeeze(-1)
    if keep.numel() < gene_ids.numel():  # genes outside the vocabulary never enter the quantiles
        x, gene_ids = x[:, keep], gene_ids[keep]
    bins = bin_expression(x, n_bins, mode=binning, generator=generator)
    return tokenize(
        bins,
        gene_ids,
        cls_id,
        pad_id,
        max_seq_len,
        selection="expressed",
        random=True,
        generator=generator,
    )
