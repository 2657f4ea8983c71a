"""A data loader whose position in the epoch is saved in Lightning checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset

from ._distributed_sampler import DistributedOversampler


class ResumableDataLoader(DataLoader):
    """:class:`~torch.utils.data.DataLoader` over a :class:`DistributedOversampler`, resumable.

    Lightning stores the ``state_dict`` of a stateful training loader in its checkpoints and
    hands it back through ``load_state_dict`` when training resumes from one, before the
    epoch's iterator is made; the loader then continues the interrupted epoch's stream after
    the batches already trained on, instead of starting the epoch over. The position counts
    batches handed to the training loop (Lightning does not prefetch from sized loaders), so
    batches that worker processes prefetched but training never used are not skipped.

    Parameters
    ----------
    dataset
        Dataset indexed by lists of positions (one call per batch).
    sampler
        The batch sampler.
    **kwargs
        Passed to :class:`~torch.utils.data.DataLoader` (``num_workers``, ``pin_memory``...).
    """

    def __init__(self, dataset: Dataset, sampler: DistributedOversampler, **kwargs):
        if not isinstance(sampler, DistributedOversampler):
            raise TypeError("ResumableDataLoader needs a DistributedOversampler.")
        # batch_size=None: the sampler yields whole batches and the dataset reads each at once
        super().__init__(dataset, sampler=sampler, batch_size=None, **kwargs)
        self._start = 0
        self._served = 0

    def __iter__(self) -> Iterator[Any]:
        self._start = self.sampler._skip_batches
        self._served = 0
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Epoch and number of its batches already handed to training."""
        return {"epoch": int(self.sampler.epoch), "batches_done": self._start + self._served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Continue the saved epoch after the batches it had already handed out."""
        self.sampler.resume(state_dict["epoch"], state_dict["batches_done"])
