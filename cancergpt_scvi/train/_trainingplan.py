"""Training plan of CancerGPT: scvi-tools' plan plus the adversarial-weight schedule."""

from __future__ import annotations

import math
from typing import Literal

import torch
from scvi.train import TrainingPlan

AdversarialSchedule = Literal["constant", "linear", "dann"]


class CancerGPTTrainingPlan(TrainingPlan):
    """:class:`~scvi.train.TrainingPlan` that schedules the gradient-reversal weight.

    Parameters
    ----------
    module
        A :class:`~cancergpt_scvi.module.CancerGPTModule`.
    adversarial_weight
        Final weight of the reversed gradient from the domain discriminators (0 switches the
        adversarial push off; the discriminators still train and report their accuracy).
    adversarial_schedule
        ``"constant"``; ``"linear"`` ramp from 0 over ``adversarial_warmup_epochs``; or
        ``"dann"``, the ramp ``2 / (1 + exp(-10 p)) - 1`` over training progress ``p`` of
        Ganin & Lempitsky.
    adversarial_warmup_epochs
        Epochs of the ``"linear"`` ramp.
    **kwargs
        Passed to :class:`~scvi.train.TrainingPlan` (``lr``, ``optimizer``, ``weight_decay``...).
    """

    def __init__(
        self,
        module,
        *,
        adversarial_weight: float = 0.02,
        adversarial_schedule: AdversarialSchedule = "dann",
        adversarial_warmup_epochs: int = 5,
        **kwargs,
    ):
        if adversarial_weight < 0:
            raise ValueError(f"adversarial_weight must be >= 0, got {adversarial_weight}.")
        if adversarial_schedule not in ("constant", "linear", "dann"):
            raise ValueError(f"Unknown adversarial_schedule {adversarial_schedule!r}.")
        super().__init__(module, **kwargs)
        self.adversarial_weight = adversarial_weight
        self.adversarial_schedule = adversarial_schedule
        self.adversarial_warmup_epochs = adversarial_warmup_epochs

    def current_adversarial_weight(self, batch_idx: int = 0) -> float:
        """Gradient-reversal weight at the current point of training."""
        if self.adversarial_schedule == "constant":
            return self.adversarial_weight
        n_batches = max(int(self.trainer.num_training_batches or 1), 1)
        epoch = self.current_epoch + batch_idx / n_batches
        if self.adversarial_schedule == "linear":
            ramp = min(1.0, epoch / max(self.adversarial_warmup_epochs, 1))
        else:
            progress = min(1.0, epoch / max(int(self.trainer.max_epochs or 1), 1))
            ramp = 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0
        return self.adversarial_weight * ramp

    def on_train_batch_start(self, batch, batch_idx):
        """Set the reversal weight for this step and log it."""
        weight = self.current_adversarial_weight(batch_idx)
        self.module.grl.weight = weight
        self.log(
            "adversarial_weight", weight, on_step=False, on_epoch=True, sync_dist=self.use_sync_dist
        )

    @torch.no_grad()
    def compute_and_log_metrics(self, loss_output, metrics, mode):
        """scvi-tools' metric logging, run without grad rather than in inference mode.

        Under DDP Lightning averages the logged values across ranks at the end of the epoch
        in place, which tensors made in inference mode do not allow.
        """
        TrainingPlan.compute_and_log_metrics.__wrapped__(self, loss_output, metrics, mode)
