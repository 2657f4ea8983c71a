"""Training: the CancerGPT training plan, the oversampling data splitter and its samplers."""

from ._best_weights import BestWeights
from ._checkpointing import StepCheckpoint, StepSeed
from ._data_splitter import OversamplingDataSplitter
from ._distributed_sampler import DistributedOversampler, distributed_world
from ._trainingplan import CancerGPTTrainingPlan

__all__ = [
    "BestWeights",
    "CancerGPTTrainingPlan",
    "DistributedOversampler",
    "OversamplingDataSplitter",
    "StepCheckpoint",
    "StepSeed",
    "distributed_world",
]
