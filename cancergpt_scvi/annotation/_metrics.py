"""How well transferred labels match known ones: accuracy, F1 and the calibration of uncertainty."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score


def annotation_scores(
    true: Sequence | pd.Series,
    predicted: Sequence | pd.Series,
    uncertainty: Sequence[float] | np.ndarray | None = None,
) -> pd.Series:
    """Accuracy, macro-F1, per-label F1 and accuracy of the most / least certain thirds.

    Parameters
    ----------
    true
        Known labels of the query cells.
    predicted
        Predicted labels; a label absent from ``true`` (such as ``"unknown"``) counts as wrong.
    uncertainty
        Per-cell uncertainty (higher is less certain); gives ``accuracy_most_certain_third``
        and ``accuracy_least_certain_third`` (cells ranked by uncertainty, ties by order).

    Returns
    -------
    Series with ``accuracy``, ``macro_f1`` (over the labels of ``true``), ``f1_<label>`` for
    each label of ``true`` and, with ``uncertainty``, the accuracies of the thirds.
    """
    true = np.asarray(true, dtype=str)
    predicted = np.asarray(predicted, dtype=str)
    if true.shape != predicted.shape:
        raise ValueError(
            f"true and predicted have {len(true)} and {len(predicted)} cells; give one label "
            "of each per cell."
        )
    if len(true) == 0:
        raise ValueError("No cells to score.")
    labels = np.unique(true)
    per_label = f1_score(true, predicted, labels=labels, average=None, zero_division=0)
    scores = {
        "accuracy": accuracy_score(true, predicted),
        "macro_f1": float(np.mean(per_label)),
        **{f"f1_{label}": float(f) for label, f in zip(labels, per_label, strict=True)},
    }
    if uncertainty is not None:
        uncertainty = np.asarray(uncertainty, dtype=float)
        if uncertainty.shape != true.shape:
            raise ValueError(f"uncertainty has {len(uncertainty)} values for {len(true)} cells.")
        order = np.argsort(uncertainty, kind="stable")
        third = max(len(order) // 3, 1)
        correct = true == predicted
        scores["accuracy_most_certain_third"] = float(correct[order[:third]].mean())
        scores["accuracy_least_certain_third"] = float(correct[order[-third:]].mean())
    return pd.Series(scores, name="score")
