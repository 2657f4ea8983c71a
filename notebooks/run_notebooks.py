"""Execute every tutorial notebook in this folder end to end (used by CI: `make notebooks`).

Outputs are not written back: the notebooks stay free of outputs in git.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(target: Path) -> int:
    """Run the notebooks of a folder, or one notebook file; 1 if any fails."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    paths = [target] if target.is_file() else sorted(target.glob("*.ipynb"))
    folder = target.parent if target.is_file() else target
    failures = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        try:
            NotebookClient(
                notebook,
                timeout=900,
                kernel_name="python3",
                resources={"metadata": {"path": folder}},
            ).execute()
            print(f"ok    {path.name}  {time.perf_counter() - start:.0f} s", flush=True)
        except Exception as err:  # report every notebook, then fail
            failures.append(path.name)
            print(f"FAIL  {path.name}: {err}", flush=True)
    print(f"{len(failures)} failed of {len(paths)} notebooks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent))
