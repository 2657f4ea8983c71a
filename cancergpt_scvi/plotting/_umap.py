"""UMAPs of an embedding, one PNG per obs column."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import scanpy as sc


def plot_umaps(
    adata: ad.AnnData,
    use_rep: str,
    color: Sequence[str],
    out_dir: str | Path,
    prefix: str = "umap",
    n_neighbors: int = 15,
) -> list[Path]:
    """Compute neighbours and a UMAP of an embedding and save one PNG per obs column.

    The files are named ``{prefix}_{column}.png``; ``adata`` gets ``obsp`` neighbour graphs
    and ``obsm["X_umap"]`` (scanpy's usual keys).

    Returns
    -------
    The PNG paths, one per column of ``color``.
    """
    missing = [c for c in color if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"obs has no column(s) {missing}.")
    sc.pp.neighbors(adata, use_rep=use_rep, n_neighbors=n_neighbors)
    sc.tl.umap(adata, random_state=0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for column in color:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        sc.pl.umap(adata, color=column, ax=ax, show=False, title=f"{use_rep}: {column}")
        path = out_dir / f"{prefix}_{column}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
