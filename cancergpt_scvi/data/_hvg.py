"""Cell Ranger highly variable genes, computed from streamed row chunks.

The published CancerGPT procedure selects its genes with
``scanpy.pp.highly_variable_genes(flavor="cell_ranger", n_top_genes=..., batch_key=...)``.
This is the same computation, step for step and with the same pandas operations, but the
per-gene moments are accumulated over row chunks, so an AnnData opened with ``backed="r"``
(or a large sparse matrix) never has to be held, copied or subset in memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

#: Rows read at a time.
DEFAULT_CHUNK_SIZE = 10_000
# statsmodels.robust.mad's consistency constant (scipy.stats.norm.ppf(0.75)), as scanpy uses it
_MAD_SCALE = 0.6744897501960817


def _mad(values: pd.Series) -> float:
    """``statsmodels.robust.mad``: the median of ``|a - median(a)| / c`` (same operation order)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return np.nan
    return float(np.median(np.abs(a - np.median(a)) / _MAD_SCALE))


def _batch_moments(
    matrix, columns: np.ndarray, codes: np.ndarray, n_batches: int, chunk_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per batch: cell count, and per gene sum, sum of squares and number of cells > 0.

    Squares are taken in the data's own dtype and summed in float64, as scanpy does, so count
    data gives bit-identical moments.
    """
    n_obs = matrix.shape[0]
    n_genes = len(columns)
    sums = np.zeros((n_batches, n_genes))
    squares = np.zeros((n_batches, n_genes))
    expressed = np.zeros((n_batches, n_genes), dtype=np.int64)
    n_cells = np.bincount(codes, minlength=n_batches)
    for start in range(0, n_obs, chunk_size):
        stop = min(start + chunk_size, n_obs)
        block = matrix[start:stop]  # a slice: backed data is read block by block
        if sparse.issparse(block):
            block = sparse.csr_matrix(block)[:, columns]
        else:
            block = np.asarray(block)[:, columns]
        member = sparse.csr_matrix(
            (np.ones(stop - start), (codes[start:stop], np.arange(stop - start))),
            shape=(n_batches, stop - start),
        )
        if sparse.issparse(block):
            sq = block.multiply(block).astype(np.float64)
            pos = (block > 0).astype(np.float64)
            sums += (member @ block.astype(np.float64)).toarray()
            squares += (member @ sq).toarray()
            expressed += np.rint((member @ pos).toarray()).astype(np.int64)
        else:
            sums += member @ block.astype(np.float64)
            squares += member @ (block * block).astype(np.float64)
            expressed += np.rint(member @ (block > 0).astype(np.float64)).astype(np.int64)
    return n_cells, sums, squares, expressed


def _single_batch(
    n: int, sums: np.ndarray, squares: np.ndarray, index: pd.Index, n_top_genes: int
) -> pd.DataFrame:
    """scanpy's ``_highly_variable_genes_single_batch`` for ``flavor="cell_ranger"``."""
    mean = sums / n
    var = squares / n - mean**2
    if n != 1:  # unbiased variance, the R convention scanpy enforces
        var *= n / (n - 1)
    mean[mean == 0] = 1e-12
    dispersion = var / mean
    df = pd.DataFrame({"means": mean, "dispersions": dispersion})
    edges = np.r_[-np.inf, np.percentile(mean, np.arange(10, 105, 5)), np.inf]
    # scanpy lets pandas raise on repeated percentile edges (many genes with the same mean);
    # dropping the repeats bins those genes together, which is what the repeats mean anyway
    df["mean_bin"] = pd.cut(df["means"], bins=edges, duplicates="drop")
    grouped = df.groupby("mean_bin", observed=True)["dispersions"]
    stats = grouped.agg(avg="median", dev=_mad)
    stats = stats.loc[df["mean_bin"]].set_index(df.index)
    df["dispersions_norm"] = (df["dispersions"] - stats["avg"]) / stats["dev"]
    norm = df["dispersions_norm"].to_numpy()
    n_top = min(n_top_genes, len(df))
    finite = norm[~np.isnan(norm)]
    if n_top > finite.size:
        warnings.warn(
            "n_top_genes > number of normalized dispersions, returning all genes with "
            "normalized dispersions.",
            UserWarning,
            stacklevel=4,
        )
        n_top = finite.size
    cutoff = np.sort(finite)[::-1][n_top - 1] if n_top else np.inf
    df["highly_variable"] = np.nan_to_num(norm, nan=-np.inf) >= cutoff
    df.index = index
    return df


def cell_ranger_hvg(
    adata: ad.AnnData,
    n_top_genes: int,
    batch_key: str | None = None,
    layer: str | None = None,
    genes: Sequence[int] | np.ndarray | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> pd.DataFrame:
    """Highly variable genes by scanpy's ``flavor="cell_ranger"``, streamed over row chunks.

    Gives the selection of ``scanpy.pp.highly_variable_genes(adata[:, genes],
    flavor="cell_ranger", n_top_genes=n_top_genes, batch_key=batch_key, inplace=False)``
    without copying or densifying the data, and works on backed AnnData. ``adata`` is not
    modified. Ours rather than scanpy's because scanpy's per-batch ``cell_ranger`` selection
    raises ("Bin edges must be unique") on batches of a few dozen cells; this one does not.

    Parameters
    ----------
    adata
        Cells x genes; the values are used as given (no normalisation or log).
    n_top_genes
        Genes to select (all of them when there are fewer).
    batch_key
        ``obs`` column: genes are ranked within each batch and then by the number of batches
        in which they are highly variable, ties broken by the mean normalised dispersion.
    layer
        Layer to use instead of ``X``.
    genes
        Integer positions of the columns to consider (default: all).
    chunk_size
        Rows read at a time.

    Returns
    -------
    DataFrame indexed by the chosen columns' ``var_names`` with ``means``, ``dispersions``,
    ``dispersions_norm``, ``highly_variable`` (and ``highly_variable_nbatches`` with a
    ``batch_key``).
    """
    if n_top_genes < 1:
        raise ValueError(f"n_top_genes must be positive, got {n_top_genes}.")
    columns = np.arange(adata.n_vars) if genes is None else np.asarray(genes, dtype=np.int64)
    if columns.size == 0:
        raise ValueError("No genes to select highly variable genes from.")
    matrix = adata.X if layer is None else adata.layers[layer]
    names = adata.var_names[columns]
    # positional labels when names repeat, where pandas' label alignment would go wrong
    index = names if names.is_unique else pd.RangeIndex(len(names))
    if batch_key is None:
        codes = np.zeros(adata.n_obs, dtype=np.int64)
        n_cells, sums, squares, _ = _batch_moments(matrix, columns, codes, 1, chunk_size)
        df = _single_batch(int(n_cells[0]), sums[0], squares[0], index, n_top_genes)
        return df.drop(columns="mean_bin").set_index(names)

    if batch_key not in adata.obs.columns:
        raise KeyError(f"batch_key={batch_key!r} is not a column of adata.obs.")
    batch = adata.obs[batch_key]
    if not isinstance(batch.dtype, pd.CategoricalDtype):
        batch = batch.astype(str).astype("category")  # what scanpy's sanitize_anndata does
    codes = batch.cat.codes.to_numpy().astype(np.int64)
    if (codes < 0).any():
        raise ValueError(f"adata.obs[{batch_key!r}] has missing values.")
    n_batches = len(batch.cat.categories)
    n_cells, sums, squares, expressed = _batch_moments(
        matrix, columns, codes, n_batches, chunk_size
    )
    frames = []
    for b in range(n_batches):
        if n_cells[b] == 0:
            continue  # an unused category has no cells to rank genes in
        keep = expressed[b] > 0  # scanpy leaves out the genes a batch does not express
        part = _single_batch(
            int(n_cells[b]), sums[b, keep], squares[b, keep], index[keep], n_top_genes
        )
        missing = pd.DataFrame(
            0.0, index=index[~keep], columns=["means", "dispersions", "dispersions_norm"]
        )
        missing["highly_variable"] = False
        frames.append(pd.concat([part.drop(columns="mean_bin"), missing]).loc[index])
    df = pd.concat(frames, axis=0)
    df["highly_variable"] = df["highly_variable"].astype(int)
    df = df.groupby(df.index, observed=True).agg(
        {
            "means": "mean",
            "dispersions": "mean",
            "dispersions_norm": "mean",
            "highly_variable": "sum",
        }
    )
    df["highly_variable_nbatches"] = df["highly_variable"]
    # most batches first, ties broken by the normalised dispersion across batches
    df = df.sort_values(
        ["highly_variable_nbatches", "dispersions_norm"], ascending=False, na_position="last"
    )
    df["highly_variable"] = np.arange(df.shape[0]) < n_top_genes
    return df.loc[index].set_index(names)
