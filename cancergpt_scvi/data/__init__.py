"""Data: the gene vocabulary, value binning, oversampling and simulated example data."""

from ._binning import bin_expression
from ._glioblastoma import GLIOBLASTOMA_STATES, simulate_glioblastoma
from ._oversampling import oversampling_weights
from ._simulate import (
    MALIGNANT_STATES,
    PRETRAINING_TISSUE_COMPOSITION,
    simulate_malignant_atlas,
)
from ._survival_cohort import simulate_survival_cohort
from ._tokenize import TokenBatch, tokenize
from ._vocab import GeneVocab

__all__ = [
    "GLIOBLASTOMA_STATES",
    "MALIGNANT_STATES",
    "PRETRAINING_TISSUE_COMPOSITION",
    "GeneVocab",
    "TokenBatch",
    "bin_expression",
    "oversampling_weights",
    "simulate_glioblastoma",
    "simulate_malignant_atlas",
    "simulate_survival_cohort",
    "tokenize",
]
