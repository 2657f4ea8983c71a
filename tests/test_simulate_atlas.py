import numpy as np
import pytest

from cancergpt_scvi.datasets import simulate_malignant_atlas


def _atlas(**kwargs):
    return simulate_malignant_atlas(
        n_cells=600, n_genes=300, tissues=["Breast"], n_patients_per_tissue=2, seed=1, **kwargs
    )


def _state_effects(atlas) -> np.ndarray:
    """Per state, how far its mean log expression departs from the average state, per gene."""
    x = np.log1p(atlas.X.toarray())
    states = atlas.obs["cell_state"].to_numpy()
    means = np.stack([x[states == s].mean(0) for s in np.unique(states)])
    return np.abs(means - means.mean(0))


def test_subtle_states_are_weaker():
    default, subtle = (
        _state_effects(_atlas()),
        _state_effects(_atlas(state_program_size=100, state_effect=0.3)),
    )
    assert subtle.max(axis=1).mean() < 0.6 * default.max(axis=1).mean()
    # the state settings leave the rest of the simulation as it was
    same = _atlas(state_program_size=40, state_effect=1.6)
    np.testing.assert_array_equal(_atlas().X.toarray(), same.X.toarray())


def test_state_settings_are_checked():
    with pytest.raises(ValueError, match="state_program_size"):
        _atlas(state_program_size=0)
    with pytest.raises(ValueError, match="state_effect"):
        _atlas(state_effect=-1.0)
