"""Reading another AnnData in a trained model's input gene space: genes matched by symbol."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import anndata as ad
import numpy as np
import torch
from scipy import sparse

from cancergpt_scvi.data import (
    check_expression,
    check_expression_values,
    check_unique_genes,
    gene_symbols,
)

logger = logging.getLogger(__name__)


class GeneAlignment(NamedTuple):
    """Where the genes of an AnnData sit among a model's input genes."""

    #: Columns of the AnnData that are input genes of the model.
    src: np.ndarray
    #: Position of each of those columns among the model's input genes.
    dst: np.ndarray
    #: Token id of every input gene, the pad id for those the AnnData lacks (absent tokens).
    gene_ids: torch.Tensor


def genes_in_order(
    adata: ad.AnnData, gene_symbols_key: str | None, input_genes: Sequence[str]
) -> bool:
    """Whether ``adata``'s columns are ``input_genes``, in their order (by symbol)."""
    symbols = gene_symbols(adata, gene_symbols_key)
    return len(symbols) == len(input_genes) and bool(
        np.array_equal(symbols.to_numpy(), np.asarray(input_genes, dtype=object))
    )


def align_genes(
    adata: ad.AnnData,
    input_genes: Sequence[str],
    gene_ids: torch.Tensor,
    pad_id: int,
    layer: str | None,
    gene_symbols_key: str | None,
) -> GeneAlignment:
    """Match an AnnData's genes to a model's input genes by symbol.

    Parameters
    ----------
    adata
        The cells, with any genes in any order; needs no setup.
    input_genes
        The model's input genes (symbols of its registered columns).
    gene_ids
        Token id of each input gene (the module's ``gene_ids``; ``pad_id``: not a token).
    pad_id
        Id of ``<pad>``.
    layer, gene_symbols_key
        The model's registered layer and ``var`` column of symbols.

    Raises
    ------
    ValueError
        Negative or non-finite expression, symbols repeated among the model's genes, or no
        token gene of the model in ``adata``.
    """
    check_expression(adata, layer)
    symbols = gene_symbols(adata, gene_symbols_key)
    position = {g: i for i, g in enumerate(input_genes)}
    # repeats among the model's genes would be summed into one token: refuse them
    check_unique_genes(symbols[symbols.isin(input_genes)], gene_symbols_key)
    src = np.array([j for j, g in enumerate(symbols) if g in position], dtype=np.int64)
    dst = np.array([position[symbols[j]] for j in src], dtype=np.int64)
    usable = gene_ids.cpu().numpy()[dst] != pad_id if len(dst) else []
    n_found = int(np.sum(usable))
    if n_found == 0:
        raise ValueError(
            f"None of the {adata.n_vars} genes of this AnnData are among the model's "
            f"{len(input_genes)} input genes (e.g. {list(input_genes[:3])}; this "
            f"AnnData has {list(symbols[:3])}). Match gene identifiers (symbols), or set "
            "gene_symbols_key."
        )
    n_tokens = int((gene_ids != pad_id).sum())
    if n_found < n_tokens:
        logger.info(
            "%d of the model's %d token genes are in this AnnData; the others are left out "
            "of the token sequences.",
            n_found,
            n_tokens,
        )
    present = np.zeros(len(input_genes), dtype=bool)
    present[dst] = True
    aligned_ids = torch.where(
        torch.as_tensor(present, device=gene_ids.device),
        gene_ids,
        torch.full_like(gene_ids, pad_id),
    )
    return GeneAlignment(src, dst, aligned_ids)


def aligned_batches(
    adata: ad.AnnData,
    alignment: GeneAlignment,
    layer: str | None,
    indices: np.ndarray | None,
    chunk_size: int,
    batch_size: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches ``(x, token ids)`` of an AnnData, in the model's input gene space.

    Model genes missing from ``adata`` are absent tokens (``alignment.gene_ids``), never zeros
    posing as measurements. Rows are read ``chunk_size`` at a time (slices where they are
    contiguous, so backed data is read block by block) and come out in the order of
    ``indices`` (default: every cell).
    """
    src, dst, gene_ids = alignment
    select = sparse.csr_matrix(
        (np.ones(len(src), dtype=np.float32), (src, dst)),
        shape=(adata.n_vars, len(gene_ids)),
    )
    rows = np.arange(adata.n_obs) if indices is None else np.asarray(indices, dtype=np.int64)
    for start in range(0, len(rows), chunk_size):
        part = rows[start : start + chunk_size]
        if np.array_equal(part, np.arange(part[0], part[0] + len(part))):
            view, order = adata[int(part[0]) : int(part[-1]) + 1], None
        else:  # anndata reads rows in sorted order: read each once, then reorder
            unique, order = np.unique(part, return_inverse=True)
            view = adata[unique]
        matrix = view.X if layer is None else view.layers[layer]
        block = sparse.csr_matrix(matrix)
        check_expression_values(block.data)
        aligned = (block @ select).astype(np.float32)
        if order is not None:
            aligned = aligned[order]
        for b in range(0, len(part), batch_size):
            yield torch.from_numpy(aligned[b : b + batch_size].toarray()), gene_ids
