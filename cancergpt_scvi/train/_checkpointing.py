"""Checkpoints every N steps and per-step seeding, so that a resumed run continues the same run."""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from scvi.train import SaveCheckpoint


class StepCheckpoint(SaveCheckpoint):
    """Lightning checkpoints every ``every_n_train_steps`` optimizer steps, for resuming.

    Lightning's ``ModelCheckpoint(dirpath, filename="{step}", every_n_train_steps=...,
    save_last=True)``: it writes the full Lightning state (weights, optimizer, loop progress
    and the training loader's position) to ``step=<global step>.ckpt`` and keeps a copy of the
    newest as ``last.ckpt``; only global rank zero writes. Resume with
    ``model.train(..., callbacks=[StepCheckpoint(folder, ...)], ckpt_path="last")``: Lightning
    loads ``folder/last.ckpt``, or warns and starts fresh when there is none yet, so a
    preemptible job can always be launched the same way (see :doc:`/pretrain_at_scale`).

    Parameters
    ----------
    dirpath
        Folder of the checkpoint files.
    every_n_train_steps
        Optimizer steps between checkpoints.
    save_top_k
        How many step checkpoints to keep besides ``last.ckpt``: ``-1`` all, ``1`` the newest,
        ``0`` none.
    **kwargs
        Other arguments of :class:`~lightning.pytorch.callbacks.ModelCheckpoint` (not
        ``monitor``: checkpoints are kept by step, not by a metric).
    """

    # A SaveCheckpoint only so that scvi-tools' Trainer takes it as the run's checkpointing (it
    # refuses a plain ModelCheckpoint unless enable_checkpointing=True, which adds a SaveCheckpoint
    # of its own). SaveCheckpoint's __init__ (which drops save_last) and hooks (which write
    # scvi-tools model folders) are replaced by ModelCheckpoint's.
    on_train_batch_end = ModelCheckpoint.on_train_batch_end
    on_train_end = ModelCheckpoint.on_train_end
    on_exception = ModelCheckpoint.on_exception
    on_save_checkpoint = ModelCheckpoint.on_save_checkpoint

    def __init__(
        self,
        dirpath: str | os.PathLike,
        every_n_train_steps: int,
        save_top_k: int = -1,
        **kwargs: Any,
    ):
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be positive, got {every_n_train_steps}.")
        options = {"filename": "{step}", "save_last": True, "save_on_train_epoch_end": False}
        ModelCheckpoint.__init__(
            self,
            dirpath=os.fspath(dirpath),
            monitor=None,  # a monitored metric would bring back SaveCheckpoint's model folders
            every_n_train_steps=every_n_train_steps,
            save_top_k=save_top_k,
            **{**options, **kwargs},
        )


class StepSeed(Callback):
    """Seed the random numbers of every training batch from ``(seed, epoch, batch, rank)``.

    Masking, gene sampling, binning ties and dropout then depend only on the batch's place in
    training, not on what ran before, so training resumed from a checkpoint draws exactly what
    the uninterrupted run drew (with ``deterministic=True`` the weights agree bit for bit), and
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

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Reseed torch (all devices) before the batch."""
        torch.manual_seed(self.batch_seed(trainer.current_epoch, batch_idx, trainer.global_rank))
