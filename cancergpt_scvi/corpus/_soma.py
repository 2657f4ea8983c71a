"""A pretraining corpus read out of core from a TileDB-SOMA experiment (the CELLxGENE Census)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from cancergpt_scvi._extras import require
from cancergpt_scvi.data import GeneVocab

from ._corpus import Corpus, categorical_union, gene_space


class SomaCorpus(Corpus):
    """Cells of a TileDB-SOMA experiment (e.g. the CELLxGENE Census), read out of core.

    The cells are those that ``obs_value_filter`` selects; only their ``soma_joinid`` and the
    ``obs_keys`` columns are read into memory. Expression is read from the ``X`` array a
    minibatch at a time, in each process that trains (the experiment is opened lazily per
    process, so the corpus pickles for multi-process training). Needs ``tiledbsoma``, from the
    ``atlas`` extra (``pip install 'cancergpt-scvi[atlas]'``).

    Parameters
    ----------
    experiment_uri
        URI of the experiment (local path or ``s3://...``).
    obs_keys
        ``obs`` columns to load (those that will be registered).
    measurement_name
        Measurement holding the expression (``"RNA"`` in the Census).
    X_name
        Layer of ``X`` (``"raw"`` counts in the Census).
    gene_symbols_key
        ``var`` column with gene symbols (``"feature_name"`` in the Census; ``"var_id"`` for
        an experiment written by ``tiledbsoma.io.from_anndata``).
    obs_value_filter, var_value_filter
        SOMA value filters selecting cells and genes, e.g.
        ``"is_primary_data == True and cell_type == 'malignant cell'"``.
    vocab
        Gene vocabulary; default: a new one over the selected genes.
    tiledb_config
        TileDB configuration (e.g. ``{"vfs.s3.region": "us-west-2",
        "vfs.s3.no_sign_request": "true"}`` for the public Census bucket).
    """

    def __init__(
        self,
        experiment_uri: str | os.PathLike,
        obs_keys: Sequence[str] = (),
        measurement_name: str = "RNA",
        X_name: str = "raw",
        gene_symbols_key: str = "feature_name",
        obs_value_filter: str | None = None,
        var_value_filter: str | None = None,
        vocab: GeneVocab | Mapping[str, int] | None = None,
        tiledb_config: Mapping[str, str] | None = None,
    ):
        self.experiment_uri = os.fspath(experiment_uri)
        self.measurement_name, self.X_name = measurement_name, X_name
        self.tiledb_config = dict(tiledb_config or {})
        self._pid = None
        self._experiment = None
        obs_keys = list(obs_keys)
        exp = self.experiment
        if measurement_name not in exp.ms:
            raise KeyError(
                f"The experiment has no measurement {measurement_name!r} "
                f"(measurements: {list(exp.ms.keys())})."
            )
        measurement = exp.ms[measurement_name]
        if X_name not in measurement.X:
            raise KeyError(f"No X layer {X_name!r} (layers: {list(measurement.X.keys())}).")
        obs_schema = exp.obs.schema.names
        missing = [k for k in obs_keys if k not in obs_schema]
        if missing:
            raise KeyError(
                f"The experiment's obs has no columns {missing} (columns: {obs_schema})."
            )
        obs = (
            exp.obs.read(column_names=["soma_joinid", *obs_keys], value_filter=obs_value_filter)
            .concat()
            .to_pandas()
            .sort_values("soma_joinid")
        )
        if len(obs) == 0:
            raise ValueError(f"obs_value_filter={obs_value_filter!r} selects no cells.")
        var_schema = measurement.var.schema.names
        if gene_symbols_key not in var_schema:
            raise KeyError(
                f"The var dataframe has no column {gene_symbols_key!r} (columns: {var_schema}); "
                "set gene_symbols_key."
            )
        var = (
            measurement.var.read(
                column_names=["soma_joinid", gene_symbols_key], value_filter=var_value_filter
            )
            .concat()
            .to_pandas()
            .sort_values("soma_joinid")
        )
        if len(var) == 0:
            raise ValueError(f"var_value_filter={var_value_filter!r} selects no genes.")
        symbols = pd.Index(var[gene_symbols_key].astype(str))
        self.genes, self.vocab = gene_space([symbols], vocab)
        # corpus column of each var joinid (-1: not selected, or a repeated symbol)
        position = pd.Series(np.arange(len(self.genes)), index=self.genes)
        columns = position.reindex(symbols).fillna(-1).to_numpy(dtype=np.int64)
        columns[symbols.duplicated()] = -1
        var_ids = var["soma_joinid"].to_numpy()
        self._column_of_var = np.full(int(var_ids.max()) + 1, -1, dtype=np.int64)
        self._column_of_var[var_ids] = columns
        self._var_coords = np.sort(var_ids[columns >= 0])
        #: ``soma_joinid`` of each corpus cell.
        self.obs_joinids = obs["soma_joinid"].to_numpy()
        self.obs = pd.DataFrame(
            {k: categorical_union([obs[k].to_numpy()], k) for k in obs_keys},
            index=pd.RangeIndex(len(obs)),
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_experiment"], state["_pid"] = None, None
        return state

    @property
    def experiment(self) -> Any:
        """The opened :class:`tiledbsoma.Experiment` (reopened in each new process)."""
        soma = require("tiledbsoma", extra="atlas", feature="SomaCorpus")

        if self._pid != os.getpid():
            context = soma.SOMATileDBContext(tiledb_config=self.tiledb_config or None)
            self._experiment = soma.Experiment.open(self.experiment_uri, context=context)
            self._pid = os.getpid()
        return self._experiment

    def _read_sorted(self, indices: np.ndarray) -> sparse.csr_matrix:
        joinids = self.obs_joinids[indices]
        X = self.experiment.ms[self.measurement_name].X[self.X_name]
        table = X.read(coords=(joinids, self._var_coords)).tables().concat()
        rows = np.searchsorted(joinids, table["soma_dim_0"].to_numpy())
        cols = self._column_of_var[table["soma_dim_1"].to_numpy()]
        values = table["soma_data"].to_numpy().astype(np.float32, copy=False)
        keep = cols >= 0
        return sparse.csr_matrix(
            (values[keep], (rows[keep], cols[keep])), shape=(len(indices), self.n_vars)
        )

    def cell_names(self, indices: np.ndarray) -> pd.Index:
        """``soma:<soma_joinid>`` of each cell."""
        return pd.Index([f"soma:{j}" for j in self.obs_joinids[indices]])
