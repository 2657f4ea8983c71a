"""Arithmetic of embedding: float32, or bfloat16 autocast where the hardware has it."""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch

#: Arithmetic of embedding: float32, or bfloat16 autocast (CPU and GPU).
Precision = Literal["fp32", "bf16"]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX) in PyTorch.

    Without it, ``get_latent_representation(precision="bf16")`` on the CPU is emulated and
    slower than ``"fp32"``.

    Returns
    -------
    ``True`` when PyTorch's oneDNN backend has bfloat16 kernels for this CPU; ``False``
    otherwise, or for a PyTorch build without oneDNN.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def embedding_autocast(precision: Precision, device: torch.device) -> AbstractContextManager:
    """The autocast context of embedding at ``precision`` (``"fp32"`` or ``"bf16"``) on ``device``.

    Warns when bfloat16 is asked of a CPU without native bfloat16 arithmetic.
    """
    if precision != "bf16":
        return nullcontext()
    if device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "This CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), so "
            "precision='bf16' is emulated and slower than 'fp32' here (measured 3.7x "
            "slower on an AMD Zen 3 with AVX2, see the pretrained-weights docs page); use "
            "precision='fp32'.",
            stacklevel=4,
        )
    return torch.autocast(device.type, dtype=torch.bfloat16)
