"""The published CancerGPT release folder: reading and checking it."""

from ._checkpoint import (
    ReleaseCheckpoint,
    ReleaseCheckpointError,
    encoder_modules,
    read_release_checkpoint,
    release_encoder,
)

__all__ = [
    "ReleaseCheckpoint",
    "ReleaseCheckpointError",
    "encoder_modules",
    "read_release_checkpoint",
    "release_encoder",
]
