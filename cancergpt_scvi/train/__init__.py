"""Training: the CancerGPT training plan, the oversampling data splitter and its samplers, the
callbacks of resumable training, and the validation and cross-validation splits that the task
heads and benchmarks share."""

from ._best_weights import BestWeights
from ._checkpointing import StepCheckpoint, StepSeed
from ._data_splitter import OversamplingDataSplitter, validation_cells
from ._distributed_sampler import DistributedOversampler, distributed_world
from ._splits import stratified_folds, survival_folds, validation_split
from ._trainingplan import CancerGPTTrainingPlan

# distributed_world and validation_cells, not in __all__, serve the package's other subpackages.
__all__ = [
    "BestWeights",
    "CancerGPTTrainingPlan",
    "DistributedOversampler",
    "OversamplingDataSplitter",
    "StepCheckpoint",
    "StepSeed",
    "stratified_folds",
    "survival_folds",
    "validation_split",
]
