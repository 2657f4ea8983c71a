"""Drug-response data: checks of a response table and of drug structures; the response matrix."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from cancergpt_scvi._listing import listing

from ._molecules import parse_smiles

logger = logging.getLogger(__name__)


def validate_smiles(smiles: Mapping[str, str] | pd.Series, drugs: Sequence[str]) -> dict[str, str]:
    """Check that every drug has a SMILES that RDKit parses.

    Parameters
    ----------
    smiles
        Drug name to SMILES (a dict or a Series indexed by drug). It may name drugs beyond
        ``drugs`` (they can be predicted later).
    drugs
        Drugs that must have a structure.

    Returns
    -------
    Drug name (as a string) to SMILES, for every drug of ``smiles``.

    Raises
    ------
    ValueError
        A drug is named twice, a drug of ``drugs`` has no SMILES, or a SMILES does not parse.
    """
    if isinstance(smiles, pd.Series):
        if smiles.index.has_duplicates:
            dup = smiles.index[smiles.index.duplicated()].unique()
            raise ValueError(f"smiles names drug(s) {listing(dup)} more than once.")
        smiles = smiles.to_dict()
    if not isinstance(smiles, Mapping):
        raise TypeError(
            f"smiles must be a dict or a pandas Series of drug -> SMILES, got {type(smiles)}."
        )
    smiles = {str(k): v for k, v in smiles.items()}
    missing = [
        d for d in drugs if d not in smiles or not isinstance(smiles[d], str) or not smiles[d]
    ]
    if missing:
        raise ValueError(
            f"{len(missing)} drug(s) have no SMILES: {listing(missing)}. Give a SMILES string "
            "for every drug of the response table (drug structures drive the drug branch)."
        )
    for name, s in smiles.items():
        parse_smiles(s, name)  # raises, naming the drug, if RDKit cannot read it
    return smiles


def response_matrix(
    cell_lines: pd.Index,
    responses: pd.DataFrame,
    cell_line_key: str = "cell_line",
    drug_key: str = "drug",
    response_key: str = "response",
    drop_unknown_cell_lines: bool = False,
    duplicates: Literal["refuse", "mean"] = "refuse",
) -> pd.DataFrame:
    """Turn a long response table into a cell lines x drugs matrix (NaN where unmeasured).

    Parameters
    ----------
    cell_lines
        The cell lines of the AnnData (its ``obs_names``), the rows of the result.
    responses
        One row per measurement, with columns ``cell_line_key``, ``drug_key``,
        ``response_key``.
    cell_line_key, drug_key, response_key
        Column names.
    drop_unknown_cell_lines
        If False (default), rows naming a cell line absent from ``cell_lines`` are an error;
        if True they are dropped with a warning that counts them.
    duplicates
        What to do with a (cell line, drug) pair measured more than once: ``"refuse"``
        (an error) or ``"mean"`` (average the replicates).

    Returns
    -------
    float32 matrix indexed by ``cell_lines``, one column per drug.
    """
    if not isinstance(responses, pd.DataFrame):
        raise TypeError(f"responses must be a pandas DataFrame, got {type(responses)}.")
    missing_cols = [c for c in (cell_line_key, drug_key, response_key) if c not in responses]
    if missing_cols:
        raise ValueError(
            f"responses has no column(s) {missing_cols}; its columns are "
            f"{list(responses.columns)}. Set cell_line_key, drug_key and response_key."
        )
    if duplicates not in ("refuse", "mean"):
        raise ValueError(f"duplicates must be 'refuse' or 'mean', got {duplicates!r}.")
    table = pd.DataFrame(
        {
            "cell_line": responses[cell_line_key].astype(str).to_numpy(),
            "drug": responses[drug_key].astype(str).to_numpy(),
            "response": pd.to_numeric(responses[response_key], errors="coerce").to_numpy(float),
        }
    )
    bad = ~np.isfinite(table["response"].to_numpy())
    if bad.any():
        rows = table[bad]
        raise ValueError(
            f"{int(bad.sum())} response(s) in column {response_key!r} are not finite numbers "
            f"(NaN, inf or non-numeric), e.g. pairs "
            f"{listing(list(zip(rows.cell_line, rows.drug, strict=True)))}. "
            "Drop or fix these rows before setup."
        )
    unknown = ~table["cell_line"].isin(cell_lines)
    if unknown.any():
        names = table.loc[unknown, "cell_line"].unique()
        message = (
            f"{int(unknown.sum())} response row(s) name {len(names)} cell line(s) that are not "
            f"in adata.obs_names: {listing(names)}."
        )
        if not drop_unknown_cell_lines:
            raise ValueError(
                message + " Add their expression to adata, fix the names, or pass "
                "drop_unknown_cell_lines=True to drop these rows."
            )
        warnings.warn(message + " They are dropped.", UserWarning, stacklevel=3)
        table = table[~unknown]
    if table.empty:
        raise ValueError("No response rows remain; check cell-line names against adata.")
    dup = table.duplicated(["cell_line", "drug"], keep=False)
    if dup.any():
        pairs = table.loc[dup, ["cell_line", "drug"]].drop_duplicates()
        message = f"{len(pairs)} (cell line, drug) pair(s) are measured more than once"
        if duplicates == "refuse":
            raise ValueError(
                f"{message}, e.g. {listing(list(zip(pairs.cell_line, pairs.drug, strict=True)))}"
                ". Pass duplicates='mean' to average replicates, or deduplicate the table."
            )
        logger.info("%s; their replicates are averaged.", message)
    matrix = table.pivot_table(
        index="cell_line", columns="drug", values="response", aggfunc="mean", sort=False
    )
    matrix = matrix.reindex(cell_lines).astype(np.float32)
    matrix.columns = matrix.columns.astype(str)
    matrix.columns.name = None
    return matrix


def response_pairs(
    matrix: pd.DataFrame,
    cell_line_key: str = "cell_line",
    drug_key: str = "drug",
    response_key: str = "response",
) -> pd.DataFrame:
    """Long table of the measured (finite) pairs of a response matrix.

    Parameters
    ----------
    matrix
        Cell lines x drugs, NaN where unmeasured (as :func:`response_matrix` returns).
    cell_line_key, drug_key, response_key
        Names of the cell-line, drug and response columns of the result.

    Returns
    -------
    One row per measured pair, cell line-major: the three named columns, and the pair's row
    (``cell_index``) and column (``drug_index``) in ``matrix``.
    """
    values = matrix.to_numpy()
    cell_index, drug_index = np.nonzero(np.isfinite(values))
    return pd.DataFrame(
        {
            cell_line_key: matrix.index.to_numpy()[cell_index],
            drug_key: matrix.columns.to_numpy()[drug_index],
            response_key: values[cell_index, drug_index],
            "cell_index": cell_index,
            "drug_index": drug_index,
        }
    )


def holdout_mask(names: Sequence[str] | None, known: pd.Index, what: str) -> np.ndarray:
    """Bool mask over ``known`` of the held-out ``names``; an error naming unknown ones."""
    if names is None:
        return np.zeros(len(known), dtype=bool)
    names = [str(n) for n in names]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"Held-out {what} {listing(unknown)} are not in the data.")
    return known.isin(names)
