"""The scale of expression a head was trained on (counts, log, ...), checked on new data."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse

#: Non-integer expression whose typical per-sample maximum is above this is not log-scaled
#: (log1p of counts per million stays below 14, log2 of TPM + 1 below 20).
_LOG_MAX = 30.0
#: Typical per-sample maxima of the same kind of expression differing by more than this
#: factor: a warning (same kind, but another normalisation or log base).
_MAX_RATIO = 3.0

ScaleKind = Literal["counts", "log", "linear", "centred"]

_DESCRIPTION = {
    "counts": "counts (whole numbers)",
    "log": "log-scaled expression (e.g. log1p CPM)",
    "linear": "normalised expression that is not log-scaled (e.g. CPM or TPM)",
    "centred": "centred or standardised values (negative values)",
}
_ADVICE = {
    "counts": "Give raw counts, as in training (e.g. the counts layer).",
    "log": (
        "Normalise and log-transform them as the training data were (e.g. "
        "sc.pp.normalize_total(adata, target_sum=1e6); sc.pp.log1p(adata)), or pass the data "
        "(or layer) that hold that."
    ),
    "linear": "Normalise them as the training data were, without the log.",
    "centred": "Centre and scale them as the training data were.",
}


def expression_scale(x: np.ndarray | sparse.spmatrix | pd.DataFrame) -> dict | None:
    """A summary of the scale of an expression matrix (samples x genes).

    Returns
    -------
    ``{"kind": ..., "typical_max": ...}``: ``kind`` is ``"counts"`` (non-negative whole
    numbers), ``"log"`` (non-integer, per-sample maxima typically at most 30), ``"linear"``
    (non-integer, larger) or ``"centred"`` (negative values); ``typical_max`` is the median
    of the per-sample maxima. ``None`` when the matrix holds no non-zero value (nothing to
    judge by).
    """
    if isinstance(x, pd.DataFrame):
        x = x.to_numpy()
    if sparse.issparse(x):
        x = sparse.csr_matrix(x)
        values = x.data
        row_max = x.max(axis=1).toarray().ravel() if x.shape[1] else np.zeros(x.shape[0])
    else:
        x = np.asarray(x)
        values = x.ravel()
        row_max = x.max(axis=1) if x.size else np.zeros(x.shape[0])
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return None
    if (values < 0).any():
        kind = "centred"
    elif np.array_equal(values, np.round(values)):
        kind = "counts"
    else:
        kind = "log" if float(np.median(row_max)) <= _LOG_MAX else "linear"
    return {"kind": kind, "typical_max": float(np.median(row_max))}


def check_expression_scale(
    trained: dict | None, x: np.ndarray | sparse.spmatrix | pd.DataFrame, where: str = "adata"
) -> None:
    """Refuse new expression on another scale than the training data's.

    Parameters
    ----------
    trained
        :func:`expression_scale` of the training data (``None``: nothing recorded, no check).
    x
        The new expression, in the model's genes.
    where
        How to name the new data in messages.

    Raises
    ------
    ValueError
        The new expression is of another kind (e.g. counts where the model was trained on
        log-scaled expression).

    Warns
    -----
    UserWarning
        Same kind, but typical per-sample maxima more than three-fold apart (another
        normalisation or log base, perhaps).
    """
    if trained is None:
        return
    seen = expression_scale(x)
    if seen is None:
        return
    summary = f"typical per-sample maximum {seen['typical_max']:.3g}"
    trained_summary = f"typical maximum {trained['typical_max']:.3g}"
    if seen["kind"] != trained["kind"]:
        raise ValueError(
            f"{where} holds {_DESCRIPTION[seen['kind']]}, {summary}; the model was trained on "
            f"{_DESCRIPTION[trained['kind']]}, {trained_summary}, and its predictions on other "
            f"scales are wrong. {_ADVICE[trained['kind']]}"
        )
    low, high = sorted((abs(seen["typical_max"]), abs(trained["typical_max"])))
    if seen["kind"] != "counts" and low > 0 and high / low > _MAX_RATIO:
        warnings.warn(
            f"{where} holds {_DESCRIPTION[seen['kind']]} like the training data, but its "
            f"{summary} differs from the training data's ({trained['typical_max']:.3g}): "
            f"another normalisation or log base? {_ADVICE[trained['kind']]}",
            UserWarning,
            stacklevel=3,
        )
