"""Registry keys of every field that the package's models register in ``setup_anndata``.

One place for all of them: the pretrained model's and the task heads'. scvi-tools' own keys are
reused where a field means what scvi-tools means by it.
"""

from scvi import REGISTRY_KEYS

# CancerGPTModel (and CellStateModel's expression)
X_KEY = REGISTRY_KEYS.X_KEY
BATCH_KEY = REGISTRY_KEYS.BATCH_KEY
TECHNOLOGY_KEY = "technology"
TISSUE_KEY = "tissue"

#: Adversarial domain covariates: discriminator name -> registry key.
DOMAIN_KEYS: dict[str, str] = {"batch": BATCH_KEY, "technology": TECHNOLOGY_KEY}

# CellStateModel
LABELS_KEY = REGISTRY_KEYS.LABELS_KEY
EMBEDDING_KEY = "embedding"

# SurvivalModel
DURATION_KEY = "duration"
EVENT_KEY = "event"
CONT_COVS_KEY = REGISTRY_KEYS.CONT_COVS_KEY
CAT_COVS_KEY = REGISTRY_KEYS.CAT_COVS_KEY

# DrugResponseModel
CELL_FEATURES_KEY = "cell_features"
RESPONSE_KEY = "response"
