"""The user-facing foundation model (scvi-tools style)."""

from ._cancergpt import CancerGPTModel
from ._precision import cpu_has_native_bf16
from ._presets import PRESETS

__all__ = ["PRESETS", "CancerGPTModel", "cpu_has_native_bf16"]
