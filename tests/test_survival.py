"""SurvivalModel: Cox partial likelihood, training, cross-validation, stratification, bulk data."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch

matplotlib.use("Agg")

import scvi

from cancergpt_scvi.datasets import simulate_survival_cohort
from cancergpt_scvi.survival import (
    SurvivalModel,
    concordance_harrell,
    concordance_uno,
    cox_penalty_grid,
    logrank_pvalue,
    plot_kaplan_meier,
    risk_groups,
    tune_cox_penalty,
)
from cancergpt_scvi.survival._module import cox_partial_nll_terms
from cancergpt_scvi.survival._tuning import cox_log_partial_likelihood
from cancergpt_scvi.train import stratified_folds, survival_folds

scvi.settings.verbosity = logging.ERROR
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def brute_force_nll(eta: np.ndarray, t: np.ndarray, e: np.ndarray, ties: str) -> float:
    """Negative log partial likelihood by explicit loops over event times."""
    total = 0.0
    for time in np.unique(t[e == 1]):
        tied = np.flatnonzero((t == time) & (e == 1))
        at_risk = np.flatnonzero(t >= time)
        risk_sum = np.exp(eta[at_risk]).sum()
        tied_sum = np.exp(eta[tied]).sum()
        d = len(tied)
        total -= eta[tied].sum()
        for ell in range(d):
            total += np.log(risk_sum - (ell / d * tied_sum if ties == "efron" else 0.0))
    return total


def small_tied_set(seed: int = 0, n: int = 14):
    rng = np.random.default_rng(seed)
    t = rng.integers(1, 5, size=n).astype(float)  # few distinct times: many ties
    e = rng.integers(0, 2, size=n)
    e[0] = 1
    eta = rng.normal(size=n)
    return eta, t, e


def linear_cohort(n: int = 200, seed: int = 0) -> ad.AnnData:
    """Features with a known linear Cox effect, durations rounded so that ties occur."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    beta = np.array([1.0, -0.6, 0.3, 0.0])
    t = rng.exponential(np.exp(-x @ beta))
    c = rng.exponential(1.5, size=n)
    obs = pd.DataFrame(
        {
            "time": np.round(np.minimum(t, c), 1) + 0.1,
            "death": (t <= c).astype(int),
        },
        index=[f"s{i}" for i in range(n)],
    )
    adata = ad.AnnData(X=np.abs(rng.normal(size=(n, 5))).astype(np.float32), obs=obs)
    adata.obsm["emb"] = x
    return adata


@pytest.fixture(scope="module")
def cohort() -> ad.AnnData:
    adata = simulate_survival_cohort(n_patients=260, n_genes=500, seed=3, cells_per_patient=40)
    norm = adata.copy()
    sc.pp.normalize_total(norm, target_sum=1e6)
    sc.pp.log1p(norm)
    sc.pp.pca(norm, n_comps=10)
    adata.obsm["X_pca"] = norm.obsm["X_pca"]
    return adata


# --- the partial likelihood --------------------------------------------------------------------


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_partial_likelihood_and_gradient_match_brute_force(ties):
    eta, t, e = small_tied_set()
    x = torch.tensor(eta, requires_grad=True)
    nll = cox_partial_nll_terms(x, torch.tensor(t), torch.tensor(e), ties=ties).sum()
    nll.backward()
    assert nll.item() == pytest.approx(brute_force_nll(eta, t, e, ties), rel=1e-10)
    eps = 1e-6
    numeric = np.array(
        [
            (
                brute_force_nll(eta + eps * np.eye(len(eta))[i], t, e, ties)
                - brute_force_nll(eta - eps * np.eye(len(eta))[i], t, e, ties)
            )
            / (2 * eps)
            for i in range(len(eta))
        ]
    )
    np.testing.assert_allclose(x.grad.numpy(), numeric, atol=1e-6)


def test_efron_and_breslow_differ_only_with_tied_events():
    eta, t, e = small_tied_set()
    args = (torch.tensor(eta), torch.tensor(t), torch.tensor(e))
    efron = cox_partial_nll_terms(*args, ties="efron").sum()
    breslow = cox_partial_nll_terms(*args, ties="breslow").sum()
    assert efron < breslow  # removing tied hazards shrinks the risk sets
    t_distinct = t + np.arange(len(t)) * 1e-3
    args = (torch.tensor(eta), torch.tensor(t_distinct), torch.tensor(e))
    assert cox_partial_nll_terms(*args, ties="efron").sum().item() == pytest.approx(
        cox_partial_nll_terms(*args, ties="breslow").sum().item()
    )


# --- the fitted model --------------------------------------------------------------------------


def _coefficients(model: SurvivalModel) -> np.ndarray:
    w = model.module.head.weight.detach().numpy().ravel()
    # back to the unstandardised features
    return w / model.module.standardization.scale.numpy()


def test_unpenalised_fit_matches_lifelines_and_scikit_survival():
    from lifelines import CoxPHFitter
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    adata = linear_cohort()
    x = adata.obsm["emb"]
    frame = pd.DataFrame(x, columns=["f0", "f1", "f2", "f3"]).assign(
        time=adata.obs["time"].to_numpy(), death=adata.obs["death"].to_numpy()
    )
    reference = {
        "efron": CoxPHFitter().fit(frame, "time", "death").params_.to_numpy(),
        "breslow": CoxPHSurvivalAnalysis(ties="breslow")
        .fit(x, Surv.from_arrays(adata.obs["death"].astype(bool), adata.obs["time"]))
        .coef_,
    }
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    for ties, expected in reference.items():
        model = SurvivalModel(adata, alpha=0.0, ties=ties)
        model.train(**QUIET)
        np.testing.assert_allclose(_coefficients(model), expected, atol=2e-3)


def test_ridge_penalty_shrinks_coefficients():
    adata = linear_cohort()
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    norms = []
    for alpha in (0.0, 0.5):
        model = SurvivalModel(adata, alpha=alpha)
        model.train(**QUIET)
        norms.append(np.linalg.norm(model.module.head.weight.detach().numpy()))
    assert norms[1] < 0.7 * norms[0]


def test_concordance_agrees_with_lifelines():
    from lifelines.utils import concordance_index

    adata = linear_cohort()
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    model = SurvivalModel(adata)
    model.train(**QUIET)
    risk = model.predict_risk()
    d, e = adata.obs["time"].to_numpy(), adata.obs["death"].to_numpy()
    # lifelines scores survival times: a higher score means longer survival
    assert concordance_harrell(d, e, risk) == pytest.approx(concordance_index(d, -risk, e))
    assert model.concordance() == pytest.approx(concordance_index(d, -risk, e))
    assert concordance_harrell(d, e, risk) > 0.65


def test_boolean_masks_select_the_samples_their_positions_do():
    adata = linear_cohort()
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    mask = np.zeros(adata.n_obs, dtype=bool)
    mask[5::3] = True
    positions = np.flatnonzero(mask)
    by_mask, by_positions = SurvivalModel(adata, alpha=0.1), SurvivalModel(adata, alpha=0.1)
    by_mask.train(train_indices=mask, **QUIET)
    by_positions.train(train_indices=positions, **QUIET)
    # a mask read as 0/1 would train on two samples and predict samples 0 and 1 repeated
    # (two fits agree to float32 rounding, not bit for bit: L-BFGS in float32 on 2 threads)
    np.testing.assert_allclose(by_mask.predict_risk(), by_positions.predict_risk(), atol=1e-5)
    risk = by_positions.predict_risk(indices=mask)
    assert len(risk) == mask.sum() and len(np.unique(risk)) == mask.sum()
    np.testing.assert_array_equal(risk, by_positions.predict_risk(indices=positions))
    assert by_positions.concordance(mask) == by_positions.concordance(positions)
    with pytest.raises(ValueError, match="one entry per cell"):
        by_positions.predict_risk(indices=mask[:-1])


def test_uno_equals_harrell_without_censoring():
    rng = np.random.default_rng(1)
    d = rng.exponential(size=80) + 0.01
    e = np.ones(80, dtype=int)
    risk = -d + rng.normal(scale=0.5, size=80)
    # no censoring: every inverse-probability weight is 1 (below the truncation time)
    uno = concordance_uno(d, e, d, e, risk, tau=np.inf)
    assert uno == pytest.approx(concordance_harrell(d, e, risk), abs=1e-9)


def test_cross_validation_on_simulated_cohort_reaches_true_risk(cohort):
    SurvivalModel.setup_anndata(cohort, "duration", "event", embedding_key="X_pca")
    model = SurvivalModel(cohort, alpha=0.05)
    table = model.cross_validate(n_folds=5, seed=0, progress_bar=False)
    assert model.cv_results_ is table
    assert list(table.index) == [f"fold {k}" for k in range(5)] + ["mean", "std"]
    assert table.loc["fold 0":"fold 4", "n_test"].sum() == cohort.n_obs
    d, e = cohort.obs["duration"], cohort.obs["event"]
    c_true = concordance_harrell(d, e, cohort.obs["true_risk"])
    c_cv = table.loc["mean", "c_index_harrell"]
    assert c_true > 0.65
    assert abs(c_cv - c_true) < 0.05, (c_cv, c_true)
    assert np.isfinite(table.loc["mean", "c_index_uno"])
    assert table.loc["std", "c_index_harrell"] > 0
    assert not np.isnan(model.oof_risk_).any()
    # honest risk groups from held-out predictions separate survival
    groups = model.risk_groups("median")
    assert set(groups.cat.categories) == {"low risk", "high risk"}
    assert 0.35 < (groups == "high risk").mean() < 0.65
    ax, p = model.plot_kaplan_meier("tertiles")
    assert p < 0.01
    assert len(ax.get_lines()) >= 3
    assert p == pytest.approx(logrank_pvalue(d, e, model.risk_groups("tertiles")))


def test_cross_validate_is_the_heads_own_workflow():
    # a fresh interpreter: cross_validate, risk_groups and plot_kaplan_meier run with the survival
    # package alone, and nothing loads cancergpt_scvi.benchmark on the way
    code = (
        "import sys\n"
        "import matplotlib\n"
        "matplotlib.use('Agg')\n"
        "import anndata as ad, numpy as np, pandas as pd\n"
        "from cancergpt_scvi.survival import SurvivalModel\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(60, 3))\n"
        "t, c = rng.exponential(np.exp(-x[:, 0])), rng.exponential(1.5, size=60)\n"
        "obs = pd.DataFrame({'time': np.minimum(t, c) + 0.01, 'death': (t <= c).astype(int)})\n"
        "obs.index = [f's{i}' for i in range(60)]\n"
        "adata = ad.AnnData(X=np.zeros((60, 1), dtype=np.float32), obs=obs)\n"
        "adata.obsm['emb'] = x\n"
        "SurvivalModel.setup_anndata(adata, 'time', 'death', embedding_key='emb')\n"
        "model = SurvivalModel(adata, alpha=0.1)\n"
        "table = model.cross_validate(n_folds=3, progress_bar=False)\n"
        "groups = model.risk_groups()\n"
        "ax, p = model.plot_kaplan_meier('tertiles')\n"
        "assert table.shape == (5, 6) and groups.notna().all() and 0 <= p <= 1\n"
        "assert not model.is_trained  # cross-validation trains fold models, not this one\n"
        "bad = [m for m in sys.modules if m.startswith('cancergpt_scvi.benchmark')]\n"
        "print(bad); sys.exit(bool(bad))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]


def test_cross_validate_reproduces_its_fold_models():
    # each fold is a fresh model of the configuration, seeded 1000 * seed + k and trained on the
    # fold's training samples: refitting one by hand gives the fold's held-out risks and C-index
    adata = linear_cohort(90)
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    model = SurvivalModel(adata, alpha=[0.01, 1.0], cv_folds=2)
    table = model.cross_validate(n_folds=3, seed=2, progress_bar=False)
    d, e = adata.obs["time"].to_numpy(float), adata.obs["death"].to_numpy(float)
    tr, te = survival_folds(e, n_folds=3, seed=2)[1]
    with torch.random.fork_rng():
        torch.manual_seed(2001)
        fold = SurvivalModel(adata, alpha=[0.01, 1.0], cv_folds=2)
        fold.train(train_indices=tr, cv_seed=2001, **QUIET)
    risk = fold.predict_risk()
    np.testing.assert_allclose(model.oof_risk_[te], risk[te], rtol=1e-6, atol=1e-7)
    assert table.loc["fold 1", "alpha"] == fold.alpha_
    assert table.loc["fold 1", "c_index_harrell"] == pytest.approx(
        concordance_harrell(d[te], e[te], risk[te])
    )
    # percentiles among the fold's training risks, ties counting one half
    expected = [(np.sum(risk[tr] < r) + 0.5 * np.sum(risk[tr] == r)) / len(tr) for r in risk[te]]
    np.testing.assert_allclose(model.oof_risk_percentile_[te], expected)
    assert not model.is_trained and model.alpha_ is None


def test_shuffled_outcome_scores_near_chance(cohort):
    shuffled = cohort.copy()
    perm = np.random.default_rng(7).permutation(cohort.n_obs)
    shuffled.obs["duration"] = cohort.obs["duration"].to_numpy()[perm]
    shuffled.obs["event"] = cohort.obs["event"].to_numpy()[perm]
    SurvivalModel.setup_anndata(shuffled, "duration", "event", embedding_key="X_pca")
    table = SurvivalModel(shuffled, alpha=0.05).cross_validate(5, progress_bar=False)
    assert abs(table.loc["mean", "c_index_harrell"] - 0.5) < 0.06


def test_covariates_mlp_save_load_and_new_samples(cohort, tmp_path):
    adata = cohort[:120].copy()
    SurvivalModel.setup_anndata(
        adata,
        "duration",
        "event",
        covariate_keys=["age"],
        categorical_covariate_keys=["stage"],
        embedding_key="X_pca",
    )
    model = SurvivalModel(adata, n_hidden=8, alpha=0.01)
    assert model.module.n_design == 10 + 1 + 4
    model.train(max_epochs=30, **QUIET)
    risk = model.predict_risk()
    assert risk.shape == (120,) and np.isfinite(risk).all()
    model.save(tmp_path / "surv", overwrite=True)
    loaded = SurvivalModel.load(tmp_path / "surv", adata=adata)
    np.testing.assert_allclose(loaded.predict_risk(), risk, rtol=1e-5, atol=1e-6)
    # new patients without outcomes, in another order
    new = cohort[120:150].copy()
    del new.obs["duration"], new.obs["event"]
    reordered = new[::-1].copy()
    a, b = loaded.predict_risk(new), loaded.predict_risk(reordered)
    np.testing.assert_allclose(a, b[::-1], rtol=1e-5, atol=1e-6)


def test_expression_features_and_training_split(cohort):
    adata = cohort[:, :60].copy()
    sc.pp.normalize_total(adata, target_sum=1e6)
    sc.pp.log1p(adata)
    SurvivalModel.setup_anndata(adata, "duration", "event")
    model = SurvivalModel(adata, alpha=0.1)
    model.train(train_size=0.8, **QUIET)
    assert len(model.train_indices) == 208 and len(model.validation_indices) == 52
    assert "validation_loss" in model.history
    assert model.is_trained
    assert "neg_partial_loglik_train" in model.history


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "values", "match"),
    [
        ("time", -1.0, "durations <= 0"),
        ("time", 0.0, "durations <= 0"),
        ("time", np.nan, "missing or infinite durations"),
        ("death", 2, "0/1 or boolean"),
        ("death", np.nan, "missing values"),
    ],
)
def test_bad_outcomes_are_refused(column, values, match):
    adata = linear_cohort(30)
    adata.obs[column] = adata.obs[column].astype(float)
    adata.obs.iloc[3, adata.obs.columns.get_loc(column)] = values
    with pytest.raises(ValueError, match=match):
        SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")


def test_boolean_events_accepted_and_all_censored_refused():
    adata = linear_cohort(30)
    adata.obs["death"] = adata.obs["death"].astype(bool)
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    adata.obs["death"] = False
    with pytest.raises(ValueError, match="Every sample is censored"):
        SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    adata.obs["death"] = "yes"
    with pytest.raises(TypeError, match="boolean or 0/1"):
        SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")


def test_bad_features_and_covariates_are_refused():
    adata = linear_cohort(30)
    adata.obs["age"] = 50.0
    adata.obs.iloc[2, adata.obs.columns.get_loc("age")] = np.nan
    with pytest.raises(ValueError, match="Covariate 'age' has 1 missing"):
        SurvivalModel.setup_anndata(adata, "time", "death", ["age"], embedding_key="emb")
    with pytest.raises(KeyError, match=r"not in adata\.obsm"):
        SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="nope")
    adata.obsm["emb"][4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    adata.obsm["emb"][4, 1] = 0.0
    adata.obsm["emb"][:, 2] = 1.0
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    with pytest.raises(ValueError, match="constant across all samples"):
        SurvivalModel(adata)


def test_too_few_samples_or_events_for_folds():
    adata = linear_cohort(4)
    adata.obs["death"] = [1, 1, 0, 1]
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    with pytest.raises(ValueError, match="Cannot make 5 folds from 4 samples"):
        SurvivalModel(adata).cross_validate(5)
    adata = linear_cohort(20)
    adata.obs["death"] = 0
    adata.obs.iloc[:2, adata.obs.columns.get_loc("death")] = 1
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    with pytest.raises(ValueError, match="Only 2 events for 5 folds"):
        SurvivalModel(adata).cross_validate(5)


def test_risk_groups_need_cross_validation_first():
    adata = linear_cohort(30)
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    model = SurvivalModel(adata)
    with pytest.raises(RuntimeError, match="cross_validate"):
        model.risk_groups()
    groups = risk_groups(np.array([0.1, 0.4, 0.6, 0.9]), "tertiles")
    assert list(groups) == ["low risk", "intermediate risk", "intermediate risk", "high risk"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(**QUIET)
    assert model.risk_groups(source="fit").value_counts().to_dict() == {
        "low risk": 15,
        "high risk": 15,
    }


# --- folds, tuned penalty ----------------------------------------------------------------------


def test_survival_folds_partition_and_spread_events():
    events = np.r_[np.ones(23), np.zeros(37)].astype(int)
    folds = survival_folds(events, n_folds=5, seed=1)
    tests = np.concatenate([te for _, te in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(60))
    for tr, te in folds:
        assert not np.intersect1d(tr, te).size and len(tr) + len(te) == 60
    per_fold = [int(events[te].sum()) for _, te in folds]
    assert max(per_fold) - min(per_fold) <= 1
    # the same folds as StratifiedKFold on the events; a censored class too small for the
    # folds is pooled (plain shuffled K-fold)
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(5, shuffle=True, random_state=1).split(events, events)
    for (_, te), (_, te2) in zip(folds, skf, strict=True):
        np.testing.assert_array_equal(te, te2)
    few_censored = np.r_[np.ones(20), np.zeros(2)]
    skf = StratifiedKFold(5, shuffle=True, random_state=0).split(few_censored, 0 * few_censored)
    for (_, te), (_, te2) in zip(survival_folds(few_censored, 5), skf, strict=True):
        np.testing.assert_array_equal(te, te2)


def test_stratified_folds_keep_groups_together_and_refuse_too_many_folds():
    groups = np.repeat(np.arange(12), 3)
    labels = np.repeat(np.arange(12) % 3, 3)
    for tr, te in stratified_folds(labels, n_folds=4, seed=0, groups=groups):
        assert not np.intersect1d(groups[tr], groups[te]).size
    with pytest.raises(ValueError, match="Cannot make 13 folds from 12 groups"):
        stratified_folds(labels, n_folds=13, groups=groups)
    with pytest.raises(ValueError, match="at least 2"):
        stratified_folds(labels, n_folds=1)


def test_cross_validation_tunes_alpha_from_a_list():
    adata = linear_cohort(120)
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    model = SurvivalModel(adata)
    table = model.cross_validate(n_folds=3, alpha=[0.01, 100.0], inner_folds=2, progress_bar=False)
    chosen = table.loc["fold 0":"fold 2", "alpha"]
    assert set(chosen) <= {0.01, 100.0}
    assert np.isfinite(table.loc["mean", "c_index_harrell"])
    assert model.cv_results_ is table and not np.isnan(model.oof_risk_percentile_).any()


# --- the penalty chosen by inner cross-validation ----------------------------------------------


def signal_or_noise_cohort(informative: bool, n: int = 150, p: int = 30, seed: int = 0):
    """``p`` features; with ``informative`` three of them drive the hazard, else none do."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    beta = np.zeros(p)
    if informative:
        beta[:3] = [1.0, -0.8, 0.6]
    t = rng.exponential(np.exp(-x @ beta))
    c = rng.exponential(2.0, size=n)
    obs = pd.DataFrame(
        {"time": np.minimum(t, c) + 1e-3, "death": (t <= c).astype(int)},
        index=[f"s{i}" for i in range(n)],
    )
    adata = ad.AnnData(X=np.zeros((n, 1), dtype=np.float32), obs=obs)
    adata.obsm["emb"] = x
    return adata


def test_inner_cv_picks_a_stronger_penalty_on_noise_than_on_signal(caplog):
    chosen = {}
    for informative in (True, False):
        adata = signal_or_noise_cohort(informative)
        SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
        model = SurvivalModel(adata)  # the default: alpha="cv"
        with caplog.at_level(logging.INFO, logger="cancergpt_scvi.survival"):
            model.train(cv_seed=0, **QUIET)
        curve = model.alpha_path_
        assert list(curve.columns) == ["alpha", "deviance", "deviance_se", "chosen"]
        assert len(curve) == 50 and curve["alpha"].is_monotonic_decreasing
        assert curve["chosen"].sum() == 1
        assert model.alpha_ == pytest.approx(curve.loc[curve["chosen"], "alpha"].item())
        assert model.module.alpha == pytest.approx(model.alpha_)
        chosen[informative] = model.alpha_
    assert "chosen by 5-fold cross-validation (deviance)" in caplog.text
    # noise: the null model (the top of the path); signal: a penalty far down the path
    assert chosen[False] > 30 * chosen[True], chosen


def test_tuned_penalty_with_categorical_and_continuous_covariates():
    rng = np.random.default_rng(4)
    n = 160
    stage = rng.choice(["I", "II", "III"], size=n)
    age = rng.normal(60, 10, size=n)
    x = rng.normal(size=(n, 6))
    eta = 1.2 * (stage == "III") + 0.5 * (stage == "II") + 0.04 * (age - 60) + 0.5 * x[:, 0]
    t = rng.exponential(np.exp(-eta))
    c = rng.exponential(2.0, size=n)
    obs = pd.DataFrame(
        {
            "time": np.minimum(t, c) + 1e-3,
            "death": (t <= c).astype(int),
            "age": age,
            "stage": pd.Categorical(stage),
        },
        index=[f"p{i}" for i in range(n)],
    )
    adata = ad.AnnData(X=np.zeros((n, 1), dtype=np.float32), obs=obs)
    adata.obsm["emb"] = x
    SurvivalModel.setup_anndata(
        adata,
        "time",
        "death",
        covariate_keys=["age"],
        categorical_covariate_keys=["stage"],
        embedding_key="emb",
    )
    model = SurvivalModel(adata)
    assert model.module.n_design == 6 + 1 + 3
    model.train(cv_seed=1, **QUIET)
    grid = model.alpha_path_["alpha"]
    assert grid.min() < model.alpha_ < grid.max()  # neither end of the path
    w = model.module.head.weight.detach().numpy().ravel()
    # every standardised column is penalised alike, and the covariates keep their weight
    assert w[6] > 0.1  # age
    assert w[9] > w[8] > w[7]  # one-hot stage I < II < III
    table = model.cross_validate(n_folds=3, seed=0, progress_bar=False)
    assert table.loc["mean", "c_index_harrell"] > 0.65
    assert (table.loc["fold 0":"fold 2", "alpha"] > 0).all()


def test_penalty_given_or_from_a_list_and_saved(tmp_path):
    adata = linear_cohort(120)
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    fixed = SurvivalModel(adata, alpha=0.3)
    fixed.train(**QUIET)
    assert fixed.alpha_ == 0.3 and fixed.alpha_path_ is None
    with pytest.raises(RuntimeError, match="fixed alpha"):
        fixed.tune_penalty(np.arange(120))
    listed = SurvivalModel(adata, alpha=[100.0, 0.01], cv_folds=3, cv_scoring="c_index")
    listed.train(**QUIET)
    assert listed.alpha_ in (0.01, 100.0)
    assert list(listed.alpha_path_["alpha"]) == [100.0, 0.01]
    assert "c_index_se" in listed.alpha_path_
    listed.save(tmp_path / "m", overwrite=True)
    loaded = SurvivalModel.load(tmp_path / "m", adata=adata)
    assert loaded.alpha_ == listed.alpha_
    pd.testing.assert_frame_equal(loaded.alpha_path_, listed.alpha_path_)
    for bad, match in (("auto", "alpha must be 'cv'"), (-1.0, "non-negative"), ([], "non-neg")):
        with pytest.raises(ValueError, match=match):
            SurvivalModel(adata, alpha=bad)
    with pytest.raises(ValueError, match="cv_scoring"):
        SurvivalModel(adata, cv_scoring="aic")


def test_penalty_grid_and_tuning_on_any_fitter():
    adata = linear_cohort(150)
    x = adata.obsm["emb"]
    d, e = adata.obs["time"].to_numpy(), adata.obs["death"].to_numpy()
    grid = cox_penalty_grid(x, d, e, n_alphas=10, min_ratio=1e-3)
    assert grid[0] / grid[-1] == pytest.approx(1e3) and np.all(np.diff(grid) < 0)
    assert cox_penalty_grid(x, d, e, l1_ratio=1.0)[0] == pytest.approx(grid[0] * 0.01)
    # a fitter that ignores the data: only its fixed scores decide
    calls = []

    def fit_path(rows, alphas):
        calls.append(len(rows))
        # the best penalty predicts the truth, the others noise
        truth = x @ np.array([1.0, -0.6, 0.3, 0.0])
        noise = np.random.default_rng(len(calls)).normal(size=len(d))
        return np.array([truth if a == 1.0 else noise for a in alphas])

    folds = survival_folds(e, n_folds=4, seed=0)
    alpha, curve = tune_cox_penalty(fit_path, d, e, [0.1, 10.0, 1.0], folds)
    assert alpha == 1.0 and len(calls) == 4
    assert list(curve["alpha"]) == [10.0, 1.0, 0.1]
    assert cox_log_partial_likelihood(np.zeros(len(d)), d, e) < 0


# --- the [survival] extra ----------------------------------------------------------------------


def test_survival_bulk_and_benchmark_import_no_survival_extra():
    # (scvi-tools itself loads pyplot, through torchmetrics, so that is not checked here)
    code = (
        "import sys\n"
        "import cancergpt_scvi.benchmark, cancergpt_scvi.bulk, cancergpt_scvi.survival\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lifelines', 'sksurv')]\n"
        "print(bad); sys.exit(bool(bad))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_without_survival_extra_training_works_and_metrics_name_the_extra(monkeypatch):
    for name in list(sys.modules):
        if name.split(".")[0] in ("lifelines", "sksurv"):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "lifelines", None)
    monkeypatch.setitem(sys.modules, "sksurv", None)
    adata = linear_cohort(60)
    SurvivalModel.setup_anndata(adata, "time", "death", embedding_key="emb")
    model = SurvivalModel(adata)
    model.train(**QUIET)
    assert np.isfinite(model.predict_risk()).all()
    assert len(model.risk_groups(source="fit")) == 60
    d, e = adata.obs["time"], adata.obs["death"]
    extra = r"pip install 'cancergpt-scvi\[survival\]'"
    with pytest.raises(ImportError, match=extra):
        model.concordance()
    with pytest.raises(ImportError, match=extra):
        concordance_uno(d, e, d, e, model.predict_risk())
    with pytest.raises(ImportError, match=extra):
        plot_kaplan_meier(d, e, model.risk_groups(source="fit"))
    with pytest.raises(ImportError, match=extra):
        model.cross_validate(3)
