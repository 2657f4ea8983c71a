"""Batch-integration benchmark of embeddings against PCA, scVI and Harmony with scib-metrics."""

from __future__ import annotations

import logging
import os
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from cancergpt_scvi._extras import require
from cancergpt_scvi.plotting import plot_umaps

if TYPE_CHECKING:
    from plottable import Table
    from scib_metrics.nearest_neighbors import NeighborsResults

logger = logging.getLogger(__name__)

#: Baselines :func:`benchmark_integration` can compute itself, with the method name they get.
INTEGRATION_BASELINES: dict[str, str] = {"pca": "PCA", "scvi": "scVI", "harmony": "Harmony"}

#: obsm keys baselines are written to when ``inplace=True``.
BASELINE_OBSM_KEYS: dict[str, str] = {
    "pca": "X_pca_hvg",
    "scvi": "X_scvi",
    "harmony": "X_harmony",
}

# scib-metrics' Benchmarker uses 15, 50 and 90 nearest neighbours.
_MAX_NEIGHBORS = 90

# Largest per-dimension standard deviation, relative to the largest |value|, below which an
# embedding counts as constant: float32 distances cannot resolve such differences.
_NEAR_ZERO_SPREAD = 1e-6


def benchmark_integration(
    adata: ad.AnnData,
    batch_key: str,
    label_key: str,
    embeddings: Mapping[str, str] | Sequence[str] | None = None,
    baselines: Sequence[str] = ("pca", "scvi", "harmony"),
    layer: str | None = None,
    n_top_genes: int = 2000,
    n_comps: int = 50,
    clustering: Literal["kmeans", "leiden"] = "kmeans",
    batch_silhouette: Literal["silhouette", "bras"] = "silhouette",
    scvi_max_epochs: int | None = None,
    scvi_kwargs: Mapping[str, object] | None = None,
    output_dir: str | Path | None = None,
    umap: bool = True,
    inplace: bool = False,
    seed: int = 0,
    progress_bar: bool = True,
) -> pd.DataFrame:
    """Score embeddings on batch integration with scib-metrics, next to the usual baselines.

    Runs :class:`scib_metrics.benchmark.Benchmarker` on every embedding in ``embeddings`` and
    on the baselines computed here: PCA of log-normalised highly variable genes (scanpy),
    scVI on the counts of those genes with ``batch_key`` as batch (scvi-tools) and Harmony on
    that PCA (harmonypy). Bio conservation: silhouette of labels, cLISI, NMI and ARI of
    k-means or Leiden clusters, isolated labels. Batch correction: silhouette of batch,
    iLISI, kBET, graph connectivity, PCR comparison (against the unintegrated PCA). The
    nearest neighbours of the kNN metrics are exact (scikit-learn). The aggregate scores are
    scIB's, unscaled: means per category and ``Total = 0.6 bio + 0.4 batch``.

    Degenerate embeddings (constant, near-zero spread, non-finite values, or no more distinct
    cells than the 90 neighbours the kNN metrics use) are refused rather than scored: their
    scores would reflect ties, not integration. A metric that scib-metrics cannot compute
    for a method stays NaN in the results and is reported with a warning; that method's
    category mean is then taken over its other metrics of that category, as scib-metrics does.

    Parameters
    ----------
    adata
        Cells with raw counts in ``X`` or in ``layers[layer]``; counts are needed for the
        unintegrated PCA that PCR comparison uses and for the baselines.
    batch_key
        ``obs`` column of the batches to integrate (e.g. patient or sample); at least 2 levels.
    label_key
        ``obs`` column of the biology to conserve (e.g. cell state); no missing values.
    embeddings
        Embeddings to benchmark: ``{method name: obsm key}``, or obsm keys (used as names).
    baselines
        Any of ``"pca"``, ``"scvi"``, ``"harmony"`` (:data:`INTEGRATION_BASELINES`);
        ``()`` for none. Harmony needs harmonypy, the ``benchmark`` extra
        (``pip install 'cancergpt-scvi[benchmark]'``).
    layer
        Layer holding the raw counts; ``None`` for ``X``.
    n_top_genes
        Highly variable genes (Seurat flavour, per batch) for PCA and scVI.
    n_comps
        Principal components (PCA baseline, Harmony input and PCR comparison), at least 2;
        capped at what the data allow.
    clustering
        Clustering compared to the labels by NMI/ARI: ``"kmeans"`` (fast) or ``"leiden"``
        (scIB's choice; optimises the resolution, slower).
    batch_silhouette
        ``"silhouette"``: scIB's batch silhouette (Euclidean, nearest other batch);
        ``"bras"``: scib-metrics' batch-removal-adapted silhouette (BRAS).
    scvi_max_epochs
        Epochs of scVI; ``None`` uses scvi-tools' default for the number of cells.
    scvi_kwargs
        Extra arguments of :class:`scvi.model.SCVI` (default ``n_layers=2, n_latent=30``).
    output_dir
        Folder to write ``integration_results.csv`` (this function's result),
        ``integration_table.png`` (scib-metrics' results table) and, with ``umap=True``,
        ``integration_umap.png`` (one column per method, coloured by label and by batch).
        ``None`` writes nothing.
    umap
        Whether to draw the UMAP grid (needs ``output_dir``).
    inplace
        ``False`` (default): ``adata`` is not modified. ``True``: the computed baselines
        are written to ``adata.obsm`` under :data:`BASELINE_OBSM_KEYS` (overwriting them).
    seed
        Seed of the baselines (scVI seeds scvi-tools' global random state) and of UMAP.
    progress_bar
        Show progress bars of scVI training and of the metrics.

    Returns
    -------
    Tidy results, one row per method and metric, columns ``method``, ``metric_type``
    (``"Bio conservation"``, ``"Batch correction"`` or ``"Aggregate score"``), ``metric`` and
    ``value``; methods in the order given, baselines last. For a wide table:
    ``df.pivot(index="method", columns="metric", values="value")``.

    Raises
    ------
    ValueError
        An embedding (or a computed baseline) is degenerate, or an argument is invalid.
    KeyError
        An obsm key, ``obs`` column or layer does not exist.

    Warns
    -----
    UserWarning
        A metric could not be computed (NaN) for a method; the warning names both and says
        how the method's aggregate scores were formed.

    Examples
    --------
    >>> adata.obsm["X_cancergpt"] = model.get_latent_representation(adata)
    >>> df = benchmark_integration(
    ...     adata, "patient", "cell_state", {"CancerGPT": "X_cancergpt"}, output_dir="figures"
    ... )
    """
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    methods = _check_inputs(adata, batch_key, label_key, embeddings, baselines)
    if clustering not in ("kmeans", "leiden"):
        raise ValueError(f"clustering must be 'kmeans' or 'leiden', got {clustering!r}.")
    if batch_silhouette not in ("silhouette", "bras"):
        raise ValueError(
            f"batch_silhouette must be 'silhouette' or 'bras', got {batch_silhouette!r}."
        )
    # fewer than 2 components would silently become 2 below (PCA's floor here)
    if isinstance(n_comps, bool) or not isinstance(n_comps, int | np.integer) or n_comps < 2:
        raise ValueError(f"n_comps must be an integer of at least 2, got {n_comps!r}.")
    if output_dir is not None:
        # checked before the work, which would otherwise be lost at the end
        folder = Path(output_dir)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(
                f"output_dir={str(output_dir)!r} is a file; give a folder for the tables and "
                "figures (it is created if missing)."
            )
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(
                f"output_dir={str(output_dir)!r} is not writable; give a folder you can write to."
            )
    baselines = list(dict.fromkeys(baselines))
    work = _unintegrated(adata, batch_key, label_key, layer, n_top_genes, n_comps, seed)

    # PCR comparison regresses on it: a degenerate one would make every PCR score NaN
    _check_embedding(work.obsm["X_pca"], "The unintegrated PCA (the PCR comparison reference)")
    for name, key in methods.items():
        work.obsm[f"method:{name}"] = _as_array(adata.obsm[key]).astype(np.float32)
    if "pca" in baselines:
        work.obsm["method:PCA"] = work.obsm["X_pca"]
    if "harmony" in baselines:
        logger.info("Running Harmony.")
        work.obsm["method:Harmony"] = _harmony(work.obsm["X_pca"], work.obs, batch_key, seed)
    if "scvi" in baselines:
        logger.info("Training scVI.")
        work.obsm["method:scVI"] = _scvi(
            work, batch_key, scvi_max_epochs, scvi_kwargs, seed, progress_bar
        )
    names = list(methods) + [INTEGRATION_BASELINES[b] for b in baselines]
    keys = [f"method:{n}" for n in names]
    for b in baselines:
        name = INTEGRATION_BASELINES[b]
        _check_embedding(work.obsm[f"method:{name}"], f"The {name} baseline")

    if batch_silhouette == "silhouette":
        # BRAS with scIB's settings is scIB's batch silhouette (scib-metrics 0.5 dropped it).
        bras_spec = {"metric": "euclidean", "between_cluster_distances": "nearest"}
    else:
        bras_spec = True
    bench = Benchmarker(
        work,
        batch_key=batch_key,
        label_key=label_key,
        embedding_obsm_keys=keys,
        bio_conservation_metrics=BioConservation(
            nmi_ari_cluster_labels_kmeans=clustering == "kmeans",
            nmi_ari_cluster_labels_leiden=clustering == "leiden",
        ),
        batch_correction_metrics=BatchCorrection(bras=bras_spec),
        pre_integrated_embedding_obsm_key="X_pca",
        progress_bar=progress_bar,
    )
    # Exact neighbours for the kNN metrics; kBET's per-label diffusion neighbours stay
    # scib-metrics' own (pynndescent): it has no public option to change them.
    bench.prepare(neighbor_computer=_exact_neighbors)
    bench.benchmark()

    method_names = dict(zip(keys, names, strict=True))
    silhouette_name = "Silhouette batch" if batch_silhouette == "silhouette" else "BRAS"
    wide = bench.get_results(min_max_scale=False).rename(columns={"BRAS": silhouette_name})
    tidy = _tidy(wide, method_names)
    _warn_uncomputed(tidy)
    if output_dir is not None:
        import matplotlib.pyplot as plt

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        tidy.to_csv(output_dir / "integration_results.csv", index=False)
        table = bench.plot_results_table(min_max_scale=False, show=False)
        _relabel_table(table, method_names, {"BRAS": silhouette_name.replace(" ", "\n", 1)})
        fig = table.ax.figure
        fig.savefig(output_dir / "integration_table.png", dpi=150, bbox_inches="tight")
        plt.close(fig)
        if umap:
            fig = plot_umaps(
                work,
                dict(zip(names, keys, strict=True)),
                [label_key, batch_key],
                seed=seed,
                path=output_dir / "integration_umap.png",
            )
            plt.close(fig)

    if inplace:
        for b in baselines:
            adata.obsm[BASELINE_OBSM_KEYS[b]] = work.obsm[f"method:{INTEGRATION_BASELINES[b]}"]
    return tidy


def _check_inputs(
    adata: ad.AnnData,
    batch_key: str,
    label_key: str,
    embeddings: Mapping[str, str] | Sequence[str] | None,
    baselines: Sequence[str],
) -> dict[str, str]:
    """Validate the inputs; return ``{method name: obsm key}`` of the user's embeddings."""
    if isinstance(baselines, str):
        baselines = [baselines]
    unknown = [b for b in baselines if b not in INTEGRATION_BASELINES]
    if unknown:
        raise ValueError(f"Unknown baselines {unknown}; choose from {list(INTEGRATION_BASELINES)}.")
    if embeddings is None:
        methods: dict[str, str] = {}
    elif isinstance(embeddings, str):
        methods = {embeddings: embeddings}
    elif isinstance(embeddings, Mapping):
        methods = dict(embeddings)
    else:
        methods = {k: k for k in embeddings}
    if not methods and not baselines:
        raise ValueError("Nothing to benchmark: give embeddings and/or baselines.")
    missing = [k for k in methods.values() if k not in adata.obsm]
    if missing:
        raise KeyError(
            f"obsm keys {missing} not found in adata.obsm (available: {list(adata.obsm)}). "
            "Store each embedding in adata.obsm first, e.g. "
            "adata.obsm['X_cancergpt'] = model.get_latent_representation(adata)."
        )
    clashes = [INTEGRATION_BASELINES[b] for b in baselines if INTEGRATION_BASELINES[b] in methods]
    if clashes:
        raise ValueError(
            f"Method names {clashes} are used by both an embedding and a baseline; rename the "
            "embedding or drop the baseline."
        )
    if adata.n_obs <= _MAX_NEIGHBORS:
        raise ValueError(
            f"The benchmark needs more than {_MAX_NEIGHBORS} cells (scib-metrics uses "
            f"{_MAX_NEIGHBORS} nearest neighbours); got {adata.n_obs}."
        )
    for role, key in (("batch_key", batch_key), ("label_key", label_key)):
        if key not in adata.obs:
            raise KeyError(f"{role}={key!r} is not a column of adata.obs ({list(adata.obs)}).")
        n_missing = int(adata.obs[key].isna().sum())
        if n_missing:
            raise ValueError(
                f"adata.obs[{key!r}] ({role}) has {n_missing} missing values; drop or label "
                "those cells first, e.g. adata = adata[adata.obs[key].notna()].copy()."
            )
    if batch_key == label_key:
        raise ValueError("batch_key and label_key must be different columns.")
    n_batches = adata.obs[batch_key].nunique()
    if n_batches < 2:
        raise ValueError(
            f"adata.obs[{batch_key!r}] has a single level "
            f"({adata.obs[batch_key].iloc[0]!r}); integration needs at least 2 batches."
        )
    if adata.obs[label_key].nunique() < 2:
        raise ValueError(
            f"adata.obs[{label_key!r}] has a single level; bio conservation needs at least "
            "2 labels."
        )
    # before the baselines are computed, so a bad embedding fails fast
    for name, key in methods.items():
        _check_embedding(_as_array(adata.obsm[key]), f"adata.obsm[{key!r}] ({name})")
    return methods


def _as_array(emb: object) -> np.ndarray:
    """An obsm entry (array, sparse matrix or DataFrame) as a dense array."""
    if sparse.issparse(emb):
        return np.asarray(emb.toarray())
    return np.asarray(emb)


def _check_embedding(emb: np.ndarray, what: str) -> None:
    """Refuse an embedding whose scores would measure ties rather than integration.

    A constant embedding, for instance, gets a batch silhouette of 1 and a kBET near 0.8.
    ``what`` names the embedding in the message.
    """
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.number):
        raise ValueError(
            f"{what} must be a numeric 2-D array, got shape {emb.shape} of {emb.dtype}."
        )
    if emb.shape[1] == 0:
        raise ValueError(f"{what} has no dimensions (shape {emb.shape}).")
    n_bad = int((~np.isfinite(emb)).any(axis=1).sum())
    if n_bad:
        raise ValueError(
            f"{what} contains NaN or infinite values ({n_bad} of {emb.shape[0]} cells); "
            "drop those cells or fix the embedding."
        )
    spread = float(emb.std(axis=0, dtype=np.float64).max())
    scale = float(np.abs(emb).max())
    if spread == 0:
        raise ValueError(
            f"{what} is constant: every cell has the same coordinates, so the metrics would "
            "score ties, not integration. Check how the embedding was computed."
        )
    if spread <= _NEAR_ZERO_SPREAD * scale:
        raise ValueError(
            f"{what} has near-zero variance: its largest standard deviation per dimension "
            f"({spread:.3g}) is below {_NEAR_ZERO_SPREAD:g} of its largest value ({scale:.3g}), "
            "so cells are indistinguishable in float32. Check how the embedding was computed."
        )
    # in float32, as the metrics see it
    n_distinct = len(np.unique(emb.astype(np.float32, copy=False), axis=0))
    if n_distinct <= _MAX_NEIGHBORS:
        raise ValueError(
            f"{what} has only {n_distinct} distinct cells (of {emb.shape[0]}); the kNN metrics "
            f"use {_MAX_NEIGHBORS} neighbours and need more than {_MAX_NEIGHBORS} distinct "
            "cells, or they rank ties. Check how the embedding was computed."
        )


def _warn_uncomputed(tidy: pd.DataFrame) -> None:
    """Warn of each metric scib-metrics returned as NaN, and of how the aggregates were formed.

    scib-metrics averages the metrics of a category skipping NaN, so an aggregate can rest on
    fewer metrics for one method than for the others.
    """
    metrics = tidy[tidy["metric_type"] != "Aggregate score"]
    for method, group in metrics.groupby("method", sort=False):
        missing = group[group["value"].isna()]
        if missing.empty:
            continue
        parts = []
        for metric_type, lost in missing.groupby("metric_type", sort=False):
            n_kept = int(group.loc[group["metric_type"] == metric_type, "value"].notna().sum())
            formed = (
                f"its {metric_type} score is the mean of the other {n_kept} "
                f"{metric_type.lower()} metrics"
                if n_kept
                else f"its {metric_type} score is NaN (no metric of that category was computed)"
            )
            parts.append(f"{', '.join(lost['metric'])} ({formed})")
        warnings.warn(
            f"Metrics that could not be computed for {method!r} are NaN in the results: "
            f"{'; '.join(parts)}. Its Total is 0.6 bio + 0.4 batch of those means, so compare "
            "it with other methods' with care.",
            UserWarning,
            stacklevel=3,
        )


def _unintegrated(
    adata: ad.AnnData,
    batch_key: str,
    label_key: str,
    layer: str | None,
    n_top_genes: int,
    n_comps: int,
    seed: int,
) -> ad.AnnData:
    """New AnnData of the HVGs: counts layer, log-normalised ``X`` and ``obsm['X_pca']``."""
    import scanpy as sc

    if layer is not None and layer not in adata.layers:
        raise KeyError(f"layer={layer!r} not found in adata.layers ({list(adata.layers)}).")
    counts = adata.X if layer is None else adata.layers[layer]
    counts = sparse.csr_matrix(counts, dtype=np.float32, copy=True)
    values = counts.data
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if values.size and (values.min() < 0 or not np.allclose(values, np.round(values))):
        raise ValueError(
            f"{where} must hold raw counts (non-negative integers) for the unintegrated PCA "
            "and the baselines; pass layer= the layer that holds them."
        )
    obs = pd.DataFrame(
        {
            batch_key: adata.obs[batch_key].astype(str).astype("category").to_numpy(),
            label_key: adata.obs[label_key].astype(str).astype("category").to_numpy(),
        },
        index=adata.obs_names.astype(str),
    )
    work = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=adata.var_names.astype(str)))
    work.layers["counts"] = counts.copy()
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    n_top = min(n_top_genes, work.n_vars)
    try:
        sc.pp.highly_variable_genes(work, n_top_genes=n_top, batch_key=batch_key)
    except (ValueError, IndexError):
        # Per-batch HVG selection fails on tiny batches; fall back to pooled selection.
        sc.pp.highly_variable_genes(work, n_top_genes=n_top)
    work = work[:, work.var["highly_variable"].to_numpy()].copy()
    n_comps = max(2, min(n_comps, work.n_vars - 1, work.n_obs - 1))
    sc.pp.pca(work, n_comps=n_comps, random_state=seed)
    return work


def _harmony(pca: np.ndarray, obs: pd.DataFrame, batch_key: str, seed: int) -> np.ndarray:
    """Harmony-corrected PCA (harmonypy), one row per cell."""
    harmonypy = require("harmonypy", extra="benchmark", feature="The Harmony baseline")

    result = harmonypy.run_harmony(pca, obs, [batch_key], random_state=seed, verbose=False)
    z = np.asarray(result.Z_corr)
    # harmonypy < 2 returns (n_pcs, n_cells)
    return (z if z.shape[0] == pca.shape[0] else z.T).astype(np.float32)


def _scvi(
    work: ad.AnnData,
    batch_key: str,
    max_epochs: int | None,
    scvi_kwargs: Mapping[str, object] | None,
    seed: int,
    progress_bar: bool,
) -> np.ndarray:
    """scVI latent space of the HVG counts, with the batches as batch covariate."""
    import scvi

    scvi.settings.seed = seed
    data = ad.AnnData(X=work.layers["counts"], obs=work.obs[[batch_key]].copy())
    scvi.model.SCVI.setup_anndata(data, batch_key=batch_key)
    kwargs = {"n_layers": 2, "n_latent": 30, **(scvi_kwargs or {})}
    model = scvi.model.SCVI(data, **kwargs)
    model.train(max_epochs=max_epochs, enable_progress_bar=progress_bar, accelerator="cpu")
    return model.get_latent_representation().astype(np.float32)


def _exact_neighbors(X: np.ndarray, n_neighbors: int) -> NeighborsResults:
    """Exact Euclidean neighbours of every cell, itself first (scikit-learn)."""
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(n_neighbors, X.shape[0])).fit(X)
    distances, indices = nn.kneighbors(X)
    return NeighborsResults(indices=indices, distances=distances)


def _tidy(wide: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """scib-metrics' wide results (methods x metrics + 'Metric Type' row) to long format."""
    metric_type = wide.loc["Metric Type"]
    values = wide.drop(index="Metric Type")
    rows = []
    for key in values.index:
        for metric in values.columns:
            rows.append(
                {
                    "method": names[key],
                    "metric_type": metric_type[metric],
                    "metric": metric,
                    "value": float(values.loc[key, metric]),
                }
            )
    return pd.DataFrame(rows)


def _relabel_table(table: Table, methods: Mapping[str, str], columns: Mapping[str, str]) -> None:
    """Show method names instead of the internal obsm keys, and our metric names, in the table."""
    for text in table.ax.texts:
        label = text.get_text()
        if label in columns:
            text.set_text(columns[label])
        elif label in methods:
            # the method column is narrow: long names go on two smaller lines
            text.set_text(textwrap.fill(methods[label], 18))
            if len(methods[label]) > 18:
                text.set_fontsize(8)
