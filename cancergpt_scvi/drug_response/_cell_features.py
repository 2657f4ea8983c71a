"""The cell-line representation a drug-response model reads: from an AnnData, checked."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from cancergpt_scvi._constants import CELL_FEATURES_KEY
from cancergpt_scvi._listing import listing
from cancergpt_scvi.data import match_genes_by_name


def dense(x: np.ndarray | sparse.spmatrix | pd.DataFrame) -> np.ndarray:
    """A dense float32 array of a matrix, sparse matrix or DataFrame."""
    if isinstance(x, pd.DataFrame):
        x = x.to_numpy()
    if sparse.issparse(x):
        x = x.toarray()
    return np.asarray(x, dtype=np.float32)


def check_features(x: np.ndarray, cell_lines: pd.Index) -> None:
    """Raise, naming the cell lines, if a row of ``x`` is not finite."""
    bad = ~np.isfinite(x).all(1)
    if bad.any():
        raise ValueError(
            f"The cell-line representation has non-finite values for {int(bad.sum())} cell "
            f"line(s): {listing(list(cell_lines[bad]))}."
        )


def warn_if_counts(x: np.ndarray) -> None:
    """Warn when expression used as representation looks like raw counts."""
    if x.max() > 100 and np.array_equal(x, np.round(x)):
        warnings.warn(
            "The expression looks like raw counts; the cell-line branch expects "
            "log-normalised expression (e.g. log1p TPM or CPM). Normalise it, or pass the "
            "layer that holds it with layer=.",
            UserWarning,
            stacklevel=3,
        )


def read_cell_features(adata: AnnData, field_registry: dict, n_features: int) -> np.ndarray:
    """The representation of ``adata``'s cell lines where a model's registry says it lies.

    Parameters
    ----------
    adata
        Cell lines, set up or not.
    field_registry
        The model's registry entry of the representation field (where setup read it:
        ``obsm`` key, layer or ``X``, and the genes of expression).
    n_features
        Width the model expects.

    Returns
    -------
    Dense float32 array, one row per cell line of ``adata``.

    Raises
    ------
    ValueError
        ``adata`` lacks the representation or one of the model's genes (genes are matched by
        name, in any order), its width differs from the model's, or a row is not finite.
    """
    state = field_registry["state_registry"]
    # where setup read the representation: ("obsm", key), ("layers", layer) or ("X", None)
    attr_name = field_registry["data_registry"]["attr_name"]
    attr_key = field_registry["data_registry"]["attr_key"]
    container = getattr(adata, attr_name)
    if attr_key is not None and attr_key not in container:
        raise ValueError(
            f"adata.{attr_name} has no {attr_key!r}, the representation this model reads."
        )
    columns = None
    if attr_name != "obsm" and "column_names" in state:
        # expression is read by gene name: another order is reordered, a missing gene refused
        columns = match_genes_by_name(adata.var_names, state["column_names"])
    matrix = container if attr_key is None else container[attr_key]
    x = dense(matrix if columns is None else matrix[:, columns])
    if x.shape[1] != n_features:
        raise ValueError(
            f"The representation has {x.shape[1]} features; the model expects {n_features}."
        )
    check_features(x, adata.obs_names)
    return x


def reads_expression(registry: dict) -> bool:
    """Whether a model's cell-line features are expression (``X`` or a layer), not ``obsm``."""
    field = registry["field_registries"][CELL_FEATURES_KEY]
    return field["data_registry"]["attr_name"] != "obsm"
