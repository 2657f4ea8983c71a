"""scvi-tools modules (torch) behind the model classes."""

from ._cancergpt import CancerGPTModule
from ._survival import CoxPHModule

__all__ = ["CancerGPTModule", "CoxPHModule"]
