"""The published CancerGPT release folder: reading and checking it."""

from ._checkpoint import (
    PretrainedMixin,
    ReleaseCheckpoint,
    ReleaseCheckpointError,
    read_release_checkpoint,
)

__all__ = [
    "PretrainedMixin",
    "ReleaseCheckpoint",
    "ReleaseCheckpointError",
    "read_release_checkpoint",
]
