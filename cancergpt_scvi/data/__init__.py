"""The model's input pipeline: gene vocabulary, per-cell binning, tokenisation, gene selection,
oversampling weights, the starting gene embeddings and count thinning."""

from ._binning import BinningMode, bin_expression
from ._expression_scale import check_expression_scale, expression_scale
from ._gene_loadings import init_gene_embeddings, pca_gene_loadings
from ._gene_matching import match_genes_by_name
from ._gene_symbols import gene_symbols
from ._hvg import cell_ranger_hvg
from ._indices import cell_indices
from ._oversampling import oversampling_weights
from ._sampled_tokens import sampled_tokens
from ._thinning import thin_counts
from ._tokenize import GeneSelection, TokenBatch, tokenize
from ._validation import (
    check_categorical_obs,
    check_expression,
    check_expression_values,
    check_unique_genes,
    holds_counts,
)
from ._vocab import GeneVocab

# The names above that are not in __all__ serve the package's other subpackages (the model,
# the heads): the reading of an ``indices`` argument, input checks, the type aliases of
# arguments, the token batch and the start of the gene embeddings.
__all__ = [
    "GeneVocab",
    "bin_expression",
    "cell_ranger_hvg",
    "oversampling_weights",
    "pca_gene_loadings",
    "sampled_tokens",
    "thin_counts",
    "tokenize",
]
