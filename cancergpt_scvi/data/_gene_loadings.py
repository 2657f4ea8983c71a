"""Gene loadings of the principal components of a data set: the starting gene embeddings."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import scanpy as sc
import torch
from scipy import sparse
from scipy.sparse.linalg import LinearOperator, svds


def _within_group_operator(
    x: sparse.csr_matrix, groups: np.ndarray
) -> tuple[LinearOperator, float]:
    """``x`` minus each row's group mean as an operator, and the share of variation left.

    The centred matrix is never formed. The share is that of ``x``'s sum of squares left after
    centring (0: nothing varies within any group).
    """
    codes, group = np.unique(groups, return_inverse=True)
    member = sparse.csr_matrix(
        (np.ones(len(group)), (np.arange(len(group)), group)), shape=(len(group), len(codes))
    )
    sizes = np.asarray(member.sum(axis=0)).ravel()
    # groups x genes, kept sparse: no denser than the data themselves
    means = sparse.csr_matrix(sparse.diags(1.0 / sizes) @ (member.T @ x), dtype=np.float64)
    x = x.astype(np.float64)
    total = float(x.multiply(x).sum())
    between = float((sizes * np.asarray(means.multiply(means).sum(axis=1)).ravel()).sum())
    within_share = (total - between) / total if total > 0 else 0.0

    def matvec(v):
        v = np.asarray(v).reshape(x.shape[1], -1)
        return x @ v - member @ (means @ v)

    def rmatvec(u):
        u = np.asarray(u).reshape(x.shape[0], -1)
        return x.T @ u - means.T @ (member.T @ u)

    operator = LinearOperator(
        x.shape, matvec=matvec, rmatvec=rmatvec, matmat=matvec, rmatmat=rmatvec, dtype=np.float64
    )
    return operator, within_share


def _warn_if_lone_cells(groups: np.ndarray) -> None:
    """Warn when most cells are alone in their group: centred on itself, such a cell is zero."""
    _, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    alone = int((sizes[inverse] == 1).sum())
    if alone > len(groups) // 2:
        warnings.warn(
            f"{alone} of {len(groups)} cells are the only cell of their group, and a cell "
            "centred on its own mean has no variation left, so the axes come from the few "
            "cells that share a group (or are random if none does). Groups are meant to "
            "be batches of many cells: pass coarser groups (e.g. the sample, not the cell "
            "barcode), or none.",
            UserWarning,
            stacklevel=3,
        )


def pca_gene_loadings(
    adata: ad.AnnData,
    n_components: int,
    layer: str | None = None,
    genes: np.ndarray | None = None,
    max_cells: int = 20_000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Loadings of every gene on the top principal components of log-normalised expression.

    The cells (at most ``max_cells``, drawn at random) are normalised to 10,000 counts and
    log1p-transformed (scanpy's ``normalize_total`` and ``log1p``); each cell is centred on
    the mean of its group (``groups``; default: one group, the ordinary PCA), so the axes are
    those of the variation *within* groups: what differs between batches as a whole (their
    depth, technology, copy-number profile) does not become an axis. Each column is weighted
    by its singular value relative to the first, and the whole table is scaled to unit standard
    deviation, the scale of a freshly initialised embedding table. Used as the starting gene
    embeddings of :class:`~cancergpt_scvi.model.CancerGPTModel`: a ``<cls>`` token that pools
    its genes' embeddings then starts as a projection of the cell onto those axes, each
    weighted by how much of the data it explains.

    Parameters
    ----------
    adata
        Cells with raw counts in ``X`` or ``layers[layer]``.
    n_components
        Columns wanted (the embedding width). When the data allow fewer components
        (``min(n_cells, n_genes) - 1``), the remaining columns are normal draws at the weight
        of the last component.
    layer
        Layer of the counts; ``None`` for ``X``.
    genes
        Column positions of the genes to use (default: all); only these are read.
    max_cells
        Cells drawn for the PCA.
    seed
        Seed of the cell draw, of the solver's start vector and of any filler columns.
    groups
        One label per cell of ``adata`` (e.g. its batch): each cell is centred on its group's
        mean. ``None``: every cell on the overall mean.

    Returns
    -------
    ``(len(genes), n_components)`` float32 loadings, in the order of ``genes``; genes that
    never vary get zeros.

    Warns
    -----
    UserWarning
        More than half of the cells are the only cell of their group (e.g. a cell barcode
        passed as the group): their centred expression is zero. Or nothing varies within
        any group: the loadings are then random normal draws.
    """
    if n_components < 1:
        raise ValueError(f"n_components must be positive, got {n_components}.")
    if groups is None:
        groups = np.zeros(adata.n_obs, dtype=int)
    groups = np.asarray(groups)
    if groups.shape != (adata.n_obs,):
        raise ValueError(
            f"groups must hold one label per cell ({adata.n_obs}), got shape {groups.shape}."
        )
    _warn_if_lone_cells(groups)
    rng = np.random.default_rng(seed)
    rows = np.arange(adata.n_obs)
    if adata.n_obs > max_cells:
        rows = np.sort(rng.choice(adata.n_obs, size=max_cells, replace=False))
    cols = np.arange(adata.n_vars) if genes is None else np.asarray(genes)
    # a view: only the chosen rows and columns are read (backed data included)
    view = adata[rows, cols]
    counts = sparse.csr_matrix(view.X if layer is None else view.layers[layer], dtype=np.float32)
    work = ad.AnnData(X=counts)
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    n_pcs = min(n_components, min(work.shape) - 1)
    loadings = np.zeros((len(cols), n_components), dtype=np.float64)
    weights = np.ones(n_components)
    operator, within_share = _within_group_operator(sparse.csr_matrix(work.X), groups[rows])
    if n_pcs >= 1 and within_share <= 1e-9:
        warnings.warn(
            "The expression does not vary within any group (every group a single cell, or "
            "identical cells), so there are no principal axes: the loadings are random normal "
            "draws, as a random start.",
            UserWarning,
            stacklevel=3,
        )
        n_pcs = 0
    if n_pcs >= 1:
        start = rng.standard_normal(min(operator.shape))
        _, values, axes = svds(operator, k=n_pcs, v0=start)
        order = np.argsort(values)[::-1]
        values, axes = values[order], axes[order].T
        # one sign per axis, as scikit-learn's svd_flip: its largest entry is positive
        signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(n_pcs)])
        loadings[:, :n_pcs] = axes * np.where(signs == 0, 1.0, signs)
        if values[0] > 0:
            weights[:n_pcs] = values / values[0]
            weights[n_pcs:] = weights[n_pcs - 1]
    if n_pcs < n_components:
        loadings[:, n_pcs:] = rng.standard_normal((len(cols), n_components - n_pcs))
        loadings[:, n_pcs:] /= np.sqrt(len(cols))  # unit-norm columns, as the axes
    loadings = loadings * weights
    sd = loadings.std()
    return (loadings / (sd if sd > 0 else 1.0)).astype(np.float32)


def init_gene_embeddings(
    table: torch.Tensor,
    adata: ad.AnnData,
    gene_ids: np.ndarray,
    pad_id: int,
    layer: str | None = None,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> None:
    """Set the token genes' rows of a gene embedding table to their PCA loadings, in place.

    Parameters
    ----------
    table
        ``(n_tokens, embed_dim)`` embedding weights, indexed by token id.
    adata
        The cells (see :func:`pca_gene_loadings`).
    gene_ids
        Token id of each column of ``adata``; ``pad_id`` for columns that are not tokens.
    pad_id
        Id of ``<pad>``.
    layer, groups, seed
        As in :func:`pca_gene_loadings`.
    """
    tokens = np.flatnonzero(gene_ids != pad_id)
    if len(tokens) == 0:
        return
    loadings = pca_gene_loadings(
        adata, table.shape[1], layer=layer, genes=tokens, seed=seed, groups=groups
    )
    with torch.no_grad():
        table[torch.as_tensor(gene_ids[tokens])] = torch.as_tensor(loadings, dtype=table.dtype)
