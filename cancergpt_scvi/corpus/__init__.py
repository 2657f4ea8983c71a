"""Out-of-core pretraining corpora (h5ad files, TileDB-SOMA) and the data module over them."""

from ._corpus import Corpus, H5adCorpus
from ._datamodule import CorpusDataModule, CorpusDataset
from ._soma import SomaCorpus

__all__ = ["Corpus", "CorpusDataModule", "CorpusDataset", "H5adCorpus", "SomaCorpus"]
