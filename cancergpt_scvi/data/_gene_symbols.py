"""The gene symbols of an AnnData's columns: ``var_names`` or a ``var`` column."""

from __future__ import annotations

import anndata as ad
import pandas as pd


def gene_symbols(adata: ad.AnnData, gene_symbols_key: str | None = None) -> pd.Index:
    """Gene symbol of each column of ``adata``, as strings.

    Parameters
    ----------
    adata
        Cells (or samples) x genes.
    gene_symbols_key
        ``var`` column with the symbols, when ``var_names`` are other identifiers (e.g. Ensembl
        ids); ``None`` takes ``var_names``.

    Raises
    ------
    KeyError
        ``gene_symbols_key`` is not a column of ``adata.var``.
    """
    if gene_symbols_key is None:
        return pd.Index(adata.var_names.astype(str))
    if gene_symbols_key not in adata.var.columns:
        raise KeyError(
            f"gene_symbols_key={gene_symbols_key!r} is not a column of adata.var "
            f"(columns: {list(adata.var.columns)}); pass the var column that holds gene symbols."
        )
    return pd.Index(adata.var[gene_symbols_key].astype(str))
