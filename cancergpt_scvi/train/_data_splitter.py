"""scvi-tools data splitter whose training loader oversamples rare tissues and technologies."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from scvi.data import AnnDataManager
from scvi.dataloaders import DataSplitter
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from cancergpt_scvi._constants import TECHNOLOGY_KEY, TISSUE_KEY
from cancergpt_scvi.data import oversampling_weights

from ._distributed_sampler import DistributedOversampler

logger = logging.getLogger(__name__)


def validation_cells(n_cells: int, train_size: float | None, validation_size: float | None) -> int:
    """Validation cells of scvi-tools' :class:`~scvi.dataloaders.DataSplitter` rule.

    Training takes ``ceil(train_size * n_cells)`` cells (``train_size`` default 0.9);
    validation ``floor(validation_size * n_cells)``, or else all the others.
    """
    train = int(np.ceil((0.9 if train_size is None else train_size) * n_cells))
    if validation_size is None:
        return max(n_cells - train, 0)
    return int(np.floor(validation_size * n_cells))


class OversamplingDataSplitter(DataSplitter):
    """:class:`~scvi.dataloaders.DataSplitter` with tissue- and technology-aware oversampling.

    Validation and test loaders are those of scvi-tools. The training loader draws cells with
    replacement, with the weights of :func:`~cancergpt_scvi.data.oversampling_weights`
    computed on the training cells from the registered tissue and technology fields; an
    epoch is as long as the oversampled set.

    Parameters
    ----------
    adata_manager
        The model's :class:`~scvi.data.AnnDataManager`.
    oversample
        Draw with the oversampling weights; ``False`` gives scvi-tools' shuffled loader.
    seed
        Seed of the weighted draws (``None``: scvi-tools' global seed).
    **kwargs
        Passed to :class:`~scvi.dataloaders.DataSplitter`.
    """

    def __init__(
        self,
        adata_manager: AnnDataManager,
        oversample: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(adata_manager, **kwargs)
        self.oversample = oversample
        self.seed = seed
        #: Draws per tissue and technology of the training loader (set when it is built).
        self.sampling_summary: pd.DataFrame | None = None

    def train_weights(self) -> np.ndarray:
        """Oversampling weight of each training cell (in ``train_idx`` order)."""
        tissue = self.adata_manager.get_from_registry(TISSUE_KEY).ravel()[self.train_idx]
        technology = self.adata_manager.get_from_registry(TECHNOLOGY_KEY).ravel()[self.train_idx]
        weights, self.sampling_summary = oversampling_weights(tissue, technology)
        return weights

    def train_dataloader(self) -> DataLoader:
        """Training loader: weighted draws with replacement when ``oversample``.

        Under DDP each rank draws its own share of one common oversampled stream
        (:class:`~cancergpt_scvi.train.DistributedOversampler`); the loader is a
        :class:`~torchdata.stateful_dataloader.StatefulDataLoader`, whose position Lightning
        saves in its checkpoints, so a resumed run continues the interrupted epoch.
        """
        if len(self.train_idx) == 0:
            n_obs = self.adata_manager.adata.n_obs
            raise ValueError(
                f"No cells left to train on: the split of {n_obs} cell(s) puts none in training "
                "(train_size, validation_size). Train on more cells (a few hundred at least for "
                "a useful model), or raise train_size."
            )
        if not self.oversample:
            return super().train_dataloader()
        weights = self.train_weights()
        seed = self.seed
        if seed is None:
            # draw one from torch's global generator (set by scvi.settings.seed); under DDP the
            # ranks must share it, as they share one stream
            seed = int(torch.randint(2**62, ()).item())
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                shared = [seed]
                dist.broadcast_object_list(shared, src=0)
                seed = int(shared[0])
        batch_size = self.data_loader_kwargs.get("batch_size", 128)
        sampler = DistributedOversampler(
            weights, batch_size=batch_size, seed=seed, drop_last=self.drop_last
        )
        logger.info(
            "Oversampled epoch: %d draws from %d cells (%d per rank).",
            sampler.n_draws,
            len(weights),
            sampler.draws_per_rank,
        )
        dataset = self.adata_manager.create_torch_dataset(
            indices=self.train_idx, load_sparse_tensor=self.load_sparse_tensor
        )
        # the dataset is indexed by lists, so the sampler yields whole batches
        return StatefulDataLoader(
            dataset, sampler=sampler, batch_size=None, pin_memory=self.pin_memory
        )
