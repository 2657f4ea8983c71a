"""Matching new data's genes to the genes a head was trained on, by name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cancergpt_scvi._listing import listing


def match_genes_by_name(
    var_names: Sequence[str], model_genes: Sequence[str], where: str = "adata"
) -> np.ndarray | None:
    """Columns of new data that hold a model's training genes, in the model's order.

    A head that reads expression reads its training genes by position; new data may hold
    them in another order, among other genes. Matching by name makes that order irrelevant,
    and refuses data where a training gene cannot be found (a gene read by position from
    another gene would give a silently wrong answer).

    Parameters
    ----------
    var_names
        Gene names of the new data (``adata.var_names``).
    model_genes
        The genes the model was trained on, in the order it reads them.
    where
        How to name the new data in messages.

    Returns
    -------
    ``None`` when ``var_names`` are ``model_genes`` in order (nothing to do); otherwise the
    position in ``var_names`` of each model gene, to select and reorder the columns with.

    Raises
    ------
    ValueError
        A model gene is missing from ``var_names``, or named more than once there.
    """
    names = pd.Index(np.asarray(var_names, dtype=object).astype(str))
    genes = pd.Index(np.asarray(model_genes, dtype=object).astype(str))
    if len(names) == len(genes) and names.equals(genes):
        return None
    missing = genes[~genes.isin(names)]
    if len(missing):
        found = len(genes) - len(missing)
        hint = (
            f" None match: the model's genes look like {listing(genes[:3], 3)}, {where}'s like "
            f"{listing(names[:3], 3)} (another naming scheme, e.g. Ensembl IDs against "
            "symbols?)."
            if found == 0
            else ""
        )
        raise ValueError(
            f"{where} lacks {len(missing)} of the {len(genes)} genes the model was trained on "
            f"({listing(missing)}); it reads those genes by name ({where}.var_names).{hint} "
            "Give data that hold every training gene, named as in training (rename them, e.g. "
            "map gene IDs to the training symbols), or train the head on the genes these data "
            "have."
        )
    repeated = names[names.duplicated() & names.isin(genes)].unique()
    if len(repeated):
        raise ValueError(
            f"{where}.var_names name {len(repeated)} of the model's genes more than once "
            f"({listing(repeated)}); keep one column per gene (e.g. adata.var_names_make_unique() "
            "after summing or choosing among the repeats)."
        )
    # other genes may repeat: look up the (unique) model genes only
    position = pd.Series(np.arange(len(names)), index=names)
    return position[names.isin(genes)].loc[genes].to_numpy()
