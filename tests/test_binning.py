import numpy as np
import pytest
import torch

from cancergpt_scvi.data import bin_expression


def reference_bins(row: np.ndarray, n_bins: int = 51) -> np.ndarray:
    """The release rule written plainly with numpy, for tie-free rows."""
    out = np.zeros_like(row)
    nonzero = row[row > 0]
    if nonzero.size:
        edges = np.quantile(nonzero, np.linspace(0, 1, n_bins - 1))
        out[row > 0] = np.digitize(nonzero, edges)
    return out


def test_tie_free_bins_match_the_release_rule_exactly():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(300, 400))
    x[rng.random(x.shape) < 0.6] = 0
    expected = np.stack([reference_bins(r) for r in x])
    for mode in ("deterministic", "release"):
        got = bin_expression(torch.tensor(x), mode=mode).numpy()
        np.testing.assert_array_equal(got, expected)
    assert expected.max() == 50 and expected[x > 0].min() == 1


def test_all_positive_rows_use_all_values_and_zero_rows_stay_zero():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    bins = bin_expression(torch.tensor(x), n_bins=5).numpy()
    np.testing.assert_array_equal(bins[1], 0)
    np.testing.assert_array_equal(bins[0], reference_bins(x[0], n_bins=5))


def _tie_range(row: np.ndarray, value: float, n_bins: int = 51) -> tuple[int, int]:
    edges = np.quantile(row[row > 0], np.linspace(0, 1, n_bins - 1))
    return int((edges < value).sum()) + 1, int((edges <= value).sum())


def test_release_mode_spreads_ties_uniformly_over_their_range():
    rng = np.random.default_rng(1)
    row = rng.poisson(1.5, size=2000).astype(float)  # many ties among small counts
    lo, hi = _tie_range(row, 1.0)
    assert hi > lo  # the count 1 spans several bins
    x = torch.tensor(np.tile(row, (20, 1)))
    bins = bin_expression(x, mode="release", generator=torch.Generator().manual_seed(0)).numpy()
    drawn = bins[:, row == 1.0].ravel()
    assert drawn.min() >= lo and drawn.max() <= hi
    counts = np.bincount(drawn.astype(int) - lo, minlength=hi - lo + 1)
    expected = drawn.size / (hi - lo + 1)
    # chi-square goodness of fit to the uniform distribution over lo..hi
    chi2 = ((counts - expected) ** 2 / expected).sum()
    from scipy.stats import chi2 as chi2_dist

    assert chi2_dist.sf(chi2, df=hi - lo) > 1e-3


def test_deterministic_mode_gives_ties_the_middle_of_their_range():
    rng = np.random.default_rng(2)
    row = rng.poisson(1.5, size=500).astype(float)
    lo, hi = _tie_range(row, 1.0)
    bins = bin_expression(torch.tensor(row[None]), mode="deterministic").numpy()[0]
    np.testing.assert_allclose(bins[row == 1.0], (lo + hi) / 2)
    again = bin_expression(torch.tensor(row[None]), mode="deterministic").numpy()[0]
    np.testing.assert_array_equal(bins, again)


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        bin_expression(torch.ones(2, 3), mode="random")
