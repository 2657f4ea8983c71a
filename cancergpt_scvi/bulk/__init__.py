"""Bulk RNA samples as CancerGPT pseudo-cells."""

from ._embedding import BulkKind, bulk_log_expression, embed_bulk, select_bulk_genes

__all__ = ["BulkKind", "bulk_log_expression", "embed_bulk", "select_bulk_genes"]
