"""Training: the CancerGPT training plan and the oversampling data splitter."""

from ._data_splitter import OversamplingDataSplitter
from ._trainingplan import CancerGPTTrainingPlan

__all__ = ["CancerGPTTrainingPlan", "OversamplingDataSplitter"]
