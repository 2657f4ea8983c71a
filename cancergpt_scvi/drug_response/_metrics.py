"""Accuracy of predicted drug responses: global and per-drug correlation, RMSE."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import root_mean_squared_error

ArrayLike = np.ndarray | pd.Series | Sequence


def per_drug_pearson(
    observed: ArrayLike, predicted: ArrayLike, drugs: ArrayLike, min_pairs: int = 3
) -> pd.Series:
    """Pearson correlation of predicted and observed response across cell lines, per drug.

    Drugs with fewer than ``min_pairs`` pairs, or with constant observed or predicted values,
    have no correlation and are left out.

    Parameters
    ----------
    observed, predicted
        Response of each pair.
    drugs
        Drug of each pair.
    min_pairs
        Fewest pairs a drug needs for a correlation.

    Returns
    -------
    Correlation per drug, indexed by drug (sorted), named ``"pearson"``.
    """
    frame = pd.DataFrame(
        {"o": np.asarray(observed), "p": np.asarray(predicted), "d": np.asarray(drugs)}
    )
    out = {}
    for drug, g in frame.groupby("d", sort=True):
        # np.ptp is exactly 0 for constant values (std can be a rounding error above 0)
        if len(g) >= min_pairs and np.ptp(g["o"]) > 0 and np.ptp(g["p"]) > 0:
            out[drug] = stats.pearsonr(g["p"], g["o"])[0]
    return pd.Series(out, name="pearson", dtype=float)


def drug_response_metrics(
    observed: ArrayLike, predicted: ArrayLike, drugs: ArrayLike, min_pairs: int = 3
) -> pd.Series:
    """Accuracy of predicted against observed responses over a set of pairs.

    Global Pearson, Spearman and RMSE over all pairs are dominated by differences in potency
    between drugs, which a drug-mean predictor gets without looking at cells; the mean and
    median of the per-drug Pearson (:func:`per_drug_pearson`) measure how well each drug's
    cell lines are ranked.

    Parameters
    ----------
    observed, predicted
        Response of each pair.
    drugs
        Drug of each pair.
    min_pairs
        Fewest pairs a drug needs for its per-drug Pearson.

    Returns
    -------
    ``pearson``, ``spearman``, ``rmse``, ``per_drug_pearson_mean``,
    ``per_drug_pearson_median`` (NaN where undefined: constant predictions, no drug scored),
    ``n_pairs`` and ``n_drugs_scored``.
    """
    observed = np.asarray(observed, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    per_drug = per_drug_pearson(observed, predicted, np.asarray(drugs), min_pairs)
    constant = np.ptp(predicted) == 0
    return pd.Series(
        {
            "pearson": np.nan if constant else stats.pearsonr(predicted, observed)[0],
            "spearman": np.nan if constant else stats.spearmanr(predicted, observed)[0],
            "rmse": root_mean_squared_error(observed, predicted),
            "per_drug_pearson_mean": per_drug.mean() if len(per_drug) else np.nan,
            "per_drug_pearson_median": per_drug.median() if len(per_drug) else np.nan,
            "n_pairs": len(observed),
            "n_drugs_scored": len(per_drug),
        }
    )
