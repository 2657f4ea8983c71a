"""Drug-response head: IC50 from cell-line expression plus drug structure (needs ``[drug]``)."""

from ._data import DrugResponseDataSplitter, DrugResponsePairs
from ._encoders import FingerprintEncoder, MolecularGraphEncoder
from ._model import DrugResponseModel
from ._module import DrugResponseModule
from ._molecules import (
    DrugFeaturizer,
    MolecularGraph,
    morgan_fingerprint,
    parse_smiles,
    smiles_to_graph,
)

__all__ = [
    "DrugFeaturizer",
    "DrugResponseDataSplitter",
    "DrugResponseModel",
    "DrugResponseModule",
    "DrugResponsePairs",
    "FingerprintEncoder",
    "MolecularGraph",
    "MolecularGraphEncoder",
    "morgan_fingerprint",
    "parse_smiles",
    "smiles_to_graph",
]
