"""Embed a user's h5ad or h5mu file with a saved CancerGPT model."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import anndata as ad
import mudata
import pandas as pd
from mudata import MuData

from cancergpt_scvi.model import CancerGPTModel, expression_layer
from cancergpt_scvi.pretrained import registered_models
from cancergpt_scvi.release import is_checkpoint_folder

from ._atomic_output import remove_stale_temporaries, write_atomically
from ._mudata_input import check_output_format, is_h5mu, rna_cells

logger = logging.getLogger(__name__)


def embed_file(
    in_path: str | Path,
    model_dir: str | Path,
    out_path: str | Path,
    key: str = "X_cancergpt",
    batch_size: int = 64,
    overwrite: bool = False,
    layer: str | None = None,
    modality: str | None = None,
    seed: int | None = 0,
) -> Path:
    """Read an h5ad, embed its cells with a saved or published model, write ``obsm[key]``.

    An ``.h5mu`` file (MuData) is read with mudata, its cells embedded from their RNA
    modality, and written as ``.h5mu`` with the embedding in the MuData's ``obsm[key]``.

    The input needs only the genes (matched by symbol through the model's vocabulary). The
    output is written to a hidden temporary file next to it and published in one step, so
    ``out_path`` is never half-written: without ``overwrite`` by a hard link that fails if
    ``out_path`` exists (of two runs to one output exactly one writes it, the other raises
    :class:`FileExistsError`), with ``overwrite`` by :func:`os.replace`. Temporaries that dead
    writers left in the output's folder are removed first.

    Parameters
    ----------
    in_path
        The ``.h5ad`` (or ``.h5mu``) file of the cells to embed.
    model_dir
        A folder written by :meth:`~cancergpt_scvi.model.CancerGPTModel.save`; or published
        weights, loaded with :meth:`~cancergpt_scvi.model.CancerGPTModel.load_pretrained`:
        the name of a published model (e.g. ``"cancergpt"``, see
        :func:`~cancergpt_scvi.pretrained.registered_models`; downloaded into the cache on
        first use), or a folder of the release's (``model.pth``) or scGPT's
        (``best_model.pt``) layout.
    out_path
        The ``.h5ad`` (for an ``.h5mu`` input, ``.h5mu``) file to write: the input with the
        embedding in ``obsm[key]``.
    key
        ``obsm`` key of the embedding.
    batch_size
        Cells per forward pass.
    overwrite
        Whether to replace an existing ``out_path`` and an existing ``obsm[key]`` of the input.
    layer
        Where the input holds the expression: a layer name, or ``"X"`` for ``adata.X``;
        ``None``: where the model's training data held it (the layer it was set up with); for
        a published model, ``adata.X``. For an ``.h5mu`` input, a layer of the RNA modality.
    modality
        The RNA modality of an ``.h5mu`` input; ``None``: the one the model was set up with
        (:meth:`~cancergpt_scvi.model.CancerGPTModel.setup_mudata`), else ``"rna"``.
    seed
        Seed of the random parts of a published model's token rule (tied values spread over
        their bins, scGPT's subset of a cell's genes), so that runs agree; ``None``: drawn
        afresh. Models with deterministic binning do not use it.

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
        The input is not a readable h5ad (h5mu) file, the output's format is not the input's,
        an h5mu input's RNA modality does not hold its cells in order, ``model.pt`` is not a
        readable model, the input already has ``obsm[key]`` (without ``overwrite``), ``key``
        cannot be stored in an ``.h5ad`` file, or an argument is invalid.
    KeyError
        The expression layer is not in the input, or an ``.h5mu`` input has no such RNA
        modality (the message names the ones it has).
    """
    # published weights: a registered name (unless a path of that name exists), or a folder
    # of the release's (model.pth) or scGPT's (best_model.pt) layout
    published = model_dir if isinstance(model_dir, str) and not Path(model_dir).exists() else None
    if published not in registered_models():
        published = None
    in_path, out_path, model_dir = Path(in_path), Path(out_path), Path(model_dir)
    if published is None and not (model_dir / "model.pt").is_file():
        published = model_dir if is_checkpoint_folder(model_dir) else None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of cells, got {batch_size!r}.")
    _check_obsm_key(key)
    if not in_path.is_file():
        raise FileNotFoundError(f"No input file at {in_path}.")
    if published is None and not (model_dir / "model.pt").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a saved CancerGPT model folder (no model.pt), a folder of "
            "published weights (model.pth or best_model.pt) nor the name of a published model "
            f"({', '.join(sorted(registered_models()))}); save one with CancerGPTModel.save(dir)."
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
    check_output_format(in_path, out_path)
    mudata_input = is_h5mu(in_path)
    if modality is not None and not mudata_input:
        raise ValueError(
            f"modality= (--modality) chooses a modality of an .h5mu file; {in_path.name} is "
            "read as an .h5ad file, which has none. Leave it out."
        )
    remove_stale_temporaries(out_path.parent)

    # data: what is written back (an AnnData, or a MuData whose RNA modality is embedded)
    data = _read_input(in_path, mudata_input)
    if key in data.obsm:
        if not overwrite:
            raise ValueError(
                f"{in_path} already has obsm[{key!r}]; pass another key (--key) or "
                "overwrite=True (--overwrite) to replace it."
            )
        logger.info("Replacing the input's obsm[%r].", key)
    if published is None:
        model = _load_model(model_dir)
        adata = rna_cells(data, model, modality) if mudata_input else data
        cells = _expression_view(adata, in_path, model, layer)
    else:
        adata = rna_cells(data, None, modality) if mudata_input else data
        model, cells = _load_published(published, adata, in_path, layer)
    data.obsm[key] = model.get_latent_representation(cells, batch_size=batch_size, seed=seed)
    write_atomically(data.write_h5mu if mudata_input else data.write_h5ad, out_path, overwrite)
    logger.info("Wrote %s with obsm[%r] of shape %s.", out_path, key, data.obsm[key].shape)
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


def _read_input(path: Path, h5mu: bool) -> ad.AnnData | MuData:
    """Read an h5ad (or h5mu) file; a file that is not one is refused with a message naming it."""
    kind, package = ("h5mu", "mudata") if h5mu else ("h5ad", "anndata")
    try:
        return mudata.read_h5mu(path) if h5mu else ad.read_h5ad(path)
    except (OSError, KeyError, TypeError, ValueError) as err:
        # h5py says "file signature not found" for a CSV, a truncated file and the like
        raise ValueError(
            f"{path} is not a readable .{kind} file ({type(err).__name__}: {err}); expected a "
            f"file written by {package}'s write_{kind}."
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


def _load_published(
    name: str | Path, adata: ad.AnnData, in_path: Path, layer: str | None
) -> tuple[CancerGPTModel, ad.AnnData]:
    """A published model set up on the cells, which it reads from ``X`` or ``layer``."""
    source = None if layer in (None, "X") else layer
    if source is not None and source not in adata.layers:
        raise KeyError(
            f"{in_path} has no layer {source!r} (layers: {list(adata.layers)}); pass layer= "
            "(--layer) the layer holding the expression, or 'X' for adata.X."
        )
    # registered on a view sharing the matrix, so the output gets no _scvi_* columns
    cells = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names), var=adata.var)
    cells.X = adata.X if source is None else adata.layers[source]
    return CancerGPTModel.load_pretrained(name, cells), cells


def _expression_view(
    adata: ad.AnnData, in_path: Path, model: CancerGPTModel, layer: str | None
) -> ad.AnnData:
    """The cells with their expression where the model reads it (its setup layer)."""
    expected = expression_layer(model.registry_["setup_args"])
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
