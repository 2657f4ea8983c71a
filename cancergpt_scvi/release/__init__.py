"""Published checkpoint folders (the CancerGPT release, scGPT's): reading, checking, gene choice."""

from ._checkpoint import (
    ReleaseCheckpoint,
    ReleaseCheckpointError,
    encoder_modules,
    read_release_checkpoint,
    release_encoder,
)
from ._scgpt_checkpoint import (
    CANCERGPT_LAYOUT,
    SCGPT_LAYOUT,
    ScGPTCheckpoint,
    checkpoint_layout,
    is_checkpoint_folder,
    read_scgpt_checkpoint,
    scgpt_key,
)
from ._token_genes import release_token_genes

# encoder_modules and release_token_genes, not in __all__, serve CancerGPTModel.load_pretrained;
# so do the layout names CANCERGPT_LAYOUT and SCGPT_LAYOUT (what checkpoint_layout returns);
# is_checkpoint_folder serves the command line.
__all__ = [
    "ReleaseCheckpoint",
    "ReleaseCheckpointError",
    "ScGPTCheckpoint",
    "checkpoint_layout",
    "read_release_checkpoint",
    "read_scgpt_checkpoint",
    "release_encoder",
    "scgpt_key",
]
