"""Confusion matrix of predicted against known labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot_confusion_matrix(
    true: Sequence,
    predicted: Sequence,
    ax: Axes | None = None,
    title: str | None = None,
    path: str | Path | None = None,
) -> Axes:
    """Row-normalised confusion matrix: how the cells of each known label were predicted.

    Parameters
    ----------
    true
        Known labels.
    predicted
        Predicted labels (may include labels absent from ``true``, such as ``"unknown"``,
        shown as extra columns).
    ax
        Axes to draw on; default: a new figure.
    title
        Title of the panel.
    path
        Where to save the figure (PNG).
    """
    import matplotlib.pyplot as plt

    true = np.asarray(true, dtype=str)
    predicted = np.asarray(predicted, dtype=str)
    known = list(np.unique(true))
    labels = known + sorted(set(np.unique(predicted)) - set(known))
    if ax is None:
        size = 1.0 + 0.6 * len(labels)
        _, ax = plt.subplots(figsize=(size + 1.5, size))
    display = ConfusionMatrixDisplay.from_predictions(
        true,
        predicted,
        labels=labels,
        normalize="true",
        values_format=".2f",
        xticks_rotation=45,
        colorbar=False,
        ax=ax,
    )
    # rows of labels the query lacks (e.g. "unknown") are all zero: show the known ones only
    for text in display.text_[len(known) :].ravel():
        text.remove()
    ax.set_ylim(len(known) - 0.5, -0.5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("known")
    if title:
        ax.set_title(title)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=150)
    return ax
