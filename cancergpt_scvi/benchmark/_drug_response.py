"""Drug-response prediction against baselines: held-out folds, cross-validation, plots.

The metrics are those of the task head (:func:`cancergpt_scvi.drug_response.drug_response_metrics`);
the head and its metrics need the extra ``[drug]`` and are imported when a function here runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from cancergpt_scvi._listing import listing

from ._cross_validation import stratified_folds

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Holdout = Literal["cell_lines", "drugs"]


def drug_response_splits(
    responses: pd.DataFrame,
    holdout: Holdout = "cell_lines",
    n_folds: int = 5,
    tissue: Mapping[str, str] | pd.Series | None = None,
    cell_line_key: str = "cell_line",
    drug_key: str = "drug",
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold splits of a response table that hold out whole cell lines or whole drugs.

    Held-out cell lines: grouped K-fold on cell lines, stratified by tissue when ``tissue``
    is given (each fold's test cell lines span the tissues in proportion; tissues with fewer
    cell lines than folds are pooled into one stratum). Held-out drugs:
    grouped K-fold on drugs. A cell line (drug) is in exactly one test fold and never in that
    fold's training rows.

    Parameters
    ----------
    responses
        Long table with one row per (cell line, drug).
    holdout
        ``"cell_lines"`` or ``"drugs"``.
    n_folds
        Number of folds (at least 2, at most the number of cell lines / drugs).
    tissue
        Cell line -> tissue, to stratify held-out cell lines.
    cell_line_key, drug_key
        Columns of ``responses``.
    seed
        Seed of the fold assignment.

    Returns
    -------
    ``n_folds`` pairs of (training rows, test rows), positions in ``responses``.

    Raises
    ------
    ValueError
        ``holdout`` is unknown, ``n_folds`` is below 2 or above the number of cell lines
        (drugs), a cell line has no tissue, or a fold is empty.
    """
    if holdout not in ("cell_lines", "drugs"):
        raise ValueError(f"holdout must be 'cell_lines' or 'drugs', got {holdout!r}.")
    key = cell_line_key if holdout == "cell_lines" else drug_key
    groups = responses[key].astype(str).to_numpy()
    n_groups = len(np.unique(groups))
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}.")
    if n_folds > n_groups:
        raise ValueError(
            f"n_folds={n_folds} holding out {holdout.replace('_', ' ')} would leave a fold "
            f"empty: there are only {n_groups} {holdout.replace('_', ' ')}. Use n_folds <= "
            f"{n_groups}."
        )
    labels = np.zeros(len(groups), dtype=int)  # one stratum: grouped K-fold
    if holdout == "cell_lines" and tissue is not None:
        tissue = pd.Series(tissue)
        tissue.index = tissue.index.astype(str)
        tissue_of = tissue.reindex(groups)
        if tissue_of.isna().any():
            missing = pd.unique(groups[tissue_of.isna().to_numpy()])
            raise ValueError(f"No tissue for cell line(s) {listing(missing)}.")
        labels = tissue_of.astype(str).to_numpy()
    folds = stratified_folds(labels, n_folds=n_folds, seed=seed, groups=groups)
    for i, (train, test) in enumerate(folds):
        if len(train) == 0 or len(test) == 0:
            raise ValueError(
                f"Fold {i} has an empty {'training' if len(train) == 0 else 'test'} set; "
                "use fewer folds."
            )
    return folds


def cross_validate_drug_response(
    adata: AnnData,
    holdout: Holdout = "cell_lines",
    n_folds: int = 5,
    seed: int = 0,
    name: str = "DrugResponseModel",
    model_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
    oracle: Callable[[pd.DataFrame], np.ndarray] | None = None,
    folds: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluate :class:`~cancergpt_scvi.drug_response.DrugResponseModel` on folds.

    For each fold a model is trained without the fold's cell lines (or drugs) and predicts
    their pairs. Baselines on the same pairs: the drug-mean predictor (each drug's mean
    training response; held-out cell lines) or the cell-line-mean predictor (each cell line's
    mean training response; held-out drugs), and ``oracle`` when given (e.g. the generating
    function of simulated data).

    Parameters
    ----------
    adata
        Cell lines set up with :meth:`~cancergpt_scvi.drug_response.DrugResponseModel.setup_anndata`
        (with responses; its ``tissue_key`` stratifies held-out cell-line folds).
    holdout
        ``"cell_lines"`` or ``"drugs"``.
    n_folds
        Number of folds.
    seed
        Seed of the folds and of training.
    name
        Method name of the model in the results.
    model_kwargs, train_kwargs
        Options of the model and of its ``train``. ``validation_by`` defaults to ``holdout``;
        ``train_size`` to 1.0 (no validation pairs) unless ``early_stopping`` is on.
    oracle
        Function from a pair table (``cell_line``, ``drug``) to noise-free responses.
    folds
        Evaluate only the first ``folds`` folds (all by default).

    Returns
    -------
    metrics
        One row per fold and method: ``fold``, ``method`` and the columns of
        :func:`~cancergpt_scvi.drug_response.drug_response_metrics`.
    predictions
        One row per held-out pair and method: ``fold``, ``method``, ``cell_line``, ``drug``,
        ``response``, ``prediction``.
    """
    import lightning.pytorch as pl

    from cancergpt_scvi.drug_response import DrugResponseModel, drug_response_metrics

    pl.seed_everything(seed, verbose=False)
    model = DrugResponseModel(adata, **(model_kwargs or {}))  # validates the setup
    setup_args = model.registry_["setup_args"]
    user_pairs = model.responses()  # columns named as at setup, as predict expects
    pairs = user_pairs.rename(
        columns={
            setup_args["cell_line_key"]: "cell_line",
            setup_args["drug_key"]: "drug",
            setup_args["response_key"]: "response",
        }
    )
    tissue_key = setup_args["tissue_key"]
    tissue = adata.obs[tissue_key].astype(str) if tissue_key is not None else None
    splits = drug_response_splits(pairs, holdout, n_folds, tissue, seed=seed)
    train_kwargs = dict(train_kwargs or {})
    # validation pairs are only worth holding back when early stopping uses them
    train_kwargs.setdefault("train_size", 0.9 if train_kwargs.get("early_stopping") else 1.0)
    train_kwargs.setdefault("validation_by", holdout)
    group = "cell_line" if holdout == "cell_lines" else "drug"
    other = "drug" if holdout == "cell_lines" else "cell_line"
    baseline = "drug mean" if holdout == "cell_lines" else "cell-line mean"

    rows, predictions = [], []
    for fold, (train, test) in enumerate(splits[:folds]):
        train_pairs, test_pairs = pairs.iloc[train], pairs.iloc[test].reset_index(drop=True)
        if fold > 0:
            pl.seed_everything(seed + fold, verbose=False)
            model = DrugResponseModel(adata, **(model_kwargs or {}))
        model.train(**{f"holdout_{holdout}": test_pairs[group].unique(), **train_kwargs})
        methods = {
            name: model.predict(pairs=user_pairs.iloc[test])["prediction"].to_numpy(),
            # mean training response of the pair's drug (cell line); global mean if unseen
            baseline: test_pairs[other]
            .map(train_pairs.groupby(other)["response"].mean())
            .fillna(train_pairs["response"].mean())
            .to_numpy(),
        }
        if oracle is not None:
            methods["true function"] = np.asarray(oracle(test_pairs), dtype=float)
        for method, predicted in methods.items():
            metrics = drug_response_metrics(test_pairs["response"], predicted, test_pairs["drug"])
            rows.append({"fold": fold, "method": method, **metrics.to_dict()})
            predictions.append(
                test_pairs[["cell_line", "drug", "response"]].assign(
                    fold=fold, method=method, prediction=predicted
                )
            )
    metrics = pd.DataFrame(rows)
    predictions = pd.concat(predictions, ignore_index=True)
    return metrics, predictions[["fold", "method", "cell_line", "drug", "response", "prediction"]]


def plot_drug_response(
    predictions: pd.DataFrame,
    method: str | None = None,
    min_pairs: int = 3,
) -> Figure:
    """Predicted against observed response, and the histogram of per-drug Pearson.

    Parameters
    ----------
    predictions
        Long table with ``response``, ``prediction``, ``drug`` (and ``method`` when it holds
        several methods), e.g. from :func:`cross_validate_drug_response`.
    method
        Method to plot (required when ``predictions`` holds several).
    min_pairs
        Fewest pairs a drug needs for its per-drug Pearson.

    Returns
    -------
    A figure with two axes: the scatter and the histogram.
    """
    import matplotlib.pyplot as plt

    from cancergpt_scvi.drug_response import per_drug_pearson

    if "method" in predictions:
        methods = predictions["method"].unique()
        if method is None and len(methods) > 1:
            raise ValueError(f"predictions holds several methods {list(methods)}; pick method=.")
        method = method if method is not None else methods[0]
        predictions = predictions[predictions["method"] == method]
    if predictions.empty:
        raise ValueError(f"No predictions for method {method!r}.")
    observed, predicted = predictions["response"], predictions["prediction"]
    per_drug = per_drug_pearson(observed, predicted, predictions["drug"], min_pairs)
    fig, (ax_scatter, ax_hist) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax_scatter.scatter(observed, predicted, s=4, alpha=0.3, linewidths=0)
    lims = [min(observed.min(), predicted.min()), max(observed.max(), predicted.max())]
    ax_scatter.plot(lims, lims, color="grey", lw=1, ls="--")
    ax_scatter.set(
        xlabel="observed response",
        ylabel="predicted response",
        title=f"{method or ''}  r = {stats.pearsonr(predicted, observed)[0]:.3f}".strip(),
    )
    ax_hist.hist(per_drug, bins=20, range=(-1, 1), color="tab:orange", edgecolor="white")
    ax_hist.axvline(per_drug.mean(), color="black", lw=1)
    ax_hist.set(
        xlabel="per-drug Pearson r",
        ylabel="drugs",
        title=f"per-drug Pearson: mean {per_drug.mean():.3f}, median {per_drug.median():.3f}",
    )
    fig.tight_layout()
    return fig
