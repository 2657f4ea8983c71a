"""Placing a published checkpoint's encoder in a freshly built model, the same for every layout."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cancergpt_scvi.pretrained import PretrainedWeights
from cancergpt_scvi.release import ReleaseCheckpointError, encoder_modules

if TYPE_CHECKING:
    from ._cancergpt import CancerGPTModel


def install_pretrained_encoder(
    model: CancerGPTModel,
    encoder_state: dict[str, torch.Tensor],
    weights: PretrainedWeights,
    layout: str,
    summary: str,
    device: str | torch.device | None,
) -> None:
    """Load ``encoder_state`` strictly into ``model`` and mark it as published weights.

    The model is put in eval mode and marked trained; ``summary`` is appended to its summary;
    ``pretrained_weights_``, ``pretrained_from_``, ``pretrained_layout_`` and
    ``pretrained_summary_`` say where the weights came from (and are kept by ``save``); it
    is moved to ``device`` (``None``: a GPU when there is one).

    Raises
    ------
    ReleaseCheckpointError
        A weight of ``encoder_state`` has no place in the model, or a place stays empty.
    """
    try:  # strict: a drift of our module's names must not leave weights unplaced
        encoder_modules(model.module).load_state_dict(encoder_state, strict=True)
    except RuntimeError as err:
        raise ReleaseCheckpointError(f"Encoder weights not placed: {err}") from err
    model._model_summary_string += summary
    # kept by save (attributes ending in "_"), so that load can give the summary back
    model.pretrained_summary_ = summary
    model.pretrained_weights_ = weights
    model.module.eval()
    model.is_trained_ = True
    model.pretrained_from_ = str(Path(weights.folder).resolve())
    model.pretrained_layout_ = layout
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to_device(device)
