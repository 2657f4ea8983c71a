"""Benchmarks of CancerGPT against the methods users would pick instead."""

from ._drug_response import (
    cross_validate_drug_response,
    drug_response_metrics,
    drug_response_splits,
    per_drug_pearson,
    plot_drug_response,
)
from ._integration import (
    BASELINE_OBSM_KEYS,
    INTEGRATION_BASELINES,
    benchmark_integration,
    plot_umap_grid,
)
from ._survival import compare_survival_features

__all__ = [
    "BASELINE_OBSM_KEYS",
    "INTEGRATION_BASELINES",
    "benchmark_integration",
    "compare_survival_features",
    "cross_validate_drug_response",
    "drug_response_metrics",
    "drug_response_splits",
    "per_drug_pearson",
    "plot_drug_response",
    "plot_umap_grid",
]
