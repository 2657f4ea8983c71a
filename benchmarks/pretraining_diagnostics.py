"""Why a CPU-sized CancerGPT pretraining run learns little beyond the gene set: measurements.

Five measurements on the simulated atlas of ``adversarial_ablation.py`` (1,500 cells, 600 genes):

1. **What the objectives can gain.** Mean squared error (bins on a 0..1 scale, release tie
   spreading, expressed genes only: the masked-expression target) of predicting a gene's bin
   from held-out group means: per gene only, then per gene within tissue, tissue x technology,
   patient. The distance between the first and the others is all a cell embedding can win.
2. **What the tokens carry.** 5-fold logistic-regression tissue accuracy from the binned
   values of the genes a ``cpu-small`` sequence holds: 127 expressed genes drawn at random (as
   in pretraining), the 127 most expressed (as when embedding), and all genes.
3. **How distinct the value tokens are at initialisation.** Cosine similarity between the
   value encoder's outputs for bins 5, 25 and 50 with torch's default initialisation and with
   its first layer's kinks spread over the bin range.
4. **How fast the encoder learns to read values.** A linear tissue head on the ``<cls>`` output,
   trained with the encoder from scratch on randomly drawn expressed genes (the pretraining
   token sets, where tissue can only be read from the values), held-out accuracy after
   ``--steps`` AdamW steps, for both initialisations.
5. **Whether MVC helps or hinders.** The masked-expression loss after ``--steps`` steps of
   pretraining on masked expression alone and on masked expression + MVC.

Run from the repository root (about 6 minutes on a 2-core CPU; run it alone)::

    python benchmarks/pretraining_diagnostics.py --out docs/_static/diagnostics
    python benchmarks/pretraining_diagnostics.py --smoke   # smallest setting (CI): seconds

``--smoke`` runs every measurement at the smallest size: 300 cells of 200 genes, 5 training
steps, the CSVs and figure written to a temporary folder unless ``--out`` is given; options
given with it still apply.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from _smoke import parse_args as parse_smoke
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.data import bin_expression
from cancergpt_scvi.datasets import simulate_malignant_atlas
from cancergpt_scvi.nn import ContinuousValueEncoder

#: Defaults of ``--smoke``: the smallest setting, for CI.
SMOKE = {"n_cells": 300, "n_genes": 200, "steps": 5, "out": None}


def dense(adata) -> torch.Tensor:
    """Counts as a float64 tensor."""
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    return torch.as_tensor(x, dtype=torch.float64)


def objective_floors(adata, n_bins: int, seed: int) -> pd.Series:
    """Held-out MSE of group-mean predictors of the masked-expression target."""
    x = dense(adata)
    generator = torch.Generator().manual_seed(seed)
    bins = bin_expression(x, n_bins, mode="release", generator=generator)
    target = np.where(x.numpy() > 0, bins.numpy() / (n_bins - 1), np.nan)
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    train, test = order[: 2 * adata.n_obs // 3], order[2 * adata.n_obs // 3 :]
    overall = np.nanmean(target[train], axis=0)
    floors = {}
    for name, keys in {
        "per gene": [],
        "per gene x tissue": ["tissue"],
        "per gene x tissue x technology": ["tissue", "technology"],
        "per gene x patient": ["patient"],
    }.items():
        groups = (
            adata.obs[keys].astype(str).agg("|".join, axis=1).to_numpy()
            if keys
            else np.zeros(adata.n_obs, dtype=str)
        )
        errors = []
        for group in np.unique(groups[test]):
            members = train[groups[train] == group]
            with warnings.catch_warnings():
                # genes never expressed in a group: fall back to the overall mean below
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(target[members], axis=0) if len(members) else overall
            mean = np.where(np.isnan(mean), overall, mean)
            errors.append((target[test[groups[test] == group]] - mean) ** 2)
        floors[name] = float(np.nanmean(np.concatenate(errors)))
    return pd.Series(floors, name="held-out MSE of the masked-expression target")


def token_information(adata, model: CancerGPTModel, seed: int) -> pd.Series:
    """Tissue accuracy of logistic regression on the bins of each token set."""
    module = model.module
    x = dense(adata).float()
    bins = bin_expression(x, module.n_bins, mode="deterministic").numpy() / (module.n_bins - 1)
    n_genes = module.max_seq_len - 1
    # token id -> column of the data, to put each token's bin back in its gene's column
    column_of_token = np.full(int(module.gene_ids.max()) + 1, -1)
    column_of_token[module.gene_ids.numpy()] = np.arange(adata.n_vars)
    generator = torch.Generator().manual_seed(seed)
    sets = {}
    for name, random in (("random expressed", True), ("most expressed", False)):
        tokens = module.tokenize(
            x, binning="deterministic", random_genes=random, generator=generator
        )
        seen = np.zeros_like(bins)
        rows, cols = np.nonzero(tokens.gene_positions.numpy())
        genes = column_of_token[tokens.gene_ids.numpy()[rows, cols]]
        seen[rows, genes] = bins[rows, genes]
        sets[f"{n_genes} {name} genes"] = seen
    sets[f"all {adata.n_vars} genes"] = bins
    probe = LogisticRegression(C=0.1, max_iter=3000)
    labels = adata.obs["tissue"].to_numpy()
    return pd.Series(
        {name: cross_val_score(probe, z, labels, cv=5).mean() for name, z in sets.items()},
        name="tissue accuracy (logistic regression, 5-fold)",
    )


def spread_kinks(encoder: ContinuousValueEncoder, n_bins: int, seed: int) -> None:
    """Move each first-layer ReLU kink to a random point of the bin range."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = encoder.linear1.weight.view(-1)
        kinks = torch.rand(weight.shape, generator=generator) * (n_bins + 2) - 3.0
        encoder.linear1.bias.copy_(-weight * kinks)


def value_similarity(embed_dim: int, n_bins: int, seed: int) -> pd.DataFrame:
    """Cosine similarity of value-token vectors for bins 5, 25, 50 under both inits."""
    rows = {}
    for init in ("default", "spread kinks"):
        torch.manual_seed(seed)
        encoder = ContinuousValueEncoder(embed_dim, dropout=0.0).eval()
        if init == "spread kinks":
            spread_kinks(encoder, n_bins, seed)
        with torch.no_grad():
            h = F.normalize(encoder(torch.tensor([5.0, 25.0, 50.0])), dim=-1)
        sim = h @ h.T
        rows[init] = {
            "cos(bin 5, bin 25)": float(sim[0, 1]),
            "cos(bin 25, bin 50)": float(sim[1, 2]),
            "cos(bin 5, bin 50)": float(sim[0, 2]),
        }
    return pd.DataFrame(rows).T


def readout_speed(adata, steps: int, seed: int) -> pd.DataFrame:
    """Held-out tissue accuracy of a jointly trained linear head on ``<cls>``."""
    x = dense(adata).float()
    labels = torch.as_tensor(adata.obs["tissue"].cat.codes.to_numpy().astype(np.int64))
    order = torch.randperm(adata.n_obs, generator=torch.Generator().manual_seed(seed))
    train, test = order[: 4 * adata.n_obs // 5], order[4 * adata.n_obs // 5 :]
    rows = {}
    for init in ("default", "spread kinks"):
        torch.manual_seed(seed)
        module = CancerGPTModel(adata, preset="cpu-small").module
        if init == "spread kinks":
            spread_kinks(module.value_encoder, module.n_bins, seed)
        head = torch.nn.Linear(module.embed_dim, int(labels.max()) + 1)
        optimizer = torch.optim.AdamW([*module.parameters(), *head.parameters()], lr=1e-3)
        start = time.perf_counter()
        module.train()
        for _ in range(steps):
            batch = train[torch.randint(len(train), (64,))]
            tokens = module.tokenize(x[batch], random_genes=True)
            loss = F.cross_entropy(head(module.encode(tokens)[:, 0]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        # held-out cells read the way they are read in pretraining (random expressed genes)
        with torch.no_grad():
            tokens = module.tokenize(x[test], random_genes=True)
            logits = head(module.encode(tokens)[:, 0])
        rows[init] = {
            "held-out tissue accuracy": float((logits.argmax(-1) == labels[test]).float().mean()),
            "seconds": time.perf_counter() - start,
        }
    return pd.DataFrame(rows).T


def objective_interference(adata, steps: int, seed: int) -> pd.DataFrame:
    """Masked-expression loss of the pretraining objectives with and without MVC.

    Trains a fresh ``cpu-small`` module on masked expression alone and on masked expression +
    MVC (no adversarial covariates) and reports each loss averaged over the last 100 steps.
    """
    plain = adata.copy()
    CancerGPTModel.setup_anndata(plain)  # no domain covariates: no discriminators
    x = dense(plain).float()
    rows = {}
    for label, mvc_weight in (("masked expression only", 0.0), ("masked expression + MVC", 1.0)):
        torch.manual_seed(seed)
        module = CancerGPTModel(plain, preset="cpu-small").module
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=0.01)
        history: dict[str, list[float]] = {"mlm_loss": [], "mvc_loss": []}
        module.train()
        for _ in range(steps):
            batch = torch.randint(plain.n_obs, (64,))
            inference = module.inference(x[batch])
            generative = module.generative(inference["token_out"], inference["tokens"])
            loss = module.loss({}, inference, generative, mvc_weight=mvc_weight)
            optimizer.zero_grad()
            loss.loss.backward()
            optimizer.step()
            for key in history:
                history[key].append(float(loss.extra_metrics[key].detach()))
        rows[label] = {
            "mlm_loss (last 100 steps)": np.mean(history["mlm_loss"][-100:]),
            "mvc_loss (last 100 steps)": np.mean(history["mvc_loss"][-100:])
            if mvc_weight
            else np.nan,
        }
    return pd.DataFrame(rows).T


def plot(floors: pd.Series, info: pd.Series, readout: pd.DataFrame, path: Path) -> None:
    """Three panels: objective floors, token-set information, readout speed."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    floors.plot.barh(ax=axes[0], color="tab:blue")
    axes[0].set_xlabel("held-out MSE (bins / 50)")
    axes[0].set_title("masked-expression target: group means")
    info.plot.barh(ax=axes[1], color="tab:green")
    axes[1].set_xlabel("tissue accuracy")
    axes[1].set_xlim(0, 1)
    axes[1].set_title("what the tokens carry")
    readout["held-out tissue accuracy"].plot.barh(ax=axes[2], color="tab:orange")
    axes[2].set_xlabel("held-out tissue accuracy")
    axes[2].set_xlim(0, 1)
    axes[2].set_title("supervised <cls> readout")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=1500)
    parser.add_argument("--n-genes", type=int, default=600)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for CSV and PNG")
    args = parse_smoke(parser, SMOKE)

    adata = simulate_malignant_atlas(n_cells=args.n_cells, n_genes=args.n_genes, seed=args.seed)
    CancerGPTModel.setup_anndata(
        adata, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    torch.manual_seed(args.seed)
    model = CancerGPTModel(adata, preset="cpu-small")
    floors = objective_floors(adata, model.module.n_bins, args.seed)
    info = token_information(adata, model, args.seed)
    similarity = value_similarity(model.module.embed_dim, model.module.n_bins, args.seed)
    readout = readout_speed(adata, args.steps, args.seed)
    interference = objective_interference(adata, args.steps, args.seed)

    pd.set_option("display.precision", 3)
    pd.set_option("display.width", 200)
    print(f"cells={adata.n_obs} genes={adata.n_vars} preset=cpu-small steps={args.steps}\n")
    for table in (floors, info, similarity, readout, interference):
        print(table.to_string(), end="\n\n")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        floors.to_csv(args.out / "objective_floors.csv")
        info.to_csv(args.out / "token_information.csv")
        similarity.to_csv(args.out / "value_similarity.csv")
        readout.to_csv(args.out / "readout_speed.csv")
        interference.to_csv(args.out / "objective_interference.csv")
        plot(floors, info, readout, args.out / "pretraining_diagnostics.png")


if __name__ == "__main__":
    main()
