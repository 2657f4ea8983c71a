"""Embed a user's h5ad file with a saved CancerGPT model."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import anndata as ad
import pandas as pd

from cancergpt_scvi.model import CancerGPTModel

from ._atomic_output import remove_stale_temporaries, write_atomically

logger = logging.getLogger(__name__)


def embed_file(
    in_path: str | Path,
    model_dir: str | Path,
    out_path: str | Path,
    key: str = "X_cancergpt",
    batch_size: int = 64,
    overwrite: bool = False,
    layer: str | None = None,
) -> Path:
    """Read an h5ad, embed its cells with a saved model, write the h5ad with ``obsm[key]``.

    The input needs only the genes (matched by symbol through the model's vocabulary). The
    output is written to a hidden temporary file next to it and published in one step, so
    ``out_path`` is never half-written: without ``overwrite`` by a hard link that fails if
    ``out_path`` exists (of two runs to one output exactly one writes it, the other raises
    :class:`FileExistsError`), with ``overwrite`` by :func:`os.replace`. Temporaries that dead
    writers left in the output's folder are removed first.

    Parameters
    ----------
    in_path
        The ``.h5ad`` file of the cells to embed.
    model_dir
        A folder written by :meth:`~cancergpt_scvi.model.CancerGPTModel.save`.
    out_path
        The ``.h5ad`` file to write: the input with the embedding in ``obsm[key]``.
    key
        ``obsm`` key of the embedding.
    batch_size
        Cells per forward pass.
    overwrite
        Whether to replace an existing ``out_path`` and an existing ``obsm[key]`` of the input.
    layer
        Where the input holds the expression: a layer name, or ``"X"`` for ``adata.X``;
        ``None``: where the model's training data held it (the layer it was set up with).

    Returns
    -------
    ``out_path``.

    Raises
    ------
    FileNotFoundError
        No input file, no ``model.pt`` in ``model_dir``, or no folder to write ``out_path`` in.
    FileExistsError
        ``out_path`` exists, or was written by another run meanwhile, and ``overwrite`` is
        ``False``.
    IsADirectoryError
        ``out_path`` is a folder.
    ValueError
        The input is not a readable h5ad file, ``model.pt`` is not a readable model, the input
        already has ``obsm[key]`` (without ``overwrite``), ``key`` cannot be stored in an
        ``.h5ad`` file, or an argument is invalid.
    KeyError
        The expression layer is not in the input.
    """
    in_path, out_path, model_dir = Path(in_path), Path(out_path), Path(model_dir)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of cells, got {batch_size!r}.")
    _check_obsm_key(key)
    if not in_path.is_file():
        raise FileNotFoundError(f"No input file at {in_path}.")
    if not (model_dir / "model.pt").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a saved CancerGPT model folder (no model.pt); save one with "
            "CancerGPTModel.save(dir)."
        )
    if out_path.is_dir():
        raise IsADirectoryError(
            f"The output {out_path} is a folder; give the path of the .h5ad file to write, "
            f"e.g. {out_path / 'embedded.h5ad'}."
        )
    if not out_path.parent.is_dir():
        raise FileNotFoundError(
            f"The folder {out_path.parent} of the output does not exist; create it first."
        )
    if not os.access(out_path.parent, os.W_OK | os.X_OK):
        # checked before the work, which would otherwise be lost at the end
        raise PermissionError(
            f"The folder {out_path.parent} of the output is not writable; give an output path "
            "in a folder you can write to."
        )
    if out_path.exists() and not overwrite:
        raise FileExistsError(
            f"{out_path} exists; pass overwrite=True (--overwrite) to replace it."
        )
    if out_path.resolve() == in_path.resolve():
        raise ValueError("The output path must differ from the input path.")
    remove_stale_temporaries(out_path.parent)

    adata = _read_h5ad(in_path)
    if key in adata.obsm:
        if not overwrite:
            raise ValueError(
                f"{in_path} already has obsm[{key!r}]; pass another key (--key) or "
                "overwrite=True (--overwrite) to replace it."
            )
        logger.info("Replacing the input's obsm[%r].", key)
    model = _load_model(model_dir)
    cells = _expression_view(adata, in_path, model, layer)
    adata.obsm[key] = model.get_latent_representation(cells, batch_size=batch_size)
    write_atomically(adata.write_h5ad, out_path, overwrite)
    logger.info("Wrote %s with obsm[%r] of shape %s.", out_path, key, adata.obsm[key].shape)
    return out_path


def _check_obsm_key(key: str) -> None:
    """Refuse an ``obsm`` key that an ``.h5ad`` file cannot store under its own name."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty obsm key, e.g. 'X_cancergpt'; got {key!r}.")
    # obsm keys become HDF5 names: "/" splits them into groups ("a/b" is written, then
    # unreadable; "a/" comes back as "a"), NUL ends them, "." names the obsm group itself
    if "/" in key or "\0" in key or key == ".":
        fixed = key.replace("/", "_").replace("\0", "") if key != "." else "X_cancergpt"
        raise ValueError(
            f"The obsm key {key!r} cannot be stored in an .h5ad file (a key may not contain "
            f"'/' or a NUL character, nor be '.'); pass another key (--key), e.g. {fixed!r}."
        )


def _read_h5ad(path: Path) -> ad.AnnData:
    """Read an h5ad file; a file that is not one is refused with a message naming it."""
    try:
        return ad.read_h5ad(path)
    except (OSError, KeyError, TypeError, ValueError) as err:
        # h5py says "file signature not found" for a CSV, a truncated file and the like
        raise ValueError(
            f"{path} is not a readable .h5ad file ({type(err).__name__}: {err}); expected an "
            "AnnData file written by anndata's write_h5ad."
        ) from err


def _load_model(model_dir: Path) -> CancerGPTModel:
    """Load a saved model; an unreadable ``model.pt`` is refused with a message naming it."""
    try:
        return CancerGPTModel.load(str(model_dir), adata=None)
    # a model.pt holding something else (e.g. a bare state dict) fails with TypeError/KeyError
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        TypeError,
        KeyError,
    ) as err:
        raise ValueError(
            f"{model_dir / 'model.pt'} is not a readable CancerGPT model "
            f"({type(err).__name__}: {err}); expected the folder CancerGPTModel.save(dir) wrote."
        ) from err


def _expression_view(
    adata: ad.AnnData, in_path: Path, model: CancerGPTModel, layer: str | None
) -> ad.AnnData:
    """The cells with their expression where the model reads it (its setup layer)."""
    expected = model.registry_["setup_args"]["layer"]
    source = expected if layer is None else (None if layer == "X" else layer)
    if source is not None and source not in adata.layers:
        trained = "adata.X" if expected is None else f"layers[{expected!r}]"
        raise KeyError(
            f"{in_path} has no layer {source!r} (layers: {list(adata.layers)}); the model was "
            f"trained on {trained}. Pass layer= (--layer) the layer holding that expression, "
            "or 'X' for adata.X."
        )
    if source == expected:
        return adata
    matrix = adata.X if source is None else adata.layers[source]
    # the same cells and genes, with the expression where the model looks for it
    view = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names), var=adata.var)
    if expected is None:
        view.X = matrix
    else:
        view.layers[expected] = matrix
    return view
