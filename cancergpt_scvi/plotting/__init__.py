"""Plots of training and embeddings."""

from ._training import plot_training_history
from ._umap import plot_umaps

__all__ = ["plot_training_history", "plot_umaps"]
