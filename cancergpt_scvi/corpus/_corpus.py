"""Out-of-core pretraining corpora: many cells on disk, read a minibatch at a time."""

from __future__ import annotations

import logging
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from anndata.io import read_elem
from scipy import sparse

from cancergpt_scvi._argument_types import names_sequence
from cancergpt_scvi._listing import listing
from cancergpt_scvi.data import GeneVocab, cell_indices

logger = logging.getLogger(__name__)


class Corpus(ABC):
    """Cells kept on disk, read a minibatch at a time in one gene space.

    ``obs`` (the covariates that oversampling and the adversarial losses need) is held in
    memory; expression never is. Every source's genes are placed in one gene space, the
    corpus's :attr:`genes` (the union of the sources' genes, or those of them in a given
    vocabulary); a gene that a source does not measure reads as 0 in its cells. With the
    model's default ``gene_selection="expressed"`` a zero never becomes a token, so an
    unmeasured gene is an absent token, not a measured zero.

    Subclasses: :class:`H5adCorpus` (h5ad files) and :class:`SomaCorpus` (a TileDB-SOMA
    experiment, e.g. CELLxGENE Census).
    """

    #: In-memory covariates, one row per cell, categorical columns (``RangeIndex``).
    obs: pd.DataFrame
    #: Gene symbols of the corpus's gene space (the model's input genes), in column order.
    genes: pd.Index
    #: Vocabulary of the gene tokens (covers :attr:`genes`).
    vocab: GeneVocab
    #: Whether every source measures every gene of :attr:`genes` (``None``: not known).
    measures_all_genes: bool | None = None

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return len(self.obs)

    @property
    def n_vars(self) -> int:
        """Number of genes in the corpus's gene space."""
        return len(self.genes)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_obs, n_vars)``."""
        return self.n_obs, self.n_vars

    def __len__(self) -> int:
        return self.n_obs

    # -- reading ------------------------------------------------------------------------------
    @abstractmethod
    def _read_sorted(self, indices: np.ndarray) -> sparse.csr_matrix:
        """Expression of sorted, unique cells, ``(len(indices), n_vars)`` float32 CSR."""

    def read(self, indices: Sequence[int] | np.ndarray) -> sparse.csr_matrix:
        """Expression of cells ``indices`` (any order, repeats allowed) in the corpus's genes.

        Returns
        -------
        ``(len(indices), n_vars)`` float32 CSR matrix, rows in the order of ``indices``.
        """
        # integer positions or a boolean mask; never floats cast to positions
        indices = cell_indices(np.asarray(indices).ravel(), self.n_obs)
        unique, inverse = np.unique(indices, return_inverse=True)
        block = self._read_sorted(unique)
        values = block.data
        if values.size and not (np.isfinite(values).all() and values.min() >= 0):
            raise ValueError(
                "The corpus holds negative or non-finite expression values; CancerGPT needs "
                "non-negative expression (raw counts or normalised values)."
            )
        if len(unique) == len(indices) and np.array_equal(unique, indices):
            return block
        return block[inverse]

    # -- the model's view ---------------------------------------------------------------------
    def reference_adata(self, n_cells: int = 512, seed: int = 0) -> ad.AnnData:
        """A small in-memory sample of the corpus that fixes the model's genes and categories.

        Register it with :meth:`~cancergpt_scvi.model.CancerGPTModel.setup_anndata` (with the
        corpus's ``obs`` columns as keys) and build the model on it: its ``var_names`` are
        :attr:`genes` and its categorical ``obs`` columns carry every category of the whole
        corpus, so the model gets one discriminator class per corpus category. It holds
        ``n_cells`` random cells and three of every category (so that none is registered
        empty); ``uns["corpus_indices"]`` says which.

        Parameters
        ----------
        n_cells
            Random cells to hold, besides those picked for their category.
        seed
            Seed of the random pick.
        """
        rng = np.random.default_rng(seed)
        order = rng.permutation(self.n_obs)
        picks = [order[: max(n_cells, 0)]]
        for column in self.obs.columns:
            codes = self.obs[column].cat.codes.to_numpy()[order]
            # three random cells of every category
            picks.append(pd.Series(order).groupby(codes).head(3).to_numpy())
        chosen = np.unique(np.concatenate(picks))
        obs = self.obs.iloc[chosen].copy()
        obs.index = self.cell_names(chosen)
        adata = ad.AnnData(X=self.read(chosen), obs=obs, var=pd.DataFrame(index=self.genes))
        adata.uns["corpus_indices"] = chosen
        return adata

    def cell_names(self, indices: np.ndarray) -> pd.Index:
        """Names of cells (``<source>:<position>`` unless a subclass knows better)."""
        return pd.Index([f"cell{i}" for i in indices])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}: {self.n_obs} cells x {self.n_vars} genes; "
            f"obs: {list(self.obs.columns)}"
        )


def gene_space(
    gene_lists: Sequence[pd.Index], vocab: GeneVocab | Mapping[str, int] | None
) -> tuple[pd.Index, GeneVocab]:
    """The corpus's genes (union of the sources', in order of appearance) and vocabulary.

    With a ``vocab``, only the union's genes that the vocabulary holds are kept.
    """
    seen: dict[str, None] = {}
    for genes in gene_lists:
        seen.update(dict.fromkeys(genes.astype(str)))
    union = pd.Index(list(seen), dtype=object)
    if vocab is None:
        return union, GeneVocab.from_genes(union)
    if not isinstance(vocab, GeneVocab):
        vocab = GeneVocab(vocab)
    known = union[vocab.lookup(union) >= 0]
    if len(known) == 0:
        raise ValueError(
            f"None of the corpus's {len(union)} genes (e.g. {list(union[:3])}) are in the "
            f"vocabulary (e.g. {vocab.genes[:3]}). Match gene identifiers: the vocabulary holds "
            "gene symbols; pass gene_symbols_key= for sources indexed by other ids."
        )
    if len(known) < len(union):
        logger.info(
            "%d of the corpus's %d genes are in the vocabulary; the others are left out.",
            len(known),
            len(union),
        )
    return known, vocab


def categorical_union(columns: Sequence[pd.Series | np.ndarray], name: str) -> pd.Categorical:
    """Concatenate per-source columns into one categorical over the union of categories."""
    parts = []
    for column in columns:
        series = pd.Series(column)
        if series.isna().any():
            raise ValueError(
                f"obs column {name!r} has {int(series.isna().sum())} missing values; fill "
                "them (e.g. with 'unknown') before pretraining."
            )
        parts.append(pd.Categorical(series.astype(str)))
    return pd.api.types.union_categoricals(parts, sort_categories=True)


class _H5adSource:
    """One h5ad file, opened lazily in each process (h5py handles do not survive fork)."""

    def __init__(self, path: Path, layer: str | None):
        self.path = path
        self.layer = layer
        self._pid = None
        self._file = None
        self._indptr = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "layer": self.layer}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["layer"])

    @property
    def file(self) -> h5py.File:
        if self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as err:  # h5py's message names no file
                raise ValueError(
                    f"{self.path} is not a readable .h5ad file ({err}); expected an AnnData "
                    "file written by anndata's write_h5ad."
                ) from err
            self._pid = os.getpid()
            self._indptr = None
        return self._file

    @property
    def matrix(self) -> h5py.Group | h5py.Dataset:
        f = self.file
        if self.layer is None:
            return f["X"]
        if "layers" not in f or self.layer not in f["layers"]:
            present = list(f["layers"].keys()) if "layers" in f else []
            raise KeyError(f"{self.path} has no layer {self.layer!r} (layers: {present}).")
        return f["layers"][self.layer]

    def check_layout(self, n_obs: int, n_vars: int) -> None:
        element = self.matrix
        where = "X" if self.layer is None else f"layers[{self.layer!r}]"
        if isinstance(element, h5py.Group):
            encoding = element.attrs.get("encoding-type", "")
            if encoding == "csc_matrix":
                raise ValueError(
                    f"{self.path} stores {where} column-major (CSC), which cannot be read a few "
                    "cells at a time. Rewrite it row-major: adata.X = adata.X.tocsr(); "
                    "adata.write_h5ad(path)."
                )
            if encoding != "csr_matrix":
                raise ValueError(f"{self.path}: unsupported {where} encoding {encoding!r}.")
            shape = tuple(element.attrs["shape"])
        else:
            shape = element.shape
        if shape != (n_obs, n_vars):
            raise ValueError(f"{self.path}: {where} has shape {shape}, expected {(n_obs, n_vars)}.")

    def read_rows(self, rows: np.ndarray) -> sparse.csr_matrix:
        """Sorted unique rows as CSR in the file's own gene space."""
        element = self.matrix
        if isinstance(element, h5py.Dataset):
            return sparse.csr_matrix(element[rows].astype(np.float32, copy=False))
        if self._indptr is None:
            self._indptr = element["indptr"][:]
        indptr = self._indptr
        data, indices = element["data"], element["indices"]
        starts, stops = indptr[rows], indptr[rows + 1]
        # one read per run of consecutive rows
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        chunks_data, chunks_idx = [], []
        for run in np.split(np.arange(len(rows)), breaks):
            if len(run) == 0:
                continue
            lo, hi = starts[run[0]], stops[run[-1]]
            chunks_data.append(data[lo:hi])
            chunks_idx.append(indices[lo:hi])
        lengths = stops - starts
        new_indptr = np.concatenate([[0], np.cumsum(lengths)])
        cat_data = np.concatenate(chunks_data) if chunks_data else np.zeros(0, np.float32)
        cat_idx = np.concatenate(chunks_idx) if chunks_idx else np.zeros(0, np.int64)
        n_cols = int(element.attrs["shape"][1])
        return sparse.csr_matrix(
            (cat_data.astype(np.float32, copy=False), cat_idx, new_indptr),
            shape=(len(rows), n_cols),
        )


class H5adCorpus(Corpus):
    """A pretraining corpus of h5ad files (one per study), read out of core.

    Only ``obs`` columns and gene names are read when the corpus is opened; expression is read
    from the files a minibatch at a time (row slices of the on-disk CSR matrices), in each
    process that trains, so the corpus can be far larger than memory. Files may measure
    different genes: the corpus's gene space is their union (or their genes in ``vocab``).

    Parameters
    ----------
    paths
        The h5ad files. ``X`` (or ``layer``) must be CSR or dense, not CSC.
    obs_keys
        ``obs`` columns to load (those that will be registered: batch, technology, tissue).
        Every file must have them; categories are merged across files.
    vocab
        Gene vocabulary; default: a new one over the union of the files' genes.
    layer
        Layer holding the expression; default ``X``.
    gene_symbols_key
        ``var`` column with gene symbols, when ``var_names`` are not symbols.
    study_key
        Name of an added ``obs`` column holding each cell's file (study), usable as the batch
        covariate; ``None`` adds none.
    study_names
        Names of the studies; default: the file names without ``.h5ad``.

    Examples
    --------
    >>> corpus = H5adCorpus(sorted(Path("atlas").glob("*.h5ad")), obs_keys=["technology", "tissue"])
    >>> adata = corpus.reference_adata()
    >>> CancerGPTModel.setup_anndata(
    ...     adata, batch_key="study", technology_key="technology", tissue_key="tissue"
    ... )
    >>> model = CancerGPTModel(adata, vocab=corpus.vocab, preset="release")
    >>> model.train(max_epochs=1, datamodule=CorpusDataModule(corpus, model.adata_manager))
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        obs_keys: Sequence[str] = (),
        vocab: GeneVocab | Mapping[str, int] | None = None,
        layer: str | None = None,
        gene_symbols_key: str | None = None,
        study_key: str | None = "study",
        study_names: Sequence[str] | None = None,
    ):
        paths = [Path(p) for p in paths]
        if not paths:
            raise ValueError("H5adCorpus needs at least one h5ad file.")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"No such h5ad files: {missing}")
        names = (
            [p.name.removesuffix(".h5ad") for p in paths]
            if study_names is None
            else list(study_names)
        )
        if study_names is None and len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(
                f"Files of the same name ({listing(repeated)}) would be one study: studies are "
                "named after their files. Pass study_names= one unique name per file (e.g. "
                "their folders' names)."
            )
        if len(names) != len(paths) or len(set(names)) != len(names):
            raise ValueError("study_names must give one unique name per file.")
        obs_keys = names_sequence("obs_keys", obs_keys)
        if study_key is not None and study_key in obs_keys:
            raise ValueError(f"study_key={study_key!r} is also in obs_keys; rename one.")
        self.paths, self.study_names = paths, names
        self.layer, self.gene_symbols_key, self.study_key = layer, gene_symbols_key, study_key
        self._sources = [_H5adSource(p, layer) for p in paths]

        columns: dict[str, list] = {k: [] for k in obs_keys}
        file_genes, n_cells = [], []
        for path, source in zip(paths, self._sources, strict=True):
            f = source.file
            obs_group, var_group = f["obs"], f["var"]
            n = len(obs_group[obs_group.attrs["_index"]])
            for key in obs_keys:
                if key not in obs_group:
                    present = [c for c in obs_group.keys() if c != obs_group.attrs["_index"]]
                    raise KeyError(f"{path} has no obs column {key!r} (columns: {present}).")
                columns[key].append(read_elem(obs_group[key]))
            if study_key is not None and study_key in obs_group:
                raise ValueError(
                    f"{path} already has an obs column {study_key!r}; pass another study_key "
                    "(or study_key=None and put the column in obs_keys)."
                )
            if gene_symbols_key is None:
                genes = read_elem(var_group[var_group.attrs["_index"]])
            elif gene_symbols_key in var_group:
                genes = read_elem(var_group[gene_symbols_key])
            else:
                raise KeyError(f"{path} has no var column {gene_symbols_key!r}.")
            genes = pd.Index(np.asarray(genes).astype(str))
            source.check_layout(n, len(genes))
            file_genes.append(genes)
            n_cells.append(n)

        self.genes, self.vocab = gene_space(file_genes, vocab)
        position = pd.Series(np.arange(len(self.genes)), index=self.genes)
        self._columns = []  # per file: corpus column of each file gene, -1 if left out
        for path, genes in zip(paths, file_genes, strict=True):
            cols = position.reindex(genes).fillna(-1).to_numpy(dtype=np.int64)
            duplicated = genes.duplicated()
            if duplicated.any():
                warnings.warn(
                    f"{path} lists {int(duplicated.sum())} genes more than once (e.g. "
                    f"{list(genes[duplicated][:3])}); only their first column is read.",
                    stacklevel=2,
                )
                cols[duplicated] = -1
            self._columns.append(cols)
        self.measures_all_genes = all(
            np.isin(np.arange(len(self.genes)), cols).all() for cols in self._columns
        )
        self._offsets = np.concatenate([[0], np.cumsum(n_cells)]).astype(np.int64)
        obs = {k: categorical_union(v, k) for k, v in columns.items()}
        if study_key is not None:
            obs[study_key] = pd.Categorical.from_codes(
                np.repeat(np.arange(len(paths)), n_cells), categories=names
            )
        self.obs = pd.DataFrame(obs, index=pd.RangeIndex(int(self._offsets[-1])))
        self.n_files_ = len(paths)

    def file_of(self, indices: np.ndarray) -> np.ndarray:
        """Index of the file holding each cell."""
        return np.searchsorted(self._offsets, indices, side="right") - 1

    def _read_sorted(self, indices: np.ndarray) -> sparse.csr_matrix:
        files = self.file_of(indices)
        blocks = []
        for f in np.unique(files):
            rows = indices[files == f] - self._offsets[f]
            block = self._sources[f].read_rows(rows)
            blocks.append(self._to_corpus_genes(block, self._columns[f]))
        if not blocks:
            return sparse.csr_matrix((0, self.n_vars), dtype=np.float32)
        # files are in index order, so stacking keeps the sorted order
        return sparse.vstack(blocks, format="csr")

    def _to_corpus_genes(self, block: sparse.csr_matrix, cols: np.ndarray) -> sparse.csr_matrix:
        mapped = cols[block.indices]
        keep = mapped >= 0
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))[keep]
        return sparse.csr_matrix(
            (block.data[keep], (rows, mapped[keep])), shape=(block.shape[0], self.n_vars)
        )

    def cell_names(self, indices: np.ndarray) -> pd.Index:
        """``<study>:<obs name in the file>`` of each cell."""
        names = []
        files = self.file_of(indices)
        for i, f in zip(indices, files, strict=True):
            obs_group = self._sources[f].file["obs"]
            name = obs_group[obs_group.attrs["_index"]][i - self._offsets[f]]
            name = name.decode() if isinstance(name, bytes) else str(name)
            names.append(f"{self.study_names[f]}:{name}")
        return pd.Index(names)
