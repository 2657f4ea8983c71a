"""The model's input pipeline: gene vocabulary, per-cell binning, tokenisation, gene selection,
input checks, oversampling weights, the starting gene embeddings and count thinning."""

from ._binning import BinningMode, bin_expression
from ._gene_loadings import pca_gene_loadings
from ._gene_symbols import gene_symbols
from ._hvg import cell_ranger_hvg
from ._oversampling import oversampling_weights
from ._thinning import thin_counts
from ._tokenize import GeneSelection, TokenBatch, tokenize
from ._validation import (
    check_categorical_obs,
    check_expression,
    check_unique_genes,
    holds_counts,
)
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
    "holds_counts",
    "oversampling_weights",
    "pca_gene_loadings",
    "thin_counts",
    "tokenize",
]
