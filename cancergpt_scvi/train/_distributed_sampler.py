"""Weighted draws with replacement, shared out between the ranks of a distributed run."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler


def distributed_world() -> tuple[int, int]:
    """The world size and rank of this process: ``(1, 0)`` outside a process group.

    For samplers that must be told the ranks: :class:`~torch.utils.data.DistributedSampler`
    asks the process group itself and fails when there is none.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class DistributedOversampler(DistributedSampler):
    """Batches of an oversampled epoch, each rank drawing its own share of one common stream.

    Every epoch is ``n_draws`` cells drawn with replacement with probability proportional to
    ``weights``, from a generator seeded by ``(seed, epoch)`` alone: every rank computes the
    same stream without communicating, a resumed run recomputes it, and ``set_epoch`` (which
    Lightning calls) gives each epoch a new one. Rank ``r`` of ``R`` takes draws ``r, r + R,
    r + 2R, ...`` (the stream is first padded by wrapping around to a multiple of ``R``, so all
    ranks take the same number of steps), then cuts them into batches. Together the ranks see
    the stream exactly once per epoch.

    It is a :class:`~torch.utils.data.DistributedSampler`, so Lightning leaves it in place
    under DDP rather than substituting its own sampler, and it yields whole batches (lists of
    positions), for datasets indexed by lists as scvi-tools' are: use it as the ``sampler`` of
    a loader with ``batch_size=None``. A :class:`~torchdata.stateful_dataloader.StatefulDataLoader`
    over it resumes an interrupted epoch exactly: the stream depends on ``(seed, epoch)`` only,
    so the restored loader recomputes it and skips the batches already served.

    Parameters
    ----------
    weights
        Non-negative sampling weight of each position of the dataset (e.g. the expected draws
        per epoch of :func:`~cancergpt_scvi.data.oversampling_weights`).
    batch_size
        Positions per batch, per rank.
    n_draws
        Draws per epoch over all ranks; default ``round(weights.sum())``, the epoch length that
        :func:`~cancergpt_scvi.data.oversampling_weights` intends.
    seed
        Seed of the stream.
    replacement
        Draw with replacement (oversampling). ``False``: each position at most once per epoch
        (``n_draws`` defaults to every position; equal weights give a random permutation).
    drop_last
        Drop each rank's last, incomplete batch.
    num_replicas, rank
        Ranks and this process's rank; default: from the initialised process group, else one.
    """

    def __init__(
        self,
        weights: np.ndarray,
        batch_size: int,
        n_draws: int | None = None,
        seed: int = 0,
        replacement: bool = True,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if weights.size == 0:
            raise ValueError("No cells to sample from: weights is empty.")
        if not np.all(np.isfinite(weights)) or weights.min() < 0 or weights.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        world, this_rank = distributed_world()
        num_replicas = world if num_replicas is None else int(num_replicas)
        rank = this_rank if rank is None else int(rank)
        if n_draws is None:
            n_draws = round(float(weights.sum())) if replacement else len(weights)
        n_draws = int(n_draws)
        if n_draws < 1:
            raise ValueError(f"n_draws must be positive, got {n_draws}.")
        if not replacement and n_draws > np.count_nonzero(weights):
            raise ValueError("Without replacement, n_draws cannot exceed the positions to draw.")
        # the base class only needs a sized dataset; our "dataset" is the draws of one epoch
        super().__init__(
            range(n_draws), num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed
        )
        self.probabilities = weights / weights.sum()
        self.n_draws = n_draws
        self.replacement = replacement
        self.batch_size = int(batch_size)
        self.drop_last_batch = drop_last
        #: Draws per rank and epoch (the stream padded to a multiple of ``num_replicas``).
        self.draws_per_rank = math.ceil(n_draws / num_replicas)

    def epoch_draws(self, epoch: int | None = None) -> np.ndarray:
        """The whole stream of an epoch (all ranks), before sharding and padding."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.probabilities)
        if not self.replacement and np.all(self.probabilities == self.probabilities[0]):
            return rng.permutation(n)[: self.n_draws]
        return rng.choice(n, size=self.n_draws, replace=self.replacement, p=self.probabilities)

    def rank_draws(self, epoch: int | None = None) -> np.ndarray:
        """This rank's share of an epoch's stream."""
        draws = self.epoch_draws(epoch)
        total = self.draws_per_rank * self.num_replicas
        if total > len(draws):
            draws = np.resize(draws, total)  # wraps around, as DistributedSampler pads
        return draws[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        draws = self.rank_draws()
        for b in range(len(self)):
            yield draws[b * self.batch_size : (b + 1) * self.batch_size].tolist()

    def __len__(self) -> int:
        """Batches per rank and epoch."""
        if self.drop_last_batch:
            return self.draws_per_rank // self.batch_size
        return math.ceil(self.draws_per_rank / self.batch_size)
