"""Short listings of names for error messages."""

from __future__ import annotations

from collections.abc import Iterable


def listing(values: Iterable, limit: int = 5) -> str:
    """The first ``limit`` values, comma-separated, and how many more there are."""
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")
