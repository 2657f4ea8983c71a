"""The package's main job on built-in example data: simulate, pretrain, embed, score, plot."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import matplotlib

from cancergpt_scvi.benchmark import benchmark_integration
from cancergpt_scvi.datasets import simulate_malignant_atlas
from cancergpt_scvi.model import CancerGPTModel
from cancergpt_scvi.plotting import plot_training_history, plot_umaps

logger = logging.getLogger(__name__)


def run_demo(
    out_dir: str | Path = "demo_output",
    n_cells: int = 1500,
    n_genes: int = 600,
    max_epochs: int = 6,
    preset: str = "cpu-small",
    seed: int = 0,
) -> dict[str, Path]:
    """Simulate a malignant atlas, pretrain CancerGPT on CPU, embed and score the embedding.

    Pretraining uses tissue/technology oversampling and adversarial batch and technology
    losses. The embedding is scored against PCA with scib-metrics (batch: patient,
    labels: malignant state).

    Writes to ``out_dir``: ``atlas_embedded.h5ad`` (``obsm["X_cancergpt"]``, UMAP),
    ``umap_{tissue,technology,patient,cell_state}.png``, ``training_curves.png``,
    ``metrics.csv`` and the trained model in ``model/``.

    Returns
    -------
    Paths of the outputs by name.
    """
    import scvi

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = seed
    start = time.perf_counter()

    adata = simulate_malignant_atlas(n_cells=n_cells, n_genes=n_genes, seed=seed)
    logger.info("Simulated %d cells x %d genes.", adata.n_obs, adata.n_vars)
    CancerGPTModel.setup_anndata(
        adata, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    model = CancerGPTModel(adata, preset=preset)
    model.train(max_epochs=max_epochs, oversample=True)
    adata.obsm["X_cancergpt"] = model.get_latent_representation()

    paths: dict[str, Path] = {"model": out / "model"}
    model.save(paths["model"], overwrite=True)
    paths["training_curves"] = out / "training_curves.png"
    plot_training_history(model.history, paths["training_curves"])

    metrics = benchmark_integration(
        adata,
        batch_key="patient",
        label_key="cell_state",
        embeddings={"CancerGPT": "X_cancergpt"},
        baselines=("pca",),
        output_dir=out,
        umap=False,
    )
    paths["metrics"] = out / "metrics.csv"
    metrics.to_csv(paths["metrics"], index=False)

    for png in plot_umaps(
        adata, "X_cancergpt", ["tissue", "technology", "patient", "cell_state"], out
    ):
        paths[png.stem] = png
    paths["h5ad"] = out / "atlas_embedded.h5ad"
    adata.write_h5ad(paths["h5ad"])
    logger.info("Demo finished in %.0f s; outputs in %s.", time.perf_counter() - start, out)
    return paths
