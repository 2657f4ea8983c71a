"""The cells (or samples) a model is asked about: integer positions or a boolean mask."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cancergpt_scvi._listing import listing


def cell_indices(indices: Sequence[int] | np.ndarray | None, n_obs: int) -> np.ndarray | None:
    """Positions of the cells (or samples) asked for: integer positions or a boolean mask.

    The one reading of an ``indices`` argument for every model of the package, so that a
    boolean mask is never cast to positions 0 and 1.

    Parameters
    ----------
    indices
        Integer positions (in the order wanted), a boolean mask of ``n_obs`` entries, or
        ``None`` (every cell).
    n_obs
        Cells of the AnnData.

    Returns
    -------
    ``int64`` positions, or ``None`` for every cell.

    Raises
    ------
    ValueError
        A boolean mask of the wrong length.
    TypeError
        Neither integers nor booleans, or not one-dimensional.
    IndexError
        Positions out of range.
    """
    if indices is None:
        return None
    arr = np.asarray(indices)
    if arr.dtype == bool:
        if arr.shape != (n_obs,):
            raise ValueError(
                f"A boolean mask as indices must have one entry per cell or sample ({n_obs}), "
                f"got shape {arr.shape}."
            )
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"indices must be integer positions or a boolean mask of the cells, got {arr.dtype} "
            f"with shape {arr.shape}."
        )
    bad = arr[(arr < 0) | (arr >= n_obs)]
    if len(bad):
        raise IndexError(
            f"indices {listing(bad.tolist())} are out of range for an AnnData of {n_obs} cells "
            f"(positions 0 to {n_obs - 1})."
        )
    return arr.astype(np.int64, copy=False)
