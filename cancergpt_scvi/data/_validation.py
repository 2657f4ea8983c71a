"""Checks of user data before it reaches a model."""

from __future__ import annotations

from collections.abc import Iterator

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import sparse

from cancergpt_scvi._listing import listing

_CHUNK = 10_000


def _stored_values(adata: ad.AnnData, matrix) -> Iterator[np.ndarray]:
    """The stored values of ``matrix`` (the non-zeros of a sparse one), ``_CHUNK`` rows at a time.

    Dense, sparse and backed matrices are read in row chunks so the checks need little memory.
    """
    for start in range(0, adata.n_obs, _CHUNK):
        block = matrix[start : start + _CHUNK]
        yield block.data if sparse.issparse(block) else np.asarray(block)


def check_expression(adata: ad.AnnData, layer: str | None = None) -> None:
    """Refuse expression with negative or non-finite values, or a layer that does not exist.

    Dense, sparse and backed matrices are read in row chunks.
    """
    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"layer={layer!r} is not in adata.layers (layers: {list(adata.layers.keys())}); "
            "pass layer=None to use adata.X."
        )
    matrix = adata.X if layer is None else adata.layers[layer]
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if matrix is None:
        raise ValueError(f"{where} is empty (None); put expression values there.")
    for values in _stored_values(adata, matrix):
        if not np.issubdtype(values.dtype, np.number):
            raise TypeError(f"{where} must be numeric, got dtype {values.dtype}.")
        if values.dtype == np.float16:
            # half precision overflows above 65504 and scipy's sparse code refuses it
            raise TypeError(
                f"{where} has dtype float16, which CancerGPT cannot read; convert it first, "
                f"e.g. adata.X = adata.X.astype(np.float32) (or the layer)."
            )
        if not np.isfinite(values).all():
            raise ValueError(
                f"{where} holds non-finite values (NaN or inf); CancerGPT needs finite "
                "non-negative expression (raw counts, or normalised values). Fill or drop them."
            )
        if (values < 0).any():
            raise ValueError(
                f"{where} holds negative values (min {values.min():.3g}); CancerGPT bins "
                "non-negative expression. Use raw counts or normalised (not scaled / centred) "
                "values, e.g. a 'counts' layer."
            )


def check_expression_values(values: np.ndarray | torch.Tensor) -> None:
    """Refuse negative or non-finite values met while a model reads expression.

    :func:`check_expression` checks an AnnData when it is set up; this checks the values read
    afterwards, which the AnnData may have gained since (it was changed after setup).
    """
    values = torch.as_tensor(values)
    if values.numel() == 0:
        return
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ValueError(
            "The expression holds negative or non-finite values (NaN or inf): CancerGPT bins "
            "non-negative expression. Was the AnnData changed after setup_anndata? Restore raw "
            "counts or normalised (not scaled) values, or run setup_anndata again to check them."
        )


def holds_counts(adata: ad.AnnData, layer: str | None = None) -> bool:
    """Whether the expression holds counts: finite, non-negative whole numbers only.

    Dense, sparse and backed matrices are read in row chunks, as :func:`check_expression`.

    Parameters
    ----------
    adata
        The cells.
    layer
        Layer to read (``None``: ``X``).

    Returns
    -------
    ``True`` when every stored value is a finite, non-negative whole number; ``False``
    otherwise, or when the matrix is ``None``.
    """
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        return False
    return all(
        np.isfinite(values).all() and (values >= 0).all() and (values == np.round(values)).all()
        for values in _stored_values(adata, matrix)
    )


def check_categorical_obs(adata: ad.AnnData, key: str | None, argument: str) -> None:
    """Refuse an obs column that is missing, continuous, or has missing values."""
    if key is None:
        return
    if key not in adata.obs.columns:
        raise KeyError(
            f"{argument}={key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)})."
        )
    column = adata.obs[key]
    if pd.api.types.is_float_dtype(column):
        raise TypeError(
            f"adata.obs[{key!r}] (the {argument}) is a float column; it must be categorical "
            f"(e.g. adata.obs[{key!r}] = adata.obs[{key!r}].astype(str).astype('category'))."
        )
    if column.isna().any():
        raise ValueError(
            f"adata.obs[{key!r}] (the {argument}) has {int(column.isna().sum())} missing "
            "values; fill them (e.g. with 'unknown') first."
        )


def check_unique_genes(symbols: pd.Index, gene_symbols_key: str | None = None) -> None:
    """Refuse genes that share a symbol: they would be read as one token, or one twice.

    Parameters
    ----------
    symbols
        The gene symbol of each column (:func:`~cancergpt_scvi.data.gene_symbols`).
    gene_symbols_key
        The ``var`` column the symbols come from (``None``: ``var_names``), for the message.
    """
    repeated = symbols[symbols.duplicated()].unique()
    if len(repeated) == 0:
        return
    if gene_symbols_key is None:
        where, fix = "var_names", "adata.var_names_make_unique() (keeps the first under its name)"
    else:
        where = f"adata.var[{gene_symbols_key!r}]"
        column = f"adata.var[{gene_symbols_key!r}]"
        fix = f"adata = adata[:, ~{column}.duplicated()].copy() (keeps the first)"
    raise ValueError(
        f"{len(repeated)} gene symbol(s) name more than one column of {where}: "
        f"{listing(list(repeated))}. Each gene must be one column; sum or drop the repeats, "
        f"e.g. {fix}."
    )
