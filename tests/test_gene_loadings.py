import numpy as np
import pytest
import scanpy as sc

from cancergpt_scvi.data import pca_gene_loadings


def test_loadings_are_the_principal_axes_scaled_to_unit_sd(atlas):
    loadings = pca_gene_loadings(atlas, 8, seed=0)
    assert loadings.shape == (atlas.n_vars, 8)
    np.testing.assert_allclose(loadings.std(axis=0), 1.0, rtol=1e-4)
    # the first column is scanpy's first principal axis, up to sign and scale
    ref = atlas.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    sc.pp.pca(ref, n_comps=8, random_state=0)
    first = ref.varm["PCs"][:, 0]
    assert abs(np.corrcoef(first, loadings[:, 0])[0, 1]) > 0.99


def test_loadings_of_chosen_genes_and_filler_columns(atlas):
    genes = np.arange(0, atlas.n_vars, 3)
    part = pca_gene_loadings(atlas, 4, genes=genes, seed=0)
    assert part.shape == (len(genes), 4)
    # more columns than the data allow: the rest are random, and every column is finite
    tiny = atlas[:5].copy()
    wide = pca_gene_loadings(tiny, 16, seed=0)
    assert wide.shape == (atlas.n_vars, 16) and np.isfinite(wide).all()
    with pytest.raises(ValueError, match="n_components"):
        pca_gene_loadings(atlas, 0)


def test_backed_data_give_the_same_loadings(atlas, tmp_path):
    import anndata as ad

    path = tmp_path / "atlas.h5ad"
    atlas.write_h5ad(path)
    genes = np.arange(0, atlas.n_vars, 2)
    in_memory = pca_gene_loadings(atlas, 6, genes=genes, max_cells=150, seed=2)
    backed = pca_gene_loadings(
        ad.read_h5ad(path, backed="r"), 6, genes=genes, max_cells=150, seed=2
    )
    np.testing.assert_array_equal(in_memory, backed)
