"""A grid of UMAPs: one column per embedding, one row per ``obs`` column to colour by."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_umaps(
    adata: ad.AnnData,
    embeddings: Mapping[str, str] | Sequence[str] | str,
    color: Sequence[str] | str,
    n_neighbors: int = 15,
    seed: int = 0,
    path: str | Path | None = None,
) -> Figure:
    """Draw the UMAP of each embedding, coloured by each of the given ``obs`` columns.

    For every embedding, builds scanpy's neighbour graph on it (:func:`scanpy.pp.neighbors`),
    its UMAP (:func:`scanpy.tl.umap`) and draws it with :func:`scanpy.pl.umap` in a grid:
    one column per embedding, one row per column of ``color``, the legend of each row to the
    right of its last panel. Cells are drawn in a random order, so that no category hides
    another. ``adata`` is not modified.

    Parameters
    ----------
    adata
        Cells with the embeddings in ``obsm``.
    embeddings
        ``{title: obsm key}``, or obsm keys (used as titles).
    color
        Categorical ``obs`` column(s) to colour by, one row each.
    n_neighbors
        Neighbours of the kNN graph each UMAP is built on.
    seed
        Seed of the neighbour search, of UMAP and of the drawing order.
    path
        Where to save the figure (PNG); ``None`` only returns it.

    Returns
    -------
    The figure.

    Examples
    --------
    >>> fig = plot_umaps(adata, {"CancerGPT": "X_cancergpt", "PCA": "X_pca"}, ["patient"])
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    if isinstance(embeddings, str):
        embeddings = [embeddings]
    if not isinstance(embeddings, Mapping):
        embeddings = {key: key for key in embeddings}
    colour_by = [color] if isinstance(color, str) else list(color)
    if not embeddings or not colour_by:
        raise ValueError("Give at least one embedding and one obs column to colour by.")
    missing = [key for key in embeddings.values() if key not in adata.obsm]
    if missing:
        raise KeyError(f"obsm keys {missing} not found in adata.obsm ({list(adata.obsm)}).")
    missing = [c for c in colour_by if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"obs has no column(s) {missing}.")

    order = np.random.default_rng(seed).permutation(adata.n_obs)
    obs = pd.DataFrame(
        {c: adata.obs[c].astype(str).astype("category").to_numpy()[order] for c in colour_by},
        index=adata.obs_names[order].astype(str),
    )
    # one AnnData for every panel, so that a category has the same colour in all of them
    cells = ad.AnnData(obs=obs)
    n_rows, n_cols = len(colour_by), len(embeddings)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.2 * n_cols + 1.8, 3.2 * n_rows), squeeze=False
    )
    for col, (title, key) in enumerate(embeddings.items()):
        cells.obsm["rep"] = np.asarray(adata.obsm[key])[order]
        sc.pp.neighbors(cells, use_rep="rep", n_neighbors=n_neighbors, random_state=seed)
        sc.tl.umap(cells, random_state=seed)
        for row, column in enumerate(colour_by):
            ax = axes[row, col]
            sc.pl.umap(
                cells,
                color=column,
                ax=ax,
                show=False,
                title=title if row == 0 else "",
                legend_loc="right margin" if col == n_cols - 1 else "none",
                legend_fontsize=7,
            )
            ax.set_xlabel("")
            ax.set_ylabel(column if col == 0 else "")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
