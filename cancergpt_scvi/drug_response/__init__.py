"""Drug-response head: IC50 from cell-line expression plus drug structure (extra ``[drug]``).

The model (:class:`DrugResponseModel`), its module and drug encoders, the featurisation of
SMILES with RDKit, the data of (cell line, drug) pairs and the accuracy metrics. Importing it
without RDKit raises an :class:`ImportError` naming ``pip install 'cancergpt-scvi[drug]'``.
"""

from ._data import DrugResponseDataSplitter, DrugResponsePairs
from ._encoders import FingerprintEncoder, MolecularGraphEncoder
from ._metrics import drug_response_metrics, per_drug_pearson
from ._model import DrugResponseModel
from ._module import DrugResponseModule
from ._molecules import (
    ATOM_FEATURE_NAMES,
    BOND_FEATURE_NAMES,
    DrugFeaturizer,
    MolecularGraph,
    morgan_fingerprint,
    parse_smiles,
    smiles_to_graph,
)

__all__ = [
    "ATOM_FEATURE_NAMES",
    "BOND_FEATURE_NAMES",
    "DrugFeaturizer",
    "DrugResponseDataSplitter",
    "DrugResponseModel",
    "DrugResponseModule",
    "DrugResponsePairs",
    "FingerprintEncoder",
    "MolecularGraph",
    "MolecularGraphEncoder",
    "drug_response_metrics",
    "morgan_fingerprint",
    "parse_smiles",
    "per_drug_pearson",
    "smiles_to_graph",
]
