"""scvi-tools modules (torch) behind the model classes."""

from ._cancergpt import CancerGPTModule
from ._drug_response import DrugResponseModule
from ._survival import CoxPHModule

__all__ = ["CancerGPTModule", "CoxPHModule", "DrugResponseModule"]
