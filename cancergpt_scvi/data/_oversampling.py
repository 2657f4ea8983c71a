"""Tissue- and technology-aware oversampling weights."""

from __future__ import annotations

import numpy as np
import pandas as pd


def oversampling_weights(
    tissue: np.ndarray | pd.Series,
    technology: np.ndarray | pd.Series | None = None,
    low_fraction: float = 0.4,
    high_fraction: float = 0.7,
    max_technology_upweight: float = 5.0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Per-cell sampling weights that lift rare tissues and rare technologies.

    A tissue with fewer than ``low_fraction`` of the largest tissue's cells is drawn up to
    ``low_fraction`` of it; one between ``low_fraction`` and ``high_fraction`` up to
    ``high_fraction``; the others as they are. Inside a tissue, each technology's share is
    pulled toward an equal share, no technology being up-weighted more than
    ``max_technology_upweight`` times; the tissue's total is kept.

    Parameters
    ----------
    tissue
        Tissue of each cell.
    technology
        Technology of each cell, or ``None``.
    low_fraction, high_fraction
        Thresholds of the tissue rule, as fractions of the largest tissue.
    max_technology_upweight
        Cap of the per-technology up-weighting inside a tissue.

    Returns
    -------
    weights
        Expected draws of each cell per oversampled epoch (they sum to the epoch length).
    summary
        One row per tissue and technology: cells, target draws and per-cell weight.
    """
    tissue = np.asarray(tissue).astype(str)
    n = len(tissue)
    technology = np.full(n, "all") if technology is None else np.asarray(technology).astype(str)
    if len(technology) != n:
        raise ValueError("tissue and technology must have one entry per cell.")
    if not 0 < low_fraction <= high_fraction <= 1:
        raise ValueError("Need 0 < low_fraction <= high_fraction <= 1.")
    frame = pd.DataFrame({"tissue": tissue, "technology": technology})
    tissue_counts = frame["tissue"].value_counts()
    largest = tissue_counts.max()
    ratio = tissue_counts / largest
    target = tissue_counts.astype(float).copy()
    target[ratio < low_fraction] = low_fraction * largest
    target[(ratio >= low_fraction) & (ratio < high_fraction)] = high_fraction * largest

    counts = frame.groupby(["tissue", "technology"], observed=True).size().rename("n_cells")
    summary = counts.reset_index()
    n_tech = summary.groupby("tissue")["technology"].transform("size")
    n_tissue = summary["tissue"].map(tissue_counts)
    # factor that would give each technology an equal share, capped at the allowed up-weight
    factor = np.minimum((n_tissue / n_tech) / summary["n_cells"], max_technology_upweight)
    mass = summary["n_cells"] * factor
    summary["target_draws"] = (
        summary["tissue"].map(target) * mass / mass.groupby(summary["tissue"]).transform("sum")
    )
    summary["weight"] = summary["target_draws"] / summary["n_cells"]
    lookup = summary.set_index(["tissue", "technology"])["weight"]
    weights = lookup.reindex(pd.MultiIndex.from_frame(frame)).to_numpy()
    return weights, summary
