"""Data: the gene vocabulary, value binning, oversampling and simulated example data."""

from ._binning import bin_expression
from ._corpus import Corpus, H5adCorpus
from ._drug_response_data import DrugResponseDataSplitter, DrugResponsePairs
from ._glioblastoma import GLIOBLASTOMA_STATES, simulate_glioblastoma
from ._hvg import cell_ranger_hvg
from ._molecules import DrugFeaturizer, MolecularGraph, morgan_fingerprint, smiles_to_graph
from ._oversampling import oversampling_weights
from ._pharmacogenomics import (
    EXAMPLE_DRUG_SMILES,
    SimulatedDrugResponse,
    example_drug_library,
    simulate_drug_response,
)
from ._simulate import (
    MALIGNANT_STATES,
    PRETRAINING_TISSUE_COMPOSITION,
    simulate_malignant_atlas,
)
from ._simulate_corpus import write_simulated_corpus
from ._soma import SomaCorpus
from ._survival_cohort import simulate_survival_cohort
from ._tokenize import TokenBatch, tokenize
from ._vocab import GeneVocab

__all__ = [
    "EXAMPLE_DRUG_SMILES",
    "GLIOBLASTOMA_STATES",
    "MALIGNANT_STATES",
    "PRETRAINING_TISSUE_COMPOSITION",
    "Corpus",
    "DrugFeaturizer",
    "DrugResponseDataSplitter",
    "DrugResponsePairs",
    "GeneVocab",
    "H5adCorpus",
    "MolecularGraph",
    "SimulatedDrugResponse",
    "SomaCorpus",
    "TokenBatch",
    "bin_expression",
    "cell_ranger_hvg",
    "example_drug_library",
    "morgan_fingerprint",
    "oversampling_weights",
    "simulate_drug_response",
    "simulate_glioblastoma",
    "simulate_malignant_atlas",
    "simulate_survival_cohort",
    "smiles_to_graph",
    "tokenize",
    "write_simulated_corpus",
]
