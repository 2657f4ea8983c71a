"""Zero-shot batch integration of simulated glioblastoma: CancerGPT vs PCA, scVI and Harmony.

Pretrains CancerGPT (CPU recipe) on a simulated pan-cancer atlas, twice: with the
domain-adversarial losses and tissue/technology oversampling, and without both. Embeds a
simulated glioblastoma-like data set of other patients (four malignant states, Smart-seq2 and
10x patients, patient copy-number blocks) zero-shot and scores the embeddings with
scib-metrics next to PCA, scVI and Harmony computed on the glioblastoma data itself.

Prints the results table (markdown) and the targets; writes ``integration_results.csv``,
``integration_table.png`` and ``integration_umap.png`` to ``--out``.

Run from the repository root::

    python benchmarks/integration.py --out docs/_static/integration
    python benchmarks/integration.py --smoke   # smallest setting (CI): under a minute

``--smoke`` runs every step at the smallest size: an atlas of 300 cells and a glioblastoma set of
200 cells from 4 patients, 200 genes, 1 pretraining epoch, 1 scVI epoch, the outputs written to
a temporary folder unless ``--out`` is given; options given with it still apply.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scvi
import torch

from cancergpt_scvi.benchmark import benchmark_integration
from cancergpt_scvi.datasets import simulate_glioblastoma, simulate_malignant_atlas
from cancergpt_scvi.model import CancerGPTModel

FULL = "CancerGPT"
ABLATED = "CancerGPT (no adv., no oversampling)"
#: Defaults of ``--smoke``: the smallest setting, for CI (``out`` None: a temporary folder).
SMOKE = {
    "atlas_cells": 300,
    "gbm_cells": 200,
    "gbm_patients": 4,
    "n_genes": 200,
    "epochs": 1,
    "scvi_epochs": 1,
    "out": None,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atlas-cells", type=int, default=3000)
    parser.add_argument("--gbm-cells", type=int, default=2000)
    parser.add_argument("--gbm-patients", type=int, default=12)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--adversarial-weight", type=float, default=0.02)
    parser.add_argument("--adversarial-schedule", default="dann")
    parser.add_argument("--scvi-epochs", type=int, default=200)
    parser.add_argument("--clustering", default="kmeans", choices=["kmeans", "leiden"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("integration_benchmark"))
    parser.add_argument(
        "--reuse-embeddings",
        action="store_true",
        help="skip pretraining: load the embeddings a previous run saved in --out",
    )
    parser.add_argument(
        "--module-kwargs",
        default="",
        help="overrides of the preset, e.g. 'mask_ratio=0.25,dropout=0.0'",
    )
    parser.add_argument("--smoke", action="store_true", help="smallest setting (CI)")
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()
        if args.out is None:  # removed at exit (the object is kept with the arguments)
            args.scratch = tempfile.TemporaryDirectory(prefix="integration_smoke_")
            args.out = Path(args.scratch.name)
    return args


def _parse_kwargs(text: str) -> dict[str, object]:
    kwargs: dict[str, object] = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        for cast in (int, float):
            try:
                kwargs[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            kwargs[key] = value
    return kwargs


def pretrain(atlas, args, adversarial: bool) -> tuple[CancerGPTModel, float]:
    """Pretrain CancerGPT on the atlas; ``adversarial=False`` also switches off oversampling."""
    scvi.settings.seed = args.seed
    start = time.perf_counter()
    model = CancerGPTModel(atlas, preset=args.preset, **_parse_kwargs(args.module_kwargs))
    model.train(
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        oversample=adversarial,
        adversarial_weight=args.adversarial_weight if adversarial else 0.0,
        adversarial_schedule=args.adversarial_schedule,
        enable_progress_bar=False,
    )
    return model, time.perf_counter() - start


def markdown_table(wide: pd.DataFrame) -> str:
    """Methods x metrics as a markdown table (3 decimals), for the docs page."""
    lines = [
        "| Method | " + " | ".join(wide.columns) + " |",
        "|---|" + "---:|" * len(wide.columns),
    ]
    for method, row in wide.iterrows():
        lines.append(f"| {method} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("cancergpt_scvi.benchmark").setLevel(logging.INFO)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    atlas = simulate_malignant_atlas(
        n_cells=args.atlas_cells, n_genes=args.n_genes, seed=args.seed, patient_prefix="P"
    )
    gbm = simulate_glioblastoma(
        n_cells=args.gbm_cells,
        n_patients=args.gbm_patients,
        n_genes=args.n_genes,
        seed=args.seed + 1,
        patient_prefix="GBM",
    )
    assert not set(atlas.obs["patient"]) & set(gbm.obs["patient"]), "evaluation patients leaked"
    print(
        f"atlas: {atlas.n_obs} cells, {atlas.obs['patient'].nunique()} patients, "
        f"{atlas.obs['tissue'].nunique()} tissues; glioblastoma: {gbm.n_obs} cells, "
        f"{gbm.obs['patient'].nunique()} patients "
        f"({gbm.obs.groupby('technology', observed=True)['patient'].nunique().to_dict()})",
        flush=True,
    )

    CancerGPTModel.setup_anndata(
        atlas, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "cancergpt_embeddings.npz"
    embeddings = {FULL: "X_cancergpt", ABLATED: "X_cancergpt_ablated"}
    if args.reuse_embeddings:
        stored = np.load(cache)
        for key in embeddings.values():
            gbm.obsm[key] = stored[key]
        print(f"reusing the CancerGPT embeddings in {cache}", flush=True)
    else:
        for name, adversarial in ((FULL, True), (ABLATED, False)):
            model, seconds = pretrain(atlas, args, adversarial)
            timings[f"pretrain {name}"] = seconds
            t0 = time.perf_counter()
            gbm.obsm[embeddings[name]] = model.get_latent_representation(gbm, progress_bar=False)
            timings[f"embed {name}"] = time.perf_counter() - t0
            print(f"{name}: pretrained in {seconds:.0f} s", flush=True)
        np.savez(cache, **{key: gbm.obsm[key] for key in embeddings.values()})

    t0 = time.perf_counter()
    results = benchmark_integration(
        gbm,
        batch_key="batch",
        label_key="cell_state",
        embeddings=embeddings,
        baselines=("pca", "scvi", "harmony"),
        clustering=args.clustering,
        scvi_max_epochs=args.scvi_epochs,
        output_dir=args.out,
        seed=args.seed,
        progress_bar=False,
    )
    timings["baselines + metrics + figures"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start

    wide = results.pivot(index="method", columns="metric", values="value")
    order = results.drop_duplicates("metric")["metric"].tolist()
    wide = wide.loc[list(dict.fromkeys(results["method"])), order]
    wide = wide.sort_values("Total", ascending=False)
    print()
    print(markdown_table(wide))
    print()
    batch_gain = wide.loc[FULL, "Batch correction"] - wide.loc[ABLATED, "Batch correction"]
    total_gap = wide.loc[FULL, "Total"] - wide.loc["PCA", "Total"]
    print(
        f"target 1, adversarial training improves batch correction: "
        f"{'MET' if batch_gain > 0 else 'MISSED'} ({batch_gain:+.3f})"
    )
    print(
        f"target 2, CancerGPT total >= PCA total: "
        f"{'MET' if total_gap >= 0 else 'MISSED'} ({total_gap:+.3f})"
    )
    print()
    print(pd.Series(timings).round(0).to_string())
    print(f"figures and results in {args.out}")
    pd.Series(timings, name="seconds").to_csv(args.out / "integration_timings.csv")


if __name__ == "__main__":
    main()
