"""The scvi-tools module (torch) behind CancerGPTModel."""

from ._cancergpt import CancerGPTModule

__all__ = ["CancerGPTModule"]
