"""The release's choice of token genes: the highly variable genes of the vocabulary."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np

from cancergpt_scvi.data import cell_ranger_hvg

logger = logging.getLogger(__name__)


def release_token_genes(
    adata: ad.AnnData,
    in_vocab: np.ndarray,
    n_tokens: int,
    batch_key: str | None = None,
    layer: str | None = None,
) -> np.ndarray:
    """Columns of ``adata`` that become tokens under the authors' zero-shot procedure.

    Among the columns ``in_vocab`` (the genes in the release vocabulary), the ``n_tokens``
    highly variable genes by scanpy's ``cell_ranger`` flavour
    (:func:`~cancergpt_scvi.data.cell_ranger_hvg`, within each batch of ``batch_key`` when
    given), in ``var`` order. Where genes tie at the dispersion cut-off, the authors' code
    draws ``n_tokens`` of them anew for every cell; here the ``n_tokens`` with the highest
    normalised dispersion are kept, so that runs agree.

    Parameters
    ----------
    adata
        The cells.
    in_vocab
        Column positions of the genes found in the vocabulary.
    n_tokens
        Gene tokens per cell (the release's ``max_seq_len - 1``).
    batch_key
        ``obs`` column of batches for the highly-variable-gene selection.
    layer
        Layer with the expression instead of ``X``.

    Returns
    -------
    Sorted column positions of the token genes.

    Raises
    ------
    ValueError
        Fewer than 2 cells, or no gene of the vocabulary varies across the cells.
    """
    hvg = cell_ranger_hvg(adata, n_tokens, batch_key=batch_key, layer=layer, genes=in_vocab)
    highly_variable = hvg["highly_variable"].to_numpy()
    chosen = in_vocab[highly_variable]
    # dispersion (variance / mean) of a constant gene is 0 up to rounding
    varying = hvg["dispersions"].to_numpy()[highly_variable] > 1e-6
    if adata.n_obs < 2 or not varying.any():
        raise ValueError(
            f"No gene of the vocabulary varies across the {adata.n_obs} cell(s) of adata, so "
            "no highly variable genes can be chosen as tokens (the release's gene choice). "
            "load_pretrained needs cells whose expression differs: pass the whole dataset "
            "(at least 2 cells), then embed any subset with get_latent_representation."
        )
    if len(chosen) > n_tokens:
        # ties at the dispersion cut-off: one fixed set (the most dispersed) keeps runs equal
        norm = hvg["dispersions_norm"].to_numpy()[highly_variable]
        top = np.sort(np.argsort(-np.nan_to_num(norm, nan=-np.inf), kind="stable")[:n_tokens])
        logger.warning(
            "%d genes tie for the %d highly variable genes; keeping the %d with the highest "
            "normalised dispersion (the authors' code samples them per cell at random).",
            len(chosen),
            n_tokens,
            n_tokens,
        )
        chosen = chosen[top]
    logger.info(
        "%d of %d genes are in the vocabulary; %d highly variable genes become tokens.",
        len(in_vocab),
        adata.n_vars,
        len(chosen),
    )
    return chosen
