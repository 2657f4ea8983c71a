"""CancerGPT, the single-cell foundation model of malignant cells, as a scverse plugin.

Subpackages and models are imported on first use (``cancergpt_scvi.CancerGPTModel``,
``from cancergpt_scvi.datasets import ...``), so that ``import cancergpt_scvi`` is quick and
needs none of the optional extras.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cancergpt-scvi")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

#: Subpackages, imported on first use.
_SUBPACKAGES = (
    "annotation",
    "benchmark",
    "bulk",
    "corpus",
    "data",
    "datasets",
    "drug_response",
    "model",
    "module",
    "nn",
    "plotting",
    "pretrained",
    "release",
    "survival",
    "train",
    "workflow",
)
#: Models, from the subpackage that holds each.
_MODELS = {
    "CancerGPTModel": "model",
    "CellStateModel": "annotation",
    "DrugResponseModel": "drug_response",
    "SurvivalModel": "survival",
}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return import_module(f"{__name__}.{name}")
    if name in _MODELS:
        return getattr(import_module(f"{__name__}.{_MODELS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES) | set(_MODELS))


__all__ = [*_MODELS, *_SUBPACKAGES]
