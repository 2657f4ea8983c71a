"""Bulk RNA samples as CancerGPT pseudo-cells."""

from ._embedding import BulkKind, bulk_log_expression, embed_bulk

__all__ = ["BulkKind", "bulk_log_expression", "embed_bulk"]
