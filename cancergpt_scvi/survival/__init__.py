"""Survival head: a Cox model on bulk-RNA features for patient stratification.

Needs the ``[survival]`` extra (lifelines, scikit-survival).
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
