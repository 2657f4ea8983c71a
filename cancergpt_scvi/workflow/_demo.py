"""The package's main job on built-in example data: simulate, pretrain, embed, score, plot."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from cancergpt_scvi.benchmark import benchmark_integration
from cancergpt_scvi.datasets import simulate_malignant_atlas
from cancergpt_scvi.model import CancerGPTModel
from cancergpt_scvi.plotting import plot_training_history

logger = logging.getLogger(__name__)

# ``obs`` columns the demo's UMAPs are coloured by, one PNG each.
_UMAP_COLUMNS = ("tissue", "technology", "patient", "cell_state")


def run_demo(
    out_dir: str | Path = "demo_output",
    n_cells: int = 1500,
    n_genes: int = 600,
    max_epochs: int = 6,
    preset: str = "cpu-small",
    seed: int = 0,
    scvi_epochs: int = 200,
) -> dict[str, Path]:
    """Simulate a malignant atlas, pretrain CancerGPT on CPU, embed and score new patients.

    Simulates an atlas with :func:`~cancergpt_scvi.datasets.simulate_malignant_atlas` (three
    patients per tissue) and holds one patient of every tissue out. Pretrains
    :class:`~cancergpt_scvi.model.CancerGPTModel` on the other patients with the default
    recipe (tissue/technology oversampling; batch and technology registered as adversarial
    covariates, the adversary at its default weight, off), embeds
    every cell, and scores the held-out patients' embedding (patients never seen in
    pretraining) with :func:`~cancergpt_scvi.benchmark.benchmark_integration` (batch: patient,
    labels: malignant state) next to PCA, scVI and, when harmonypy is installed, Harmony
    computed on those cells. Draws the training curves and UMAPs of the embedding.

    Parameters
    ----------
    out_dir
        Folder of the outputs; created if needed, existing outputs are overwritten.
    n_cells, n_genes
        Size of the simulated atlas.
    max_epochs
        Pretraining epochs.
    preset
        Size preset of the model (see :class:`~cancergpt_scvi.model.CancerGPTModel`).
    seed
        Seed of the simulation, of scvi-tools' random state and of UMAP.
    scvi_epochs
        Training epochs of the scVI baseline.

    Returns
    -------
    Paths of the outputs by name: ``model`` (the saved model folder), ``training_curves``
    (``training_curves.png``), ``metrics`` (``metrics.csv``, the scores of the new patients,
    one row per method and metric), ``metrics_table`` (``new_patients_scib.csv``: methods x
    metrics), the UMAPs ``umap_tissue``, ``umap_technology``, ``umap_patient``,
    ``umap_cell_state`` (PNGs of the same names, every cell) and ``h5ad``
    (``atlas_embedded.h5ad``: the atlas with ``obsm["X_cancergpt"]``, ``obs["held_out"]``,
    its neighbour graph and ``obsm["X_umap"]``).
    """
    import importlib.util

    import matplotlib.pyplot as plt
    import scanpy as sc
    import scvi

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = seed
    start = time.perf_counter()

    adata = simulate_malignant_atlas(
        n_cells=n_cells, n_genes=n_genes, n_patients_per_tissue=3, seed=seed
    )
    held_out = _held_out_patients(adata, seed)
    adata.obs["held_out"] = adata.obs["patient"].isin(held_out).to_numpy()
    reference = adata[~adata.obs["held_out"].to_numpy()].copy()
    query = adata[adata.obs["held_out"].to_numpy()].copy()
    for frame in (reference, query):
        for col in ("patient", "batch", "tissue", "technology"):
            frame.obs[col] = frame.obs[col].cat.remove_unused_categories()
    logger.info(
        "Simulated %d cells x %d genes; pretraining on %d patients, %d held out.",
        adata.n_obs,
        adata.n_vars,
        reference.obs["patient"].nunique(),
        len(held_out),
    )
    CancerGPTModel.setup_anndata(
        reference, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    model = CancerGPTModel(reference, preset=preset)
    model.train(max_epochs=max_epochs, oversample=True)
    adata.obsm["X_cancergpt"] = model.get_latent_representation(adata)
    query.obsm["X_cancergpt"] = adata.obsm["X_cancergpt"][adata.obs["held_out"].to_numpy()]

    paths: dict[str, Path] = {"model": out / "model"}
    model.save(paths["model"], overwrite=True)
    paths["training_curves"] = out / "training_curves.png"
    plt.close(plot_training_history(model.history, paths["training_curves"]))

    baselines = ["pca", "scvi"]
    if importlib.util.find_spec("harmonypy") is not None:
        baselines.append("harmony")
    metrics = benchmark_integration(
        query,
        batch_key="patient",
        label_key="cell_state",
        embeddings={"CancerGPT": "X_cancergpt"},
        baselines=baselines,
        scvi_max_epochs=scvi_epochs,
        output_dir=out,
        umap=False,
        seed=seed,
    )
    paths["metrics"] = out / "metrics.csv"
    metrics.to_csv(paths["metrics"], index=False)
    table = metrics.pivot(index="method", columns="metric", values="value")
    table = table.loc[
        list(dict.fromkeys(metrics["method"])), list(dict.fromkeys(metrics["metric"]))
    ]
    paths["metrics_table"] = out / "new_patients_scib.csv"
    table.to_csv(paths["metrics_table"])
    logger.info(
        "New patients (batch = patient), scib-metrics:\n%s",
        table[["Batch correction", "Bio conservation", "Total"]].round(3).to_string(),
    )

    # one UMAP, kept in the h5ad, drawn once per obs column
    sc.pp.neighbors(adata, use_rep="X_cancergpt", random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    for column in _UMAP_COLUMNS:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        sc.pl.umap(adata, color=column, ax=ax, show=False, title=f"CancerGPT: {column}")
        paths[f"umap_{column}"] = out / f"umap_{column}.png"
        fig.savefig(paths[f"umap_{column}"], dpi=120, bbox_inches="tight")
        plt.close(fig)
    paths["h5ad"] = out / "atlas_embedded.h5ad"
    adata.write_h5ad(paths["h5ad"])
    logger.info("Demo finished in %.0f s; outputs in %s.", time.perf_counter() - start, out)
    return paths


def _held_out_patients(adata, seed: int) -> list[str]:
    """One patient of every tissue with at least two, drawn from ``seed``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    held = []
    for _, patients in adata.obs.groupby("tissue", observed=True)["patient"]:
        names = sorted(patients.unique())
        if len(names) >= 2:
            held.append(str(rng.choice(names)))
    return held
