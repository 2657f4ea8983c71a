"""The user-facing foundation model (scvi-tools style)."""

from ._cancergpt import CancerGPTModel

# the MuData routing the command line shares (not public API: kept out of __all__)
from ._mudata import RNA_MODALITY, expression_layer, registered_rna_modality, rna_modality
from ._precision import cpu_has_native_bf16
from ._presets import PRESETS

__all__ = ["PRESETS", "CancerGPTModel", "cpu_has_native_bf16"]
