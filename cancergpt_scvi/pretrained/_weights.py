"""Which published weights a model holds, and where a name or folder of them is."""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from ._fetch import fetch_model
from ._registry import RELEASE_LAYOUT, registered_models


@dataclass(frozen=True)
class PretrainedWeights:
    """The published weights a model was loaded from (``model.pretrained_weights_``).

    Attributes
    ----------
    folder
        The folder read (for a named model, its folder in the cache).
    source
        Where they come from: the download address of a named model, else the folder.
    name
        The registered name they were loaded by, or ``None`` for a folder path.
    sha256
        SHA-256 of the weights file.
    layout
        The folder's layout, e.g. ``"CancerGPT release"``.
    weights_file
        The file of the weights in the folder (``model.pth`` in a CancerGPT release).
    """

    folder: Path
    source: str
    name: str | None = None
    sha256: str | None = None
    layout: str = RELEASE_LAYOUT
    weights_file: str = "model.pth"

    def describe(self) -> str:
        """One line for the model's summary."""
        origin = self.source if self.name is None else f"{self.name!r} from {self.source}"
        layout = f"(layout: {self.layout})"
        return f"weights: {origin} {layout}, {self.weights_file} SHA-256 {self.sha256}"


def locate_pretrained(model: str | PathLike) -> PretrainedWeights:
    """The folder of ``model``: a path that exists, else a registered name (fetched).

    Raises :class:`FileNotFoundError` for a string that is neither, listing the names.
    """
    path = Path(model)
    if path.exists() or not isinstance(model, str):
        return PretrainedWeights(folder=path, source=str(path.resolve()))
    names = registered_models()
    if model not in names:
        raise FileNotFoundError(
            f"No release folder at {model}, and {model!r} is not a registered model name "
            f"(registered: {', '.join(sorted(names))}). Pass the folder that holds model.pth, "
            "args.json and vocab.json, or a name, or register one with "
            "cancergpt_scvi.pretrained.register_model(name, url)."
        )
    entry = names[model]
    return PretrainedWeights(
        folder=fetch_model(model), source=entry.url, name=model, layout=entry.layout
    )
