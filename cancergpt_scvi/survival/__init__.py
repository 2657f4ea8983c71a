"""Survival head: a Cox model on bulk-RNA features for patient stratification.

Training and prediction need only the base install; the C-index, the log-rank test and the
Kaplan–Meier curves need the ``[survival]`` extra (lifelines, scikit-survival) and say so when
it is missing. The penalty is chosen by inner cross-validation by default
(:func:`tune_cox_penalty` along :func:`cox_penalty_grid`, which tune any other penalised Cox
fitter the same way); :meth:`SurvivalModel.cross_validate` scores a configuration on held-out
folds and gives the held-out risk groups.
"""

from ._metrics import (
    concordance_harrell,
    concordance_uno,
    logrank_pvalue,
    plot_kaplan_meier,
    risk_groups,
)
from ._model import SurvivalModel
from ._module import CoxPHModule
from ._tuning import cox_penalty_grid, tune_cox_penalty

__all__ = [
    "CoxPHModule",
    "SurvivalModel",
    "concordance_harrell",
    "concordance_uno",
    "cox_penalty_grid",
    "logrank_pvalue",
    "plot_kaplan_meier",
    "risk_groups",
    "tune_cox_penalty",
]
