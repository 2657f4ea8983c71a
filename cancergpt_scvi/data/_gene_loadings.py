"""Gene loadings of the principal components of a data set: the starting gene embeddings."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc
from scipy import sparse


def pca_gene_loadings(
    adata: ad.AnnData,
    n_components: int,
    layer: str | None = None,
    genes: np.ndarray | None = None,
    max_cells: int = 20_000,
    seed: int = 0,
) -> np.ndarray:
    """Loadings of every gene on the top principal components of log-normalised expression.

    The cells (at most ``max_cells``, drawn at random) are normalised to 10,000 counts,
    log1p-transformed and centred (scanpy's ``normalize_total``, ``log1p`` and ``pca``). Each
    column of the result is scaled to unit standard deviation over genes, the scale of a
    freshly initialised embedding table. Used as the starting gene embeddings of
    :class:`~cancergpt_scvi.model.CancerGPTModel`: a ``<cls>`` token that pools its genes'
    embeddings then starts as a projection of the cell onto the data's principal components.

    Parameters
    ----------
    adata
        Cells with raw counts in ``X`` or ``layers[layer]``.
    n_components
        Columns wanted (the embedding width). When the data allow fewer components
        (``min(n_cells, n_genes) - 1``), the remaining columns are standard normal draws.
    layer
        Layer of the counts; ``None`` for ``X``.
    genes
        Column positions of the genes to use (default: all); only these are read.
    max_cells
        Cells drawn for the PCA.
    seed
        Seed of the cell draw, of the randomised solver and of any filler columns.

    Returns
    -------
    ``(len(genes), n_components)`` float32 loadings, in the order of ``genes``; genes that
    never vary get zeros before the columns are scaled.
    """
    if n_components < 1:
        raise ValueError(f"n_components must be positive, got {n_components}.")
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
    if n_pcs >= 1:
        sc.pp.pca(work, n_comps=n_pcs, zero_center=True, random_state=seed)
        loadings[:, :n_pcs] = np.asarray(work.varm["PCs"])
    if n_pcs < n_components:
        loadings[:, n_pcs:] = rng.standard_normal((len(cols), n_components - n_pcs))
    sd = loadings.std(axis=0, keepdims=True)
    loadings = loadings / np.where(sd > 0, sd, 1.0)
    return loadings.astype(np.float32)
