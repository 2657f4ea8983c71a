"""Checks of a survival cohort's inputs: bad input gets a clear error, never a silent wrong answer.

:meth:`~cancergpt_scvi.survival.SurvivalModel.setup_anndata` runs them on the outcome, the
covariates and the features; the model runs them on its penalty setting and on the samples it
is asked to score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from cancergpt_scvi._listing import listing

if TYPE_CHECKING:
    from collections.abc import Sequence


def validate_outcome(adata: ad.AnnData, duration_key: str, event_key: str) -> None:
    """Refuse follow-up times that are missing or not positive, and events other than 0/1."""
    for key, what in ((duration_key, "duration_key"), (event_key, "event_key")):
        if key not in adata.obs:
            raise KeyError(f"{what}={key!r} is not a column of adata.obs.")
    durations = adata.obs[duration_key]
    if not pd.api.types.is_numeric_dtype(durations) or pd.api.types.is_bool_dtype(durations):
        raise TypeError(
            f"adata.obs[{duration_key!r}] must hold numeric follow-up times, got dtype "
            f"{durations.dtype}."
        )
    d = durations.to_numpy(dtype=float)
    bad = ~np.isfinite(d)
    if bad.any():
        raise ValueError(
            f"adata.obs[{duration_key!r}] has {int(bad.sum())} missing or infinite durations "
            f"({listing(adata.obs_names[bad], 3)}); drop those samples or fill in their "
            "last follow-up time."
        )
    if (d <= 0).any():
        nonpos = d <= 0
        raise ValueError(
            f"adata.obs[{duration_key!r}] has {int(nonpos.sum())} durations <= 0 "
            f"({listing(adata.obs_names[nonpos], 3)}); follow-up times must be positive. "
            "A time of 0 (death at diagnosis) should be given a small positive value, e.g. "
            "half a day; negative times are data errors."
        )
    events = adata.obs[event_key]
    if pd.api.types.is_bool_dtype(events):
        e = events.to_numpy(dtype=float)
    else:
        if not pd.api.types.is_numeric_dtype(events):
            raise TypeError(
                f"adata.obs[{event_key!r}] must be boolean or 0/1 (1 = event observed), got "
                f"dtype {events.dtype}."
            )
        e = events.to_numpy(dtype=float)
        if np.isnan(e).any():
            raise ValueError(
                f"adata.obs[{event_key!r}] has {int(np.isnan(e).sum())} missing values; every "
                "sample needs an event indicator (1 = event, 0 = censored)."
            )
        odd = ~np.isin(e, (0.0, 1.0))
        if odd.any():
            raise ValueError(
                f"adata.obs[{event_key!r}] must be 0/1 or boolean (1 = event observed, 0 = "
                f"censored); found values {listing(sorted(set(e[odd].tolist())))}."
            )
    if e.sum() == 0:
        raise ValueError(
            f"Every sample is censored (adata.obs[{event_key!r}] is all 0): the Cox model has "
            "nothing to learn from. Check the event coding (1 = event observed)."
        )


def validate_covariates(
    adata: ad.AnnData,
    covariate_keys: Sequence[str] | None,
    categorical_covariate_keys: Sequence[str] | None,
) -> None:
    """Refuse missing covariate columns, non-numeric continuous ones and missing values."""
    for key in list(covariate_keys or []) + list(categorical_covariate_keys or []):
        if key not in adata.obs:
            raise KeyError(f"Covariate {key!r} is not a column of adata.obs.")
    for key in covariate_keys or []:
        col = adata.obs[key]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise TypeError(
                f"Continuous covariate {key!r} has dtype {col.dtype}; pass categorical "
                "covariates through categorical_covariate_keys."
            )
        n_bad = int((~np.isfinite(col.to_numpy(dtype=float))).sum())
        if n_bad:
            raise ValueError(
                f"Covariate {key!r} has {n_bad} missing or infinite values; impute them (e.g. "
                "the median plus a missingness indicator column) or drop those samples."
            )
    for key in categorical_covariate_keys or []:
        n_bad = int(adata.obs[key].isna().sum())
        if n_bad:
            raise ValueError(
                f"Categorical covariate {key!r} has {n_bad} missing values; give them their own "
                "category (e.g. 'unknown') or drop those samples."
            )


def feature_matrix(adata: ad.AnnData, embedding_key: str | None, layer: str | None):
    """The features a model registers (an embedding, a layer or ``X``) and where they are."""
    if embedding_key is not None:
        if embedding_key not in adata.obsm:
            raise KeyError(
                f"embedding_key={embedding_key!r} is not in adata.obsm (keys: "
                f"{list(adata.obsm)}); store the embedding there first, e.g. "
                "adata.obsm['X_cancergpt'] = embed_bulk(model, adata)."
            )
        return adata.obsm[embedding_key], f"adata.obsm[{embedding_key!r}]"
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"layer={layer!r} is not in adata.layers ({list(adata.layers)}).")
        return adata.layers[layer], f"adata.layers[{layer!r}]"
    return adata.X, "adata.X"


def check_finite(x, where: str) -> None:
    """Refuse features with NaN or infinite values."""
    values = x.data if sparse.issparse(x) else np.asarray(x, dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(
            f"{where} contains NaN or infinite values; the Cox model needs complete features. "
            "Impute or drop the affected samples or features."
        )


def column_std(x) -> np.ndarray:
    """Population standard deviation of each column of a dense or sparse matrix."""
    if sparse.issparse(x):
        x = sparse.csr_matrix(x, dtype=np.float64)
        mean = np.asarray(x.mean(axis=0)).ravel()
        sq = np.asarray(x.multiply(x).mean(axis=0)).ravel()
        return np.sqrt(np.maximum(sq - mean**2, 0.0))
    return np.asarray(x, dtype=np.float64).std(axis=0)


def check_no_constant_columns(x, names: np.ndarray) -> None:
    """Refuse feature columns that are constant across every registered sample."""
    constant = np.flatnonzero(column_std(x) == 0.0)
    if constant.size:
        raise ValueError(
            f"{constant.size} feature column(s) are constant across all samples "
            f"({listing(names[constant])}); a constant column carries no information and "
            "cannot be standardised. Drop them first (for genes: sc.pp.filter_genes or a "
            "highly-variable subset; for an embedding: check that it was computed per sample)."
        )


def check_alpha(alpha) -> np.ndarray | None:
    """``None`` for a fixed penalty; the candidate penalties (empty: the default path)."""
    if isinstance(alpha, str):
        if alpha != "cv":
            raise ValueError(f"alpha must be 'cv', a number or a list of numbers, got {alpha!r}.")
        return np.array([])
    values = np.atleast_1d(np.asarray(alpha, dtype=float))
    if values.size == 0 or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"alpha must be non-negative, got {alpha!r}.")
    if np.ndim(alpha) == 0:
        return None
    return np.unique(values)[::-1]


def prediction_adata(adata: ad.AnnData, setup_args: dict) -> ad.AnnData:
    """``adata`` checked for scoring; new patients get placeholder outcome columns.

    Prediction needs no outcome, but the registered outcome fields must transfer: a shallow
    stand-in with a placeholder duration (1) and event (0) is returned when ``adata`` lacks them.
    """
    x, where = feature_matrix(adata, setup_args["embedding_key"], setup_args["layer"])
    check_finite(x, where)
    placeholders = (("duration_key", 1.0), ("event_key", 0.0))
    missing = {setup_args[k]: v for k, v in placeholders if setup_args[k] not in adata.obs}
    if not missing:
        return adata
    return ad.AnnData(
        X=adata.X,
        obs=adata.obs.assign(**missing),
        var=adata.var,
        obsm=dict(adata.obsm),
        layers=dict(adata.layers),
    )
