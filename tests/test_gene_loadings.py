import warnings

import anndata as ad
import numpy as np
import pytest
import scanpy as sc

from cancergpt_scvi.data import pca_gene_loadings


def test_loadings_are_the_principal_axes_weighted_by_singular_value(atlas):
    loadings = pca_gene_loadings(atlas, 8, seed=0)
    assert loadings.shape == (atlas.n_vars, 8)
    assert loadings.std() == pytest.approx(1.0, rel=1e-4)
    # each column is scanpy's principal axis, up to sign, weighted by its singular value
    ref = atlas.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    sc.pp.pca(ref, n_comps=8, random_state=0)
    for i in range(3):
        assert abs(np.corrcoef(ref.varm["PCs"][:, i], loadings[:, i])[0, 1]) > 0.99
    norms = np.linalg.norm(loadings, axis=0)
    variance = ref.uns["pca"]["variance"]
    np.testing.assert_allclose(norms / norms[0], np.sqrt(variance / variance[0]), rtol=1e-3)


def test_groups_give_the_axes_of_the_variation_within_groups(atlas):
    import pandas as pd

    groups = atlas.obs["batch"].to_numpy()
    work = atlas.copy()
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    x = np.asarray(work.X.todense())
    means = pd.DataFrame(x).groupby(groups).transform("mean").to_numpy()
    within, between = x - means, means - x.mean(axis=0)

    def captured(loadings, part):
        basis, _ = np.linalg.qr(loadings)
        return ((part @ basis) ** 2).sum() / (part**2).sum()

    plain = pca_gene_loadings(atlas, 4, seed=0)
    centred = pca_gene_loadings(atlas, 4, groups=groups, seed=0)
    # the plain axes follow what sets the batches apart; the centred ones what varies inside
    assert captured(plain, between) > 0.5 > captured(centred, between)
    assert captured(centred, within) > 1.5 * captured(plain, within)
    with pytest.raises(ValueError, match="one label per cell"):
        pca_gene_loadings(atlas, 4, groups=groups[:10])


def test_loadings_of_chosen_genes_and_filler_columns(atlas):
    genes = np.arange(0, atlas.n_vars, 3)
    part = pca_gene_loadings(atlas, 4, genes=genes, seed=0)
    assert part.shape == (len(genes), 4)
    # more columns than the data allow: the rest are random, and every column is finite
    tiny = atlas[:5].copy()
    wide = pca_gene_loadings(tiny, 16, seed=0)
    assert wide.shape == (atlas.n_vars, 16) and np.isfinite(wide).all()
    assert np.linalg.norm(wide[:, 4:], axis=0).min() > 0
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


def test_groups_of_one_cell_each_warn(atlas):
    # every cell alone: nothing varies within a group, so no axes and a random start
    with pytest.warns(UserWarning, match="only cell of their group"):
        with pytest.warns(UserWarning, match="does not vary within any group"):
            alone = pca_gene_loadings(atlas, 4, groups=np.arange(atlas.n_obs), seed=0)
    assert np.isfinite(alone).all() and alone.std() == pytest.approx(1.0, rel=1e-4)
    # two cells per group still have axes, from the pairs' differences
    pairs = np.arange(atlas.n_obs) // 2
    paired = pca_gene_loadings(atlas, 4, groups=pairs, seed=0)
    assert np.isfinite(paired).all()
    # batches of many cells do not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pca_gene_loadings(atlas, 4, groups=atlas.obs["batch"].to_numpy(), seed=0)


def test_identical_cells_give_a_random_start_with_a_warning(atlas):
    same = ad.AnnData(X=np.tile(np.asarray(atlas.X[:1].todense()), (20, 1)))
    with pytest.warns(UserWarning, match="does not vary within any group"):
        loadings = pca_gene_loadings(same, 4, seed=0)
    assert loadings.shape == (atlas.n_vars, 4) and np.isfinite(loadings).all()
