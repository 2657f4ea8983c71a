"""Optional dependencies: imported when a feature that needs them is used, never on import."""

from __future__ import annotations

import importlib
from types import ModuleType

#: Distribution names of the optional modules whose import name differs.
_DISTRIBUTIONS = {"sksurv": "scikit-survival"}


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise an :class:`ImportError` naming the extra that installs it.

    Parameters
    ----------
    module
        Dotted module name, e.g. ``"rdkit.Chem"``.
    extra
        The ``cancergpt-scvi`` extra that brings it, e.g. ``"drug"``.
    feature
        What needs it, for the message (e.g. ``"DrugResponseModel"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        package = _DISTRIBUTIONS.get(package, package)
        raise ImportError(
            f"{feature} needs {package}, which is not installed. Install it with "
            f"pip install 'cancergpt-scvi[{extra}]' (or 'cancergpt-scvi[all]')."
        ) from err
