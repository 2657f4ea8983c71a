"""Parts of the pretraining recipe, one at a time, on the protocols of the integration benchmark.

Pretrains ``CancerGPTModel(preset="cpu-small")`` on the pretraining cells of each
``--protocol`` of ``benchmarks/integration.py`` (default ``new_patients``: same simulated
atlas, same held-out third of every tissue's patients; ``subtle_states``; ``new_tissue``: the
atlas without brain tumours, query = glioblastoma-like cells), once per variant and seed, and
scores the query cells' zero-shot embedding:

- ``kNN macro-F1``: a 15-nearest-neighbour vote fitted on the pretraining cells' embedding
  labels the query cells' malignant states (scikit-learn); ``tissue kNN macro-F1``: the same
  vote for their tissue (every tissue has pretraining and new patients); both left empty for
  ``new_tissue``, whose states and tissue the pretraining cells do not have;
- scib-metrics' batch correction, bio conservation and total on the query cells with
  batch = patient and batch = technology
  (:func:`cancergpt_scvi.benchmark.benchmark_integration`, no baselines: those are the
  integration benchmark's).

Variants (``--variants``, any of :data:`VARIANTS`) change one part of the recipe from the
library's defaults: the starting gene embeddings (``gene_embedding_init``; ``start-*``: PCA
starts other than the library's, centred on all cells and / or with unit-sd columns, set by
this script after the model is built), the learning rate, the adversarial weight, the epochs
(0: the initialised model, untrained), the token genes (a fixed set of highly variable genes
instead of each cell's expressed genes).

First (``--no-token-ceilings`` to skip) prints what each token choice leaves to read:
the kNN macro-F1 of PCA on the bins of all genes, of each cell's 127 most expressed genes
(the genes it is embedded with) and of 127 of its expressed genes drawn at random (what
pretraining reads; not for ``new_tissue``). Then one line per run and the mean ± sd over
seeds per protocol and variant; writes ``token_ceilings_<protocol>.csv``,
``recipe_results.csv``, ``recipe_summary.csv`` and ``recipe_summary.png`` (state kNN, bio
conservation and totals per variant, one panel per protocol) to ``--out``.

Run from the repository root (about 100 s per variant and seed on a 2-core CPU)::

    python benchmarks/pretraining_recipe.py --variants default random-init random-init-lr1e-3
    python benchmarks/pretraining_recipe.py --protocol new_tissue subtle_states new_patients \
        --variants default start-gene-identity --no-token-ceilings --out DIR
    python benchmarks/pretraining_recipe.py --smoke
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scvi
import torch
from _common import (
    LABEL,
    PROTOCOLS,
    add_atlas_arguments,
    parse_smoke,
    setup_atlas,
    simulate_protocols,
)
from sklearn.decomposition import PCA
from sklearn.metrics import f1_score
from sklearn.neighbors import KNeighborsClassifier

from cancergpt_scvi.benchmark import benchmark_integration
from cancergpt_scvi.data import bin_expression, cell_ranger_hvg, pca_gene_loadings
from cancergpt_scvi.model import CancerGPTModel

#: ``name: (CancerGPTModel arguments, train arguments)``; ``hvg`` in the model arguments picks
#: that many highly variable genes (cell_ranger flavour, batch-aware) as fixed tokens.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "untrained": ({}, {"max_epochs": 0}),
    "adversary-0": ({}, {"adversarial_weight": 0.0}),
    "adversary-0.003": ({}, {"adversarial_weight": 0.003}),
    "adversary-0.03": ({}, {"adversarial_weight": 0.03}),
    "lr1e-3": ({}, {"lr": 1e-3}),
    "20-epochs": ({}, {"max_epochs": 20}),
    "random-init": ({"gene_embedding_init": "random"}, {}),
    "random-init-lr1e-3": ({"gene_embedding_init": "random"}, {"lr": 1e-3}),
    "random-init-untrained": ({"gene_embedding_init": "random"}, {"max_epochs": 0}),
    "fixed-127-hvg": ({"hvg": 127, "gene_selection": "fixed"}, {}),
    # the starting gene embeddings other than the library's (set here, after the model is
    # built): loadings of the PCA centred on all cells instead of within batch x technology,
    # and every column scaled to unit sd instead of weighted by its singular value
    "start-not-centred": ({"start": "not-centred"}, {}),
    "start-unit-columns": ({"start": "unit-columns"}, {}),
    "start-previous": ({"start": "previous"}, {}),
    # the library's loadings mixed with a random part (a quarter of the variance: sqrt(0.75) x
    # loadings + sqrt(0.25) x normal draws), so that a gene that never varies in the
    # pretraining cells (a program of a tissue it lacks) still has an embedding of its own
    "start-gene-identity": ({"start": "gene-identity"}, {}),
}
#: ``start`` variants: ``(centred within batch x technology, columns weighted by singular value,
#: share of the variance from random draws)``
STARTS = {
    "not-centred": (False, True, 0.0),
    "unit-columns": (True, False, 0.0),
    "previous": (False, False, 0.0),
    "gene-identity": (True, True, 0.25),
}
SMOKE = {
    "atlas_cells": 450,
    "patients_per_tissue": 3,
    "gbm_cells": 200,
    "gbm_patients": 4,
    "n_genes": 200,
    "epochs": 1,
    "seeds": [0],
    "variants": ["default", "untrained"],
    "out": None,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["default"])
    parser.add_argument(
        "--protocol",
        nargs="+",
        choices=PROTOCOLS,
        default=["new_patients"],
        help="protocols of benchmarks/integration.py to score on (default: new_patients)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_atlas_arguments(parser)
    parser.add_argument("--epochs", type=int, default=6, help="epochs unless a variant says")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--token-ceilings",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also print what each token choice leaves to read (PCA + kNN on the bins)",
    )
    parser.add_argument("--out", type=Path, default=Path("recipe_benchmark"))
    return parse_smoke(parser, SMOKE)


def run(ref, query, name: str, seed: int, args) -> dict:
    """Pretrain one variant with one seed; score the query cells."""
    model_kwargs, train_kwargs = (dict(part) for part in VARIANTS[name])
    scvi.settings.seed = seed
    t0 = time.perf_counter()
    if "hvg" in model_kwargs:
        hvg = cell_ranger_hvg(ref, model_kwargs.pop("hvg"), batch_key="batch")
        model_kwargs["token_genes"] = list(ref.var_names[hvg["highly_variable"].to_numpy()])
    start = model_kwargs.pop("start", None)
    model = CancerGPTModel(ref, preset="cpu-small", **model_kwargs)
    if start is not None:
        set_start(model, ref, *STARTS[start], seed=seed)
    epochs = train_kwargs.pop("max_epochs", args.epochs)
    if epochs > 0:
        model.train(max_epochs=epochs, enable_progress_bar=False, **train_kwargs)
    seconds = time.perf_counter() - t0
    z_ref = model.get_latent_representation(progress_bar=False)
    z_query = model.get_latent_representation(query, progress_bar=False)
    row = {"variant": name, "seed": seed, "epochs": epochs}
    for column, key in (("kNN macro-F1", LABEL), ("tissue kNN macro-F1", "tissue")):
        # only where the query's labels occur in the pretraining cells (not for a new tissue);
        # every tissue of new patients has pretraining patients: what the embedding keeps of it
        if set(query.obs[key]) <= set(ref.obs[key]):
            knn = KNeighborsClassifier(n_neighbors=15).fit(z_ref, ref.obs[key])
            row[column] = f1_score(query.obs[key], knn.predict(z_query), average="macro")
        else:
            row[column] = np.nan
    row["pretraining s"] = seconds
    work = query.copy()
    work.obsm["X_cancergpt"] = z_query
    for batch in ("patient", "technology"):
        with contextlib.redirect_stdout(io.StringIO()):
            tidy = benchmark_integration(
                work,
                batch_key=batch,
                label_key=LABEL,
                embeddings={"CancerGPT": "X_cancergpt"},
                baselines=(),
                umap=False,
                progress_bar=False,
                seed=seed,
            )
        wide = tidy.pivot(index="method", columns="metric", values="value").loc["CancerGPT"]
        for agg in ("Batch correction", "Bio conservation", "Total"):
            row[f"{agg} ({batch})"] = float(wide[agg])
    return row


def set_start(
    model: CancerGPTModel, ref, centred: bool, weighted: bool, random_share: float, seed: int
) -> None:
    """Replace the model's starting gene embeddings by another PCA start (see ``STARTS``)."""
    tokens = np.flatnonzero(model.module.gene_ids.numpy() != model.vocab.pad_id)
    groups = (ref.obs["batch"].astype(str) + "|" + ref.obs["technology"].astype(str)).values
    loadings = pca_gene_loadings(
        ref, model.module.embed_dim, genes=tokens, seed=seed, groups=groups if centred else None
    )
    if not weighted:
        loadings = loadings / loadings.std(axis=0, keepdims=True)
    if random_share > 0:  # loadings have unit sd: the mix keeps the table's scale
        noise = np.random.default_rng(seed).standard_normal(loadings.shape)
        loadings = np.sqrt(1 - random_share) * loadings + np.sqrt(random_share) * noise
    table = model.module.gene_encoder.embedding.weight
    with torch.no_grad():
        rows = model.module.gene_ids[torch.as_tensor(tokens)]
        table[rows] = torch.as_tensor(loadings, dtype=table.dtype)


def token_ceilings(ref, query, n_tokens: int = 127, seed: int = 0) -> pd.Series:
    """What a token choice leaves to read: kNN macro-F1 of PCA on the chosen genes' bins.

    Each cell's expression is binned (:func:`~cancergpt_scvi.data.bin_expression`); the bins
    of all genes, of the cell's ``n_tokens`` most expressed genes (the genes a cell is
    embedded with) or of ``n_tokens`` expressed genes drawn at random (the genes it is
    pretrained on) are kept, the rest set to 0; PCA (50 components) of the pretraining cells,
    query projected, 15-nearest-neighbour vote of the state.
    """
    rng = np.random.default_rng(seed)
    bins = {
        name: bin_expression(torch.as_tensor(a.X.toarray())).numpy()
        for name, a in (("ref", ref), ("query", query))
    }

    def keep(b: np.ndarray, score: np.ndarray) -> np.ndarray:
        idx = np.argsort(-score, axis=1)[:, :n_tokens]
        out = np.zeros_like(b)
        np.put_along_axis(out, idx, np.take_along_axis(b, idx, axis=1), axis=1)
        return out

    choices = {
        "all genes": lambda b: b,
        f"{n_tokens} most expressed": lambda b: keep(b, b),
        f"{n_tokens} expressed at random": lambda b: keep(
            b, np.where(b > 0, rng.random(b.shape), -1)
        ),
    }
    out = {}
    for name, choose in choices.items():
        r, q = choose(bins["ref"]), choose(bins["query"])
        pca = PCA(n_components=50, random_state=0).fit(r)
        knn = KNeighborsClassifier(n_neighbors=15).fit(pca.transform(r), ref.obs[LABEL])
        pred = knn.predict(pca.transform(q))
        out[name] = f1_score(query.obs[LABEL], pred, average="macro")
    return pd.Series(out, name="kNN macro-F1 of PCA on the chosen bins")


#: Columns drawn by :func:`plot_summary`.
PLOTTED = ("kNN macro-F1", "Bio conservation (patient)", "Total (patient)", "Total (technology)")


def plot_summary(summary: pd.DataFrame, path: Path) -> None:
    """Bars of the mean (error bars: sd over seeds) of :data:`PLOTTED`, one panel per protocol.

    ``summary`` is ``recipe_summary.csv`` as read back: one row per protocol and variant,
    ``(metric, "mean" | "std")`` columns.
    """
    protocols = list(dict.fromkeys(summary.index.get_level_values("protocol")))
    fig, axes = plt.subplots(
        1, len(protocols), figsize=(4.5 * len(protocols), 3.6), squeeze=False, sharey=True
    )
    for ax, protocol in zip(axes[0], protocols, strict=True):
        part = summary.xs(protocol, level="protocol")
        metrics = [m for m in PLOTTED if part[(m, "mean")].notna().any()]
        width = 0.8 / len(part)
        for i, (variant, row) in enumerate(part.iterrows()):
            x = np.arange(len(metrics)) + (i - (len(part) - 1) / 2) * width
            means = [row[(m, "mean")] for m in metrics]
            sds = [0.0 if pd.isna(row[(m, "std")]) else row[(m, "std")] for m in metrics]
            ax.bar(x, means, width, yerr=sds, capsize=2, label=variant)
        ax.set_xticks(np.arange(len(metrics)))
        ax.set_xticklabels([m.replace(" (", "\n(") for m in metrics], fontsize=8)
        ax.set_title(protocol.replace("_", " "))
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("score (mean ± sd over seeds)")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for protocol, (ref, query) in simulate_protocols(args).items():
        setup_atlas(ref)
        print(f"{protocol}: pretraining {ref.n_obs} cells; query {query.n_obs} cells")
        if args.token_ceilings and set(query.obs[LABEL]) <= set(ref.obs[LABEL]):
            ceilings = token_ceilings(ref, query)
            print(ceilings.round(3).to_string(), flush=True)
            ceilings.to_csv(args.out / f"token_ceilings_{protocol}.csv")
        for name in args.variants:
            for seed in args.seeds:
                row = {"protocol": protocol, **run(ref, query, name, seed, args)}
                rows.append(row)
                print(
                    ", ".join(
                        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items()
                    ),
                    flush=True,
                )
    results = pd.DataFrame(rows)
    results.to_csv(args.out / "recipe_results.csv", index=False)
    metrics = [c for c in results.columns if c not in ("protocol", "variant", "seed", "epochs")]
    grouped = results.groupby(["protocol", "variant"], sort=False)[metrics]
    summary = grouped.agg(["mean", "std"])
    summary.to_csv(args.out / "recipe_summary.csv")
    plot_summary(summary, args.out / "recipe_summary.png")
    text = pd.DataFrame(index=summary.index)
    for m in metrics:
        sd = summary[(m, "std")].fillna(0.0)
        text[m] = [f"{a:.3f} ± {b:.3f}" for a, b in zip(summary[(m, "mean")], sd, strict=True)]
    print(f"\nMean ± sd over seeds {args.seeds}:\n")
    print(text.to_string())
    print(f"\nresults in {args.out}")


if __name__ == "__main__":
    main()
