"""Registry keys of the fields that CancerGPT models register in ``setup_anndata``."""

from scvi import REGISTRY_KEYS

X_KEY = REGISTRY_KEYS.X_KEY
BATCH_KEY = REGISTRY_KEYS.BATCH_KEY
TECHNOLOGY_KEY = "technology"
TISSUE_KEY = "tissue"

#: Adversarial domain covariates: discriminator name -> registry key.
DOMAIN_KEYS: dict[str, str] = {"batch": BATCH_KEY, "technology": TECHNOLOGY_KEY}
