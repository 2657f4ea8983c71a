"""The user-facing foundation model (scvi-tools style)."""

from ._cancergpt import CancerGPTModel
from ._presets import PRESETS

__all__ = ["PRESETS", "CancerGPTModel"]
