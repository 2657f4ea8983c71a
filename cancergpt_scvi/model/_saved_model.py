"""The folder a saved model is loaded from: what it must hold, and errors that name the fix."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cancergpt_scvi._listing import listing


def saved_model_weights(path: Path, prefix: str | None = None) -> Path:
    """The ``model.pt`` of a folder written by ``model.save``, checked to exist.

    Raises
    ------
    FileNotFoundError
        No folder, or a folder without ``model.pt``; the message names the authors' release
        folder (``model.pth``), which ``load_pretrained`` reads, when it is one.
    """
    weights = path / f"{prefix or ''}model.pt"
    if not path.is_dir():
        raise FileNotFoundError(
            f"No model folder at {path}; give the folder that model.save(...) wrote."
        )
    if weights.is_dir():
        raise FileNotFoundError(
            f"{weights} is a folder, not the weights file model.save(...) writes; give the "
            "folder of a saved model (it holds a model.pt file), or save the model again."
        )
    if not weights.is_file():
        release = (path / "model.pth").is_file()
        hint = (
            " It looks like the authors' release folder (model.pth): read it with "
            "CancerGPTModel.load_pretrained(folder, adata)."
            if release
            else f" It holds: {listing(sorted(p.name for p in path.iterdir()))}."
        )
        raise FileNotFoundError(
            f"{path} holds no {weights.name}, so it is not a folder written by "
            f"model.save(...).{hint}"
        )
    return weights


@contextmanager
def readable_saved_model(weights: Path) -> Iterator[None]:
    """Turn the errors of reading a truncated or foreign ``weights`` file into a ValueError.

    Raises
    ------
    ValueError
        ``weights`` is not a readable saved model (an unpickling error, or torch's zip reader
        failing on it).
    """
    try:
        yield
    except (pickle.UnpicklingError, EOFError) as err:
        raise ValueError(
            f"{weights} is not a readable saved model ({type(err).__name__}: {err}); it may "
            "be truncated or another file. Save the model again with model.save(...)."
        ) from err
    except RuntimeError as err:
        if "PytorchStreamReader" not in str(err) and "zip" not in str(err):
            raise
        raise ValueError(
            f"{weights} is not a readable saved model ({err}); it may be truncated or "
            "another file. Save the model again with model.save(...)."
        ) from err
