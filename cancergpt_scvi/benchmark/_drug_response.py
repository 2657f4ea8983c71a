"""Drug-response prediction against baselines: held-out folds, cross-validation, plots.

The metrics are those of the task head (:func:`cancergpt_scvi.drug_response.drug_response_metrics`);
the head and its metrics need the extra ``[drug]`` and are imported when a function here runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import stats

from cancergpt_scvi._listing import listing
from cancergpt_scvi.train import stratified_folds

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
        Options of the model and of its ``train``.
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
            baseline: _mean_by(train_pairs, other, test_pairs),
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


def _mean_by(train_pairs: pd.DataFrame, key: str, test_pairs: pd.DataFrame) -> np.ndarray:
    """Each test pair's mean training response of its ``key``; the global mean if unseen."""
    means = train_pairs.groupby(key)["response"].mean()
    return test_pairs[key].map(means).fillna(train_pairs["response"].mean()).to_numpy(float)


def per_drug_ridge_predict(
    features: pd.DataFrame,
    train_pairs: pd.DataFrame,
    test_pairs: pd.DataFrame,
    n_components: int = 100,
    alphas: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """One ridge regression per drug on the principal components of the cell lines' features.

    The baseline a user fits first for held-out cell lines: PCA fitted on the training pairs'
    cell lines only, then for each drug a :class:`~sklearn.linear_model.RidgeCV` (penalty by
    efficient leave-one-out CV over ``alphas``) from its training cell lines' components to
    their responses. A drug with fewer than 3 training pairs gets its mean (or the global
    mean).

    Parameters
    ----------
    features
        Cell lines x features (e.g. expression), indexed by cell-line name.
    train_pairs, test_pairs
        Long tables with ``cell_line``, ``drug`` (and ``response`` for training).
    n_components
        Principal components (at most the number of training cell lines minus one).
    alphas
        Candidate penalties; default 25 values from 1e-2 to 1e6, log-spaced.

    Returns
    -------
    Predicted response of each test pair, in its order.

    Raises
    ------
    ValueError
        A cell line of the pairs has no row in ``features``.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV

    needed = pd.unique(pd.concat([train_pairs["cell_line"], test_pairs["cell_line"]]).astype(str))
    missing = [c for c in needed if c not in features.index]
    if missing:
        raise ValueError(f"No features for cell line(s) {listing(missing)}.")
    alphas = np.logspace(-2, 6, 25) if alphas is None else np.asarray(alphas, dtype=float)
    train_cells = pd.unique(train_pairs["cell_line"].astype(str))
    n_components = max(1, min(n_components, len(train_cells) - 1, features.shape[1]))
    pca = PCA(n_components=n_components, random_state=0)
    pca.fit(features.loc[train_cells].to_numpy(dtype=float))
    scores = pd.DataFrame(pca.transform(features.loc[needed].to_numpy(dtype=float)), index=needed)
    predicted = _mean_by(train_pairs, "drug", test_pairs)
    train_by_drug = dict(list(train_pairs.groupby("drug")))
    for drug, rows in test_pairs.groupby("drug").indices.items():
        train = train_by_drug.get(drug)
        if train is None or len(train) < 3:
            continue
        ridge = RidgeCV(alphas=alphas).fit(
            scores.loc[train["cell_line"].astype(str)].to_numpy(), train["response"].to_numpy()
        )
        test_cells = test_pairs["cell_line"].iloc[rows].astype(str)
        predicted[rows] = ridge.predict(scores.loc[test_cells].to_numpy())
    return predicted


def nearest_drugs_predict(
    fingerprints: Mapping[str, np.ndarray],
    train_pairs: pd.DataFrame,
    test_pairs: pd.DataFrame,
    k: int | Sequence[int] = (1, 2, 3, 5, 10, 20, 50),
) -> tuple[np.ndarray, int]:
    """k nearest training drugs by fingerprint similarity: a baseline for unseen drugs.

    A test pair (cell line, drug) gets the mean of the cell line's responses to the ``k``
    training drugs most similar to the drug (Tanimoto similarity of their fingerprints, e.g.
    :func:`~cancergpt_scvi.drug_response.morgan_fingerprint`) that were measured on it,
    weighted by that similarity: the rule of
    :func:`~cancergpt_scvi.drug_response.nearest_drugs_average`, which also predicts unseen
    drugs in the model. Without any similar measured drug it gets the cell line's mean
    training response (or the global mean). With several ``k``, the one of lowest squared error
    in leave-one-drug-out over the training drugs is used.

    Parameters
    ----------
    fingerprints
        Drug name -> bit fingerprint, for every drug of the pairs.
    train_pairs, test_pairs
        Long tables with ``cell_line``, ``drug`` (and ``response`` for training).
    k
        Number of neighbours, or candidates to choose from.

    Returns
    -------
    predictions
        Predicted response of each test pair, in its order.
    k
        The number of neighbours used.

    Raises
    ------
    ValueError
        A drug of the pairs has no fingerprint, or ``k`` is not positive.
    """
    from cancergpt_scvi.drug_response import nearest_drugs_average, tanimoto_similarity

    ks = [int(k)] if np.isscalar(k) else [int(v) for v in k]
    if not ks or min(ks) < 1:
        raise ValueError(f"k must be positive, got {k!r}.")
    drugs = pd.unique(pd.concat([train_pairs["drug"], test_pairs["drug"]]).astype(str))
    missing = [d for d in drugs if d not in fingerprints]
    if missing:
        raise ValueError(f"No fingerprint for drug(s) {listing(missing)}.")
    matrix = train_pairs.pivot_table(
        index="cell_line", columns="drug", values="response", aggfunc="mean"
    )
    reference = list(matrix.columns)
    values = matrix.to_numpy(dtype=float)
    ref_fp = np.stack([fingerprints[d] for d in reference])
    fallback = _mean_by(train_pairs, "cell_line", test_pairs)
    if len(ks) > 1:
        # leave-one-drug-out over the training drugs
        similarity = tanimoto_similarity(ref_fp, ref_fp)
        itself = np.arange(len(reference))
        loo = {kk: nearest_drugs_average(values, similarity, kk, exclude=itself) for kk in ks}
        cell_means = np.nanmean(values, axis=1, keepdims=True)
        measured = ~np.isnan(values)
        errors = {
            kk: float(np.mean((np.where(np.isnan(p), cell_means, p) - values)[measured] ** 2))
            for kk, p in loo.items()
        }
        best = min(errors, key=errors.get)
    else:
        best = ks[0]
    queries = list(pd.unique(test_pairs["drug"].astype(str)))
    query_fp = np.stack([fingerprints[d] for d in queries])
    predicted = nearest_drugs_average(values, tanimoto_similarity(query_fp, ref_fp), best)
    rows = matrix.index.get_indexer(test_pairs["cell_line"].astype(str))
    cols = pd.Index(queries).get_indexer(test_pairs["drug"].astype(str))
    out = np.where(rows >= 0, predicted[np.maximum(rows, 0), cols], np.nan)
    return np.where(np.isnan(out), fallback, out), best


def plot_per_drug_comparison(
    predictions: pd.DataFrame,
    x_method: str,
    y_method: str,
    min_pairs: int = 10,
    ax=None,
) -> Figure:
    """Per-drug Pearson of one method against another's, one point per drug.

    Parameters
    ----------
    predictions
        Long table with ``method``, ``drug``, ``response``, ``prediction``; each method's
        per-drug Pearson is over all its pairs of the drug.
    x_method, y_method
        Methods on the horizontal and vertical axis.
    min_pairs
        Fewest pairs a drug needs for its Pearson.
    ax
        Matplotlib axes to draw on (default: a new figure).

    Returns
    -------
    The figure.
    """
    import matplotlib.pyplot as plt

    from cancergpt_scvi.drug_response import per_drug_pearson

    per_drug = {}
    for method in (x_method, y_method):
        rows = predictions[predictions["method"] == method]
        if rows.empty:
            raise ValueError(f"No predictions for method {method!r}.")
        per_drug[method] = per_drug_pearson(
            rows["response"], rows["prediction"], rows["drug"], min_pairs
        )
    both = pd.concat(per_drug, axis=1, join="inner")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.4))
    x, y = both[x_method], both[y_method]
    ax.scatter(x, y, s=10, alpha=0.6, linewidths=0)
    lims = [min(x.min(), y.min(), 0.0) - 0.05, max(x.max(), y.max()) + 0.05]
    ax.plot(lims, lims, color="grey", lw=1, ls="--")
    ax.set(
        xlim=lims,
        ylim=lims,
        xlabel=f"{x_method}: per-drug Pearson (mean {x.mean():.3f})",
        ylabel=f"{y_method}: per-drug Pearson (mean {y.mean():.3f})",
        title=f"{len(both)} drugs; above the diagonal: {(y > x).mean():.0%}",
    )
    return ax.figure
