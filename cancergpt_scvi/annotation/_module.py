"""CellStateModule: a classifier of cell states on CancerGPT embeddings, optionally fine-tuning."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from cancergpt_scvi._constants import EMBEDDING_KEY, LABELS_KEY, X_KEY
from cancergpt_scvi.data import thin_counts
from cancergpt_scvi.module import CancerGPTModule
from cancergpt_scvi.nn import Standardization


class CellStateModule(BaseModuleClass):
    """Cell-state classifier over the CancerGPT cell embedding.

    The embedding is standardised (mean and sd over the reference's embeddings) and passed
    through an MLP with one hidden layer (or a linear layer, ``n_hidden=0``) to one logit per
    state. With an ``encoder``, the embedding is computed from the expression by that
    CancerGPT module in the same step, so that training fine-tunes the encoder with the
    classifier; the encoder's self-supervised objective (masked expression and MVC) can be
    kept alongside, on every cell, labelled or not (``self_supervised_weight`` of
    :meth:`loss`). Cells of ``unlabeled_code`` have no state: they add no cross-entropy.
    While fine-tuning, the counts the classifier's embedding is computed from can be thinned
    (``count_thinning``), so that the head learns states from cells of many depths.

    Parameters
    ----------
    n_input
        Dimensions of the embedding.
    n_labels
        Number of states.
    n_hidden
        Hidden units (0: a linear classifier, multinomial logistic regression).
    dropout
        Dropout on the standardised embedding and the hidden layer.
    encoder
        A :class:`~cancergpt_scvi.module.CancerGPTModule` to fine-tune; ``None`` reads
        precomputed embeddings.
    unlabeled_code
        Label code of the cells without a state (scvi-tools puts the unlabeled category
        last: ``n_labels``); ``None`` when every cell has one.
    count_thinning
        In training with an encoder, the embedding the classifier learns from (and through it
        the encoder) is computed from each cell's counts binomially thinned to a fraction drawn
        per cell from ``U(count_thinning, 1)`` (:func:`~cancergpt_scvi.data.thin_counts`); the
        self-supervised loss sees them whole.
        ``None``: no thinning (needed for expression that is not counts).
    """

    def __init__(
        self,
        n_input: int,
        n_labels: int,
        n_hidden: int = 128,
        dropout: float = 0.1,
        encoder: CancerGPTModule | None = None,
        unlabeled_code: int | None = None,
        count_thinning: float | None = None,
    ):
        super().__init__()
        if n_labels < 2:
            raise ValueError(f"A classifier needs at least 2 states, got {n_labels}.")
        if count_thinning is not None and not 0.0 < count_thinning <= 1.0:
            raise ValueError(f"count_thinning must be in (0, 1] or None, got {count_thinning}.")
        self.n_input, self.n_labels = n_input, n_labels
        self.unlabeled_code = unlabeled_code
        self.count_thinning = count_thinning
        self.encoder = encoder
        # the reference embeddings' mean and sd, set by the model before training
        self.standardization = Standardization(n_input)
        if n_hidden > 0:
            self.classifier = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(n_input, n_hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(n_hidden, n_labels),
            )
        else:
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_input, n_labels))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's L2-normalised ``<cls>`` output, with gradients (fine-tuning)."""
        tokens = self.encoder.tokenize(x)
        return F.normalize(self.encoder.encode(tokens, cls_only=True)[:, 0].float(), dim=-1)

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """State logits ``(B, n_labels)`` of embeddings ``z``."""
        return self.classifier(self.standardization(z))

    # -- scvi-tools module contract ---------------------------------------------------------
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        if self.encoder is not None:
            return {"x": tensors[X_KEY]}
        return {"x": tensors[EMBEDDING_KEY]}

    def _get_generative_input(self, tensors: dict, inference_outputs: dict) -> dict:
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict:
        """The cell embedding: ``x`` itself, or the encoder's embedding of expression ``x``.

        In training with ``count_thinning``, the encoder embeds thinned counts.
        """
        if self.encoder is None:
            return {"z": x.float()}
        if self.training and self.count_thinning is not None:
            x = thin_counts(x, self.count_thinning)
        return {"z": self.embed(x)}

    @auto_move_data
    def generative(self, z: torch.Tensor) -> dict:
        """State logits of the embedding."""
        return {"logits": self.classify(z)}

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        self_supervised_weight: float = 0.0,
    ) -> LossOutput:
        """Cross-entropy of the known states (+ the encoder's self-supervised loss).

        Parameters
        ----------
        tensors, inference_outputs, generative_outputs
            As in scvi-tools' module contract.
        self_supervised_weight
            Weight of the encoder's masked expression + MVC loss
            (:meth:`~cancergpt_scvi.module.CancerGPTModule.self_supervised_loss`), averaged
            over every cell of the minibatch; used only when fine-tuning an encoder.

        The cross-entropy is averaged over the cells with a state; the accuracy on them is
        logged alongside.
        """
        logits = generative_outputs["logits"]
        y = tensors[LABELS_KEY].long().view(-1)
        labelled = (
            torch.ones_like(y, dtype=torch.bool)
            if self.unlabeled_code is None
            else y != self.unlabeled_code
        )
        # unlabelled cells get a valid dummy target, then a zero weight
        ce = F.cross_entropy(logits, torch.where(labelled, y, 0), reduction="none") * labelled
        n_labelled = labelled.sum().clamp(min=1)
        loss = ce.sum() / n_labelled
        per_cell = ce
        metrics = {"accuracy": ((logits.argmax(dim=-1) == y) & labelled).sum().float() / n_labelled}
        if self.encoder is not None and self_supervised_weight > 0:
            ssl = self.encoder.self_supervised_loss(tensors[X_KEY])
            loss = loss + self_supervised_weight * ssl.mean()
            per_cell = per_cell + self_supervised_weight * ssl
            metrics["self_supervised_loss"] = ssl.mean()
        return LossOutput(
            loss=loss,
            reconstruction_loss=per_cell,
            n_obs_minibatch=len(y),
            extra_metrics=metrics,
        )
