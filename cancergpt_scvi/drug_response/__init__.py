"""Drug-response head: IC50 from cell-line expression plus drug structure (extra ``[drug]``).

The model (:class:`DrugResponseModel`) and its module, Morgan fingerprints and their Tanimoto
similarity with RDKit, the nearest-drugs rule that predicts unseen drugs, and the accuracy
metrics. Importing it without RDKit raises an :class:`ImportError` naming
``pip install 'cancergpt-scvi[drug]'``.
"""

from ._metrics import drug_response_metrics, per_drug_pearson
from ._model import DrugResponseModel
from ._module import DrugResponseModule
from ._molecules import morgan_fingerprint, tanimoto_similarity
from ._nearest_drugs import nearest_drugs_average

__all__ = [
    "DrugResponseModel",
    "DrugResponseModule",
    "drug_response_metrics",
    "morgan_fingerprint",
    "nearest_drugs_average",
    "per_drug_pearson",
    "tanimoto_similarity",
]
