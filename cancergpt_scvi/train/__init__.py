"""Training: the CancerGPT training plan and the oversampling data splitter."""

from ._checkpointing import StepCheckpoint, StepSeed
from ._corpus_datamodule import CorpusDataModule, CorpusDataset
from ._data_splitter import OversamplingDataSplitter
from ._distributed_sampler import DistributedOversampler
from ._resumable_loader import ResumableDataLoader
from ._trainingplan import CancerGPTTrainingPlan

__all__ = [
    "CancerGPTTrainingPlan",
    "CorpusDataModule",
    "CorpusDataset",
    "DistributedOversampler",
    "OversamplingDataSplitter",
    "ResumableDataLoader",
    "StepCheckpoint",
    "StepSeed",
]
