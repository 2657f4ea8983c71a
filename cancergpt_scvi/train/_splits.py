"""How samples are split for training: a validation draw and cross-validation folds.

The task heads and the benchmarks share these rules, so that a head's own cross-validation and a
benchmark's comparison use the same folds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

Folds = list[tuple[np.ndarray, np.ndarray]]


def validation_split(
    positions: np.ndarray,
    train_size: float,
    validation_size: float | None,
    rng: np.random.Generator | np.random.RandomState,
) -> tuple[np.ndarray, np.ndarray]:
    """Random split of ``positions`` into training and validation, by scvi-tools' rule.

    As :class:`scvi.dataloaders.DataSplitter`: ``ceil(train_size * n)`` samples train;
    ``validation_size`` of them (rounded down), or else all the others, validate; the rest are
    in neither. The permutation comes from ``rng`` (``np.random.RandomState(scvi.settings.seed)``
    reproduces :class:`~scvi.dataloaders.DataSplitter`'s draw). Unlike scvi-tools, the products
    are rounded to 9 decimals first, so that float error (``0.07 * 100 = 7.000000000000001``)
    never moves a sample between the splits.

    Parameters
    ----------
    positions
        The samples to split (e.g. every cell line not held out).
    train_size
        Share of ``positions`` that trains, in (0, 1].
    validation_size
        Share that validates; ``None``: all that do not train.
    rng
        Source of the permutation.

    Returns
    -------
    Sorted training positions and sorted validation positions.

    Raises
    ------
    ValueError
        ``train_size`` outside (0, 1], ``validation_size`` outside [0, 1), or the two adding up
        to more than 1.
    """
    positions = np.asarray(positions)
    n = len(positions)
    if not 0.0 < train_size <= 1.0:
        raise ValueError(f"train_size must lie in (0, 1], got {train_size}.")
    if validation_size is not None and not (
        0.0 <= validation_size < 1.0 and train_size + validation_size <= 1.0 + 1e-9
    ):
        raise ValueError(
            f"validation_size must lie in [0, 1) with train_size + validation_size <= 1, got "
            f"train_size={train_size}, validation_size={validation_size}."
        )
    # rounded first so that e.g. 0.9 * 10 = 9.000000000000002 trains 9, not 10
    n_train = int(np.ceil(round(train_size * n, 9)))
    n_val = n - n_train
    if validation_size is not None:
        n_val = min(int(np.floor(round(n * validation_size, 9))), n_val)
    order = positions[rng.permutation(n)]
    return np.sort(order[n_val : n_val + n_train]), np.sort(order[:n_val])


def stratified_folds(
    labels: Sequence | np.ndarray,
    n_folds: int = 5,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> Folds:
    """Shuffled K-fold split in which every label is spread evenly over the test folds.

    Labels too rare to reach every fold (fewer than ``n_folds`` samples, or groups when
    ``groups`` is given) are pooled into one stratum; if that stratum is itself too rare,
    it joins the most common label. A single remaining stratum gives plain shuffled K-fold.

    Parameters
    ----------
    labels
        Label of each sample to stratify on (e.g. the event indicator, or a tissue).
    n_folds
        Number of folds, at least 2.
    seed
        Seed of the fold assignment.
    groups
        Group of each sample (e.g. a patient or cell line); a group is never split between
        training and test (:class:`~sklearn.model_selection.StratifiedGroupKFold`). ``None``
        splits samples (:class:`~sklearn.model_selection.StratifiedKFold`).

    Returns
    -------
    ``n_folds`` pairs of (training positions, test positions); each sample is in exactly one
    test fold.

    Raises
    ------
    ValueError
        ``n_folds`` is below 2, or above the number of samples (or groups).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}.")
    units = np.asarray(groups) if groups is not None else np.arange(n)
    if len(units) != n:
        raise ValueError(f"groups has {len(units)} entries for {n} labels.")
    n_units = len(np.unique(units))
    what = "groups" if groups is not None else "samples"
    if n_units < n_folds:
        raise ValueError(
            f"Cannot make {n_folds} folds from {n_units} {what}; use n_folds <= {n_units}."
        )
    _, codes = np.unique(labels.astype(str), return_inverse=True)
    # how many samples (or groups) carry each label
    units_per_label = np.array([len(np.unique(units[codes == c])) for c in range(codes.max() + 1)])
    rare = units_per_label < n_folds
    strata = codes.copy()
    if rare.any():
        pooled = np.isin(codes, np.flatnonzero(rare))
        strata[pooled] = -1
        if len(np.unique(units[pooled])) < n_folds:
            strata[pooled] = int(np.argmax(units_per_label))
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(n), strata))
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(n), strata, units))


def survival_folds(events: Sequence | np.ndarray, n_folds: int = 5, seed: int = 0) -> Folds:
    """Shuffled K-fold split of a survival cohort, stratified on the event indicator.

    Every test fold gets its share of events, so each has a C-index.

    Parameters
    ----------
    events
        Event indicator of each sample (1 or ``True`` = event observed, 0 = censored).
    n_folds
        Number of folds, at least 2.
    seed
        Seed of the fold assignment.

    Returns
    -------
    ``n_folds`` pairs of (training positions, test positions), as :func:`stratified_folds`.

    Raises
    ------
    ValueError
        ``n_folds`` is below 2 or above the number of samples, or there are fewer events than
        folds (a test fold would hold no event).
    """
    events = np.asarray(events).astype(float).astype(int)
    n_events = int(events.sum())
    if len(events) >= n_folds >= 2 and n_events < n_folds:
        raise ValueError(
            f"Only {n_events} events for {n_folds} folds: some test fold would hold no event "
            f"and have no C-index. Use n_folds <= {max(n_events, 2)}."
        )
    return stratified_folds(events, n_folds=n_folds, seed=seed)
