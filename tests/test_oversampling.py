import json

import numpy as np
import pandas as pd
import pytest

from cancergpt_scvi.data import oversampling_weights
from cancergpt_scvi.datasets import PRETRAINING_TISSUE_COMPOSITION
from tests.conftest import DATA


def test_tissue_rule_targets():
    tissue = np.repeat(["A", "B", "C", "D"], [1000, 600, 100, 800])
    weights, _ = oversampling_weights(tissue)
    totals = pd.Series(weights).groupby(tissue).sum()
    # A largest; B at 60% -> 70%; C at 10% -> 40%; D at 80% unchanged
    np.testing.assert_allclose(totals[["A", "B", "C", "D"]], [1000, 700, 400, 800])


def test_technologies_pulled_to_equal_share_with_cap():
    tissue = np.repeat("A", 1000)
    tech = np.repeat(["droplet", "plate", "rare"], [880, 100, 20])
    weights, _ = oversampling_weights(tissue, tech)
    per_cell = pd.Series(weights).groupby(tech).first()
    # raw factors: 333/880, 333/100, min(333/20, 5); relative up-weights keep the cap
    assert per_cell["rare"] / per_cell["droplet"] == pytest.approx(5 / (1000 / 3 / 880))
    shares = pd.Series(weights).groupby(tech).sum() / weights.sum()
    assert shares["plate"] > 0.1 and shares["rare"] > 0.02  # lifted above raw shares
    assert weights.sum() == pytest.approx(1000)


def test_rarest_pretraining_tissue_is_drawn_at_the_rule_share():
    composition = {k: v // 100 for k, v in PRETRAINING_TISSUE_COMPOSITION.items()}
    # the package's numbers are the published composition's (a copy ships in tests/data)
    published = json.loads((DATA / "pretraining_tissue_composition.json").read_text())
    assert published["tissues"] == PRETRAINING_TISSUE_COMPOSITION
    tissue = np.repeat(list(composition), list(composition.values()))
    weights, _ = oversampling_weights(tissue)
    rng = np.random.default_rng(0)
    n_draws = 200_000
    draws = rng.choice(len(tissue), size=n_draws, p=weights / weights.sum())
    share = (tissue[draws] == "Liverbiliary").mean()
    largest = max(composition.values())
    expected = 0.4 * largest / weights.sum()
    sd = np.sqrt(expected * (1 - expected) / n_draws)
    assert abs(share - expected) < 4 * sd
    raw_share = composition["Liverbiliary"] / len(tissue)
    assert share > 5 * raw_share
