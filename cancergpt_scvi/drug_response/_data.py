"""Drug-response data: checks of a response table; minibatches of (cell line, drug) pairs."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GroupShuffleSplit
from torch.utils.data import BatchSampler, DataLoader, Dataset, SubsetRandomSampler

from cancergpt_scvi._listing import listing

from ._molecules import DrugFeaturizer, parse_smiles

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


class DrugResponsePairs(Dataset):
    """(cell line, drug) pairs with cell-line features and drug structures.

    Indexed by a list of pair positions (a whole minibatch at once, as scvi-tools'
    ``AnnDataLoader`` does), it returns the minibatch's *unique* cell lines and drugs and each
    pair's position among them, so each cell line and each drug graph is encoded once per
    minibatch.

    Parameters
    ----------
    cell_features
        ``(n_cell_lines, n_features)`` cell-line representation.
    drugs
        Featurised drug structures.
    cell_index, drug_index
        Each pair's row in ``cell_features`` and drug in ``drugs``.
    response
        Each pair's response, or None for prediction.
    """

    def __init__(
        self,
        cell_features: np.ndarray,
        drugs: DrugFeaturizer,
        cell_index: np.ndarray,
        drug_index: np.ndarray,
        response: np.ndarray | None = None,
    ):
        self.cell_features = np.ascontiguousarray(cell_features, dtype=np.float32)
        self.drugs = drugs
        self.cell_index = np.asarray(cell_index, dtype=np.int64)
        self.drug_index = np.asarray(drug_index, dtype=np.int64)
        self.response = None if response is None else np.asarray(response, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.cell_index)

    def __getitem__(self, indices: Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        indices = np.asarray(indices)
        cells, pair_cell = np.unique(self.cell_index[indices], return_inverse=True)
        drugs, pair_drug = np.unique(self.drug_index[indices], return_inverse=True)
        # pair-level tensors first: Lightning takes the first tensor's length as batch size
        batch = {"pair_cell": torch.from_numpy(pair_cell), "pair_drug": torch.from_numpy(pair_drug)}
        if self.response is not None:
            batch["response"] = torch.from_numpy(self.response[indices])
        return {
            **batch,
            "cell_features": torch.from_numpy(self.cell_features[cells]),
            "drug_ids": torch.from_numpy(drugs),
            **self.drugs.batch(drugs),
        }

    def loader(self, indices: np.ndarray, batch_size: int, shuffle: bool = False) -> DataLoader:
        """Minibatches of the pairs ``indices``.

        Parameters
        ----------
        indices
            Positions of the pairs to serve.
        batch_size
            Pairs per minibatch.
        shuffle
            Draw the pairs in a random order each epoch.
        """
        indices = np.asarray(indices)
        order = SubsetRandomSampler(indices) if shuffle else indices
        batches = BatchSampler(order, batch_size=batch_size, drop_last=False)
        # batch_size=None: each sampled item is already a whole minibatch of pair positions
        return DataLoader(self, sampler=batches, batch_size=None)


def split_pairs(
    groups: np.ndarray,
    available: np.ndarray,
    train_size: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Split the available pairs into training and validation by whole groups.

    ``floor((1 - train_size) * n_groups)`` groups validate (none for ``train_size=1``), drawn
    with scikit-learn's :class:`~sklearn.model_selection.GroupShuffleSplit`.

    Parameters
    ----------
    groups
        Group of each pair (its own position for a split by pairs, its cell line or drug).
    available
        Bool mask of the pairs that may be used (not held out).
    train_size
        Share of groups for training; the rest validate.
    seed
        Seed of the split.

    Returns
    -------
    Positions of the training pairs and of the validation pairs.

    Raises
    ------
    ValueError
        ``train_size`` is not in (0, 1], or no pair is available.
    """
    if not 0.0 < train_size <= 1.0:
        raise ValueError(f"train_size must be in (0, 1], got {train_size}.")
    candidates = np.flatnonzero(available)
    if len(candidates) == 0:
        raise ValueError(
            "The held-out cell lines and drugs cover every pair: no training pairs remain."
        )
    candidate_groups = np.asarray(groups)[candidates]
    n_groups = len(np.unique(candidate_groups))
    # rounded first so that e.g. (1 - 0.8) * 5 = 0.99999... counts as one group
    n_val = min(int(np.floor(round((1.0 - train_size) * n_groups, 9))), n_groups - 1)
    if n_val == 0:
        return candidates, candidates[:0]
    splitter = GroupShuffleSplit(
        n_splits=1, train_size=n_groups - n_val, test_size=n_val, random_state=seed
    )
    train, val = next(splitter.split(candidates, groups=candidate_groups))
    return candidates[np.sort(train)], candidates[np.sort(val)]


class DrugResponseDataSplitter(pl.LightningDataModule):
    """Training and validation minibatches of pairs, with held-out pairs kept apart.

    The counterpart of scvi-tools' ``DataSplitter`` for pair data: it exposes ``train_idx``,
    ``val_idx``, ``test_idx`` (the held-out pairs, never loaded here), ``n_train`` and
    ``n_val``, which ``TrainRunner`` copies onto the model.

    Parameters
    ----------
    dataset
        All pairs of the model's data.
    held_out
        Bool mask of pairs kept out of training and validation (held-out cell lines or drugs).
    validation_by
        Validation pairs drawn as random ``"pairs"``, or as whole ``"cell_lines"`` or
        ``"drugs"`` (matching the held-out evaluation makes early stopping honest).
    train_size
        Share of the available pairs (or groups) used for training.
    batch_size
        Minibatch size, in pairs.
    seed
        Seed of the validation split.
    """

    def __init__(
        self,
        dataset: DrugResponsePairs,
        held_out: np.ndarray,
        validation_by: Literal["pairs", "cell_lines", "drugs"] = "pairs",
        train_size: float = 0.9,
        batch_size: int = 128,
        seed: int = 0,
    ):
        super().__init__()
        groups = {
            "pairs": np.arange(len(dataset)),
            "cell_lines": dataset.cell_index,
            "drugs": dataset.drug_index,
        }
        if validation_by not in groups:
            raise ValueError(f"validation_by must be one of {list(groups)}, got {validation_by!r}.")
        self.dataset = dataset
        self.batch_size = batch_size
        self.train_idx, self.val_idx = split_pairs(
            groups[validation_by], ~held_out, train_size, seed
        )
        self.test_idx = np.flatnonzero(held_out)
        self.n_train, self.n_val = len(self.train_idx), len(self.val_idx)

    def train_dataloader(self) -> DataLoader:
        return self.dataset.loader(self.train_idx, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if self.n_val == 0:
            return []
        return self.dataset.loader(self.val_idx, self.batch_size, shuffle=False)
