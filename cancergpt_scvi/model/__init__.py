"""The user-facing foundation model (scvi-tools style)."""

from ._cancergpt import CancerGPTModel

__all__ = ["CancerGPTModel"]
