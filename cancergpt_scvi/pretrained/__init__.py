"""Published models by name: a registry of download addresses and a cache of their folders."""

from ._fetch import ModelDownloadError, fetch_model, file_sha256
from ._registry import (
    CACHE_ENV,
    RegisteredModel,
    cache_dir,
    register_model,
    registered_models,
)
from ._weights import PretrainedWeights, locate_pretrained

# file_sha256 and locate_pretrained, not in __all__, serve CancerGPTModel.load_pretrained.
__all__ = [
    "CACHE_ENV",
    "ModelDownloadError",
    "PretrainedWeights",
    "RegisteredModel",
    "cache_dir",
    "fetch_model",
    "register_model",
    "registered_models",
]
