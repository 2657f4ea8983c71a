"""Embed a user's h5ad file with a saved CancerGPT model."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad

from cancergpt_scvi.model import CancerGPTModel

logger = logging.getLogger(__name__)


def embed_file(
    in_path: str | Path,
    model_dir: str | Path,
    out_path: str | Path,
    key: str = "X_cancergpt",
    batch_size: int = 64,
    overwrite: bool = False,
) -> Path:
    """Read an h5ad, embed its cells with a saved model, write the h5ad with ``obsm[key]``.

    The input needs only the genes (matched by symbol through the model's vocabulary). The
    output is written to a temporary name first and moved into place, so a failure never
    leaves a half-written file.

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
        Whether to replace an existing ``out_path``.

    Returns
    -------
    ``out_path``.
    """
    in_path, out_path, model_dir = Path(in_path), Path(out_path), Path(model_dir)
    if not in_path.is_file():
        raise FileNotFoundError(f"No input file at {in_path}.")
    if not (model_dir / "model.pt").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a saved CancerGPT model folder (no model.pt); save one with "
            "CancerGPTModel.save(dir)."
        )
    if out_path.exists() and not overwrite:
        raise FileExistsError(
            f"{out_path} exists; pass overwrite=True (--overwrite) to replace it."
        )
    if out_path.resolve() == in_path.resolve():
        raise ValueError("The output path must differ from the input path.")
    adata = ad.read_h5ad(in_path)
    model = CancerGPTModel.load(str(model_dir), adata=None)
    adata.obsm[key] = model.get_latent_representation(adata, batch_size=batch_size)
    tmp = out_path.with_name(out_path.name + ".partial")
    adata.write_h5ad(tmp)
    tmp.replace(out_path)
    logger.info("Wrote %s with obsm[%r] of shape %s.", out_path, key, adata.obsm[key].shape)
    return out_path
