"""Adversarial technology/batch losses at several weights, same data and training budget.

Prints, for each reversal weight (0 = adversarial off), what a technology classifier reads
from the embedding — 5-fold logistic regression on standardised embedding dimensions, with
folds over cells and with folds over patients (each patient was profiled by one technology,
so only the second asks whether technology generalises beyond recognising a patient) — the
discriminator's own training accuracy in the last epoch, and tissue and malignant-state kNN
accuracy (5-fold: higher = biology kept). Writes the table as CSV and a figure if ``--out``.
``--covariates`` chooses the adversarial covariates (default: batch and technology);
``--mvc-start`` / ``--mvc-ramp`` the MVC warm-up (``0 0``: MVC from the first step);
``--decoders plain`` leaves the expression decoders without the cells' domains (the default,
``conditioned``, tells them, see ``condition_decoders``). The options ``--adversarial-input``,
``--discriminator-memory``, ``--fisher-scale``, ``--fisher-ridge``, ``--embedding-offsets`` and
``--adversary-trains`` of the measurements on the pretraining docs page were removed with the
module options they set; run this script at the commit the docs name to repeat them.

    python benchmarks/adversarial_ablation.py [--n-cells 1500] [--max-epochs 120]
        [--covariates technology] [--mvc-start 0.25 --mvc-ramp 0.25]
        [--decoders plain] [--out DIR]
    python benchmarks/adversarial_ablation.py --smoke   # smallest setting (CI): seconds

``--smoke`` runs every step at the smallest size: 300 cells of 200 genes, 1 epoch, weights 0 and
0.02, the CSV and figure written to a temporary folder unless ``--out`` is given; options given
with it still apply.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scvi
from _smoke import parse_args as parse_smoke
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.datasets import simulate_malignant_atlas

#: Defaults of ``--smoke``: the smallest setting, for CI.
SMOKE = {"n_cells": 300, "n_genes": 200, "max_epochs": 1, "weights": [0.0, 0.02], "out": None}


def score_embedding(z: np.ndarray, obs: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Cross-validated technology probe accuracy and tissue/state kNN accuracy."""
    # standardised: cell embeddings differ by a small fraction of their norm, and an
    # unscaled L2-penalised probe would fall back to the majority class
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cells = StratifiedKFold(5, shuffle=True, random_state=seed)
    patients = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
    tech = obs["technology"]
    out = {
        "technology_probe_cells": cross_val_score(probe, z, tech, cv=cells).mean(),
        "technology_probe_patients": cross_val_score(
            probe, z, tech, cv=patients, groups=obs["patient"]
        ).mean(),
    }
    for label in ("tissue", "cell_state"):
        out[f"{label}_knn"] = cross_val_score(
            KNeighborsClassifier(15), z, obs[label], cv=cells
        ).mean()
    return out


def plot_ablation(table: pd.DataFrame, path: Path) -> None:
    """Probe and kNN accuracies against the reversal weight."""
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(table))
    for column in table.columns:
        if column.endswith(("_probe_cells", "_probe_patients", "_knn", "disc_accuracy")):
            ax.plot(x, table[column], marker="o", label=column)
    ax.set_xticks(x, [str(w) for w in table.index])
    ax.set_xlabel("adversarial weight")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=1500)
    parser.add_argument("--n-genes", type=int, default=600)
    parser.add_argument("--max-epochs", type=int, default=120)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.003, 0.02])
    parser.add_argument(
        "--covariates",
        nargs="+",
        choices=["batch", "technology"],
        default=["batch", "technology"],
        help="adversarial covariates registered in setup_anndata",
    )
    parser.add_argument("--mvc-start", type=float, default=0.25)
    parser.add_argument("--mvc-ramp", type=float, default=0.25)
    parser.add_argument(
        "--decoders",
        choices=["conditioned", "plain"],
        default="conditioned",
        help="whether the expression decoders are told each cell's domains",
    )
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for CSV and PNG")
    args = parse_smoke(parser, SMOKE)

    adata = simulate_malignant_atlas(n_cells=args.n_cells, n_genes=args.n_genes, seed=args.seed)
    majority = adata.obs["technology"].value_counts(normalize=True).max()
    rows = []
    for weight in args.weights:
        scvi.settings.seed = args.seed
        data = adata.copy()
        CancerGPTModel.setup_anndata(
            data,
            batch_key="batch" if "batch" in args.covariates else None,
            technology_key="technology" if "technology" in args.covariates else None,
            tissue_key="tissue",
        )
        model = CancerGPTModel(
            data,
            preset=args.preset,
            condition_decoders=args.decoders == "conditioned",
        )
        start = time.perf_counter()
        model.train(
            max_epochs=args.max_epochs,
            adversarial_weight=weight,
            mvc_start=args.mvc_start,
            mvc_ramp=args.mvc_ramp,
            enable_progress_bar=False,
        )
        seconds = time.perf_counter() - start
        z = model.get_latent_representation(progress_bar=False)
        key = "disc_acc_technology_train"
        disc = model.history[key].iloc[-1, 0] if key in model.history else float("nan")
        rows.append(
            {
                "adversarial_weight": weight,
                "train_seconds": seconds,
                "technology_disc_accuracy": float(disc),
                **score_embedding(z, data.obs),
            }
        )
    table = pd.DataFrame(rows).set_index("adversarial_weight")
    pd.set_option("display.precision", 3)
    pd.set_option("display.width", 200)
    print(
        f"cells={adata.n_obs} genes={adata.n_vars} epochs={args.max_epochs} "
        f"preset={args.preset} adversarial covariates={'+'.join(args.covariates)} "
        f"MVC start/ramp={args.mvc_start}/{args.mvc_ramp} "
        f"{args.decoders} decoders; "
        f"majority technology share={majority:.3f}"
    )
    print(table.to_string())
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = "adversarial_ablation" + (
            "" if len(args.covariates) == 2 else "_" + "_".join(args.covariates)
        )
        warm_up = (parser.get_default("mvc_start"), parser.get_default("mvc_ramp"))
        if (args.mvc_start, args.mvc_ramp) != warm_up:
            stem += f"_mvc{args.mvc_start:g}-{args.mvc_ramp:g}"
        if args.decoders != parser.get_default("decoders"):
            stem += f"_{args.decoders}_decoders"
        table.to_csv(args.out / f"{stem}.csv")
        plot_ablation(table, args.out / f"{stem}.png")


if __name__ == "__main__":
    main()
