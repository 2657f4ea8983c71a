"""Where and onto what a saved model is loaded: the device asked for, and the AnnData given."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def check_load_device(options: dict) -> None:
    """Refuse a CUDA device or accelerator on a machine without one, before any reading.

    ``options`` are the keyword arguments of ``load`` (``device``, ``accelerator``).
    """
    device = str(options.get("device") or "")
    accelerator = str(options.get("accelerator") or "")
    wants_cuda = device.startswith("cuda") or accelerator in ("gpu", "cuda")
    if wants_cuda and not torch.cuda.is_available():
        asked = f"device={device!r}" if device else f"accelerator={accelerator!r}"
        raise ValueError(
            f"{asked} asks for a CUDA GPU, but torch sees none on this machine; load with "
            "device='cpu' (or leave device unset)."
        )


@contextmanager
def explained_transfer_errors() -> Iterator[None]:
    """Turn scvi-tools' errors of attaching another AnnData at ``load`` into ones naming the fix.

    ``load(..., adata=)`` attaches data to train further on, registered as the training data
    were: the same genes in the same order and no new categories. Embedding new data needs
    none of that.
    """
    embed = (
        "To embed other data, load the model without adata and call "
        "model.get_latent_representation(adata), which matches genes by symbol and needs no "
        "setup."
    )
    try:
        yield
    except ValueError as err:
        text = str(err)
        if "extend_categories" in text:
            raise ValueError(
                f"adata holds a category the model was not trained with ({text.split('.')[0]}); "
                "load(..., adata=) attaches data set up as the training data were, so "
                f"categories cannot be added. {embed}"
            ) from err
        if "Number of vars" in text:
            raise ValueError(
                f"adata's genes are not the model's ({text}); load(..., adata=) attaches data "
                "with the model's genes in their order (adata[:, model.input_genes_]). "
                f"{embed}"
            ) from err
        raise
