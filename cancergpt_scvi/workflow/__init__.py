"""End-to-end workflows behind the ``cancergpt-scvi`` command."""

from ._atomic_output import Interrupted, stop_on_signals
from ._demo import run_demo
from ._embed import embed_file

__all__ = ["embed_file", "run_demo"]
