"""Checkpoints every N steps and per-step seeding, so that a resumed run continues the same run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from scvi.train import SaveCheckpoint


class StepCheckpoint(SaveCheckpoint):
    """Lightning checkpoint every ``every_n_train_steps`` optimizer steps, for resuming.

    A :class:`~lightning.pytorch.callbacks.ModelCheckpoint` (through scvi-tools'
    :class:`~scvi.train.SaveCheckpoint`, so that scvi-tools' trainer accepts it as the run's
    checkpointing) that writes the full Lightning state: weights, optimizer, loop progress and
    the training loader's position. Resume with ``model.train(..., ckpt_path=path)``; see
    :doc:`/pretrain_at_scale`. Files are named ``step=<global step>.ckpt``; only global rank
    zero writes them.

    Parameters
    ----------
    dirpath
        Folder of the checkpoint files.
    every_n_train_steps
        Steps between checkpoints.
    save_top_k
        How many checkpoints to keep: ``-1`` keeps all, ``1`` only the latest.
    **kwargs
        Passed to :class:`~lightning.pytorch.callbacks.ModelCheckpoint`.
    """

    def __init__(
        self,
        dirpath: str | os.PathLike,
        every_n_train_steps: int,
        save_top_k: int = -1,
        **kwargs,
    ):
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be positive, got {every_n_train_steps}.")
        if save_top_k not in (-1, 1):
            raise ValueError("save_top_k must be -1 (keep every checkpoint) or 1 (the latest).")
        super().__init__(
            dirpath=os.fspath(dirpath),
            filename="{step}",
            monitor=None,
            every_n_train_steps=every_n_train_steps,
            save_top_k=save_top_k,
            save_on_train_epoch_end=False,
            **kwargs,
        )

    @staticmethod
    def latest(dirpath: str | os.PathLike) -> Path | None:
        """The checkpoint of the highest step in ``dirpath`` (``None`` if there is none yet).

        For jobs that may be preempted and requeued: ``model.train(...,
        ckpt_path=StepCheckpoint.latest(folder))`` starts fresh the first time and resumes
        afterwards.
        """
        steps = {}
        for path in Path(dirpath).glob("step=*.ckpt"):
            match = re.fullmatch(r"step=(\d+)(?:-v\d+)?\.ckpt", path.name)
            if match:
                steps[path] = int(match.group(1))
        return max(steps, key=steps.get) if steps else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Save every ``every_n_train_steps`` (scvi-tools' override only watches for NaN)."""
        ModelCheckpoint.on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx)

    def on_save_checkpoint(self, trainer: pl.Trainer, *args) -> None:
        """Keep the Lightning checkpoint only (scvi-tools would also write a model folder)."""


class StepSeed(Callback):
    """Seed the random numbers of every training batch from ``(seed, epoch, batch, rank)``.

    Masking, gene sampling, binning ties and dropout then depend only on the batch's place in
    training, not on what ran before, so training resumed from a checkpoint draws exactly what the
    uninterrupted run drew (with ``deterministic=True`` the weights agree bit for bit), and
    each rank of a distributed run draws its own masks.

    Parameters
    ----------
    seed
        Base seed.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = int(seed)

    def batch_seed(self, epoch: int, batch_idx: int, rank: int) -> int:
        """The seed of one training batch on one rank."""
        entropy = [self.seed, epoch, batch_idx, rank]
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """Reseed torch (all devices) before the batch."""
        torch.manual_seed(self.batch_seed(trainer.current_epoch, batch_idx, trainer.global_rank))
