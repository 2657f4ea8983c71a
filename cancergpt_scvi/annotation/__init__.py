"""Annotating new cells from a labelled reference: kNN label transfer and a cell-state head."""

from ._metrics import annotation_scores
from ._model import CellStateModel
from ._module import CellStateModule
from ._transfer import UNKNOWN, transfer_labels

__all__ = ["UNKNOWN", "CellStateModel", "CellStateModule", "annotation_scores", "transfer_labels"]
