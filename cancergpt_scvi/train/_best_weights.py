"""Keep the weights of the best validation epoch and restore them when training ends."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback


class BestWeights(Callback):
    """Restore, at the end of training, the weights of the epoch with the lowest ``monitor``.

    Early stopping ends training ``patience`` epochs after the best epoch; this puts the
    best epoch's weights back, in memory (no checkpoint files). Without the monitored metric
    (no validation data) it does nothing.

    Parameters
    ----------
    monitor
        Logged validation metric to minimise, e.g. ``"reconstruction_loss_validation"``.
    """

    def __init__(self, monitor: str = "reconstruction_loss_validation"):
        super().__init__()
        self.monitor = monitor
        self.best_score = float("inf")
        self.best_epoch: int | None = None
        self._state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if score < self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self._state = {
                k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()
            }

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._state is not None:
            pl_module.load_state_dict(self._state)
