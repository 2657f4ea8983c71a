"""CancerGPT, the single-cell foundation model of malignant cells, as a scverse plugin."""

from importlib.metadata import PackageNotFoundError, version

from . import benchmark, data, model, module, nn, plotting, train, workflow
from .model import CancerGPTModel, DrugResponseModel, SurvivalModel

try:
    __version__ = version("cancergpt-scvi")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "CancerGPTModel",
    "DrugResponseModel",
    "SurvivalModel",
    "benchmark",
    "data",
    "model",
    "module",
    "nn",
    "plotting",
    "train",
    "workflow",
]
