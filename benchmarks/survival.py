"""Survival prediction from bulk tumour RNA: CancerGPT embeddings vs expression baselines.

Pretrains CancerGPT (CPU recipe) on a simulated pan-cancer atlas of malignant cells (or
loads a saved model) with a fixed gene set: the atlas' most variable genes, one token each
for every cell (``gene_selection="fixed"``, the release's zero-shot procedure, which is also
how :func:`~cancergpt_scvi.bulk.embed_bulk` presents a bulk sample); ``--gene-selection
expressed`` pretrains on each cell's expressed genes instead. It then simulates a bulk
RNA-seq cohort of other patients (each tumour the sum of its malignant cells plus stroma;
hazards driven by the mesenchymal and cycling malignant programs; censoring), embeds the
bulk samples with :func:`cancergpt_scvi.bulk.embed_bulk` (counts and TPM) and scores linear
Cox models (:class:`cancergpt_scvi.survival.SurvivalModel`) by stratified 5-fold
cross-validation (:func:`cancergpt_scvi.benchmark.cross_validate_survival`) next to
penalised Cox on PCA of expression, on the top-variance genes and on clinical covariates
alone, and the C-index of the true risk on the same folds. Prints the
table and the acceptance check (cross-validated C within 0.05 of the true risk's); writes
``survival_results.csv`` and ``survival_km.png`` (Kaplan–Meier curves of held-out risk
tertiles) to ``--out``.

Run from the repository root::

    python benchmarks/survival.py --out docs/_static/survival
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import scanpy as sc
import scvi
import torch

from cancergpt_scvi.benchmark import compare_survival_features, cross_validate_survival
from cancergpt_scvi.bulk import embed_bulk
from cancergpt_scvi.datasets import simulate_malignant_atlas, simulate_survival_cohort
from cancergpt_scvi.model import PRESETS, CancerGPTModel
from cancergpt_scvi.survival import SurvivalModel


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="saved CancerGPTModel folder")
    parser.add_argument("--atlas-cells", type=int, default=3000)
    parser.add_argument("--n-genes", type=int, default=600)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument(
        "--gene-selection",
        choices=["fixed", "expressed"],
        default="fixed",
        help="pretraining tokens: the atlas' most variable genes, or each cell's expressed genes",
    )
    parser.add_argument("--n-patients", type=int, default=400)
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("survival_benchmark"))
    return parser.parse_args()


def pretrained_model(args: argparse.Namespace) -> CancerGPTModel:
    if args.model is not None:
        return CancerGPTModel.load(str(args.model))
    atlas = simulate_malignant_atlas(n_cells=args.atlas_cells, n_genes=args.n_genes, seed=0)
    CancerGPTModel.setup_anndata(
        atlas, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    extra = {}
    if args.gene_selection == "fixed":
        # as many genes as the preset has gene tokens, chosen on log-normalised expression
        n_tokens = PRESETS[args.preset]["max_seq_len"] - 1
        logged = atlas.copy()
        sc.pp.normalize_total(logged)
        sc.pp.log1p(logged)
        sc.pp.highly_variable_genes(logged, n_top_genes=n_tokens)
        hvg = logged.var_names[logged.var["highly_variable"].to_numpy()]
        extra = {"token_genes": list(hvg), "gene_selection": "fixed"}
    model = CancerGPTModel(atlas, preset=args.preset, **extra)
    model.train(max_epochs=args.epochs, batch_size=64)
    return model


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    model = pretrained_model(args)
    t_pretrain = time.time() - start

    cohort = simulate_survival_cohort(
        n_patients=args.n_patients, n_genes=model.adata.n_vars, seed=args.seed
    )
    start = time.time()
    cohort.obsm["X_cancergpt_tpm"] = embed_bulk(model, cohort, kind="tpm", layer="tpm")
    cohort.obsm["X_cancergpt_counts"] = embed_bulk(model, cohort, kind="counts")
    t_embed = time.time() - start

    start = time.time()
    table = compare_survival_features(
        cohort,
        "duration",
        "event",
        embeddings={
            "CancerGPT (TPM)": "X_cancergpt_tpm",
            "CancerGPT (counts)": "X_cancergpt_counts",
        },
        covariate_keys=["age"],
        categorical_covariate_keys=["stage"],
        n_folds=args.n_folds,
        seed=args.seed,
        true_risk_key="true_risk",
        progress_bar=False,
    )
    t_cv = time.time() - start
    c_true = table.loc["true risk (oracle)", "c_index_harrell"]
    table["gap_to_true_risk"] = c_true - table["c_index_harrell"]
    table["within_0.05"] = table["gap_to_true_risk"].abs() <= 0.05
    table.to_csv(args.out / "survival_results.csv")

    SurvivalModel.setup_anndata(cohort, "duration", "event", embedding_key="X_cancergpt_tpm")
    surv = SurvivalModel(cohort, alpha=0.1)
    cross_validate_survival(surv, n_folds=args.n_folds, seed=args.seed, progress_bar=False)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _, p_cgpt = surv.plot_kaplan_meier(
        "tertiles", ax=axes[0], title="CancerGPT (TPM) embedding, held-out risk"
    )
    cohort.obsm["true_risk"] = cohort.obs[["true_risk"]].to_numpy()
    SurvivalModel.setup_anndata(cohort, "duration", "event", embedding_key="true_risk")
    truth = SurvivalModel(cohort, alpha=0.0)
    cross_validate_survival(truth, n_folds=args.n_folds, seed=args.seed, progress_bar=False)
    _, p_true = truth.plot_kaplan_meier("tertiles", ax=axes[1], title="true risk")
    fig.tight_layout()
    fig.savefig(args.out / "survival_km.png", dpi=120)

    n_events = int(cohort.obs["event"].sum())
    print(
        f"cohort: {cohort.n_obs} patients, {n_events} events "
        f"({1 - n_events / cohort.n_obs:.0%} censored), {cohort.n_vars} genes; "
        f"CancerGPT {args.preset}, {args.epochs} epochs on {args.atlas_cells} cells, "
        f"{args.gene_selection} gene selection"
    )
    print(f"time: pretrain {t_pretrain:.0f} s, embed {t_embed:.0f} s, CV {t_cv:.0f} s")
    print()
    print(table.to_string(float_format=lambda v: f"{v:.3g}"))
    print()
    print(f"KM tertiles log-rank p: CancerGPT (TPM) {p_cgpt:.2g}, true risk {p_true:.2g}")


if __name__ == "__main__":
    main()
