"""Lightning data module that feeds a model from an out-of-core corpus."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from lightning.pytorch import LightningDataModule
from scvi.data import AnnDataManager
from scvi.dataloaders import BatchDistributedSampler
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from cancergpt_scvi._constants import TECHNOLOGY_KEY, TISSUE_KEY, X_KEY
from cancergpt_scvi.data import oversampling_weights
from cancergpt_scvi.train import DistributedOversampler, distributed_world

from ._corpus import Corpus

logger = logging.getLogger(__name__)


class CorpusDataset(Dataset):
    """Minibatches of a corpus, keyed as the model registered its fields: one read per batch.

    Indexed by a list of positions (into ``indices``); returns the expression as a dense
    ``(B, n_vars)`` float32 array and each categorical covariate as ``(B, 1)`` codes.

    Parameters
    ----------
    corpus
        The cells.
    indices
        Corpus indices of the cells this dataset serves (position ``i`` is cell
        ``indices[i]``).
    codes
        Registry key to the code of every corpus cell (see ``registered_codes``).
    """

    def __init__(self, corpus: Corpus, indices: np.ndarray, codes: dict[str, np.ndarray]):
        self.corpus = corpus
        self.indices = np.asarray(indices, dtype=np.int64)
        self.codes = codes

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions: list[int]) -> dict[str, np.ndarray]:
        cells = self.indices[np.asarray(positions, dtype=np.int64)]
        out = {X_KEY: self.corpus.read(cells).toarray()}
        for key, codes in self.codes.items():
            out[key] = codes[cells][:, None]
        return out


def registered_codes(
    corpus: Corpus, adata_manager: AnnDataManager
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Codes of the corpus's cells for every categorical field the model registered.

    Categories are those of the model's registry, so a corpus category the model does not know
    is refused rather than silently mislabelled.

    Returns
    -------
    codes
        Registry key to the code of every corpus cell.
    categories
        Registry key to its categories (the registry's mapping).
    """
    codes, categories = {}, {}
    for key, entry in adata_manager.data_registry.items():
        if key == X_KEY:
            continue
        if entry.attr_name != "obs":
            raise NotImplementedError(
                f"Training from a corpus supports X and categorical obs fields; the model "
                f"registers {key!r} from .{entry.attr_name}."
            )
        state = adata_manager.get_state_registry(key)
        mapping = np.asarray(state.categorical_mapping)
        categories[key] = mapping
        column = state.original_key
        if column.startswith("_scvi_"):  # registered without a key: one constant category
            codes[key] = np.zeros(corpus.n_obs, dtype=np.int64)
            continue
        if column not in corpus.obs.columns:
            raise KeyError(
                f"The model registers {key!r} from obs column {column!r}, which the corpus did "
                f"not load (its columns: {list(corpus.obs.columns)}); add it to obs_keys."
            )
        values = corpus.obs[column]
        field_codes = pd.Categorical(values.astype(str), categories=mapping.astype(str)).codes
        if (field_codes < 0).any():
            unknown = sorted(set(values.astype(str)) - set(mapping.astype(str)))[:5]
            raise ValueError(
                f"obs column {column!r} of the corpus has categories the model was not set up "
                f"with (e.g. {unknown}); build the model on corpus.reference_adata()."
            )
        codes[key] = field_codes.astype(np.int64)
    return codes, categories


class CorpusDataModule(LightningDataModule):
    """Train a model from an out-of-core :class:`~cancergpt_scvi.corpus.Corpus`.

    Pass it as ``model.train(datamodule=...)``. The training loader draws an oversampled
    epoch (tissue- and technology-aware weights from ``obs`` alone,
    :func:`~cancergpt_scvi.data.oversampling_weights`) through a
    :class:`~cancergpt_scvi.train.DistributedOversampler`: under DDP each rank takes its own
    share of one common stream. The loader is a
    :class:`~torchdata.stateful_dataloader.StatefulDataLoader`, whose position Lightning saves
    in its checkpoints, so training resumed from a checkpoint
    (:class:`~cancergpt_scvi.train.StepCheckpoint`) continues the interrupted epoch.

    Parameters
    ----------
    corpus
        The cells.
    adata_manager
        The model's manager (``model.adata_manager``), whose registry gives the fields and
        categories to feed.
    batch_size
        Cells per batch and rank.
    validation_size
        Fraction of cells held out for validation (a random subset).
    oversample
        Draw with oversampling weights; ``False``: each training cell once per epoch.
    n_draws
        Draws per epoch (all ranks); default: the oversampled epoch's length.
    seed
        Seed of the split and of the draws.
    drop_last
        Drop each rank's last incomplete batch.
    num_workers, pin_memory, persistent_workers
        Passed to the :class:`~torch.utils.data.DataLoader` (reader processes per rank).
    """

    def __init__(
        self,
        corpus: Corpus,
        adata_manager: AnnDataManager,
        batch_size: int = 64,
        validation_size: float = 0.0,
        oversample: bool = True,
        n_draws: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ):
        super().__init__()
        if not 0.0 <= validation_size < 1.0:
            raise ValueError(f"validation_size must be in [0, 1), got {validation_size}.")
        self.corpus = corpus
        self.batch_size = int(batch_size)
        self.validation_size = validation_size
        self.oversample = oversample
        self.n_draws = n_draws
        self.seed = int(seed)
        self.drop_last = drop_last
        self.loader_kwargs = {
            "num_workers": num_workers,
            "pin_memory": pin_memory,
            "persistent_workers": persistent_workers and num_workers > 0,
        }
        self.codes, self.categories = registered_codes(corpus, adata_manager)
        #: Number of cells (scvi-tools uses it for its default number of epochs).
        self.n_obs = corpus.n_obs
        n_val = round(validation_size * corpus.n_obs)
        order = np.random.default_rng(self.seed).permutation(corpus.n_obs)
        #: Corpus indices of the validation and training cells.
        self.validation_indices = np.sort(order[:n_val])
        self.train_indices = np.sort(order[n_val:])
        if len(self.train_indices) == 0:
            raise ValueError("No training cells: lower validation_size.")
        self.sampling_summary: pd.DataFrame | None = None

    def setup(self, stage: str | None = None) -> None:
        """Refuse a fixed gene set over sources that do not all measure it."""
        module = getattr(getattr(self.trainer, "lightning_module", None), "module", None)
        if (
            getattr(module, "gene_selection", None) == "fixed"
            and self.corpus.measures_all_genes is False
        ):
            raise ValueError(
                "The model uses gene_selection='fixed' (every input gene is a token, zeros "
                "included), but the corpus's sources measure different genes: a gene a source "
                "does not measure would become a measured zero. Pretrain with "
                "gene_selection='expressed' (the default), or give the corpus a vocabulary of "
                "the genes every source measures."
            )

    def train_weights(self) -> np.ndarray:
        """Oversampling weight of each training cell, from ``obs`` only."""
        cells = self.train_indices

        def labels(key: str) -> np.ndarray | None:
            if key not in self.codes:
                return None
            return self.categories[key][self.codes[key][cells]]

        tissue = labels(TISSUE_KEY)
        tissue = np.zeros(len(cells), dtype=np.int64) if tissue is None else tissue
        weights, self.sampling_summary = oversampling_weights(tissue, labels(TECHNOLOGY_KEY))
        return weights

    def train_sampler(
        self, num_replicas: int | None = None, rank: int | None = None
    ) -> DistributedOversampler:
        """The training sampler (default: the ranks of the running process group)."""
        if self.oversample:
            weights = self.train_weights()
            replacement = True
        else:
            weights = np.ones(len(self.train_indices))
            replacement = False
        return DistributedOversampler(
            weights,
            self.batch_size,
            n_draws=self.n_draws,
            seed=self.seed,
            drop_last=self.drop_last,
            replacement=replacement,
            num_replicas=num_replicas,
            rank=rank,
        )

    def train_dataloader(self) -> StatefulDataLoader:
        """Oversampled (or shuffled) batches of this rank's share, resumable mid-epoch."""
        sampler = self.train_sampler()
        logger.info(
            "Corpus epoch: %d draws from %d training cells, %d per rank.",
            sampler.n_draws,
            len(self.train_indices),
            sampler.draws_per_rank,
        )
        dataset = CorpusDataset(self.corpus, self.train_indices, self.codes)
        return StatefulDataLoader(dataset, sampler=sampler, batch_size=None, **self.loader_kwargs)

    def val_dataloader(self) -> DataLoader | list:
        """Validation cells in order, split between ranks."""
        if len(self.validation_indices) == 0:
            return []
        dataset = CorpusDataset(self.corpus, self.validation_indices, self.codes)
        num_replicas, rank = distributed_world()
        sampler = BatchDistributedSampler(
            dataset,
            batch_size=self.batch_size,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=False,
        )
        return DataLoader(dataset, sampler=sampler, batch_size=None, **self.loader_kwargs)
