"""Drug-response head: IC50 from cell-line expression plus drug structure (extra ``[drug]``).

The model (:class:`DrugResponseModel`), its module, the checks of response tables, SMILES
parsing, Morgan fingerprints and their similarity with RDKit, and the accuracy metrics.
Importing it without RDKit raises an :class:`ImportError` naming
``pip install 'cancergpt-scvi[drug]'``.
"""

from ._metrics import drug_response_metrics, per_drug_pearson
from ._model import DrugResponseModel
from ._module import DrugResponseModule
from ._molecules import morgan_fingerprint, parse_smiles, tanimoto_similarity

__all__ = [
    "DrugResponseModel",
    "DrugResponseModule",
    "drug_response_metrics",
    "morgan_fingerprint",
    "parse_smiles",
    "per_drug_pearson",
    "tanimoto_similarity",
]
