"""Example data: simulated atlases, tumours, cohorts and screens; real drug screens and tumours."""

from ._corpus import write_simulated_corpus
from ._gdsc import GDSCData, match_cell_lines, read_gdsc
from ._glioblastoma import GLIOBLASTOMA_STATES, simulate_glioblastoma
from ._malignant_atlas import (
    MALIGNANT_STATES,
    PRETRAINING_TISSUE_COMPOSITION,
    simulate_malignant_atlas,
)
from ._ovarian_tumour import read_qian2020_ovarian
from ._pharmacogenomics import (
    EXAMPLE_DRUG_SMILES,
    SimulatedDrugResponse,
    simulate_drug_response,
)
from ._survival_cohort import simulate_survival_cohort

__all__ = [
    "EXAMPLE_DRUG_SMILES",
    "GLIOBLASTOMA_STATES",
    "MALIGNANT_STATES",
    "PRETRAINING_TISSUE_COMPOSITION",
    "GDSCData",
    "SimulatedDrugResponse",
    "match_cell_lines",
    "read_gdsc",
    "read_qian2020_ovarian",
    "simulate_drug_response",
    "simulate_glioblastoma",
    "simulate_malignant_atlas",
    "simulate_survival_cohort",
    "write_simulated_corpus",
]
