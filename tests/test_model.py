import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

from cancergpt_scvi import CancerGPTModel
from tests.conftest import TINY


def _setup(adata, **kwargs):
    kwargs = {
        "batch_key": "batch",
        "technology_key": "technology",
        "tissue_key": "tissue",
        **kwargs,
    }
    CancerGPTModel.setup_anndata(adata, **kwargs)
    return adata


def test_training_losses_go_down_and_every_loss_is_logged(trained_model):
    history = trained_model.history
    # the total changes objective as the MVC weight ramps up: each loss must fall on its own
    for key in ("mlm_loss_train", "mvc_loss_train"):
        loss = history[key].to_numpy().ravel().astype(float)
        assert loss[-1] < loss[0], key
    for key in (
        "mlm_loss_train",
        "mvc_loss_train",
        "adv_loss_batch_train",
        "disc_acc_technology_train",
        "reconstruction_loss_validation",
    ):
        assert key in history


def test_mvc_warms_up_and_adversarial_push_starts_after_it(trained_model):
    # 4 epochs, MVC off for the first quarter of training, ramped over the second, then on;
    # the reversed gradient starts when the ramp ends
    mvc = trained_model.history["mvc_weight"].to_numpy().ravel().astype(float)
    adv = trained_model.history["adversarial_weight"].to_numpy().ravel().astype(float)
    np.testing.assert_allclose(mvc[[0, 2, 3]], [0.0, 1.0, 1.0])
    assert 0.0 < mvc[1] < 1.0
    np.testing.assert_allclose(adv[:2], 0.0)
    assert adv[3] > adv[2] > 0.0


def test_adversary_is_off_by_default_but_discriminators_still_report(atlas):
    import scvi

    scvi.settings.seed = 0
    adata = atlas[:200].copy()
    CancerGPTModel.setup_anndata(adata, batch_key="batch", technology_key="technology")
    model = CancerGPTModel(adata, **TINY)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    adv = model.history["adversarial_weight"].to_numpy().ravel().astype(float)
    np.testing.assert_array_equal(adv, 0.0)
    assert "disc_acc_technology_train" in model.history


def test_embedding_is_normalised_deterministic_and_usable_by_scanpy(trained_model):
    adata = trained_model.adata.copy()  # the shared fixture's cells stay as set up
    z = trained_model.get_latent_representation(progress_bar=False)
    assert z.shape == (adata.n_obs, TINY["embed_dim"]) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(z, trained_model.get_latent_representation(progress_bar=False))
    adata.obsm["X_cancergpt"] = z
    sc.pp.neighbors(adata, use_rep="X_cancergpt")
    assert adata.obsp["connectivities"].shape == (adata.n_obs, adata.n_obs)


def test_dense_and_sparse_and_gene_order_give_the_same_embedding(trained_model):
    adata = trained_model.adata
    z = trained_model.get_latent_representation(indices=np.arange(50), progress_bar=False)
    dense = adata[:50].copy()
    dense.X = dense.X.toarray()
    shuffled = dense[:, np.random.default_rng(0).permutation(dense.n_vars)].copy()
    del shuffled.obs["batch"]  # embedding needs no registered fields
    shuffled.X = sparse.csr_matrix(shuffled.X)
    np.testing.assert_allclose(
        trained_model.get_latent_representation(shuffled, progress_bar=False), z, atol=1e-6
    )


def test_partly_missing_genes_still_embed(trained_model):
    adata = trained_model.adata
    part = adata[:30, : adata.n_vars // 2].copy()
    z = trained_model.get_latent_representation(part, progress_bar=False)
    assert z.shape == (30, TINY["embed_dim"]) and np.isfinite(z).all()


def test_save_load_round_trip(trained_model, tmp_path):
    trained_model.save(tmp_path / "m", overwrite=True)
    assert (tmp_path / "m" / "vocab.json").is_file()
    loaded = CancerGPTModel.load(tmp_path / "m", adata=trained_model.adata)
    np.testing.assert_array_equal(
        loaded.get_latent_representation(progress_bar=False),
        trained_model.get_latent_representation(progress_bar=False),
    )
    assert loaded.vocab == trained_model.vocab


def test_save_with_overwrite_leaves_exactly_what_it_wrote(trained_model, tmp_path, monkeypatch):
    folder = tmp_path / "m"
    trained_model.save(folder, save_anndata=True)
    (folder / "notes.txt").write_text("an earlier file")
    with pytest.raises(ValueError, match=r"already exists\. Pass overwrite=True"):
        trained_model.save(folder)
    trained_model.save(folder, overwrite=True)  # this save writes no AnnData
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "vocab.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left beside it
    # the earlier save's adata.h5ad is gone: the loaded model holds no cells, not the old ones
    with pytest.warns(UserWarning, match="no saved anndata"):
        assert CancerGPTModel.load(folder).adata is None

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(CancerGPTModel, "_save_extras", broken)
    with pytest.raises(OSError, match="disk full"):
        trained_model.save(folder, save_anndata=True, overwrite=True)
    # a failed save leaves the earlier folder as it was, and no temporary
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "vocab.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_cells_without_counts_and_empty_data_embed_with_a_warning(trained_model):
    adata = trained_model.adata[:5].copy()
    adata.X = sparse.csr_matrix(adata.X.shape, dtype=np.float32)
    with pytest.warns(UserWarning, match="no expression"):
        z = trained_model.get_latent_representation(adata, progress_bar=False)
    assert np.isfinite(z).all()
    with pytest.warns(UserWarning, match="no cells"):
        empty = trained_model.get_latent_representation(adata[:0].copy(), progress_bar=False)
    assert empty.shape == (0, TINY["embed_dim"])


@pytest.mark.parametrize(
    ("mutate", "kwargs", "error", "message"),
    [
        (lambda a: a.X.data.__setitem__(0, -1.0), {}, ValueError, "negative"),
        (lambda a: a.X.data.__setitem__(0, np.nan), {}, ValueError, "non-finite"),
        (lambda a: None, {"layer": "counts"}, KeyError, "layers"),
        (lambda a: None, {"batch_key": "donor"}, KeyError, "donor"),
        (
            lambda a: a.obs.__setitem__("batch", np.linspace(0, 1, a.n_obs)),
            {},
            TypeError,
            "categorical",
        ),
    ],
)
def test_bad_input_is_refused_clearly(atlas, mutate, kwargs, error, message):
    adata = atlas[:50].copy()
    mutate(adata)
    with pytest.raises(error, match=message):
        _setup(adata, **kwargs)


def test_too_few_vocabulary_genes_is_refused(atlas):
    adata = _setup(atlas[:50].copy())
    vocab = {"<cls>": 0, "<pad>": 1, "<eoc>": 2, "TP53": 3}
    with pytest.raises(ValueError, match="unmatched examples"):
        CancerGPTModel(adata, vocab=vocab, **TINY)


def test_load_refuses_missing_folder_other_class_and_missing_fields(trained_model, tmp_path, atlas):
    import scvi

    with pytest.raises((ValueError, FileNotFoundError)):
        CancerGPTModel.load(tmp_path / "nowhere", adata=trained_model.adata)
    other = atlas[:100].copy()
    scvi.model.SCVI.setup_anndata(other)
    scvi.model.SCVI(other, n_latent=2).save(tmp_path / "scvi", overwrite=True)
    with pytest.raises(ValueError, match="different class"):
        CancerGPTModel.load(tmp_path / "scvi", adata=other)
    trained_model.save(tmp_path / "m", overwrite=True)
    lacking = trained_model.adata.copy()
    del lacking.obs["technology"]
    with pytest.raises(KeyError, match="technology"):
        CancerGPTModel.load(tmp_path / "m", adata=lacking)


def test_schedule_fractions_outside_0_1_are_refused(atlas):
    adata = _setup(atlas.copy())
    model = CancerGPTModel(adata, **TINY)
    with pytest.raises(ValueError, match="mvc_start is a fraction of training"):
        model.train(max_epochs=1, mvc_start=1.5, enable_progress_bar=False)


def test_foreign_data_embeds_in_any_row_order_and_is_never_registered(atlas):
    adata = _setup(atlas.copy())
    model = CancerGPTModel(adata, **TINY)
    z = model.get_latent_representation(progress_bar=False)
    shuffled = adata[:, np.random.default_rng(0).permutation(adata.n_vars)].copy()
    shuffled.obs = shuffled.obs[[]]  # embedding needs no covariates
    shuffled.uns = {}
    rows = [5, 3, 7, 3, 0]
    for chunk_size in (2, 10_000):
        got = model.get_latent_representation(
            shuffled, indices=rows, chunk_size=chunk_size, progress_bar=False
        )
        np.testing.assert_allclose(got, z[rows], atol=1e-6)
    # read, never registered: the AnnData is left as it was
    assert list(shuffled.obs.columns) == [] and dict(shuffled.uns) == {}


def test_registered_genes_match_says_whether_the_registered_columns_are_the_input_genes(
    trained_model, tmp_path
):
    import warnings

    assert trained_model.registered_genes_match()
    trained_model.save(tmp_path / "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scvi-tools' generic var_names warning
        loaded = CancerGPTModel.load(tmp_path / "model", adata=trained_model.adata[:, ::-1].copy())
    assert not loaded.registered_genes_match()
    with pytest.raises(ValueError, match="not the model's input genes in their order"):
        loaded.train(max_epochs=1, enable_progress_bar=False)


def test_brief_pretraining_beats_random_weights_on_held_out_patients():
    """kNN accuracy of the malignant state of new patients: briefly pretrained vs random."""
    import scvi
    from sklearn.neighbors import KNeighborsClassifier

    from cancergpt_scvi.datasets import simulate_malignant_atlas

    atlas = simulate_malignant_atlas(
        n_cells=900, n_genes=300, tissues=["Breast", "Lung"], n_patients_per_tissue=4, seed=5
    )
    held = atlas.obs["patient"].isin(["P00-0", "P01-0"]).to_numpy()
    ref, query = atlas[~held].copy(), atlas[held].copy()
    _setup(ref)

    def accuracy(model):
        knn = KNeighborsClassifier(15).fit(model.get_latent_representation(), ref.obs["cell_state"])
        return knn.score(model.get_latent_representation(query), query.obs["cell_state"])

    scvi.settings.seed = 0
    random_weights = CancerGPTModel(ref, gene_embedding_init="random", **TINY)
    scvi.settings.seed = 0
    pretrained = CancerGPTModel(ref, **TINY)
    pretrained.train(max_epochs=3, batch_size=64, enable_progress_bar=False)
    assert accuracy(pretrained) > accuracy(random_weights) + 0.1


def test_gene_embeddings_start_at_the_loadings_within_batch_and_technology(atlas):
    import scvi

    from cancergpt_scvi.data import pca_gene_loadings

    adata = atlas.copy()
    _setup(adata)
    scvi.settings.seed = 4
    model = CancerGPTModel(adata, **TINY)
    groups = (adata.obs["batch"].astype(str) + "|" + adata.obs["technology"].astype(str)).values
    expected = pca_gene_loadings(adata, TINY["embed_dim"], groups=groups, seed=4)
    ids = model.vocab.match(adata, None)
    table = model.module.gene_encoder.embedding.weight.detach().numpy()
    np.testing.assert_allclose(table[ids], expected, rtol=1e-4, atol=1e-5)
    # centred on the whole data instead, the start would be another one
    plain = pca_gene_loadings(adata, TINY["embed_dim"], seed=4)
    assert not np.allclose(plain, expected, atol=1e-2)
