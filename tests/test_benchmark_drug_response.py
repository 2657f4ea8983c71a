"""Baselines of the drug-response benchmark: per-drug ridge, nearest drugs by fingerprint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cancergpt_scvi.benchmark import nearest_drugs_predict, per_drug_ridge_predict
from cancergpt_scvi.drug_response import tanimoto_similarity


def test_tanimoto_similarity():
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    b = np.array([[1, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_allclose(tanimoto_similarity(a, b), [[0.5, 1.0], [0.0, 0.0]])


def test_per_drug_ridge_recovers_a_linear_response():
    rng = np.random.default_rng(0)
    cells = [f"c{i}" for i in range(120)]
    features = pd.DataFrame(rng.normal(size=(120, 30)), index=cells)
    weights = {"A": rng.normal(size=30), "B": rng.normal(size=30)}
    pairs = pd.DataFrame(
        [(c, d, float(features.loc[c] @ w) + 5.0) for c in cells for d, w in weights.items()],
        columns=["cell_line", "drug", "response"],
    )
    test = pairs["cell_line"].isin(cells[:20])
    predicted = per_drug_ridge_predict(features, pairs[~test], pairs[test], n_components=30)
    assert np.corrcoef(predicted, pairs.loc[test, "response"])[0, 1] > 0.95


def test_per_drug_ridge_names_cell_lines_without_features():
    features = pd.DataFrame(np.zeros((2, 3)), index=["a", "b"])
    pairs = pd.DataFrame({"cell_line": ["a", "z"], "drug": ["D", "D"], "response": [1.0, 2.0]})
    with pytest.raises(ValueError, match="z"):
        per_drug_ridge_predict(features, pairs.iloc[:1], pairs.iloc[1:])


def test_nearest_drugs_uses_the_most_similar_drug():
    fingerprints = {
        "A": np.array([1, 1, 1, 0, 0, 0]),
        "A2": np.array([1, 1, 1, 1, 0, 0]),  # close to A
        "B": np.array([0, 0, 0, 0, 1, 1]),
        "new": np.array([1, 1, 1, 0, 0, 0]),  # same as A
    }
    cells = ["c1", "c2", "c3"]
    train = pd.DataFrame(
        [
            (c, d, r)
            for c, base in zip(cells, (0.0, 1.0, 2.0), strict=True)
            for d, r in (("A", base), ("A2", base + 0.1), ("B", 10 - base))
        ],
        columns=["cell_line", "drug", "response"],
    )
    test = pd.DataFrame({"cell_line": cells, "drug": ["new"] * 3})
    predicted, k = nearest_drugs_predict(fingerprints, train, test, k=1)
    assert k == 1
    np.testing.assert_allclose(predicted, [0.0, 1.0, 2.0])
    predicted, k = nearest_drugs_predict(fingerprints, train, test)  # k by leave-one-drug-out
    assert k >= 1 and np.corrcoef(predicted, [0.0, 1.0, 2.0])[0, 1] > 0.99
    with pytest.raises(ValueError, match="No fingerprint"):
        nearest_drugs_predict({"A": fingerprints["A"]}, train, test, k=1)
