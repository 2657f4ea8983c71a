"""Adversarial technology/batch losses on vs off, same data and training budget.

Prints, for each setting, a technology classifier's accuracy on the embedding (5-fold
logistic regression: lower = the embedding reveals less of the technology) and tissue and
malignant-state kNN accuracy (5-fold: higher = biology kept).

    python benchmarks/adversarial_ablation.py [--n-cells 3000] [--max-epochs 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import scvi
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.data import simulate_malignant_atlas


def score_embedding(z: np.ndarray, obs: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Cross-validated accuracies of technology (logistic) and tissue/state (kNN)."""
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    out = {
        "technology_accuracy": cross_val_score(
            LogisticRegression(max_iter=2000), z, obs["technology"], cv=folds
        ).mean()
    }
    for label in ("tissue", "cell_state"):
        out[f"{label}_knn_accuracy"] = cross_val_score(
            KNeighborsClassifier(15), z, obs[label], cv=folds
        ).mean()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-cells", type=int, default=3000)
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--adversarial-weight", type=float, default=1.0)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    adata = simulate_malignant_atlas(n_cells=args.n_cells, n_genes=args.n_genes, seed=args.seed)
    majority = adata.obs["technology"].value_counts(normalize=True).max()
    rows = []
    for name, weight in (("adversarial off", 0.0), ("adversarial on", args.adversarial_weight)):
        scvi.settings.seed = args.seed
        data = adata.copy()
        CancerGPTModel.setup_anndata(
            data, batch_key="batch", technology_key="technology", tissue_key="tissue"
        )
        model = CancerGPTModel(data, preset=args.preset)
        start = time.perf_counter()
        model.train(
            max_epochs=args.max_epochs, adversarial_weight=weight, enable_progress_bar=False
        )
        seconds = time.perf_counter() - start
        z = model.get_latent_representation(progress_bar=False)
        rows.append({"setting": name, "train_seconds": seconds, **score_embedding(z, data.obs)})
    table = pd.DataFrame(rows).set_index("setting")
    pd.set_option("display.precision", 3)
    print(
        f"cells={adata.n_obs} genes={adata.n_vars} epochs={args.max_epochs} "
        f"preset={args.preset}; majority technology share={majority:.3f}"
    )
    print(table.to_string())


if __name__ == "__main__":
    main()
