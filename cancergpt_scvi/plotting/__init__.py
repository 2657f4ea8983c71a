"""Plots of training, embeddings and annotations."""

from ._confusion import plot_confusion_matrix
from ._training import plot_training_history
from ._umap import plot_umaps

__all__ = ["plot_confusion_matrix", "plot_training_history", "plot_umaps"]
