"""Evaluation of survival predictions: concordance, risk groups, Kaplan–Meier curves, log-rank.

Thin wrappers over scikit-survival (concordance) and lifelines (Kaplan–Meier, log-rank), so
that statistics are never hand-written here; they fix the conventions (risk = log relative
hazard, higher means earlier death) and turn degenerate inputs into clear errors. Both
libraries come with the ``[survival]`` extra and are imported when a function needs them;
:func:`risk_groups` needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from cancergpt_scvi._extras import require

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike

RiskGroupMethod = Literal["median", "tertiles"]

_GROUP_LABELS = {
    "median": ["low risk", "high risk"],
    "tertiles": ["low risk", "intermediate risk", "high risk"],
}


def _extra(module: str, feature: str) -> ModuleType:
    """A module of lifelines or scikit-survival, or the error naming the ``[survival]`` extra."""
    return require(module, extra="survival", feature=feature)


def _survival_array(durations: ArrayLike, events: ArrayLike, feature: str) -> np.ndarray:
    Surv = _extra("sksurv.util", feature).Surv
    return Surv.from_arrays(event=np.asarray(events).astype(bool), time=np.asarray(durations))


def concordance_harrell(durations: ArrayLike, events: ArrayLike, risk: ArrayLike) -> float:
    """Harrell's C-index of a risk score (higher risk = shorter survival).

    Parameters
    ----------
    durations, events, risk
        Follow-up times, event indicators (1 = event) and predicted risks of the same samples.

    Returns
    -------
    The share of comparable pairs ordered correctly (ties in risk count one half); 0.5 is
    chance, 1 perfect. Computed by :func:`sksurv.metrics.concordance_index_censored`.
    """
    metrics = _extra("sksurv.metrics", "concordance_harrell")
    events = np.asarray(events).astype(bool)
    if not events.any():
        raise ValueError("Harrell's C needs at least one event; every sample is censored.")
    return float(
        metrics.concordance_index_censored(events, np.asarray(durations, float), np.asarray(risk))[
            0
        ]
    )


def uno_truncation_time(train_durations: ArrayLike, train_events: ArrayLike) -> float:
    """Largest time up to which the censoring distribution of a training set stays positive.

    Uno's C weights each event by the inverse probability of remaining uncensored; past the
    last time at which the Kaplan–Meier estimate of that probability is positive the weights
    do not exist, so the C-index is truncated there (and at the last training time).

    Parameters
    ----------
    train_durations, train_events
        Follow-up times and event indicators (1 = event) of the training samples.

    Returns
    -------
    The truncation time ``tau`` for :func:`concordance_uno`.
    """
    feature = "uno_truncation_time"
    estimator = _extra("sksurv.nonparametric", feature).CensoringDistributionEstimator
    durations = np.asarray(train_durations, float)
    cens = estimator().fit(_survival_array(durations, train_events, feature))
    times = np.unique(durations)
    g = cens.predict_proba(times)
    zero = times[g <= 0.0]
    return float(min(zero.min(), times.max())) if zero.size else float(times.max())


def concordance_uno(
    train_durations: ArrayLike,
    train_events: ArrayLike,
    test_durations: ArrayLike,
    test_events: ArrayLike,
    risk: ArrayLike,
    tau: float | None = None,
) -> float:
    """Uno's inverse-probability-of-censoring-weighted C-index on a test set.

    Harrell's C depends on the censoring distribution when censoring is heavy; Uno's weights
    remove that dependence. The censoring distribution is estimated on the training set.

    Parameters
    ----------
    train_durations, train_events
        Training outcomes (for the censoring distribution).
    test_durations, test_events, risk
        Test outcomes and the risks predicted for them.
    tau
        Truncation time; default the last time at which the training set's censoring
        distribution (Kaplan–Meier) is still positive, at most its last follow-up time: past
        it the inverse-probability weights do not exist.

    Returns
    -------
    Uno's C (:func:`sksurv.metrics.concordance_index_ipcw`), or NaN when no test event lies
    before ``tau``.
    """
    feature = "concordance_uno"
    metrics = _extra("sksurv.metrics", feature)
    if tau is None:
        tau = uno_truncation_time(train_durations, train_events)
    test_durations = np.asarray(test_durations, float)
    test_events = np.asarray(test_events).astype(bool)
    if not (test_events & (test_durations < tau)).any():
        return float("nan")
    return float(
        metrics.concordance_index_ipcw(
            _survival_array(train_durations, train_events, feature),
            _survival_array(test_durations, test_events, feature),
            np.asarray(risk, float),
            tau=tau,
        )[0]
    )


def risk_groups(
    risk_percentile: np.ndarray | pd.Series,
    method: RiskGroupMethod = "median",
) -> pd.Categorical:
    """Split samples into risk groups by their risk percentile.

    Parameters
    ----------
    risk_percentile
        Each sample's risk as a percentile in ``[0, 1]`` of a reference distribution, e.g.
        the share of training samples with a lower predicted risk; cutting percentiles rather
        than raw risks lets each cross-validation fold use its own training cut-points.
    method
        ``"median"`` (two groups) or ``"tertiles"`` (three).

    Returns
    -------
    Ordered categorical from ``"low risk"`` to ``"high risk"``.
    """
    if method not in _GROUP_LABELS:
        raise ValueError(f"method must be 'median' or 'tertiles', got {method!r}.")
    pct = np.asarray(risk_percentile, float)
    if np.isnan(pct).any():
        raise ValueError("risk_percentile contains NaN; every sample needs a predicted risk.")
    labels = _GROUP_LABELS[method]
    cuts = np.linspace(0.0, 1.0, len(labels) + 1)[1:-1]
    codes = np.searchsorted(cuts, pct, side="right")
    return pd.Categorical.from_codes(codes, categories=labels, ordered=True)


def percentile_among(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Percentile of each value in ``reference``: the share below it, ties counted one half.

    The held-out risks of a cross-validation fold as percentiles of the fold's training
    risks, which :func:`risk_groups` cuts at the training median or tertiles.
    """
    ref = np.sort(reference)
    below = np.searchsorted(ref, values, side="left")
    at_or_below = np.searchsorted(ref, values, side="right")
    return (below + at_or_below) / (2.0 * len(ref))


def logrank_pvalue(durations: ArrayLike, events: ArrayLike, groups: ArrayLike) -> float:
    """P-value of the (multivariate) log-rank test of equal survival across groups.

    Parameters
    ----------
    durations, events
        Follow-up times and event indicators (1 = event) of the samples.
    groups
        Group label of each sample; at least two groups.

    Returns
    -------
    The p-value of :func:`lifelines.statistics.multivariate_logrank_test`.
    """
    statistics = _extra("lifelines.statistics", "logrank_pvalue")
    groups = pd.Series(np.asarray(groups))
    if groups.nunique() < 2:
        raise ValueError("The log-rank test needs at least two non-empty groups.")
    result = statistics.multivariate_logrank_test(
        np.asarray(durations, float), groups.to_numpy(), np.asarray(events).astype(int)
    )
    return float(result.p_value)


def plot_kaplan_meier(
    durations: ArrayLike,
    events: ArrayLike,
    groups: ArrayLike,
    ax: Axes | None = None,
    title: str | None = None,
    show_ci: bool = True,
) -> tuple[Axes, float]:
    """Kaplan–Meier curve of each group with the log-rank p-value in the legend title.

    Parameters
    ----------
    durations, events
        Outcomes of the samples.
    groups
        Group label of each sample (e.g. from :func:`risk_groups`); a categorical's order is
        kept in the legend.
    ax
        Axes to draw on; a new figure when ``None``.
    title
        Axes title.
    show_ci
        Draw the 95% confidence bands.

    Returns
    -------
    The axes and the log-rank p-value.
    """
    lifelines = _extra("lifelines", "plot_kaplan_meier")
    import matplotlib.pyplot as plt

    durations = np.asarray(durations, float)
    events = np.asarray(events).astype(int)
    groups = pd.Series(pd.Categorical(groups) if not hasattr(groups, "categories") else groups)
    p_value = logrank_pvalue(durations, events, groups)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    for label in groups.cat.categories:
        mask = (groups == label).to_numpy()
        if not mask.any():
            continue
        kmf = lifelines.KaplanMeierFitter(label=f"{label} (n={int(mask.sum())})")
        kmf.fit(durations[mask], events[mask])
        kmf.plot_survival_function(ax=ax, ci_show=show_ci)
    ax.set_xlabel("time")
    ax.set_ylabel("survival probability")
    ax.legend(title=f"log-rank p = {p_value:.2g}")
    if title is not None:
        ax.set_title(title)
    return ax, p_value
