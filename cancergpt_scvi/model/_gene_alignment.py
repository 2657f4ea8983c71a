"""Reading another AnnData in a trained model's input gene space: genes matched by symbol."""

from __future__ import annotations

import logging
import warnings
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

#: Below this share of the genes a model reads, embedding warns: the cells are then told by
#: fewer genes than the model was trained on, and their neighbours change with the share.
GENE_SHARE_WARNING = 0.9
#: Below this share, embedding is refused: so few of the model's genes describe too little of
#: a cell to place it among others (a gene naming mismatch is the usual cause).
MIN_GENE_SHARE = 0.1


class GeneAlignment(NamedTuple):
    """Where the genes of an AnnData sit among a model's input genes."""

    #: Columns of the AnnData that are input genes of the model.
    src: np.ndarray
    #: Position of each of those columns among the model's input genes.
    dst: np.ndarray
    #: Token id of every input gene, the pad id for those the AnnData lacks (absent tokens).
    gene_ids: torch.Tensor
    #: Token genes of the model that the AnnData holds.
    n_found: int
    #: Token genes of the model (input genes that can become tokens).
    n_tokens: int


def percent(n: int, total: int) -> str:
    """``n / total`` as a percentage rounded down to 0.1, so that only all of it reads 100%."""
    tenths = n * 1000 // total
    if tenths == 0 and n > 0:
        return "<0.1%"
    return f"{tenths // 10}%" if tenths % 10 == 0 else f"{tenths / 10:.1f}%"


def report_gene_share(
    n_found: int, n_model: int, found: str, advice: str, stacklevel: int = 2
) -> None:
    """Warn or refuse when data hold too small a share of the genes a model reads.

    Below :data:`MIN_GENE_SHARE` of ``n_model`` a ValueError; below
    :data:`GENE_SHARE_WARNING` a UserWarning; otherwise, when genes are missing, an INFO log.
    Messages start with ``found`` followed by the share, e.g. ``"adata holds 100 of the
    model's 200 token genes"`` gives ``"adata holds 100 of the model's 200 token genes (50%)"``.

    Parameters
    ----------
    n_found, n_model
        Genes found in the data, and genes the model reads.
    found
        What was found, as a sentence opening (see above).
    advice
        What to do, as one or more sentences.
    stacklevel
        Of the warning, counted from the caller as by :func:`warnings.warn`: 2 points at the
        line that called the caller.

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_GENE_SHARE` of ``n_model`` genes found.
    """
    if n_found >= n_model:
        return
    share = n_found / n_model
    head = f"{found} ({percent(n_found, n_model)})"
    if share < MIN_GENE_SHARE:
        raise ValueError(
            f"{head}: below the floor of {MIN_GENE_SHARE:.0%}, too few of the genes the model "
            f"reads to embed the cells. {advice}"
        )
    if share < GENE_SHARE_WARNING:
        warnings.warn(
            f"{head}: the missing genes are left out of the token sequences, so the "
            "embeddings rest on fewer genes than the model reads and are less reliable "
            f"(nearest neighbours change). {advice}",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    else:
        logger.info("%s; the others are left out of the token sequences.", head)


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
        Negative or non-finite expression, symbols repeated among the model's token genes, or no
        token gene of the model in ``adata``. How many token genes were found (a share below
        :data:`MIN_GENE_SHARE` included) is for the caller to report,
        with :func:`report_gene_share`.
    """
    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"The model reads the layer {layer!r} (the one it was set up with), which this "
            f"AnnData lacks (layers: {list(adata.layers.keys())}); store the expression there, "
            f"e.g. adata.layers[{layer!r}] = adata.X."
        )
    check_expression(adata, layer)
    symbols = gene_symbols(adata, gene_symbols_key)
    position = {g: i for i, g in enumerate(input_genes)}
    # repeats among the model's token genes would be summed into one token: refuse them; a
    # repeat of an input gene without a token (outside the vocabulary) is never read
    ids = gene_ids.cpu().numpy()
    tokens = [g for g, token in zip(input_genes, ids, strict=True) if token != pad_id]
    check_unique_genes(symbols[symbols.isin(tokens)], gene_symbols_key)
    src = np.array([j for j, g in enumerate(symbols) if g in position], dtype=np.int64)
    dst = np.array([position[symbols[j]] for j in src], dtype=np.int64)
    usable = ids[dst] != pad_id if len(dst) else []
    n_found = int(np.sum(usable))
    if n_found == 0:
        raise ValueError(
            f"None of the {adata.n_vars} genes of this AnnData are among the model's "
            f"{len(input_genes)} input genes (e.g. {list(input_genes[:3])}; this "
            f"AnnData has {list(symbols[:3])}). Match gene identifiers (symbols), or set "
            "gene_symbols_key."
        )
    n_tokens = int((gene_ids != pad_id).sum())
    present = np.zeros(len(input_genes), dtype=bool)
    present[dst] = True
    aligned_ids = torch.where(
        torch.as_tensor(present, device=gene_ids.device),
        gene_ids,
        torch.full_like(gene_ids, pad_id),
    )
    return GeneAlignment(src, dst, aligned_ids, n_found, n_tokens)


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
    src, dst, gene_ids = alignment.src, alignment.dst, alignment.gene_ids
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
