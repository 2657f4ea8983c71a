"""scvi-tools data splitter whose training loader oversamples rare tissues and technologies."""

from __future__ import annotations

import logging

import numpy as np
import torch
from scvi.dataloaders import DataSplitter
from torch.utils.data import BatchSampler, DataLoader, WeightedRandomSampler

from cancergpt_scvi._constants import TECHNOLOGY_KEY, TISSUE_KEY
from cancergpt_scvi.data._oversampling import oversampling_weights

logger = logging.getLogger(__name__)


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

    def __init__(self, adata_manager, oversample: bool = True, seed: int | None = None, **kwargs):
        super().__init__(adata_manager, **kwargs)
        self.oversample = oversample
        self.seed = seed
        self.sampling_summary = None

    def train_weights(self) -> np.ndarray:
        """Oversampling weight of each training cell (in ``train_idx`` order)."""
        tissue = self.adata_manager.get_from_registry(TISSUE_KEY).ravel()[self.train_idx]
        technology = self.adata_manager.get_from_registry(TECHNOLOGY_KEY).ravel()[self.train_idx]
        weights, self.sampling_summary = oversampling_weights(tissue, technology)
        return weights

    def train_dataloader(self):
        """Training loader: weighted draws with replacement when ``oversample``."""
        if not self.oversample:
            return super().train_dataloader()
        weights = self.train_weights()
        n_draws = round(float(weights.sum()))
        # without a seed, draw one from torch's global generator (set by scvi.settings.seed)
        seed = int(torch.randint(2**62, ()).item()) if self.seed is None else self.seed
        generator = torch.Generator().manual_seed(seed)
        sampler = WeightedRandomSampler(
            torch.as_tensor(weights, dtype=torch.double),
            n_draws,
            replacement=True,
            generator=generator,
        )
        batch_size = self.data_loader_kwargs.get("batch_size", 128)
        logger.info("Oversampled epoch: %d draws from %d cells.", n_draws, len(weights))
        dataset = self.adata_manager.create_torch_dataset(
            indices=self.train_idx, load_sparse_tensor=self.load_sparse_tensor
        )
        # the dataset is indexed by lists, so batches come from a BatchSampler, unbatched
        return DataLoader(
            dataset,
            sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=self.drop_last),
            batch_size=None,
            pin_memory=self.pin_memory,
        )
