"""Out-of-core pretraining corpora (h5ad files, TileDB-SOMA) and the data module over them."""

from ._corpus import Corpus, H5adCorpus
from ._datamodule import CorpusDataModule
from ._soma import SomaCorpus

__all__ = ["Corpus", "CorpusDataModule", "H5adCorpus", "SomaCorpus"]
