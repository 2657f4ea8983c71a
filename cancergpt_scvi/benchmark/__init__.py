"""Benchmarks of CancerGPT against the methods users would pick instead."""

from ._drug_response import (
    cross_validate_drug_response,
    drug_response_splits,
    nearest_drugs_predict,
    per_drug_ridge_predict,
    plot_drug_response,
    plot_per_drug_comparison,
)
from ._integration import (
    BASELINE_OBSM_KEYS,
    INTEGRATION_BASELINES,
    benchmark_integration,
)
from ._survival import compare_survival_features

__all__ = [
    "BASELINE_OBSM_KEYS",
    "INTEGRATION_BASELINES",
    "benchmark_integration",
    "compare_survival_features",
    "cross_validate_drug_response",
    "drug_response_splits",
    "nearest_drugs_predict",
    "per_drug_ridge_predict",
    "plot_drug_response",
    "plot_per_drug_comparison",
]
