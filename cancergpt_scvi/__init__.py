"""CancerGPT, the single-cell foundation model of malignant cells, as a scverse plugin.

The core (``data``, ``nn``, ``module``, ``model``, ``train``, ``release``) is imported with the
package; the task heads, simulators, corpora, benchmarks and plots are imported when first
used, so that ``import cancergpt_scvi`` needs none of the optional extras.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from . import data, model, module, nn, release, train
from .model import CancerGPTModel

try:
    __version__ = version("cancergpt-scvi")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

#: Subpackages imported on first use.
_LAZY_SUBPACKAGES = (
    "benchmark",
    "bulk",
    "corpus",
    "datasets",
    "drug_response",
    "plotting",
    "survival",
    "workflow",
)
#: Task-head models, from the subpackage that holds each.
_LAZY_MODELS = {"DrugResponseModel": "drug_response", "SurvivalModel": "survival"}


def __getattr__(name: str):
    if name in _LAZY_SUBPACKAGES:
        return import_module(f"{__name__}.{name}")
    if name in _LAZY_MODELS:
        return getattr(import_module(f"{__name__}.{_LAZY_MODELS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES) | set(_LAZY_MODELS))


__all__ = [
    "CancerGPTModel",
    "DrugResponseModel",
    "SurvivalModel",
    *_LAZY_SUBPACKAGES,
    "data",
    "model",
    "module",
    "nn",
    "release",
    "train",
]
