"""Drug response of unseen cell lines and unseen drugs: DrugResponseModel on a simulated screen.

Simulates a pharmacogenomic screen (:func:`cancergpt_scvi.datasets.simulate_drug_response`: bulk
cell-line profiles from the simulator's tissues and malignant-state programs, real drug SMILES
and analogues, responses = potency + drug-specific sensitivity to the state programs +
drug-by-tissue effect + noise), and cross-validates
:class:`cancergpt_scvi.drug_response.DrugResponseModel`
with held-out cell lines (grouped K-fold, stratified by tissue) and held-out drugs (grouped
K-fold), on three cell-line representations:

* CancerGPT embeddings of the cell lines' bulk profiles (a small CancerGPT model pretrained here
  on a simulated single-cell atlas with the same gene programs, then :func:`embed_bulk` with
  each profile's most expressed genes);
* PCA of log expression;
* the top-variance genes (log expression).

Next to them on the same held-out pairs: the drug-mean predictor (held-out cell lines), the
cell-line-mean predictor (held-out drugs), the Morgan-fingerprint drug branch, and the true
generating function. Prints the table (mean over folds) and the acceptance check; writes
``drug_response_results.csv`` and ``drug_response.png`` (predicted vs observed and per-drug
Pearson of the model on PCA, held-out cell lines) to ``--out``.

``--scale`` instead times training on 250,000 pairs (1,000 cell lines x 250 drugs) and prints
pairs/s and peak memory.

Run from the repository root::

    python benchmarks/drug_response.py --out docs/_static/drug_response
    python benchmarks/drug_response.py --scale
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch

from cancergpt_scvi.benchmark import cross_validate_drug_response, plot_drug_response
from cancergpt_scvi.bulk import embed_bulk
from cancergpt_scvi.datasets import simulate_drug_response, simulate_malignant_atlas
from cancergpt_scvi.drug_response import DrugResponseModel
from cancergpt_scvi.model import CancerGPTModel

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cell-lines", type=int, default=200)
    parser.add_argument("--n-drugs", type=int, default=24)
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--n-pcs", type=int, default=32)
    parser.add_argument("--n-top-genes", type=int, default=500)
    parser.add_argument("--no-cancergpt", action="store_true", help="skip CancerGPT embeddings")
    parser.add_argument("--atlas-cells", type=int, default=3000)
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--scale", action="store_true", help="time 1,000 x 250 pairs instead")
    parser.add_argument("--out", type=Path, default=Path("drug_response_benchmark"))
    return parser.parse_args()


def cancergpt_embedding(args: argparse.Namespace, cell_lines) -> np.ndarray:
    """Pretrain a small CancerGPT on a simulated atlas (same programs), embed the cell lines."""
    atlas = simulate_malignant_atlas(n_cells=args.atlas_cells, n_genes=args.n_genes, seed=1)
    CancerGPTModel.setup_anndata(
        atlas, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    model = CancerGPTModel(atlas, preset="cpu-small")
    model.train(max_epochs=args.pretrain_epochs, batch_size=64, **QUIET)
    # each profile's most expressed genes: on these cell lines the default "hvg" gene set
    # carried little of the state programs (see docs/drug_response.md)
    return embed_bulk(
        model, cell_lines, kind="counts", layer="counts", genes="top_expressed", progress_bar=False
    )


def accuracy(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    sim = simulate_drug_response(
        n_cell_lines=args.n_cell_lines, n_drugs=args.n_drugs, n_genes=args.n_genes, seed=args.seed
    )
    adata = sim.adata
    adata.obsm["X_pca"] = sc.pp.pca(adata.X, n_comps=args.n_pcs)
    top = np.argsort(-adata.X.var(0))[: args.n_top_genes]
    adata.obsm["X_top_genes"] = adata.X[:, top]
    representations = {
        f"PCA ({args.n_pcs})": "X_pca",
        f"top-variance genes ({args.n_top_genes})": "X_top_genes",
    }
    t_embed = 0.0
    if not args.no_cancergpt:
        start = time.time()
        adata.obsm["X_cancergpt"] = cancergpt_embedding(args, adata)
        t_embed = time.time() - start
        representations = {"CancerGPT": "X_cancergpt", **representations}

    train_kwargs = {"max_epochs": args.max_epochs, **QUIET}
    tables, predictions_pca = [], None
    start = time.time()
    for holdout in ("cell_lines", "drugs"):
        runs = [(name, key, {}) for name, key in representations.items()]
        runs.append(
            (f"PCA ({args.n_pcs}), fingerprint", "X_pca", {"drug_representation": "fingerprint"})
        )
        for i, (name, key, model_kwargs) in enumerate(runs):
            DrugResponseModel.setup_anndata(
                adata,
                responses=sim.responses,
                smiles=sim.smiles,
                embedding_key=key,
                tissue_key="tissue",
            )
            metrics, predictions = cross_validate_drug_response(
                adata,
                holdout,
                n_folds=args.n_folds,
                seed=args.seed,
                name=name,
                model_kwargs=model_kwargs,
                train_kwargs=train_kwargs,
                oracle=sim.expected_response,
            )
            if i > 0:  # baselines are the same for every representation
                metrics = metrics[metrics["method"] == name]
            tables.append(metrics.assign(holdout=holdout))
            if holdout == "cell_lines" and key == "X_pca" and not model_kwargs:
                predictions_pca = predictions
            print(f"  done: {holdout:10s} {name}  ({time.time() - start:.0f} s)", flush=True)
    t_cv = time.time() - start

    results = pd.concat(tables, ignore_index=True)
    results.to_csv(args.out / "drug_response_results.csv", index=False)
    columns = ["pearson", "spearman", "rmse", "per_drug_pearson_mean", "per_drug_pearson_median"]
    summary = results.groupby(["holdout", "method"], sort=False)[columns].mean()
    fig = plot_drug_response(predictions_pca, method=f"PCA ({args.n_pcs})")
    fig.savefig(args.out / "drug_response.png", dpi=120)

    print(
        f"\nscreen: {adata.n_obs} cell lines x {len(sim.smiles)} drugs, "
        f"{len(sim.responses)} pairs, {adata.n_vars} genes; {args.n_folds}-fold CV, "
        f"{args.max_epochs} epochs; time: CancerGPT pretrain+embed {t_embed:.0f} s, "
        f"CV {t_cv:.0f} s\n"
    )
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    cl = summary.loc["cell_lines"]
    truth = cl.loc["true function", "per_drug_pearson_mean"]
    print("\nacceptance (held-out cell lines):")
    for name in representations:
        ratio = cl.loc[name, "per_drug_pearson_mean"] / truth
        beats = cl.loc[name, "pearson"] > cl.loc["drug mean", "pearson"]
        print(
            f"  {name:32s} per-drug Pearson / true function = {ratio:.2f} (>= 0.8: "
            f"{ratio >= 0.8}); global Pearson above drug mean: {beats}"
        )


def scale(args: argparse.Namespace) -> None:
    """Train on 1,000 cell lines x 250 drugs: pairs/s and peak memory."""
    sim = simulate_drug_response(
        n_cell_lines=1000, n_drugs=250, n_genes=args.n_genes, missing_fraction=0.0, seed=1
    )
    adata = sim.adata
    adata.obsm["X_pca"] = sc.pp.pca(adata.X, n_comps=args.n_pcs)
    DrugResponseModel.setup_anndata(
        adata, responses=sim.responses, smiles=sim.smiles, embedding_key="X_pca"
    )
    for representation in ("graph", "fingerprint"):
        model = DrugResponseModel(adata, drug_representation=representation)
        start = time.time()
        model.train(max_epochs=1, batch_size=1024, train_size=1.0, **QUIET)
        t_train = time.time() - start
        n_train = len(model.train_indices)
        start = time.time()
        predictions = model.predict(batch_size=4096)
        t_predict = time.time() - start
        print(
            f"{representation:11s}: {n_train} training pairs, 1 epoch in {t_train:.0f} s "
            f"= {n_train / t_train:,.0f} pairs/s; predict {len(predictions)} pairs "
            f"{len(predictions) / t_predict:,.0f} pairs/s"
        )
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory: {peak_gib:.2f} GiB")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    scvi.settings.verbosity = logging.WARNING
    for message in (".*LeafSpec.*", ".*smaller than the logging interval.*"):
        warnings.filterwarnings("ignore", message=message)
    if args.scale:
        scale(args)
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
