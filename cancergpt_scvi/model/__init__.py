"""User-facing models (scvi-tools style)."""

from ._bulk_embedding import embed_bulk
from ._cancergpt import CancerGPTModel
from ._drug_response import DrugResponseModel
from ._pretrained import ReleaseCheckpointError, read_release_checkpoint
from ._survival import SurvivalModel
from ._survival_baselines import compare_survival_features

__all__ = [
    "CancerGPTModel",
    "DrugResponseModel",
    "ReleaseCheckpointError",
    "SurvivalModel",
    "compare_survival_features",
    "embed_bulk",
    "read_release_checkpoint",
]
