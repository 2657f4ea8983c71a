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
cross-validation (:meth:`~cancergpt_scvi.survival.SurvivalModel.cross_validate`) next to
penalised Cox on PCA of expression, on the top-variance genes and on clinical covariates
alone, and the C-index of the true risk on the same folds. Prints the
table and the acceptance check (cross-validated C within 0.05 of the true risk's); writes
``survival_results.csv`` and ``survival_km.png`` (Kaplan–Meier curves of held-out risk
tertiles) to ``--out``.

``--data breast_cancer`` instead benchmarks the survival head on a real cohort,
scikit-survival's ``load_breast_cancer()`` (198 patients, 51 events; 76 genes and the
clinical age, tumour size, oestrogen receptor status and grade): the default
:class:`~cancergpt_scvi.survival.SurvivalModel` (no penalty given: tuned by its inner
cross-validation) on expression + clinical against lifelines' ``CoxPHFitter`` with its ridge
``penalizer`` tuned by the same inner cross-validation
(:func:`~cancergpt_scvi.survival.tune_cox_penalty`: the same inner folds, a grid by the same
rule, :func:`~cancergpt_scvi.survival.cox_penalty_grid`, on its own design, the same
deviance), on the same 5 outer folds (stratified on the event) for each of 3 seeds; with
expression alone, Harrell's C as the inner score, and unpenalised lifelines on the clinical
covariates alone next to them. Writes ``breast_cancer_folds.csv`` (Harrell's C of every held-out
fold), ``breast_cancer_summary.csv`` and ``breast_cancer.png`` to ``--out``.

Run from the repository root::

    python benchmarks/survival.py --out docs/_static/survival
    python benchmarks/survival.py --data breast_cancer --out docs/_static/survival
    python benchmarks/survival.py --smoke                       # smallest setting (CI)
    python benchmarks/survival.py --smoke --data breast_cancer

``--smoke`` runs the chosen ``--data`` path at the smallest size, writing to a temporary folder
unless ``--out`` is given: simulated, an atlas of 300 cells of 200 genes, 1 pretraining epoch,
a cohort of 80 patients, 2 folds; breast_cancer, one seed of 2 outer folds and a 5-penalty path
in the inner cross-validations. Options given with it still apply. ``--n-folds`` (default 5)
sets the outer folds of either path, ``--n-alphas`` (default 50) the penalty path of the
breast_cancer tunings.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch
from _common import parse_smoke

from cancergpt_scvi.benchmark import compare_survival_features
from cancergpt_scvi.bulk import embed_bulk
from cancergpt_scvi.datasets import simulate_malignant_atlas, simulate_survival_cohort
from cancergpt_scvi.model import PRESETS, CancerGPTModel
from cancergpt_scvi.survival import (
    SurvivalModel,
    concordance_harrell,
    cox_penalty_grid,
    tune_cox_penalty,
)
from cancergpt_scvi.train import survival_folds

#: Clinical covariates of ``sksurv.datasets.load_breast_cancer``.
BREAST_CONTINUOUS = ["age", "size"]
BREAST_CATEGORICAL = ["er", "grade"]
#: Defaults of ``--smoke``: the smallest setting, for CI (``out`` None: a temporary folder).
SMOKE = {
    "seeds": [0],
    "atlas_cells": 300,
    "n_genes": 200,
    "epochs": 1,
    "n_patients": 80,
    "n_folds": 2,
    "n_alphas": 5,
    "out": None,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        choices=["simulated", "breast_cancer"],
        default="simulated",
        help="simulated cohort with CancerGPT embeddings, or sksurv's load_breast_cancer()",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="outer-fold seeds (breast_cancer)"
    )
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
    parser.add_argument("--n-folds", type=int, default=5, help="outer folds")
    parser.add_argument(
        "--n-alphas",
        type=int,
        default=50,
        help="length of the penalty path of the inner CV (breast_cancer; SurvivalModel's default)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("survival_benchmark"))
    args = parse_smoke(parser, SMOKE)
    return args


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
    if args.data == "breast_cancer":
        breast_cancer_benchmark(args)
    else:
        simulated_benchmark(args)


def simulated_benchmark(args: argparse.Namespace) -> None:
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
    surv.cross_validate(n_folds=args.n_folds, seed=args.seed, progress_bar=False)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _, p_cgpt = surv.plot_kaplan_meier(
        "tertiles", ax=axes[0], title="CancerGPT (TPM) embedding, held-out risk"
    )
    cohort.obsm["true_risk"] = cohort.obs[["true_risk"]].to_numpy()
    SurvivalModel.setup_anndata(cohort, "duration", "event", embedding_key="true_risk")
    truth = SurvivalModel(cohort, alpha=0.0)
    truth.cross_validate(n_folds=args.n_folds, seed=args.seed, progress_bar=False)
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


# --- real cohort: sksurv's load_breast_cancer ------------------------------------------------


def breast_cancer_cohort() -> ad.AnnData:
    """``load_breast_cancer()`` as patients x genes, the clinical covariates and the outcome."""
    from sksurv.datasets import load_breast_cancer

    frame, outcome = load_breast_cancer()
    clinical = BREAST_CONTINUOUS + BREAST_CATEGORICAL
    genes = [c for c in frame.columns if c not in clinical]
    obs = frame[clinical].copy()
    obs["time"] = outcome["t.tdm"].astype(float)
    obs["event"] = outcome["e.tdm"].astype(int)
    obs.index = [f"patient{i}" for i in range(len(obs))]
    adata = ad.AnnData(X=frame[genes].to_numpy(dtype=np.float32), obs=obs)
    adata.var_names = genes
    return adata


def _lifelines_design(adata: ad.AnnData, genes: bool) -> pd.DataFrame:
    """What a lifelines user fits: genes, continuous covariates, drop-first dummies."""
    parts = [adata.obs[BREAST_CONTINUOUS].astype(float)]
    parts.append(pd.get_dummies(adata.obs[BREAST_CATEGORICAL], drop_first=True).astype(float))
    if genes:
        parts.insert(0, adata.to_df().astype(float))
    return pd.concat(parts, axis=1)


def _fit_lifelines(design: pd.DataFrame, d, e, rows, penalizer: float, initial=None):
    from lifelines import CoxPHFitter

    frame = design.iloc[rows].assign(_time=d[rows], _event=e[rows])
    fitter = CoxPHFitter(penalizer=penalizer, l1_ratio=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitter.fit(frame, "_time", "_event", initial_point=initial)
    return fitter


def lifelines_tuned(design: pd.DataFrame, d, e, train, test, inner_seed: int, n_alphas=50):
    """lifelines' ridge Cox, penalizer tuned by the inner CV that SurvivalModel uses."""
    from lifelines.exceptions import ConvergenceError

    x = design.iloc[train]
    x = x.loc[:, x.std() > 0]  # a category absent from this training fold
    dt, et = d[train], e[train]
    grid = cox_penalty_grid(x.to_numpy(), dt, et, n_alphas=n_alphas)  # SurvivalModel's: 50, 1e-4
    folds = survival_folds(et, n_folds=5, seed=inner_seed)

    def fit_path(rows: np.ndarray, alphas: np.ndarray) -> np.ndarray:
        keep = x.columns[x.iloc[rows].std() > 0]
        sub = x[keep]
        out, initial = [], None
        for alpha in alphas:  # largest first: warm start from the previous fit
            try:
                fitter = _fit_lifelines(sub, dt, et, rows, alpha, initial)
            except ConvergenceError:  # scored as an infinite deviance
                out.append(np.full(len(sub), np.nan))
                initial = None
                continue
            initial = (fitter.params_ * fitter._norm_std).to_numpy()
            out.append(fitter.predict_log_partial_hazard(sub).to_numpy())
        return np.asarray(out)

    alpha, _ = tune_cox_penalty(fit_path, dt, et, grid, folds)
    fitter = _fit_lifelines(x, dt, et, np.arange(len(train)), alpha)
    risk = fitter.predict_log_partial_hazard(design.iloc[test][x.columns]).to_numpy()
    return alpha, risk


def breast_cancer_benchmark(args: argparse.Namespace) -> None:
    adata = breast_cancer_cohort()
    d = adata.obs["time"].to_numpy(float)
    e = adata.obs["event"].to_numpy(float)
    with_genes = _lifelines_design(adata, genes=True)
    clinical = _lifelines_design(adata, genes=False)
    setup = {"covariate_keys": BREAST_CONTINUOUS, "categorical_covariate_keys": BREAST_CATEGORICAL}
    variants = {
        "SurvivalModel (default), expression + clinical": ({**setup}, {}),
        "SurvivalModel (default), expression": ({}, {}),
        "SurvivalModel (cv_scoring='c_index'), expression + clinical": (
            {**setup},
            {"cv_scoring": "c_index"},
        ),
    }
    rows, seconds = [], {}
    lifelines_names = {
        "tuned": "lifelines CoxPHFitter (penalizer tuned), expression + clinical",
        "clinical": "lifelines CoxPHFitter (unpenalised), clinical",
    }
    for key, name in lifelines_names.items():
        start = time.time()
        for seed in args.seeds:
            # the outer folds and inner seeds of SurvivalModel.cross_validate
            for k, (tr, te) in enumerate(survival_folds(e, n_folds=args.n_folds, seed=seed)):
                if key == "tuned":
                    alpha, risk = lifelines_tuned(
                        with_genes, d, e, tr, te, seed * 1000 + k, n_alphas=args.n_alphas
                    )
                else:
                    alpha = 0.0
                    x = clinical.loc[:, clinical.iloc[tr].std() > 0]  # a category absent
                    fitter = _fit_lifelines(x, d, e, tr, 0.0)
                    risk = fitter.predict_log_partial_hazard(x.iloc[te]).to_numpy()
                c = concordance_harrell(d[te], e[te], risk)
                rows.append({"method": name, "seed": seed, "fold": k, "alpha": alpha, "c_index": c})
        seconds[name] = time.time() - start
        print(f"{name}: {seconds[name]:.0f} s", flush=True)

    for name, (setup_kwargs, model_kwargs) in variants.items():
        start = time.time()
        for seed in args.seeds:
            SurvivalModel.setup_anndata(adata, "time", "event", **setup_kwargs)
            model = SurvivalModel(adata, n_alphas=args.n_alphas, **model_kwargs)
            table = model.cross_validate(n_folds=args.n_folds, seed=seed, progress_bar=False)
            for k in range(args.n_folds):
                fold = table.loc[f"fold {k}"]
                rows.append(
                    {
                        "method": name,
                        "seed": seed,
                        "fold": k,
                        "alpha": fold["alpha"],
                        "c_index": fold["c_index_harrell"],
                    }
                )
        seconds[name] = time.time() - start
        print(f"{name}: {seconds[name]:.0f} s", flush=True)

    folds = pd.DataFrame(rows)
    folds.to_csv(args.out / "breast_cancer_folds.csv", index=False)
    order = list(variants) + list(lifelines_names.values())
    grouped = folds.groupby("method", sort=False)
    summary = pd.DataFrame(
        {
            "c_index_mean": grouped["c_index"].mean(),
            "c_index_sd": grouped["c_index"].std(ddof=1),
            "alpha_median": grouped["alpha"].median(),
            "seconds": pd.Series(seconds),
        }
    ).loc[order]
    per_seed = folds.pivot_table(index="method", columns="seed", values="c_index", aggfunc="mean")
    for seed in per_seed.columns:
        summary[f"c_index_seed{seed}"] = per_seed.loc[order, seed]
    summary.to_csv(args.out / "breast_cancer_summary.csv")

    ours = folds[folds["method"] == order[0]].set_index(["seed", "fold"])
    ref = folds[folds["method"] == lifelines_names["tuned"]].set_index(["seed", "fold"])
    diff = (ours["c_index"] - ref["c_index"]).to_numpy()
    n_folds = len(diff)
    print(
        f"\nload_breast_cancer: {adata.n_obs} patients, {int(e.sum())} events, {adata.n_vars} "
        f"genes + {', '.join(BREAST_CONTINUOUS + BREAST_CATEGORICAL)}; {args.n_folds} folds x "
        f"seeds {args.seeds} ({n_folds} held-out folds)\n"
    )
    print(summary.to_string(float_format=lambda v: f"{v:.3g}"))
    gap = diff.mean()
    print(
        f"\nSurvivalModel default - tuned lifelines: {gap:+.4f} "
        f"(sd over folds {diff.std(ddof=1):.4f}, model better in {(diff > 0).sum()}/{n_folds}); "
        f"acceptance (>= -0.01): {'met' if gap >= -0.01 else 'MISSED'}"
    )

    SurvivalModel.setup_anndata(adata, "time", "event", **setup)
    start = time.time()
    final = SurvivalModel(adata, n_alphas=args.n_alphas)
    final.train(enable_progress_bar=False, enable_model_summary=False)
    print(
        f"one default SurvivalModel on all {adata.n_obs} patients (inner CV + final fit): "
        f"{time.time() - start:.1f} s, alpha_ = {final.alpha_:.3g}"
    )

    plot_breast_cancer(folds, order, lifelines_names["tuned"], args.out / "breast_cancer.png")


def plot_breast_cancer(folds: pd.DataFrame, order: list[str], reference: str, path: Path) -> None:
    """Harrell's C of every held-out fold per method, and the penalties the two tunings chose."""
    ours = folds[folds["method"] == order[0]].set_index(["seed", "fold"])
    ref = folds[folds["method"] == reference].set_index(["seed", "fold"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    rng = np.random.default_rng(0)
    labels = [name.replace(" (", "\n(").replace(", ", "\n") for name in order]
    for i, name in enumerate(order):
        c = folds.loc[folds["method"] == name, "c_index"].to_numpy()
        axes[0].scatter(i + rng.uniform(-0.12, 0.12, len(c)), c, s=14, alpha=0.6)
        axes[0].errorbar(i + 0.3, c.mean(), yerr=c.std(ddof=1), fmt="o", color="k", capsize=3)
    axes[0].set_xticks(range(len(order)), labels, fontsize=7)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[0].set_ylabel("Harrell's C, held-out fold")
    axes[0].set_title(f"load_breast_cancer: {len(ref)} held-out folds (mean ± sd)")
    axes[1].scatter(ref["alpha"], ours.loc[ref.index, "alpha"], s=16)
    lims = [
        min(ref["alpha"].min(), ours["alpha"].min()),
        max(ref["alpha"].max(), ours["alpha"].max()),
    ]
    axes[1].plot(lims, lims, color="grey", lw=0.8)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("lifelines penalizer chosen by inner CV")
    axes[1].set_ylabel("SurvivalModel alpha_ chosen by inner CV")
    axes[1].set_title("penalty chosen in each outer fold")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
