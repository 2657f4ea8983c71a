"""Loading a saved model: the device asked for, and the AnnData given to attach."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike

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
def explained_transfer_errors(other_data: str) -> Iterator[None]:
    """Turn scvi-tools' errors of attaching another AnnData at ``load`` into ones naming the fix.

    ``load(..., adata=)`` attaches data to train further on, registered as the training data
    were: the same genes (or features) in the same order and no new categories. Using the
    model on new data needs none of that.

    Parameters
    ----------
    other_data
        How the model is used on other data instead (a sentence for the message).
    """
    try:
        yield
    except ValueError as err:
        text = str(err)
        if "extend_categories" in text:
            raise ValueError(
                f"adata holds a category the model was not trained with ({text.split('.')[0]}); "
                "load(..., adata=) attaches data set up as the training data were, so "
                f"categories cannot be added. {other_data}"
            ) from err
        if "Number of vars" in text:
            raise ValueError(
                f"adata's genes are not the model's ({text}); load(..., adata=) attaches data "
                "with the genes of the data it was trained on, in their order. "
                f"{other_data}"
            ) from err
        raise


class ExplainedLoadMixin:
    """``load`` of a task head: a CUDA device checked first, attach errors that name the fix.

    A head sets :attr:`_other_data` to how it is used on new data (its prediction methods
    match genes by name, so such data need not be attached).
    """

    _other_data: str = ""

    @classmethod
    def load(cls, dir_path: str | PathLike, adata=None, **kwargs):
        """Load a model saved with ``save``, through scvi-tools' ``load``.

        Parameters
        ----------
        dir_path
            The folder ``save`` wrote.
        adata
            AnnData to attach (set up like the training data, the same genes in their order);
            default: the one saved with the model, if any.
        **kwargs
            Other arguments of scvi-tools' ``load`` (``accelerator``, ``device``, ``prefix``).

        Raises
        ------
        ValueError
            A CUDA device is asked for on a machine without one, or ``adata`` cannot be
            attached (other genes or new categories).
        """
        check_load_device(kwargs)
        with explained_transfer_errors(cls._other_data):
            return super().load(str(dir_path), adata=adata, **kwargs)
