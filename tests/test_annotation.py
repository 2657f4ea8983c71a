"""Label transfer and the cell-state head: accuracy, uncertainty, persistence, bad input."""

from __future__ import annotations

import copy
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from scvi import REGISTRY_KEYS

from cancergpt_scvi.annotation import (
    UNKNOWN,
    CellStateModel,
    CellStateModule,
    annotation_scores,
    transfer_labels,
)
from cancergpt_scvi.plotting import plot_confusion_matrix
from tests.conftest import TINY

LABEL = "cell_state"


@pytest.fixture(scope="module")
def separated_model():
    """A tiny CancerGPT briefly pretrained on an atlas of well-separated states."""

    from cancergpt_scvi import CancerGPTModel
    from cancergpt_scvi.datasets import simulate_malignant_atlas

    adata = simulate_malignant_atlas(
        n_cells=400,
        n_genes=300,
        tissues={"Breast": 0.7, "Brain": 0.2, "Kidney": 0.1},
        n_patients_per_tissue=2,
        state_effect=3.0,
        seed=3,
    )
    scvi.settings.seed = 0
    CancerGPTModel.setup_anndata(
        adata, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    model = CancerGPTModel(adata, **TINY)
    model.train(max_epochs=4, batch_size=64, enable_progress_bar=False)
    return model


@pytest.fixture(scope="module")
def embedded(separated_model):
    """That atlas with its CancerGPT embedding."""
    adata = separated_model.adata.copy()
    adata.obsm["X_cancergpt"] = separated_model.get_latent_representation(progress_bar=False)
    return adata


def _split_patients(adata: ad.AnnData) -> np.ndarray:
    """Every other patient: the query's cells."""
    patients = sorted(adata.obs["patient"].unique())
    return adata.obs["patient"].isin(patients[::2]).to_numpy()


def _blobs(n_per_state: int, states: list[str], seed: int, dim: int = 8) -> ad.AnnData:
    """Cells as points around one centre per state (unit sd, centres 10 apart)."""
    rng = np.random.default_rng(seed)
    centres = {s: 10 * np.eye(dim)[i] for i, s in enumerate(states)}
    z = np.concatenate([centres[s] + rng.normal(size=(n_per_state, dim)) for s in states])
    obs = pd.DataFrame({LABEL: np.repeat(states, n_per_state)})
    obs.index = [f"c{seed}-{i}" for i in range(len(obs))]
    adata = ad.AnnData(np.zeros((len(obs), 1), dtype=np.float32), obs=obs)
    adata.obsm["X_cancergpt"] = z.astype(np.float32)
    return adata


def test_reference_embeds_back_onto_itself(embedded):
    query = embedded.copy()
    transfer_labels(embedded, query, LABEL)
    truth = embedded.obs[LABEL].astype(str).to_numpy()
    accuracy = (query.obs[f"{LABEL}_pred"].astype(str).to_numpy() == truth).mean()
    assert accuracy >= 0.95
    assert query.obs[f"{LABEL}_uncertainty"].between(0, 1).all()


def test_unseen_state_gets_high_uncertainty(embedded):
    held_out = _split_patients(embedded)
    query = embedded[held_out].copy()
    unknown_share = []
    for unseen in sorted(embedded.obs[LABEL].unique()):
        # the reference: other patients, without this state
        reference = embedded[~held_out & (embedded.obs[LABEL] != unseen).to_numpy()].copy()
        result = transfer_labels(reference, query, LABEL)
        is_unseen = (query.obs[LABEL] == unseen).to_numpy()
        assert is_unseen.sum() >= 10
        uncertainty = result[f"{LABEL}_uncertainty"].to_numpy()
        assert np.median(uncertainty[is_unseen]) > np.median(uncertainty[~is_unseen]), unseen
        unknown = (result[f"{LABEL}_pred"] == UNKNOWN).to_numpy()
        unknown_share.append((unknown[is_unseen].mean(), unknown[~is_unseen].mean()))
    unseen_share, seen_share = np.mean(unknown_share, axis=0)
    assert unseen_share >= 2 * seen_share


def test_far_cells_are_uncertain_even_when_their_neighbours_agree():
    reference = _blobs(50, ["a", "b"], seed=0)
    query = _blobs(20, ["a", "b", "c"], seed=1)
    # state "c" lies beyond "a" on a's axis: all its neighbours are a-cells
    c = (query.obs[LABEL] == "c").to_numpy()
    noise = np.random.default_rng(3).normal(size=(int(c.sum()), 8))
    query.obsm["X_cancergpt"][c] = 25 * np.eye(8)[0] + noise
    result = transfer_labels(reference, query, LABEL)
    assert (result["a"].to_numpy()[c] == 1).all()  # the vote alone is unanimous
    assert (result[f"{LABEL}_pred"].to_numpy()[c] == UNKNOWN).all()
    assert (result[f"{LABEL}_pred"].astype(str).to_numpy()[~c] == query.obs[LABEL][~c]).all()


def test_chunked_and_backed_queries_give_the_same_labels(tmp_path):
    reference = _blobs(40, ["a", "b", "c"], seed=0)
    query = _blobs(30, ["a", "b", "c"], seed=2)
    whole = transfer_labels(reference, query, LABEL, inplace=False)
    chunked = transfer_labels(reference, query, LABEL, chunk_size=7, inplace=False)
    pd.testing.assert_frame_equal(whole, chunked)
    query.write_h5ad(tmp_path / "query.h5ad")
    backed = ad.read_h5ad(tmp_path / "query.h5ad", backed="r")
    transfer_labels(reference, backed, LABEL, chunk_size=11)
    assert (backed.obs[f"{LABEL}_pred"].astype(str).to_numpy() == whole[f"{LABEL}_pred"]).all()
    np.testing.assert_allclose(backed.obs[f"{LABEL}_uncertainty"], whole[f"{LABEL}_uncertainty"])


def test_a_model_embeds_the_query_when_it_has_no_embedding(separated_model, embedded):
    query = separated_model.adata[:40].copy()
    assert "X_cancergpt" not in query.obsm
    result = transfer_labels(embedded, query, LABEL, model=separated_model, inplace=False)
    np.testing.assert_allclose(
        query.obsm["X_cancergpt"], embedded.obsm["X_cancergpt"][:40], atol=1e-6
    )
    assert len(result) == 40


def test_bad_input_gives_clear_errors():
    reference = _blobs(10, ["a", "b"], seed=0)
    query = _blobs(5, ["a", "b"], seed=1)
    with pytest.raises(KeyError, match=r"label_key=.state. is not a column of reference\.obs"):
        transfer_labels(reference, query, "state")
    bare = reference.copy()
    del bare.obsm["X_cancergpt"]
    with pytest.raises(KeyError, match=r"reference has no obsm\['X_cancergpt'\]"):
        transfer_labels(bare, query, LABEL)
    broken = query.copy()
    broken.obsm["X_cancergpt"][3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in 1 cells"):
        transfer_labels(reference, broken, LABEL)
    unlabelled = reference.copy()
    unlabelled.obs[LABEL] = unlabelled.obs[LABEL].astype(object)
    unlabelled.obs.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="missing for 1 cells"):
        transfer_labels(unlabelled, query, LABEL)
    narrow = query.copy()
    narrow.obsm["X_cancergpt"] = narrow.obsm["X_cancergpt"][:, :4]
    with pytest.raises(ValueError, match="same model"):
        transfer_labels(reference, narrow, LABEL)
    with pytest.raises(ValueError, match="unknown_threshold"):
        transfer_labels(reference, query, LABEL, unknown_threshold=2)


def test_annotation_scores_rank_cells_by_uncertainty():
    true = np.array(["a"] * 6)
    pred = np.array(["a", "a", "b", "b", "a", "b"])
    scores = annotation_scores(true, pred, uncertainty=[0.1, 0.2, 0.9, 0.8, 0.5, 0.4])
    assert scores["accuracy"] == pytest.approx(0.5)
    assert scores["accuracy_most_certain_third"] == 1.0
    assert scores["accuracy_least_certain_third"] == 0.0
    assert scores["f1_a"] == pytest.approx(2 * 0.5 / 1.5)
    assert "f1_b" not in scores  # scored over the known labels only
    with pytest.raises(ValueError, match="one label of each per cell"):
        annotation_scores(true, pred[:3])


def test_confusion_matrix_rows_are_shares_of_known_labels(tmp_path):
    ax = plot_confusion_matrix(
        ["a", "a", "b", "b"], ["a", UNKNOWN, "b", "b"], path=tmp_path / "cm.png"
    )
    shown = ax.images[0].get_array()
    assert shown.shape == (3, 3)  # a, b and the predicted-only "unknown"
    np.testing.assert_allclose(shown[:2].sum(axis=1), 1.0)
    assert shown[0, 2] == pytest.approx(0.5)
    assert len(ax.texts) == 2 * 3  # values of the known rows only
    assert (tmp_path / "cm.png").stat().st_size > 0


# -- the cell-state head ---------------------------------------------------------------------


def test_head_learns_states_of_new_patients_and_saves(embedded, tmp_path):
    held_out = _split_patients(embedded)
    reference, query = embedded[~held_out].copy(), embedded[held_out].copy()
    scvi.settings.seed = 0
    CellStateModel.setup_anndata(reference, labels_key=LABEL)
    head = CellStateModel(reference)
    head.train(max_epochs=60, enable_progress_bar=False)
    probs = head.predict(query, soft=True)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert list(probs.index) == list(query.obs_names)
    labels = head.predict(query)
    accuracy = (labels == query.obs[LABEL].astype(str).to_numpy()).mean()
    # far above chance (1 / 6 states) on patients the head never saw (measured 0.70)
    assert accuracy >= 0.6
    head.save(tmp_path / "head")
    loaded = CellStateModel.load(tmp_path / "head", adata=reference)
    pd.testing.assert_frame_equal(loaded.predict(query, soft=True), probs)
    without_data = CellStateModel.load(tmp_path / "head")  # saved without the AnnData
    pd.testing.assert_frame_equal(without_data.predict(query, soft=True), probs)
    flagged = head.predict(query, unknown_threshold=0.05) == UNKNOWN
    np.testing.assert_array_equal(flagged, 1 - probs.max(axis=1).to_numpy() > 0.05)
    assert flagged.any() and not flagged.all()


def test_fine_tuning_changes_a_copy_of_the_encoder(separated_model, tmp_path):
    reference = separated_model.adata.copy()
    before = {k: v.clone() for k, v in separated_model.module.state_dict().items()}
    scvi.settings.seed = 0
    CellStateModel.setup_anndata(reference, labels_key=LABEL)  # no embedding: fine-tune
    head = CellStateModel(reference, encoder=separated_model)
    head.train(max_epochs=1, encoder_lr=1e-3, batch_size=64, enable_progress_bar=False)
    after = separated_model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    tuned = head.encoder.module.state_dict()
    assert any(not torch.equal(before[k], tuned[k]) for k in before if k.startswith("encoder"))
    query = separated_model.adata[:30].copy()
    probs = head.predict(query, soft=True)
    head.save(tmp_path / "tuned")
    loaded = CellStateModel.load(tmp_path / "tuned", adata=reference)
    pd.testing.assert_frame_equal(loaded.predict(query, soft=True), probs, atol=1e-5)


def test_head_refuses_unusable_setups(separated_model, embedded):
    bare = embedded.copy()
    del bare.obsm["X_cancergpt"]
    CellStateModel.setup_anndata(bare, labels_key=LABEL)
    with pytest.raises(ValueError, match="needs cell embeddings"):
        CellStateModel(bare)
    with pytest.raises(KeyError, match="label_key='state'"):
        CellStateModel.setup_anndata(embedded.copy(), labels_key="state")
    other_genes = embedded[:, ::-1].copy()
    CellStateModel.setup_anndata(other_genes, labels_key=LABEL)
    with pytest.raises(ValueError, match="same genes in the same order"):
        CellStateModel(other_genes, encoder=separated_model)
    CellStateModel.setup_anndata(embedded, labels_key=LABEL)
    head = CellStateModel(embedded)
    head.train(max_epochs=2, enable_progress_bar=False)
    query = embedded[:10].copy()
    query.obsm["X_cancergpt"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        head.predict(query)


def test_unlabelled_cells_add_no_cross_entropy(embedded):
    torch.manual_seed(0)
    module = CellStateModule(
        n_input=embedded.obsm["X_cancergpt"].shape[1], n_labels=3, unlabeled_code=3
    )
    module.eval()
    z = torch.from_numpy(embedded.obsm["X_cancergpt"][:40])
    y = torch.tensor([0, 1, 2, 3] * 10).view(-1, 1).float()

    def loss(rows):
        logits = module.classify(z[rows])
        return module.loss({REGISTRY_KEYS.LABELS_KEY: y[rows]}, {}, {"logits": logits}).loss

    labelled = (y.view(-1) != 3).nonzero().view(-1)
    torch.testing.assert_close(loss(torch.arange(40)), loss(labelled))
    assert not torch.isclose(loss(torch.arange(40)), loss(torch.arange(20)))


def test_unlabelled_cells_reach_the_encoder_through_self_supervision_only(separated_model):
    encoder = copy.deepcopy(separated_model.module)
    module = CellStateModule(
        n_input=encoder.embed_dim, n_labels=2, encoder=encoder, unlabeled_code=2
    )
    x = torch.from_numpy(np.asarray(separated_model.adata.X[:16].toarray(), dtype=np.float32))
    tensors = {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.LABELS_KEY: torch.full((16, 1), 2.0)}
    grads = {}
    for weight in (0.0, 1.0):
        module.zero_grad()
        module(tensors, loss_kwargs={"self_supervised_weight": weight})[2].loss.backward()
        grads[weight] = sum(
            float(p.grad.abs().sum()) for p in encoder.encoder.parameters() if p.grad is not None
        )
    assert grads[0.0] == 0.0
    assert grads[1.0] > 0.0


def test_head_trains_with_an_unlabelled_query(separated_model, tmp_path):
    adata = separated_model.adata.copy()
    held_out = _split_patients(adata)
    truth = adata.obs[LABEL].astype(str).to_numpy()
    labels = truth.astype(object)
    labels[held_out] = "Unknown"
    adata.obs[LABEL] = pd.Categorical(labels)
    scvi.settings.seed = 0
    CellStateModel.setup_anndata(adata, labels_key=LABEL, unlabeled_category="Unknown")
    head = CellStateModel(adata, encoder=separated_model)
    assert sorted(head.labels_) == sorted(set(truth[~held_out]))
    head.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    probs = head.predict(adata[held_out], soft=True)
    assert list(probs.columns) == head.labels_
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    head.save(tmp_path / "adapted")
    loaded = CellStateModel.load(tmp_path / "adapted", adata=adata)
    assert loaded.labels_ == head.labels_
    pd.testing.assert_frame_equal(loaded.predict(adata[held_out], soft=True), probs, atol=1e-5)
    with pytest.raises(ValueError, match="self_supervised_weight must be >= 0"):
        head.train(max_epochs=1, self_supervised_weight=-1.0, enable_progress_bar=False)
    one_state = adata.copy()
    one_state.obs[LABEL] = pd.Categorical(np.where(held_out, "Unknown", truth[0]).astype(object))
    with pytest.raises(ValueError, match="at least 2 states"):
        CellStateModel.setup_anndata(one_state, labels_key=LABEL, unlabeled_category="Unknown")


def test_fine_tuning_thins_the_classifiers_counts_in_training_only(separated_model):
    encoder = copy.deepcopy(separated_model.module)
    module = CellStateModule(n_input=encoder.embed_dim, n_labels=2, encoder=encoder)
    seen = []
    embed = module.embed
    module.embed = lambda x: seen.append(x.sum().item()) or embed(x)
    x = torch.from_numpy(np.asarray(separated_model.adata.X[:32].toarray(), dtype=np.float32))
    module.train()
    module.inference(x)
    module.count_thinning = 0.3
    module.inference(x)
    module.eval()
    module.inference(x)
    whole = x.sum().item()
    assert seen[0] == whole and seen[2] == whole
    assert 0.3 * whole < seen[1] < 0.95 * whole
    with pytest.raises(ValueError, match="count_thinning must be in"):
        CellStateModule(n_input=8, n_labels=2, count_thinning=0.0)


def test_head_thins_counts_only_when_the_expression_is_counts(separated_model):
    adata = separated_model.adata.copy()
    whole = float(np.asarray(adata.X.sum(axis=1)).mean())  # counts of the average cell
    CellStateModel.setup_anndata(adata, labels_key=LABEL)
    head = CellStateModel(adata, encoder=separated_model)
    calls = []
    embed = head.module.embed
    head.module.embed = lambda x: (
        calls.append((head.module.training, head.module.encoder.training, float(x.sum(1).mean())))
        or embed(x)
    )

    def train(**kwargs):
        calls.clear()
        head.module.encoder.train()  # whatever mode it is in, train() sets the measured one
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*does not hold counts")
            head.train(max_epochs=1, batch_size=64, enable_progress_bar=False, **kwargs)
        assert not any(encoder_mode for _, encoder_mode, _ in calls)
        steps = [depth for training, _, depth in calls if training]
        assert steps  # training steps ran with the classifier in training mode
        return np.mean(steps) / whole

    assert train() < 0.85  # thinned to U(0.3, 1): about 0.65 of each cell's counts
    assert head.module.count_thinning == 0.3
    # the second call starts from eval mode (after training) and trains the same way
    assert train() < 0.85
    assert 0.8 < train(count_thinning=None) < 1.2
    assert head.module.count_thinning is None
    with pytest.raises(ValueError, match="count_thinning must be in"):
        head.train(max_epochs=1, count_thinning=2.0, enable_progress_bar=False)

    normalised = separated_model.adata.copy()
    normalised.X = np.log1p(normalised.X.toarray())
    CellStateModel.setup_anndata(normalised, labels_key=LABEL)
    head = CellStateModel(normalised, encoder=separated_model)
    with pytest.warns(UserWarning, match="does not hold counts"):
        head.train(max_epochs=1, batch_size=64, enable_progress_bar=False)
    assert head.module.count_thinning is None


def test_self_supervised_loss_sees_whole_counts(separated_model):
    encoder = copy.deepcopy(separated_model.module)
    module = CellStateModule(
        n_input=encoder.embed_dim, n_labels=2, encoder=encoder, count_thinning=0.3
    )
    seen = []
    ssl = encoder.self_supervised_loss
    encoder.self_supervised_loss = lambda x: seen.append(x.clone()) or ssl(x)
    x = torch.from_numpy(np.asarray(separated_model.adata.X[:16].toarray(), dtype=np.float32))
    tensors = {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.LABELS_KEY: torch.zeros(16, 1)}
    module.train()
    module(tensors, loss_kwargs={"self_supervised_weight": 1.0})
    assert len(seen) == 1 and torch.equal(seen[0], x)


def _patients(n_per_state: int, patients: list[str], seed: int) -> ad.AnnData:
    """Two states (centres 10 apart, sd 0.3), each patient's cells shifted by its own offset.

    The offsets (sd 1 per dimension) are far larger than the spread within a patient.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for patient in patients:
        cells = _blobs(n_per_state, ["a", "b"], seed=int(rng.integers(1 << 30)))
        centres = np.where(
            cells.obs[LABEL].to_numpy()[:, None] == "a", 10 * np.eye(8)[0], 10 * np.eye(8)[1]
        )
        noise = cells.obsm["X_cancergpt"] - centres
        offset = rng.normal(size=(1, 8))
        cells.obsm["X_cancergpt"] = (centres + 0.3 * noise + offset).astype(np.float32)
        cells.obs["patient"] = patient
        cells.obs_names = [f"{patient}-{name}" for name in cells.obs_names]
        parts.append(cells)
    return ad.concat(parts)


def test_batch_key_keeps_a_new_patient_from_being_called_unknown():
    reference = _patients(40, ["p1", "p2", "p3", "p4"], seed=0)
    query = _patients(40, ["new"], seed=1)
    # a state of the query that no reference patient has, far from both
    novel = query[query.obs[LABEL] == "b"].copy()
    novel.obsm["X_cancergpt"] += 40 * np.eye(8)[2].astype(np.float32)
    novel.obs[LABEL] = "c"
    novel.obs_names = [f"novel-{n}" for n in novel.obs_names]
    query = ad.concat([query, novel])
    is_novel = (query.obs[LABEL] == "c").to_numpy()
    by_cells = transfer_labels(reference, query, LABEL, inplace=False)
    by_patients = transfer_labels(reference, query, LABEL, batch_key="patient", inplace=False)
    unknown_cells = (by_cells[f"{LABEL}_pred"] == UNKNOWN).to_numpy()
    unknown_patients = (by_patients[f"{LABEL}_pred"] == UNKNOWN).to_numpy()
    # measured among a patient's own cells, the new patient looks foreign
    assert unknown_cells[~is_novel].mean() > 0.5
    # measured leaving a patient out, it does not; the novel state stays unknown
    assert unknown_patients[~is_novel].mean() < 0.05
    assert unknown_patients[is_novel].all()
    known = by_patients[f"{LABEL}_pred"].astype(str).to_numpy()[~is_novel]
    assert (known == query.obs[LABEL].to_numpy()[~is_novel]).mean() > 0.95


def test_batch_key_errors_and_fallback(caplog):
    reference = _patients(20, ["p1", "p2"], seed=0)
    query = _patients(20, ["new"], seed=1)
    with pytest.raises(KeyError, match="batch_key='donor' is not a column"):
        transfer_labels(reference, query, LABEL, batch_key="donor")
    reference.obs["gap"] = reference.obs["patient"].astype(object)
    reference.obs.iloc[0, reference.obs.columns.get_loc("gap")] = None
    with pytest.raises(ValueError, match="missing for 1 cells"):
        transfer_labels(reference, query, LABEL, batch_key="gap")
    reference.obs["one"] = "p"
    with caplog.at_level("WARNING"):
        single = transfer_labels(reference, query, LABEL, batch_key="one", inplace=False)
    assert "too few to leave one out" in caplog.text
    plain = transfer_labels(reference, query, LABEL, inplace=False)
    pd.testing.assert_frame_equal(single, plain)
