"""Tests of benchmark_integration (scib-metrics against PCA, scVI and Harmony)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from cancergpt_scvi.benchmark import BASELINE_OBSM_KEYS, benchmark_integration
from cancergpt_scvi.datasets import simulate_glioblastoma
from cancergpt_scvi.plotting import plot_umaps

BIO_METRICS = {"Isolated labels", "KMeans NMI", "KMeans ARI", "Silhouette label", "cLISI"}
BATCH_METRICS = {"Silhouette batch", "iLISI", "KBET", "Graph connectivity", "PCR comparison"}
AGGREGATES = {"Bio conservation", "Batch correction", "Total"}
DIM = 20


@pytest.fixture(scope="module")
def adata():
    data = simulate_glioblastoma(n_cells=360, n_patients=4, n_genes=300, seed=3)
    # noise: no biology and no batch structure. 20-dimensional like the baselines below, so
    # that scib-metrics' JAX functions compile once.
    data.obsm["X_noise"] = np.random.default_rng(0).normal(size=(data.n_obs, DIM))
    return data


@pytest.fixture(scope="module")
def run(adata, tmp_path_factory):
    out = tmp_path_factory.mktemp("integration")
    before = adata.copy()
    df = benchmark_integration(
        adata,
        batch_key="batch",
        label_key="cell_state",
        embeddings={"Noise": "X_noise"},
        baselines=("pca", "scvi", "harmony"),
        n_top_genes=200,
        n_comps=DIM,
        scvi_max_epochs=2,
        scvi_kwargs={"n_latent": DIM},
        output_dir=out,
        progress_bar=False,
    )
    return df, out, before


def test_every_method_has_every_metric(run):
    df, _, _ = run
    assert list(df.columns) == ["method", "metric_type", "metric", "value"]
    assert list(dict.fromkeys(df["method"])) == ["Noise", "PCA", "scVI", "Harmony"]
    expected = BIO_METRICS | BATCH_METRICS | AGGREGATES
    for method, group in df.groupby("method"):
        assert set(group["metric"]) == expected, method
        assert group["metric"].is_unique
    assert np.isfinite(df["value"]).all()
    types = df.drop_duplicates("metric").set_index("metric")["metric_type"]
    assert set(types[list(BIO_METRICS)]) == {"Bio conservation"}
    assert set(types[list(BATCH_METRICS)]) == {"Batch correction"}
    assert set(types[list(AGGREGATES)]) == {"Aggregate score"}


def test_scores_rank_embeddings(run):
    wide = run[0].pivot(index="method", columns="metric", values="value")
    # PCA of the counts separates the states; noise does not
    assert wide.loc["PCA", "Bio conservation"] > wide.loc["Noise", "Bio conservation"] + 0.1
    # noise has no batch structure; PCA of the counts has (technology and patient effects)
    assert wide.loc["Noise", "iLISI"] > wide.loc["PCA", "iLISI"]
    total = 0.6 * wide["Bio conservation"] + 0.4 * wide["Batch correction"]
    np.testing.assert_allclose(wide["Total"], total, rtol=1e-6)


def test_writes_figures_and_leaves_input_alone(run, adata):
    df, out, before = run
    for name in ("integration_results.csv", "integration_table.png", "integration_umap.png"):
        assert (out / name).stat().st_size > 1000, name
    pd.testing.assert_frame_equal(pd.read_csv(out / "integration_results.csv"), df)
    assert list(adata.obsm) == list(before.obsm)
    pd.testing.assert_frame_equal(adata.obs, before.obs)
    assert (adata.X != before.X).nnz == 0
    assert not adata.uns and not adata.layers


def test_inplace_writes_baselines(adata):
    data = adata.copy()
    df = benchmark_integration(
        data,
        "batch",
        "cell_state",
        baselines=("pca",),
        n_top_genes=200,
        n_comps=DIM,
        inplace=True,
        progress_bar=False,
    )
    assert set(df["method"]) == {"PCA"}
    assert data.obsm[BASELINE_OBSM_KEYS["pca"]].shape == (data.n_obs, DIM)


def test_unknown_obsm_key(adata):
    with pytest.raises(KeyError, match=r"X_missing.*not found in adata.obsm"):
        benchmark_integration(adata, "batch", "cell_state", ["X_missing"], baselines=())


def test_batch_with_one_level(adata):
    data = adata.copy()
    data.obs["one_batch"] = "b0"
    with pytest.raises(ValueError, match=r"single level.*at least 2 batches"):
        benchmark_integration(data, "one_batch", "cell_state", ["X_noise"], baselines=())


def test_labels_with_nan(adata):
    data = adata.copy()
    labels = data.obs["cell_state"].astype(object)
    labels.iloc[[0, 5]] = np.nan
    data.obs["cell_state"] = labels
    with pytest.raises(ValueError, match="2 missing values"):
        benchmark_integration(data, "batch", "cell_state", ["X_noise"], baselines=())


def test_other_bad_inputs(adata):
    with pytest.raises(ValueError, match="Unknown baselines"):
        benchmark_integration(adata, "batch", "cell_state", baselines=("combat",))
    with pytest.raises(KeyError, match="label_key='state'"):
        benchmark_integration(adata, "batch", "state", ["X_noise"])
    for n_comps in (0, 1, 2.5):  # never silently 2 components
        with pytest.raises(
            ValueError, match=rf"n_comps must be an integer of at least 2, got {n_comps}"
        ):
            benchmark_integration(adata, "batch", "cell_state", ["X_noise"], n_comps=n_comps)
    with pytest.raises(ValueError, match="Nothing to benchmark"):
        benchmark_integration(adata, "batch", "cell_state", baselines=())
    with pytest.raises(ValueError, match="used by both"):
        benchmark_integration(adata, "batch", "cell_state", {"PCA": "X_noise"})
    data = adata.copy()
    data.obsm["X_nan"] = np.full((data.n_obs, 2), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        benchmark_integration(data, "batch", "cell_state", ["X_nan"], baselines=())
    data.X = data.X * 0.5  # not counts
    with pytest.raises(ValueError, match="raw counts"):
        benchmark_integration(data, "batch", "cell_state", ["X_noise"], baselines=())


def test_harmony_needs_the_benchmark_extra(adata, monkeypatch):
    monkeypatch.setitem(sys.modules, "harmonypy", None)  # as if harmonypy were not installed
    with pytest.raises(ImportError, match=r"pip install 'cancergpt-scvi\[benchmark\]'"):
        benchmark_integration(
            adata, "batch", "cell_state", baselines=("harmony",), n_top_genes=200, n_comps=DIM
        )


def test_plot_umaps_refuses_unknown_keys(adata):
    with pytest.raises(KeyError, match="X_missing"):
        plot_umaps(adata, {"Noise": "X_missing"}, "cell_state")
    with pytest.raises(KeyError, match="state"):
        plot_umaps(adata, "X_noise", ["batch", "state"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda n, rng: np.ones((n, DIM)), r"obsm\['X_bad'\] \(Bad\) is constant"),
        (
            lambda n, rng: 1 + 1e-9 * rng.normal(size=(n, DIM)),
            r"obsm\['X_bad'\] \(Bad\) has near-zero variance",
        ),
        (
            lambda n, rng: rng.normal(size=(40, DIM))[np.arange(n) % 40],
            r"obsm\['X_bad'\] \(Bad\) has only 40 distinct cells",
        ),
        (
            lambda n, rng: np.where(np.arange(n)[:, None] == 7, np.inf, rng.normal(size=(n, DIM))),
            r"obsm\['X_bad'\] \(Bad\) contains NaN or infinite values \(1 of",
        ),
    ],
    ids=["constant", "near-zero-variance", "few-distinct-cells", "infinite"],
)
def test_degenerate_embeddings_are_refused(adata, make, message):
    # a constant embedding used to score a batch silhouette of 1 and a Total close to PCA's
    data = adata.copy()
    data.obsm["X_bad"] = make(data.n_obs, np.random.default_rng(1))
    with pytest.raises(ValueError, match=message):
        benchmark_integration(data, "batch", "cell_state", {"Bad": "X_bad"}, progress_bar=False)


def test_uncomputed_metric_stays_nan_and_is_reported(adata, monkeypatch):
    import scib_metrics

    noise = adata.obsm["X_noise"].astype(np.float32)
    pcr = scib_metrics.pcr_comparison

    def pcr_nan_for_noise(X_pre, X_post, *args, **kwargs):
        # as scib-metrics returns for an embedding without variance along the batches
        if X_post.shape == noise.shape and np.allclose(X_post, noise, atol=1e-5):
            return np.nan
        return pcr(X_pre, X_post, *args, **kwargs)

    monkeypatch.setattr(scib_metrics, "pcr_comparison", pcr_nan_for_noise)
    with pytest.warns(UserWarning, match=r"for 'Noise' are NaN.*PCR comparison") as record:
        df = benchmark_integration(
            adata,
            "batch",
            "cell_state",
            {"Noise": "X_noise"},
            baselines=("pca",),
            n_top_genes=200,
            n_comps=DIM,
            progress_bar=False,
        )
    ours = [str(w.message) for w in record if "could not be computed" in str(w.message)]
    assert len(ours) == 1 and "mean of the other 4 batch correction metrics" in ours[0]
    wide = df.pivot(index="method", columns="metric", values="value")
    assert np.isnan(wide.loc["Noise", "PCR comparison"])  # kept, not dropped
    assert np.isfinite(wide.loc["PCA"]).all()
    others = wide.loc["Noise", sorted(BATCH_METRICS - {"PCR comparison"})]
    np.testing.assert_allclose(wide.loc["Noise", "Batch correction"], others.mean(), rtol=1e-6)
    total = 0.6 * wide["Bio conservation"] + 0.4 * wide["Batch correction"]
    np.testing.assert_allclose(wide["Total"], total, rtol=1e-6)
