"""Training: the CancerGPT training plan, the oversampling data splitter and its samplers, and
the validation and cross-validation splits that the task heads and benchmarks share."""

from ._best_weights import BestWeights
from ._checkpointing import StepCheckpoint, StepSeed
from ._data_splitter import OversamplingDataSplitter
from ._distributed_sampler import DistributedOversampler, distributed_world
from ._splits import stratified_folds, survival_folds, validation_split
from ._trainingplan import CancerGPTTrainingPlan

__all__ = [
    "BestWeights",
    "CancerGPTTrainingPlan",
    "DistributedOversampler",
    "OversamplingDataSplitter",
    "StepCheckpoint",
    "StepSeed",
    "distributed_world",
    "stratified_folds",
    "survival_folds",
    "validation_split",
]
