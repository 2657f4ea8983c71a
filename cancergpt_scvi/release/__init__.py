"""The published CancerGPT release folder: reading and checking it, and its choice of genes."""

from ._checkpoint import (
    ReleaseCheckpoint,
    ReleaseCheckpointError,
    encoder_modules,
    read_release_checkpoint,
    release_encoder,
)
from ._token_genes import release_token_genes

# encoder_modules and release_token_genes, not in __all__, serve CancerGPTModel.load_pretrained.
__all__ = [
    "ReleaseCheckpoint",
    "ReleaseCheckpointError",
    "read_release_checkpoint",
    "release_encoder",
]
