"""User-facing models (scvi-tools style)."""

from ._bulk_embedding import embed_bulk
from ._cancergpt import CancerGPTModel
from ._survival import SurvivalModel

__all__ = ["CancerGPTModel", "SurvivalModel", "embed_bulk"]
