"""Survival benchmarks: cross-validation of a SurvivalModel, and feature sets compared on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import sparse
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

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


def _outcome(model: SurvivalModel) -> tuple[np.ndarray, np.ndarray]:
    """Durations and event indicators registered with ``model``."""
    setup = model.registry_["setup_args"]
    obs = model.adata.obs
    return (
        obs[setup["duration_key"]].to_numpy(dtype=float),
        obs[setup["event_key"]].to_numpy(dtype=float),
    )


def _percentile_among(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Share of ``reference`` below each value, ties counted one half."""
    ref = np.sort(reference)
    below = np.searchsorted(ref, values, side="left")
    at_or_below = np.searchsorted(ref, values, side="right")
    return (below + at_or_below) / (2.0 * len(ref))


def _fit_fold(
    model: SurvivalModel,
    train: np.ndarray,
    seed: int,
    alpha: float | Sequence[float] | str | None = None,
    inner_folds: int | None = None,
    **train_kwargs,
) -> SurvivalModel:
    """A fresh model of ``model``'s configuration trained on ``train``.

    ``alpha`` and ``inner_folds`` override the configuration's penalty and ``cv_folds``; a
    tuned penalty is chosen by the fold model's own inner cross-validation of ``train``
    (:meth:`~cancergpt_scvi.survival.SurvivalModel.tune_penalty`, inner folds seeded by
    ``seed``).
    """
    kwargs = dict(model.init_params_["non_kwargs"])
    if alpha is not None:
        kwargs["alpha"] = alpha
    if inner_folds is not None:
        kwargs["cv_folds"] = inner_folds
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fold_model = type(model)(model.adata, **kwargs)
        fold_model.train(train_indices=train, cv_seed=seed, **train_kwargs)
    return fold_model


def cross_validate_survival(
    model: SurvivalModel,
    n_folds: int = 5,
    seed: int = 0,
    alpha: float | Sequence[float] | str | None = None,
    inner_folds: int | None = None,
    progress_bar: bool = True,
    **train_kwargs,
) -> pd.DataFrame:
    """Stratified K-fold cross-validation of a :class:`~cancergpt_scvi.survival.SurvivalModel`.

    Each fold fits a fresh model of ``model``'s configuration on the fold's training samples
    (standardisation included) and scores its held-out samples with Harrell's C and Uno's C
    (the censoring-weighted C, with the censoring distribution of the training samples).
    Folds are stratified on the event indicator (:func:`survival_folds`), so each test fold
    holds events. ``model`` itself is not trained; its ``cv_results_``, ``oof_risk_`` (each
    sample's held-out risk) and ``oof_risk_percentile_`` (that risk as a percentile of the
    fold's training risks) are set, for
    :meth:`~cancergpt_scvi.survival.SurvivalModel.risk_groups` and
    :meth:`~cancergpt_scvi.survival.SurvivalModel.plot_kaplan_meier`. Needs the
    ``[survival]`` extra.

    Parameters
    ----------
    model
        A :class:`~cancergpt_scvi.survival.SurvivalModel` whose AnnData holds the outcomes.
    n_folds
        Number of folds (at least 2, at most the number of events).
    seed
        Seed of the fold assignment and of the fold models' initialisation.
    alpha
        Penalty of the fold models: ``None`` keeps ``model``'s (by default ``"cv"``); a
        number fixes it; ``"cv"`` or a list of values tunes it in each fold by the fold
        model's own inner cross-validation of the fold's training samples
        (:meth:`~cancergpt_scvi.survival.SurvivalModel.tune_penalty`: stratified inner folds,
        the model's ``cv_scoring``, on a tie the larger penalty), so the reported C-index is
        not optimistic about the choice.
    inner_folds
        Folds of that inner cross-validation; ``None`` keeps ``model``'s ``cv_folds``.
    progress_bar
        Show a progress bar over folds.
    **train_kwargs
        Passed to :meth:`~cancergpt_scvi.survival.SurvivalModel.train`.

    Returns
    -------
    One row per fold (``n_train``, ``n_test``, ``n_events_test``, ``alpha``: the penalty
    used, chosen or given, ``c_index_harrell``, ``c_index_uno``), then rows ``mean`` and
    ``std`` (the spread across folds).
    """
    require("sksurv.metrics", extra="survival", feature="cross_validate_survival")
    durations, events = _outcome(model)
    n = len(durations)
    folds = survival_folds(events, n_folds=n_folds, seed=seed)
    train_kwargs.setdefault("enable_progress_bar", False)
    oof_risk = np.full(n, np.nan)
    oof_pct = np.full(n, np.nan)
    rows = []
    for k, (tr, te) in enumerate(tqdm(folds, desc="CV folds", disable=not progress_bar)):
        fold_model = _fit_fold(
            model, tr, seed * 1000 + k, alpha=alpha, inner_folds=inner_folds, **train_kwargs
        )
        risk = fold_model.predict_risk()  # every sample in one pass
        risk_te = risk[te]
        oof_risk[te] = risk_te
        oof_pct[te] = _percentile_among(risk[tr], risk_te)
        rows.append(
            {
                "n_train": len(tr),
                "n_test": len(te),
                "n_events_test": int(events[te].sum()),
                "alpha": fold_model.alpha_,
                "c_index_harrell": concordance_harrell(durations[te], events[te], risk_te),
                "c_index_uno": concordance_uno(
                    durations[tr], events[tr], durations[te], events[te], risk_te
                ),
            }
        )
    table = pd.DataFrame(rows, index=[f"fold {k}" for k in range(n_folds)])
    table.loc["mean"] = table.mean(numeric_only=True)
    table.loc["std"] = table.iloc[:n_folds].std(numeric_only=True)
    model.cv_results_ = table
    model.oof_risk_ = oof_risk
    model.oof_risk_percentile_ = oof_pct
    return table


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

    Every feature set is scored on the same stratified folds (:func:`cross_validate_survival`)
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
        cross-validation (see :func:`cross_validate_survival`).
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
        table = cross_validate_survival(
            model,
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
    """C-index of a known risk on the same test folds that cross_validate_survival uses."""
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
