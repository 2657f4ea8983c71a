"""Training plan of CancerGPT: scvi-tools' plan plus the MVC and adversarial-weight ramps."""

from __future__ import annotations

import math

import torch
from scvi.train import TrainingPlan


class CancerGPTTrainingPlan(TrainingPlan):
    """:class:`~scvi.train.TrainingPlan` that ramps the MVC and gradient-reversal weights.

    Both ramps run over training progress ``p`` (0 at the first step, 1 after
    ``max_epochs``). The MVC weight is 0 until ``mvc_start``, then ramps linearly to 1 over
    ``mvc_ramp``: trained from the first step, MVC settles on predicting every gene's mean bin
    from a ``<cls>`` that carries no cell information (a saddle it does not leave within a CPU
    budget), and it holds the masked objective there too; started once the encoder has learned
    the masked objective, it can leave the saddle so that ``<cls>`` comes to carry the cell's
    profile.
    The adversarial weight stays 0 until the MVC ramp ends (reversing the gradient of an
    embedding that carries no cell information yet only scrambles it), then rises to
    ``adversarial_weight`` along the ramp ``2 / (1 + exp(-10 q)) - 1`` of Ganin & Lempitsky,
    with ``q`` the progress through the rest of training. Both weights reach the module's
    ``loss`` through ``loss_kwargs``.

    Parameters
    ----------
    module
        A :class:`~cancergpt_scvi.module.CancerGPTModule`.
    adversarial_weight
        Final weight of the reversed gradient from the domain discriminators (default 0: the
        adversarial push is off; the discriminators still train and report their accuracy).
    mvc_start
        Training progress (0-1) before which MVC is off (masked expression only).
    mvc_ramp
        Training progress over which the MVC weight then rises linearly from 0 to 1 (0: at
        once).
    **kwargs
        Passed to :class:`~scvi.train.TrainingPlan` (``lr``, ``optimizer``, ``weight_decay``...).
    """

    def __init__(
        self,
        module,
        *,
        adversarial_weight: float = 0.0,
        mvc_start: float = 0.25,
        mvc_ramp: float = 0.25,
        **kwargs,
    ):
        if adversarial_weight < 0:
            raise ValueError(f"adversarial_weight must be >= 0, got {adversarial_weight}.")
        for name, value in (("mvc_start", mvc_start), ("mvc_ramp", mvc_ramp)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"{name} is a fraction of training (between 0 and 1), got {value}."
                )
        super().__init__(module, **kwargs)
        self.adversarial_weight = adversarial_weight
        self.mvc_start, self.mvc_ramp = mvc_start, mvc_ramp
        #: Training progress at which the adversarial push starts: the end of the MVC ramp.
        self.adversarial_start = min(mvc_start + mvc_ramp, 1.0)

    def training_progress(self, batch_idx: int = 0) -> tuple[float, float]:
        """Epochs done (fractional) and the fraction of ``max_epochs`` they make."""
        n_batches = max(int(self.trainer.num_training_batches or 1), 1)
        epoch = self.current_epoch + batch_idx / n_batches
        return epoch, min(1.0, epoch / max(int(self.trainer.max_epochs or 1), 1))

    def current_mvc_weight(self, batch_idx: int = 0) -> float:
        """Weight of the MVC loss at the current point of training."""
        _, progress = self.training_progress(batch_idx)
        if progress < self.mvc_start:
            return 0.0
        if self.mvc_ramp == 0:
            return 1.0
        return min(1.0, (progress - self.mvc_start) / self.mvc_ramp)

    def current_adversarial_weight(self, batch_idx: int = 0) -> float:
        """Gradient-reversal weight at the current point of training."""
        _, progress = self.training_progress(batch_idx)
        if progress < self.adversarial_start:
            return 0.0
        # the DANN ramp over the part of training left after the start
        rest = max(1.0 - self.adversarial_start, 1e-8)
        ramp = 2.0 / (1.0 + math.exp(-10.0 * (progress - self.adversarial_start) / rest)) - 1.0
        return self.adversarial_weight * ramp

    def on_train_batch_start(self, batch, batch_idx):
        """Set the MVC and reversal weights of this step's loss and log them."""
        weight = self.current_adversarial_weight(batch_idx)
        mvc_weight = self.current_mvc_weight(batch_idx)
        # validation reuses these loss arguments: its loss is that of the current objective
        self.loss_kwargs.update(mvc_weight=mvc_weight, adversarial_weight=weight)
        for name, value in (("adversarial_weight", weight), ("mvc_weight", mvc_weight)):
            self.log(name, value, on_step=False, on_epoch=True, sync_dist=self.use_sync_dist)

    @torch.no_grad()
    def compute_and_log_metrics(self, loss_output, metrics, mode):
        """Log the ELBO metric and the module's extra metrics, without grad.

        scvi-tools logs the same values in inference mode, whose tensors Lightning cannot
        average across data-parallel ranks in place at the end of an epoch.
        """
        n_obs = loss_output.n_obs_minibatch
        metrics[f"elbo_{mode}"].update(
            reconstruction_loss=loss_output.reconstruction_loss_sum,
            kl_local=loss_output.kl_local_sum,
            kl_global=loss_output.kl_global_sum,
            n_obs_minibatch=n_obs,
        )
        log = {"on_step": self.on_step, "on_epoch": self.on_epoch, "batch_size": n_obs}
        self.log_dict(metrics, sync_dist=self.use_sync_dist, **log)
        for key in loss_output.extra_metrics_keys:
            value = loss_output.extra_metrics[key]
            if isinstance(value, torch.Tensor) and value.ndim == 0:
                self.log(f"{key}_{mode}", value.detach(), sync_dist=self.use_sync_dist, **log)
