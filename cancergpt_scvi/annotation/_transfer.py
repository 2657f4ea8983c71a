"""Label transfer: a distance-weighted nearest-neighbour vote from an annotated reference."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from cancergpt_scvi._listing import listing

if TYPE_CHECKING:
    from cancergpt_scvi.model import CancerGPTModel

logger = logging.getLogger(__name__)

#: The label given to cells whose uncertainty is above the threshold.
UNKNOWN = "unknown"

# quantile of the reference's own neighbour distances beyond which a query cell counts as
# lying away from the reference: its vote is discounted the further it lies beyond
_TYPICAL_DISTANCE_QUANTILE = 0.95


def reference_labels(reference: ad.AnnData, label_key: str) -> pd.Categorical:
    """The reference's labels as a categorical, with a clear error when they are missing."""
    if label_key not in reference.obs:
        raise KeyError(
            f"label_key={label_key!r} is not a column of reference.obs "
            f"(columns: {listing(reference.obs.columns)}); pass the column with the annotation."
        )
    labels = reference.obs[label_key]
    missing = labels.isna().to_numpy()
    if missing.all():
        raise ValueError(f"reference.obs[{label_key!r}] holds no labels (all missing).")
    if missing.any():
        raise ValueError(
            f"reference.obs[{label_key!r}] is missing for {int(missing.sum())} cells "
            f"({listing(reference.obs_names[missing], 3)}); drop the unannotated cells from the "
            "reference (reference[reference.obs[label_key].notna()])."
        )
    return pd.Categorical(labels.astype(str))


def embedding_of(
    adata: ad.AnnData,
    use_rep: str,
    what: str,
    model: CancerGPTModel | None = None,
    chunk_size: int = 10_000,
) -> np.ndarray:
    """``adata.obsm[use_rep]`` as float32, or the model's embedding of ``adata``, checked finite.

    Parameters
    ----------
    adata
        Cells with the embedding in ``obsm`` (dense, sparse or backed ``X``).
    use_rep
        ``obsm`` key of the embedding.
    what
        How the cells are named in error messages (``"reference"``, ``"query"``).
    model
        A :class:`~cancergpt_scvi.model.CancerGPTModel` that embeds ``adata`` (chunk by chunk,
        also backed) when ``obsm[use_rep]`` is absent; the result is stored there.
    chunk_size
        Cells read at a time by ``model``.
    """
    if use_rep not in adata.obsm:
        if model is None:
            raise KeyError(
                f"The {what} has no obsm[{use_rep!r}] (obsm holds: "
                f"{listing(adata.obsm.keys()) or 'nothing'}). Embed it first, e.g. "
                f"{what}.obsm[{use_rep!r}] = model.get_latent_representation({what}), or pass "
                "model= to embed it here."
            )
        adata.obsm[use_rep] = model.get_latent_representation(
            adata, chunk_size=chunk_size, progress_bar=False
        )
    z = adata.obsm[use_rep]
    if sparse.issparse(z):  # embeddings are dense; a sparse matrix would be read as one object
        z = z.toarray()
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[0] != adata.n_obs:
        raise ValueError(
            f"{what}.obsm[{use_rep!r}] must be a (cells, dimensions) array, got shape {z.shape}."
        )
    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{what}.obsm[{use_rep!r}] has NaN or infinite values in {int(bad.sum())} cells "
            f"({listing(adata.obs_names[bad], 3)}); embed those cells again or drop them."
        )
    return z


def reference_batches(reference: ad.AnnData, batch_key: str | None, k: int) -> np.ndarray | None:
    """The reference's batch codes for leave-one-batch-out scales, or None to use all cells.

    None when ``batch_key`` is None. Refuses a missing column or missing values; a single
    batch, or a batch whose leaving leaves fewer than ``k`` cells, falls back to None with a
    warning (nothing to leave out).
    """
    if batch_key is None:
        return None
    if batch_key not in reference.obs:
        raise KeyError(
            f"batch_key={batch_key!r} is not a column of reference.obs "
            f"(columns: {listing(reference.obs.columns)}); pass the column with the reference's "
            "patients or samples, or batch_key=None."
        )
    batch = reference.obs[batch_key]
    if batch.isna().any():
        raise ValueError(
            f"reference.obs[{batch_key!r}] is missing for {int(batch.isna().sum())} cells; "
            "give every reference cell its batch."
        )
    codes = np.unique(batch.astype(str).to_numpy(), return_inverse=True)[1]
    counts = np.bincount(codes)
    if len(counts) < 2 or (len(codes) - counts.max()) < k:
        logger.warning(
            "reference.obs[%r] has %d batch(es) (largest %d of %d cells): too few to leave one "
            "out; distance scales are measured among all reference cells.",
            batch_key,
            len(counts),
            int(counts.max()),
            len(codes),
        )
        return None
    return codes


def reference_neighbour_distances(
    index: NearestNeighbors,
    z_ref: np.ndarray,
    batches: np.ndarray | None,
    k: int,
    chunk_size: int,
) -> np.ndarray:
    """``(n_reference, k)`` distances of each reference cell to its ``k`` nearest neighbours.

    Without ``batches``: among all reference cells, itself left out. With them: among the
    cells of the other batches, as a cell of a new batch meets the reference.
    """
    if batches is None:
        return np.concatenate(
            [
                index.kneighbors(z_ref[s : s + chunk_size], n_neighbors=k + 1)[0][:, 1:]
                for s in range(0, len(z_ref), chunk_size)
            ]
        )
    out = np.empty((len(z_ref), k))
    for b in np.unique(batches):
        inside = np.flatnonzero(batches == b)
        others = NearestNeighbors(n_neighbors=k).fit(z_ref[batches != b])
        for s in range(0, len(inside), chunk_size):
            rows = inside[s : s + chunk_size]
            out[rows] = others.kneighbors(z_ref[rows])[0]
    return out


def transfer_labels(
    reference: ad.AnnData,
    query: ad.AnnData,
    label_key: str,
    use_rep: str = "X_cancergpt",
    k: int = 15,
    unknown_threshold: float | None = 0.5,
    batch_key: str | None = None,
    model: CancerGPTModel | None = None,
    chunk_size: int = 10_000,
    inplace: bool = True,
) -> pd.DataFrame:
    """Transfer labels from an annotated reference to query cells by their nearest neighbours.

    Each query cell's ``k`` nearest reference cells in the embedding vote with weights
    ``exp(-(d / s)^2)``, ``d`` the distance and ``s`` the median distance of reference cells to
    their ``k``-th neighbour. The predicted label is the one with the largest vote share;
    the uncertainty is ``1 - share x discount``, where the discount is 1 for a cell whose mean
    neighbour distance is within what 95% of reference cells have (``t``), and
    ``exp(-(dbar - t) / t)`` beyond: a cell of a state the reference lacks may agree with
    neighbours that are all far away, and is uncertain for that reason.

    A query comes from new patients, whose cells lie further from any reference cell than
    reference cells lie from cells of their own patient. With ``batch_key``, ``s`` and ``t``
    are therefore measured as a new patient meets the reference: each reference batch's cells
    against the other batches' cells (leave one batch out), so that a query cell is not called
    uncertain merely for coming from a patient the reference lacks. Without it they are
    measured among all reference cells, which suits a query from the reference's own batches.

    Parameters
    ----------
    reference
        Annotated cells with the embedding in ``obsm[use_rep]``.
    query
        Cells to annotate, with ``obsm[use_rep]`` (or ``model``); may be opened with
        ``backed="r"``. Its labels, if any, are not read.
    label_key
        ``obs`` column of ``reference`` with the labels.
    use_rep
        ``obsm`` key of the embedding in both AnnDatas.
    k
        Neighbours per query cell.
    unknown_threshold
        Cells with an uncertainty above it are labelled ``"unknown"``; ``None`` labels every
        cell with its best vote.
    batch_key
        ``obs`` column of ``reference`` with its batches (patient, sample). With two or more
        batches, the distance scales are measured leaving one batch out (see above): pass it
        whenever the query holds patients or samples the reference lacks.
    model
        A :class:`~cancergpt_scvi.model.CancerGPTModel` that embeds ``reference`` or ``query``
        where ``obsm[use_rep]`` is missing (stored there).
    chunk_size
        Query cells searched at a time (memory is bounded by it).
    inplace
        Write ``query.obs[label_key + "_pred"]`` (categorical) and
        ``query.obs[label_key + "_uncertainty"]``.

    Returns
    -------
    DataFrame indexed by the query's ``obs_names`` with columns ``label_key + "_pred"``,
    ``label_key + "_uncertainty"`` and the vote share of every reference label.

    Examples
    --------
    >>> reference.obsm["X_cancergpt"] = model.get_latent_representation(reference)
    >>> query.obsm["X_cancergpt"] = model.get_latent_representation(query)
    >>> transfer_labels(reference, query, label_key="state")
    >>> query.obs[["state_pred", "state_uncertainty"]]
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k (neighbours) must be an integer of at least 1, got {k!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
    if unknown_threshold is not None and not 0 <= unknown_threshold <= 1:
        raise ValueError(f"unknown_threshold must be in [0, 1] or None, got {unknown_threshold}.")
    labels = reference_labels(reference, label_key)
    if reference.n_obs < 2:
        raise ValueError("The reference needs at least 2 cells.")
    if UNKNOWN in labels.categories:
        raise ValueError(
            f"reference.obs[{label_key!r}] uses the label {UNKNOWN!r}, which marks uncertain "
            "cells; rename it."
        )
    z_ref = embedding_of(reference, use_rep, "reference", model, chunk_size)
    z_query = embedding_of(query, use_rep, "query", model, chunk_size)
    if z_ref.shape[1] != z_query.shape[1]:
        raise ValueError(
            f"reference.obsm[{use_rep!r}] has {z_ref.shape[1]} dimensions and the query's "
            f"{z_query.shape[1]}: embed both with the same model."
        )
    if k > reference.n_obs - 1:
        logger.warning(
            "k=%d is more than the reference's cells allow; using %d.", k, reference.n_obs - 1
        )
        k = reference.n_obs - 1

    index = NearestNeighbors(n_neighbors=k).fit(z_ref)
    batches = reference_batches(reference, batch_key, k)
    own = reference_neighbour_distances(index, z_ref, batches, k, chunk_size)
    scale = max(float(np.median(own[:, -1])), np.finfo(np.float32).eps)
    typical = max(
        float(np.quantile(own.mean(axis=1), _TYPICAL_DISTANCE_QUANTILE)),
        np.finfo(np.float32).eps,
    )

    codes = labels.codes
    n_labels = len(labels.categories)
    shares = np.zeros((len(z_query), n_labels))
    mean_distance = np.zeros(len(z_query))
    for s in range(0, len(z_query), chunk_size):
        dist, nbr = index.kneighbors(z_query[s : s + chunk_size])
        # weights relative to the nearest neighbour, so that far cells do not underflow
        w = np.exp(-((dist / scale) ** 2 - (dist[:, :1] / scale) ** 2))
        block = np.zeros((len(dist), n_labels))
        np.add.at(block, (np.arange(len(dist))[:, None], codes[nbr]), w)
        shares[s : s + len(dist)] = block / block.sum(axis=1, keepdims=True)
        mean_distance[s : s + len(dist)] = dist.mean(axis=1)

    discount = np.exp(-np.clip(mean_distance - typical, 0, None) / typical)
    best = shares.argmax(axis=1)
    uncertainty = 1.0 - shares[np.arange(len(best)), best] * discount
    predicted = np.asarray(labels.categories)[best].astype(object)
    categories = list(labels.categories)
    if unknown_threshold is not None:
        predicted[uncertainty > unknown_threshold] = UNKNOWN
        categories.append(UNKNOWN)
    pred_key, unc_key = f"{label_key}_pred", f"{label_key}_uncertainty"
    result = pd.DataFrame(
        {
            pred_key: pd.Categorical(predicted, categories=categories),
            unc_key: uncertainty,
            **{str(c): shares[:, i] for i, c in enumerate(labels.categories)},
        },
        index=query.obs_names.copy(),
    )
    if inplace:
        query.obs[pred_key] = result[pred_key].values
        query.obs[unc_key] = uncertainty
    n_unknown = int((predicted == UNKNOWN).sum())
    logger.info(
        "Transferred %s to %d cells from %d reference cells (%d unknown, %.1f%%).",
        label_key,
        len(z_query),
        len(z_ref),
        n_unknown,
        100 * n_unknown / max(len(z_query), 1),
    )
    return result
