"""Survival benchmark: feature sets compared by the cross-validated C-index of a SurvivalModel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.decomposition import PCA

from cancergpt_scvi._extras import require
from cancergpt_scvi.bulk import BulkKind, bulk_log_expression
from cancergpt_scvi.survival import (
    SurvivalModel,
    concordance_harrell,
    concordance_uno,
    logrank_pvalue,
    risk_groups,
)
from cancergpt_scvi.train import survival_folds

#: Default penalty strength of each kind of feature set (standardised features; wider
#: feature sets need more shrinkage).
DEFAULT_ALPHAS: dict[str, float] = {
    "embedding": 0.1,
    "pca": 0.05,
    "genes": 1.0,
    "clinical": 0.01,
}


def _clinical_matrix(
    obs: pd.DataFrame,
    covariate_keys: Sequence[str],
    categorical_covariate_keys: Sequence[str],
) -> np.ndarray:
    parts = [obs[list(covariate_keys)].astype(float)] if covariate_keys else []
    if categorical_covariate_keys:
        cats = obs[list(categorical_covariate_keys)].astype(str)
        parts.append(pd.get_dummies(cats, drop_first=True).astype(float))
    frame = pd.concat(parts, axis=1)
    return frame.loc[:, frame.std(axis=0) > 0].to_numpy()


def compare_survival_features(
    adata: ad.AnnData,
    duration_key: str = "duration",
    event_key: str = "event",
    embeddings: Mapping[str, str] | None = None,
    covariate_keys: Sequence[str] | None = None,
    categorical_covariate_keys: Sequence[str] | None = None,
    expression_layer: str | None = None,
    expression_kind: BulkKind = "counts",
    n_pcs: int = 20,
    n_top_genes: int = 500,
    n_folds: int = 5,
    seed: int = 0,
    alphas: Mapping[str, float | Sequence[float] | str] | None = None,
    inner_folds: int | None = None,
    true_risk_key: str | None = None,
    progress_bar: bool = True,
) -> pd.DataFrame:
    """Cross-validated C-index of penalised Cox models on several feature sets.

    Every feature set is scored on the same stratified folds
    (:meth:`SurvivalModel.cross_validate <cancergpt_scvi.survival.SurvivalModel.cross_validate>`)
    with a linear :class:`~cancergpt_scvi.survival.SurvivalModel`:

    * each embedding in ``embeddings`` (e.g. CancerGPT embeddings of the bulk samples),
      alone and, when covariates are given, together with them;
    * ``PCA``: the first ``n_pcs`` principal components of log expression;
    * ``top-variance genes``: the ``n_top_genes`` genes of highest log-expression variance;
    * ``clinical``: the covariates alone (when given);
    * ``true risk``: the C-index of a known risk score on the same test folds (simulations).

    PCA and gene variance are computed on all samples without their outcomes (unsupervised,
    so no outcome leaks into the folds). Needs the ``[survival]`` extra.

    Parameters
    ----------
    adata
        Samples x genes with the outcome in ``obs``.
    duration_key, event_key
        Outcome columns (see :meth:`SurvivalModel.setup_anndata`).
    embeddings
        ``{name: obsm key}`` of the embeddings to compare.
    covariate_keys, categorical_covariate_keys
        Clinical covariates in ``obs``.
    expression_layer
        Layer with the expression for the baselines; default ``X``.
    expression_kind
        What the expression values are: ``"counts"``, ``"tpm"`` or ``"microarray"``.
    n_pcs, n_top_genes
        Sizes of the two expression baselines.
    n_folds, seed
        Cross-validation folds and seed (the same folds for every feature set).
    alphas
        Penalty strength per kind of feature set (keys of :data:`DEFAULT_ALPHAS`); ``"cv"``
        (the model's penalty path) or a list of values is tuned in each fold by inner
        cross-validation (see :meth:`~cancergpt_scvi.survival.SurvivalModel.cross_validate`).
    inner_folds
        Folds of that inner cross-validation; ``None``: the model's default
        (:class:`~cancergpt_scvi.survival.SurvivalModel`'s ``cv_folds``).
    true_risk_key
        ``obs`` column of a known risk, for an oracle row.
    progress_bar
        Show a progress bar over folds for each feature set.

    Returns
    -------
    One row per feature set with ``n_features``, ``alpha`` (the mean over folds of the
    penalty used), the mean and standard deviation over folds of Harrell's and Uno's C, and
    ``logrank_p``, the log-rank p-value of a median split of the held-out risks (cut at each
    fold's training median).
    """
    require("sksurv.metrics", extra="survival", feature="compare_survival_features")
    alphas = {**DEFAULT_ALPHAS, **(alphas or {})}
    covariate_keys = list(covariate_keys or [])
    categorical_covariate_keys = list(categorical_covariate_keys or [])
    keep = [duration_key, event_key, *covariate_keys, *categorical_covariate_keys]
    for key in keep:
        if key not in adata.obs:
            raise KeyError(f"{key!r} is not a column of adata.obs.")
    work = ad.AnnData(obs=adata.obs[keep].copy())
    feature_sets: list[tuple[str, str, float | Sequence[float], bool]] = []
    for name, key in (embeddings or {}).items():
        if key not in adata.obsm:
            raise KeyError(f"Embedding {name!r}: {key!r} is not in adata.obsm.")
        work.obsm[f"emb:{name}"] = np.asarray(adata.obsm[key], dtype=np.float64)
        feature_sets.append((name, f"emb:{name}", alphas["embedding"], False))
        if covariate_keys or categorical_covariate_keys:
            feature_sets.append((f"{name} + clinical", f"emb:{name}", alphas["embedding"], True))

    matrix = adata.X if expression_layer is None else adata.layers[expression_layer]
    matrix = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    log_expr = bulk_log_expression(matrix, expression_kind)
    variance = log_expr.var(axis=0)
    varying = np.flatnonzero(variance > 0)
    top = varying[np.argsort(-variance[varying], kind="stable")[:n_top_genes]]
    n_pcs = min(n_pcs, len(varying), adata.n_obs - 1)
    work.obsm["pca"] = PCA(n_pcs, random_state=seed).fit_transform(log_expr[:, varying])
    work.obsm["genes"] = log_expr[:, top]
    feature_sets.append((f"PCA ({n_pcs} PCs)", "pca", alphas["pca"], False))
    feature_sets.append((f"top-variance genes ({len(top)})", "genes", alphas["genes"], False))
    if covariate_keys or categorical_covariate_keys:
        work.obsm["clinical"] = _clinical_matrix(
            work.obs, covariate_keys, categorical_covariate_keys
        )
        feature_sets.append(("clinical", "clinical", alphas["clinical"], False))

    rows = []
    for name, key, alpha, with_covariates in feature_sets:
        SurvivalModel.setup_anndata(
            work,
            duration_key,
            event_key,
            covariate_keys=covariate_keys if with_covariates else None,
            categorical_covariate_keys=categorical_covariate_keys if with_covariates else None,
            embedding_key=key,
        )
        model = SurvivalModel(work)
        table = model.cross_validate(
            n_folds=n_folds,
            seed=seed,
            alpha=alpha,
            inner_folds=inner_folds,
            progress_bar=progress_bar,
        )
        groups = risk_groups(model.oof_risk_percentile_, "median")
        rows.append(
            {
                "features": name,
                "n_features": int(model.module.n_design),
                "alpha": table.loc["mean", "alpha"],
                "c_index_harrell": table.loc["mean", "c_index_harrell"],
                "c_index_harrell_std": table.loc["std", "c_index_harrell"],
                "c_index_uno": table.loc["mean", "c_index_uno"],
                "c_index_uno_std": table.loc["std", "c_index_uno"],
                "logrank_p": logrank_pvalue(work.obs[duration_key], work.obs[event_key], groups),
            }
        )
    if true_risk_key is not None:
        rows.append(
            _oracle_row(work.obs, adata.obs[true_risk_key], duration_key, event_key, n_folds, seed)
        )
    return pd.DataFrame(rows).set_index("features")


def _oracle_row(
    obs: pd.DataFrame,
    true_risk: pd.Series,
    duration_key: str,
    event_key: str,
    n_folds: int,
    seed: int,
) -> dict:
    """C-index of a known risk on the same test folds that SurvivalModel.cross_validate uses."""
    d = obs[duration_key].to_numpy(float)
    e = obs[event_key].to_numpy(float)
    risk = np.asarray(true_risk, float)
    n = len(d)
    harrell, uno = [], []
    for tr, te in survival_folds(e, n_folds=n_folds, seed=seed):
        harrell.append(concordance_harrell(d[te], e[te], risk[te]))
        uno.append(concordance_uno(d[tr], e[tr], d[te], e[te], risk[te]))
    pct = pd.Series(risk).rank(pct=True).to_numpy() - 0.5 / n
    return {
        "features": "true risk (oracle)",
        "n_features": 1,
        "alpha": np.nan,
        "c_index_harrell": float(np.mean(harrell)),
        "c_index_harrell_std": float(np.std(harrell, ddof=1)),
        "c_index_uno": float(np.nanmean(uno)),
        "c_index_uno_std": float(np.nanstd(uno, ddof=1)),
        "logrank_p": logrank_pvalue(d, e, risk_groups(pct, "median")),
    }
