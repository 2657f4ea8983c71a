"""The ``--smoke`` option shared by the benchmark scripts: their smallest setting, for CI."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path


def parse_args(
    parser: argparse.ArgumentParser,
    smoke: Mapping[str, object],
    argv: Sequence[str] | None = None,
    help: str = "smallest setting (CI)",
) -> argparse.Namespace:
    """Parse the command line; with ``--smoke``, ``smoke`` replaces the defaults.

    Options given on the command line still win over ``smoke``. When ``smoke`` sets ``out`` to
    None and none is given, the outputs go to a temporary folder removed at exit (kept alive as
    ``args.scratch``).
    """
    parser.add_argument("--smoke", action="store_true", help=help)
    args = parser.parse_args(argv)
    if not args.smoke:
        return args
    parser.set_defaults(**smoke)
    args = parser.parse_args(argv)
    if "out" in smoke and args.out is None:
        args.scratch = tempfile.TemporaryDirectory(prefix=f"{Path(parser.prog).stem}_smoke_")
        args.out = Path(args.scratch.name)
    return args
