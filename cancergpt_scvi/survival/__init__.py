"""Survival head: a Cox model on bulk-RNA features for patient stratification.

Training and prediction need only the base install; the C-index, the log-rank test and the
Kaplan–Meier curves need the ``[survival]`` extra (lifelines, scikit-survival) and say so when
it is missing. Cross-validation is :func:`cancergpt_scvi.benchmark.cross_validate_survival`.
"""

from ._metrics import (
    concordance_harrell,
    concordance_uno,
    logrank_pvalue,
    plot_kaplan_meier,
    risk_groups,
    uno_truncation_time,
)
from ._model import SurvivalModel
from ._module import CoxPHModule

__all__ = [
    "CoxPHModule",
    "SurvivalModel",
    "concordance_harrell",
    "concordance_uno",
    "logrank_pvalue",
    "plot_kaplan_meier",
    "risk_groups",
    "uno_truncation_time",
]
