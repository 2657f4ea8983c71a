"""The model's input pipeline: gene vocabulary, per-cell binning, tokenisation, gene selection,
input checks, oversampling weights and the starting gene embeddings."""

from ._binning import BinningMode, bin_expression
from ._gene_loadings import pca_gene_loadings
from ._gene_symbols import gene_symbols
from ._hvg import cell_ranger_hvg
from ._oversampling import oversampling_weights
from ._tokenize import GeneSelection, TokenBatch, tokenize
from ._validation import check_categorical_obs, check_expression, check_unique_genes
from ._vocab import GeneVocab

__all__ = [
    "BinningMode",
    "GeneSelection",
    "GeneVocab",
    "TokenBatch",
    "bin_expression",
    "cell_ranger_hvg",
    "check_categorical_obs",
    "check_expression",
    "check_unique_genes",
    "gene_symbols",
    "oversampling_weights",
    "pca_gene_loadings",
    "tokenize",
]
