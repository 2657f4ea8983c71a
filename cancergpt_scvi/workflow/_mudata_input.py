"""An ``.h5mu`` file to embed: read with mudata, its RNA modality chosen."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
from mudata import MuData

from cancergpt_scvi.model import RNA_MODALITY, CancerGPTModel, registered_rna_modality, rna_modality

#: File suffix of MuData files.
H5MU = ".h5mu"


def is_h5mu(path: Path) -> bool:
    """Whether ``path`` names a MuData file (by its suffix, as mudata names them)."""
    return path.suffix.lower() == H5MU


def check_output_format(in_path: Path, out_path: Path) -> None:
    """Refuse writing an ``.h5mu`` input to another format, or an ``.h5ad`` to ``.h5mu``.

    Raises
    ------
    ValueError
        One of the paths ends in ``.h5mu`` and the other does not.
    """
    if is_h5mu(in_path) != is_h5mu(out_path):
        kind = "MuData (.h5mu)" if is_h5mu(in_path) else "AnnData (.h5ad)"
        suffix = H5MU if is_h5mu(in_path) else ".h5ad"
        raise ValueError(
            f"The input {in_path.name} is a {kind} file and is written as one; give an output "
            f"path ending in {suffix}, e.g. {out_path.with_suffix(suffix)}."
        )


def rna_cells(mdata: MuData, model: CancerGPTModel | None, modality: str | None) -> ad.AnnData:
    """The AnnData of ``mdata``'s RNA modality: ``modality``, or the one the model was set up
    with (``"rna"`` for a model set up on an AnnData, or no model: a published one).

    Raises
    ------
    KeyError
        No such modality; the message names the ones there are and the ``--modality`` option.
    ValueError
        The modality does not hold the cells of ``mdata`` in order.
    """
    if modality is None:
        modality = (
            RNA_MODALITY
            if model is None
            else registered_rna_modality(model.registry_["setup_args"])
        )
    return rna_modality(mdata, modality)
