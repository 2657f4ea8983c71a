"""Zero-shot batch integration, three protocols and several seeds: CancerGPT vs PCA, scVI, Harmony.

Two protocols are scored with scib-metrics by
:func:`cancergpt_scvi.benchmark.benchmark_integration` (label = malignant state,
``obs["cell_state"]``), each twice: batch = patient and batch = technology. PCA, Harmony and
scVI are computed on the query cells themselves, with that batch definition; CancerGPT embeds
the query cells zero-shot.

``new_patients``
    One pan-cancer atlas is simulated (:func:`~cancergpt_scvi.datasets.simulate_malignant_atlas`,
    all 14 tissues in the published corpus' proportions, ``--patients-per-tissue`` patients
    each, 10x 3' and Smart-seq2 patients). ``--holdout`` of the patients of every tissue
    (default 1/3) are held out; CancerGPT is pretrained on the cells of the others and embeds
    the cells of the held-out patients (same tissues, patients never seen in pretraining).
``new_tissue``
    CancerGPT is pretrained on every cell of that atlas that is not a brain tumour (no
    ``"Brain"`` tissue) and embeds the glioblastoma-like cells of other patients simulated by
    :func:`~cancergpt_scvi.datasets.simulate_glioblastoma` (four malignant states, half of
    the patients Smart-seq2, half 10x, same genes and programs): a tissue never seen.
``subtle_states``
    As ``new_patients`` on another atlas whose six malignant states are subtle: weak programs
    (mean log-fold 0.7) on 5% of the genes (100 of 2,000; default 1.6 on 40). Scored by label
    transfer only.

Label transfer (``new_patients`` and ``subtle_states``): a 15-nearest-neighbour vote
(scikit-learn) fitted on the pretraining cells labels the query cells' malignant states,
in the CancerGPT embedding and in the PCA of the pretraining cells (log-normalised, 50
components) with the query projected onto it; macro-F1 and accuracy.

The data are simulated once (``--data-seed``) and are the same for every seed. Each of
``--seeds`` seeds the pretraining (scvi-tools' global seed: initialisation, minibatches,
masking) and the baselines (scVI, Harmony, UMAP). Pretraining is the package's default recipe,
that of ``cancergpt-scvi demo`` (:func:`cancergpt_scvi.workflow.run_demo`):
``CancerGPTModel(atlas, preset="cpu-small")`` registered with batch, technology and tissue,
then ``model.train(max_epochs=6)`` with every other argument at the library's default
(oversampling; batch and technology registered as adversarial covariates, with the
adversary's weight at its default, 0); ``--epochs`` changes the budget only.

Prints the pretraining budget and each run's last-epoch losses (with the change from the
epoch before), the scores of every run and the mean ± sd over seeds of every scib-metrics
column, per protocol, batch definition and method, and the issue's acceptance checks. Writes to
``--out``: ``integration_results.csv`` (one row per protocol, batch definition, seed and
method, a column per metric), ``integration_summary.csv`` (mean, sd and number of seeds of
every metric), ``integration_summary.png`` (batch correction, bio conservation and total per
method, one panel per protocol x batch definition, error bars = sd over seeds),
``pretraining_history.csv`` (every logged curve of every pretraining run),
``integration_timings.csv``, ``label_transfer_results.csv`` (one row per protocol, seed and
method), ``cancergpt_embeddings_<protocol>.npz`` (the query and pretraining cells'
embeddings, for ``--reuse-embeddings``) and, for the first seed, scib-metrics' table and the
UMAPs of every method in ``<protocol>_<batch>/``.

Run from the repository root (about 20 minutes on a 2-core CPU, 40 with ``--ablation``; run it
alone)::

    python benchmarks/integration.py --out docs/_static/integration
    python benchmarks/integration.py --protocol new_tissue --seeds 0 --epochs 20 --out DIR
    python benchmarks/integration.py --smoke   # smallest setting (CI): under 90 s

``--ablation`` also pretrains, per protocol and seed, a model with the adversarial losses on
(``adversarial_weight=--ablation-weight``, default 0.03, same seeds; the library's default is
0, off) and scores it as ``CancerGPT (adversary on)``, with the issue's adversary check (on
against off, batch = technology); it doubles the pretraining time.

``--smoke`` runs every protocol at the smallest size (about 75 s on a 2-core CPU, most of it
numba compiling kBET's nearest neighbours once): an atlas of about 450 cells of 200 genes
(3 patients per tissue, one held out), a glioblastoma set of 200 cells from 4 patients,
1 pretraining epoch, 1 scVI epoch, 1 seed, batch = patient only (``--batches patient
technology`` adds the other, about 15 s), no UMAPs, the outputs written to a temporary folder
unless ``--out`` is given; options given with it still apply.
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from _common import (
    BATCHES,
    LABEL,
    PROTOCOLS,
    add_atlas_arguments,
    markdown_table,
    parse_smoke,
    pretrain,
    setup_atlas,
    simulate_protocols,
)
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score, f1_score
from sklearn.neighbors import KNeighborsClassifier

from cancergpt_scvi.benchmark import benchmark_integration
from cancergpt_scvi.model import CancerGPTModel

FULL = "CancerGPT"
ADVERSARY = "CancerGPT (adversary on)"
#: Protocols scored with scib-metrics; ``subtle_states`` is scored by label transfer only.
SCIB_PROTOCOLS = ("new_patients", "new_tissue")
#: Protocols whose query has the reference's states: scored by kNN label transfer too.
TRANSFER_PROTOCOLS = ("new_patients", "subtle_states")
#: Neighbours of the kNN label transfer.
TRANSFER_K = 15
AGGREGATES = ("Batch correction", "Bio conservation", "Total")
#: Defaults of ``--smoke``: the smallest setting, for CI (``out`` None: a temporary folder).
SMOKE = {
    "atlas_cells": 450,
    "patients_per_tissue": 3,
    "gbm_cells": 200,
    "gbm_patients": 4,
    "n_genes": 200,
    "epochs": 1,
    "scvi_epochs": 1,
    "seeds": [0],
    "batches": ["patient"],
    "umap": False,
    "out": None,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument(
        "--batches", nargs="+", choices=BATCHES, default=list(BATCHES), help="batch definitions"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_atlas_arguments(parser)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument(
        "--epochs", type=int, default=6, help="pretraining epochs (cancergpt-scvi demo: 6)"
    )
    parser.add_argument("--scvi-epochs", type=int, default=200)
    parser.add_argument(
        "--adversarial-weight",
        type=float,
        default=None,
        help="weight of the adversarial losses (default: the model's default)",
    )
    parser.add_argument("--clustering", default="kmeans", choices=["kmeans", "leiden"])
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also pretrain with the adversary on, at --ablation-weight",
    )
    parser.add_argument(
        "--ablation-weight",
        type=float,
        default=0.03,
        help="adversarial weight of the --ablation arm (default 0.03)",
    )
    parser.add_argument(
        "--umap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw the UMAPs of every method (first seed)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("integration_benchmark"))
    parser.add_argument(
        "--reuse-embeddings",
        action="store_true",
        help="skip pretraining: load the embeddings a previous run saved in --out",
    )
    args = parse_smoke(parser, SMOKE)
    if not 0 < args.holdout < 1:
        parser.error(f"--holdout must be between 0 and 1, got {args.holdout}")
    if args.patients_per_tissue < 2:
        parser.error("--patients-per-tissue must be at least 2 (one pretraining, one held out)")
    return args


def pretrain_model(ref: ad.AnnData, args, seed: int, adversary: bool = False) -> CancerGPTModel:
    """The default recipe (``cancergpt-scvi demo``); ``adversary``: at ``--ablation-weight``."""
    extra = {}
    if adversary:
        extra["adversarial_weight"] = args.ablation_weight
    elif args.adversarial_weight is not None:
        extra["adversarial_weight"] = args.adversarial_weight
    return pretrain(ref, seed, args.epochs, preset=args.preset, **extra)


def last_losses(model: CancerGPTModel) -> dict[str, tuple[float, float]]:
    """Training losses: ``{name: (last epoch, relative change from the epoch before)}``."""
    out = {}
    for key, frame in model.history.items():
        if "loss" not in key or "train" not in key or "step" in key:
            continue
        values = frame.iloc[:, 0].dropna().to_numpy(dtype=float)
        if len(values) == 0:
            continue
        change = (values[-1] - values[-2]) / abs(values[-2]) if len(values) > 1 else np.nan
        out[key] = (values[-1], change)
    return out


def history_frame(model: CancerGPTModel) -> pd.DataFrame:
    """All logged epoch curves of a model as columns, indexed by epoch."""
    return pd.concat(
        {key: frame.iloc[:, 0] for key, frame in model.history.items()}, axis=1
    ).rename_axis("epoch")


def embed_query(data, args, timings) -> tuple[dict, dict, list]:
    """Pretrain per protocol and seed; embed the query and the pretraining cells.

    Returns ``{protocol: {seed: {name: query embedding}}}``, the same of the pretraining
    cells (for label transfer) and the training histories.
    """
    names = [FULL, ADVERSARY] if args.ablation else [FULL]
    embeddings: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    references: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    histories = []
    for protocol, (ref, query) in data.items():
        cache = args.out / f"cancergpt_embeddings_{protocol}.npz"
        embeddings[protocol], references[protocol] = {}, {}
        if args.reuse_embeddings:
            stored = np.load(cache)
            for seed in args.seeds:
                embeddings[protocol][seed] = {n: stored[f"{n}|{seed}"] for n in names}
                references[protocol][seed] = {n: stored[f"{n}|{seed}|reference"] for n in names}
            print(f"{protocol}: reusing the CancerGPT embeddings in {cache}", flush=True)
            continue
        setup_atlas(ref)
        for seed in args.seeds:
            embeddings[protocol][seed], references[protocol][seed] = {}, {}
            for name in names:
                t0 = time.perf_counter()
                model = pretrain_model(ref, args, seed, adversary=name == ADVERSARY)
                seconds = time.perf_counter() - t0
                timings[f"pretrain {protocol} {name} seed {seed}"] = seconds
                t0 = time.perf_counter()
                z = model.get_latent_representation(query, progress_bar=False)
                timings[f"embed {protocol} {name} seed {seed}"] = time.perf_counter() - t0
                embeddings[protocol][seed][name] = z
                references[protocol][seed][name] = model.get_latent_representation(
                    progress_bar=False
                )
                losses = last_losses(model)
                text = ", ".join(
                    f"{k} {v:.4f} ({'n/a' if np.isnan(c) else f'{c:+.1%}'})"
                    for k, (v, c) in losses.items()
                )
                print(
                    f"{protocol} seed {seed} {name}: pretrained {args.epochs} epochs on "
                    f"{ref.n_obs} cells in {seconds:.0f} s; last epoch (change from the one "
                    f"before): {text}",
                    flush=True,
                )
                hist = history_frame(model).reset_index()
                hist.insert(0, "model", name)
                hist.insert(0, "seed", seed)
                hist.insert(0, "protocol", protocol)
                histories.append(hist)
        stored = {}
        for seed in embeddings[protocol]:
            for n in embeddings[protocol][seed]:
                stored[f"{n}|{seed}"] = embeddings[protocol][seed][n]
                stored[f"{n}|{seed}|reference"] = references[protocol][seed][n]
        np.savez(cache, **stored)
    return embeddings, references, histories


def reference_pca(ref: ad.AnnData, query: ad.AnnData, n_comps: int = 50):
    """PCA of the pretraining cells' log-normalised expression, the query projected onto it."""

    def lognorm(adata):
        x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
        total = x.sum(axis=1, keepdims=True)
        return np.log1p(x / np.where(total > 0, total, 1.0) * 1e4)

    pca = PCA(n_components=min(n_comps, ref.n_obs - 1, ref.n_vars - 1), random_state=0)
    return pca.fit_transform(lognorm(ref)), pca.transform(lognorm(query))


def label_transfer(data, embeddings, references, args) -> pd.DataFrame:
    """kNN label transfer of the malignant state, pretraining cells -> query cells.

    A ``TRANSFER_K``-nearest-neighbour vote (scikit-learn) fitted on the pretraining cells'
    embedding labels the query cells in the same embedding; CancerGPT's embeddings against
    the pretraining cells' PCA with the query projected onto it. One row per protocol, seed
    and method: macro-F1 and accuracy.
    """
    rows = []
    for protocol in TRANSFER_PROTOCOLS:
        if protocol not in data:
            continue
        ref, query = data[protocol]
        y_ref, y_query = ref.obs[LABEL].to_numpy(), query.obs[LABEL].to_numpy()
        pca_ref, pca_query = reference_pca(ref, query)
        for seed in args.seeds:
            methods = {"PCA (reference)": (pca_ref, pca_query)}
            for name, z in embeddings[protocol][seed].items():
                methods[name] = (references[protocol][seed][name], z)
            for name, (z_ref, z_query) in methods.items():
                knn = KNeighborsClassifier(n_neighbors=TRANSFER_K).fit(z_ref, y_ref)
                pred = knn.predict(z_query)
                rows.append(
                    {
                        "protocol": protocol,
                        "seed": seed,
                        "method": name,
                        "macro-F1": f1_score(y_query, pred, average="macro"),
                        "accuracy": accuracy_score(y_query, pred),
                    }
                )
    return pd.DataFrame(rows)


def score(data, embeddings, args, timings) -> pd.DataFrame:
    """scib-metrics per protocol, batch definition and seed: one row per method."""
    rows = []
    for protocol, (_, query) in data.items():
        if protocol not in SCIB_PROTOCOLS:
            continue
        for batch in args.batches:
            for i, seed in enumerate(args.seeds):
                work = query.copy()
                keys = {}
                for name, z in embeddings[protocol][seed].items():
                    keys[name] = f"X_{name}"
                    work.obsm[keys[name]] = z
                # scib-metrics' Benchmarker runs gc.collect() after every metric, which scans
                # every live object of this process (torch, jax, the models): half a second
                # a call. Frozen objects are not scanned (nor collected): 7x faster scoring.
                gc.collect()
                gc.freeze()
                t0 = time.perf_counter()
                tidy = benchmark_integration(
                    work,
                    batch_key=batch,
                    label_key=LABEL,
                    embeddings=keys,
                    baselines=("pca", "scvi", "harmony"),
                    clustering=args.clustering,
                    scvi_max_epochs=args.scvi_epochs,
                    # scib-metrics' table and the UMAPs: first seed only
                    output_dir=args.out / f"{protocol}_{batch}" if i == 0 else None,
                    umap=args.umap,
                    seed=seed,
                    progress_bar=False,
                )
                seconds = time.perf_counter() - t0
                timings[f"score {protocol} batch={batch} seed {seed}"] = seconds
                print(
                    f"{protocol} batch={batch} seed {seed}: scored in {seconds:.0f} s", flush=True
                )
                order = list(dict.fromkeys(tidy["metric"]))
                wide = tidy.pivot(index="method", columns="metric", values="value")
                wide = wide.loc[list(dict.fromkeys(tidy["method"])), order].reset_index()
                wide.insert(0, "seed", seed)
                wide.insert(0, "batch", batch)
                wide.insert(0, "protocol", protocol)
                rows.append(wide)
    results = pd.concat(rows, ignore_index=True)
    results.columns.name = None
    return results


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd (ddof=1) and number of seeds of every metric, per protocol x batch x method."""
    metrics = [c for c in results.columns if c not in ("protocol", "batch", "seed", "method")]
    keys = ["protocol", "batch", "method"]
    grouped = results.groupby(keys, sort=False)[metrics]
    summary = grouped.agg(["mean", "std", "count"])
    summary.columns = [
        f"{m} {stat.replace('std', 'sd').replace('count', 'n')}" for m, stat in summary.columns
    ]
    return summary.reset_index()


def pm(summary: pd.DataFrame, metrics) -> pd.DataFrame:
    """``mean ± sd`` strings of ``metrics``, indexed by protocol, batch and method."""
    table = summary.set_index(["protocol", "batch", "method"])
    out = pd.DataFrame(index=table.index)
    for m in metrics:
        sd = table[f"{m} sd"].fillna(0.0)
        out[m] = [f"{a:.3f} ± {b:.3f}" for a, b in zip(table[f"{m} mean"], sd, strict=True)]
    return out


def plot_summary(summary: pd.DataFrame, path: Path) -> None:
    """Aggregate scores per method, one panel per protocol x batch definition (error bar: sd)."""
    protocols = list(dict.fromkeys(summary["protocol"]))
    batches = list(dict.fromkeys(summary["batch"]))
    fig, axes = plt.subplots(
        len(protocols),
        len(batches),
        figsize=(5.2 * len(batches), 3.6 * len(protocols)),
        squeeze=False,
        sharey=True,
    )
    width = 0.8 / len(AGGREGATES)
    for r, protocol in enumerate(protocols):
        for c, batch in enumerate(batches):
            ax = axes[r, c]
            sub = summary[(summary["protocol"] == protocol) & (summary["batch"] == batch)]
            x = np.arange(len(sub))
            for k, agg in enumerate(AGGREGATES):
                ax.bar(
                    x + (k - (len(AGGREGATES) - 1) / 2) * width,
                    sub[f"{agg} mean"],
                    width,
                    yerr=sub[f"{agg} sd"].fillna(0.0),
                    capsize=2,
                    label=agg,
                )
            ax.set_xticks(x, [m.replace(" (", "\n(") for m in sub["method"]], fontsize=8)
            n = int(sub["Total n"].max()) if len(sub) else 0
            ax.set_title(f"{protocol}, batch = {batch} ({n} seed{'s' * (n != 1)})", fontsize=10)
            ax.set_ylim(0, 1)
            ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("score (scib-metrics, unscaled)")
    axes[0, -1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def check(results, protocol, batch, metric, other) -> str | None:
    """``CancerGPT's metric >= other's``: met/missed, margin of the means, per-seed margins."""
    sub = results[(results["protocol"] == protocol) & (results["batch"] == batch)]
    if sub.empty:
        return None
    ours = sub[sub["method"] == FULL].set_index("seed")[metric]
    theirs = sub[sub["method"] == other].set_index("seed")[metric]
    margins = ours - theirs
    gap = ours.mean() - theirs.mean()
    per_seed = ", ".join(f"{m:+.3f}" for m in margins)
    return (
        f"{protocol}, batch = {batch}: CancerGPT {metric} >= {other}'s: "
        f"{'MET' if gap >= 0 else 'MISSED'} ({ours.mean():.3f} vs {theirs.mean():.3f}, "
        f"{gap:+.3f}; per seed {per_seed}; met in {(margins >= 0).sum()}/{len(margins)} seeds)"
    )


def adversary_checks(results: pd.DataFrame) -> list[str]:
    """Adversary on against off (``--ablation``), batch = technology, same seeds: batch
    correction higher by at least 0.03 with bio conservation within 0.02."""
    lines = []
    for protocol in SCIB_PROTOCOLS:
        sub = results[(results["protocol"] == protocol) & (results["batch"] == "technology")]
        on = sub[sub["method"] == ADVERSARY].set_index("seed")
        off = sub[sub["method"] == FULL].set_index("seed")
        if on.empty or off.empty:
            continue
        d_batch = (on["Batch correction"] - off["Batch correction"]).mean()
        d_bio = (on["Bio conservation"] - off["Bio conservation"]).mean()
        met = d_batch >= 0.03 and d_bio >= -0.02
        lines.append(
            f"{protocol}, batch = technology: adversary on vs off: batch correction "
            f"{d_batch:+.3f} (target >= +0.03), bio conservation {d_bio:+.3f} (target >= "
            f"-0.02): {'MET' if met else 'MISSED'}"
        )
    return lines


def transfer_checks(transfer: pd.DataFrame) -> list[str]:
    """CancerGPT's kNN label-transfer macro-F1 >= that of the reference's PCA."""
    lines = []
    for protocol in TRANSFER_PROTOCOLS:
        sub = transfer[transfer["protocol"] == protocol] if len(transfer) else transfer
        if len(sub) == 0:
            continue
        ours = sub[sub["method"] == FULL].set_index("seed")["macro-F1"]
        pca = sub[sub["method"] == "PCA (reference)"].set_index("seed")["macro-F1"]
        gap = ours.mean() - pca.mean()
        lines.append(
            f"{protocol}: kNN label transfer macro-F1, CancerGPT >= reference PCA: "
            f"{'MET' if gap >= 0 else 'MISSED'} ({ours.mean():.3f} vs {pca.mean():.3f}, "
            f"{gap:+.3f}; met in {((ours - pca) >= 0).sum()}/{len(ours)} seeds)"
        )
    return lines


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("cancergpt_scvi.benchmark").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    data = simulate_protocols(args)
    print(
        f"pretraining budget: CancerGPTModel(preset={args.preset!r}), "
        f"model.train(max_epochs={args.epochs}) with the library's other defaults "
        f"(cancergpt-scvi demo: 6 epochs), per protocol and seed; seeds {args.seeds}; "
        f"data seed {args.data_seed}; scVI {args.scvi_epochs} epochs",
        flush=True,
    )
    embeddings, references, histories = embed_query(data, args, timings)
    if histories:
        pd.concat(histories, ignore_index=True).to_csv(
            args.out / "pretraining_history.csv", index=False
        )
    transfer = label_transfer(data, embeddings, references, args)
    if not transfer.empty:
        transfer.to_csv(args.out / "label_transfer_results.csv", index=False)
    results = score(data, embeddings, args, timings) if set(data) & set(SCIB_PROTOCOLS) else None
    timings["total"] = time.perf_counter() - start
    if not transfer.empty:
        stats = transfer.groupby(["protocol", "method"], sort=False)[["macro-F1", "accuracy"]]
        table = stats.agg(["mean", "std"])
        text = pd.DataFrame(index=table.index)
        for m in ("macro-F1", "accuracy"):
            sd = table[(m, "std")].fillna(0.0)
            text[m] = [f"{a:.3f} ± {b:.3f}" for a, b in zip(table[(m, "mean")], sd, strict=True)]
        print(f"\nkNN label transfer (k={TRANSFER_K}), pretraining -> query cells, mean ± sd:\n")
        print(markdown_table(text))
    if results is None:
        print("\nAcceptance checks (means over seeds):")
        for line in transfer_checks(transfer):
            print("- " + line)
        pd.Series(timings, name="seconds").to_csv(args.out / "integration_timings.csv")
        print(f"total {timings['total']:.0f} s; results in {args.out}")
        return
    results.to_csv(args.out / "integration_results.csv", index=False)
    summary = summarise(results)
    summary.to_csv(args.out / "integration_summary.csv", index=False)
    plot_summary(summary, args.out / "integration_summary.png")

    metrics = [c for c in results.columns if c not in ("protocol", "batch", "seed", "method")]
    print("\nPer seed (every scib-metrics column):\n")
    print(markdown_table(results.set_index(["protocol", "batch", "seed", "method"])))
    print(f"\nMean ± sd over seeds {args.seeds} (every scib-metrics column):\n")
    print(
        markdown_table(pm(summary, [m for m in metrics if m not in AGGREGATES] + list(AGGREGATES)))
    )
    print(f"\nSummary, mean ± sd over seeds {args.seeds}:\n")
    print(markdown_table(pm(summary, AGGREGATES)))
    print("\nAcceptance checks (means over seeds):")
    for line in (
        check(results, "new_patients", "patient", "Total", "scVI"),
        check(results, "new_patients", "patient", "Bio conservation", "PCA"),
        check(results, "new_tissue", "patient", "Total", "Harmony"),
        check(results, "new_tissue", "technology", "Total", "Harmony"),
        *adversary_checks(results),
        *transfer_checks(transfer),
    ):
        if line is not None:
            print("- " + line)
    print()
    print(pd.Series(timings).round(0).to_string())
    pd.Series(timings, name="seconds").to_csv(args.out / "integration_timings.csv")
    print(f"total {timings['total']:.0f} s; results and figures in {args.out}")


if __name__ == "__main__":
    main()
