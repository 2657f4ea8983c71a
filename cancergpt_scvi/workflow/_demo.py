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
) -> dict[str, Path]:
    """Simulate a malignant atlas, pretrain CancerGPT on CPU, embed and score the embedding.

    Simulates an atlas with :func:`~cancergpt_scvi.datasets.simulate_malignant_atlas`,
    pretrains :class:`~cancergpt_scvi.model.CancerGPTModel` on it with the default recipe
    (tissue/technology oversampling, adversarial batch and technology losses), embeds its
    cells, scores the embedding against PCA with
    :func:`~cancergpt_scvi.benchmark.benchmark_integration` (batch: patient, labels:
    malignant state) and draws the training curves and UMAPs of the embedding.

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

    Returns
    -------
    Paths of the outputs by name: ``model`` (the saved model folder), ``training_curves``
    (``training_curves.png``), ``metrics`` (``metrics.csv``, the scores), the UMAPs
    ``umap_tissue``, ``umap_technology``, ``umap_patient``, ``umap_cell_state`` (PNGs of the
    same names) and ``h5ad`` (``atlas_embedded.h5ad``: the atlas with
    ``obsm["X_cancergpt"]``, its neighbour graph and ``obsm["X_umap"]``).
    """
    import matplotlib.pyplot as plt
    import scanpy as sc
    import scvi

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
    plt.close(plot_training_history(model.history, paths["training_curves"]))

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
