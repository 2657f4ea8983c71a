import subprocess
import sys

import pytest

OPTIONAL = ("rdkit", "lifelines", "sksurv", "harmonypy", "tiledbsoma")


def _imported_after(statement: str) -> set[str]:
    """Top-level modules of interest loaded by ``statement`` in a fresh interpreter."""
    code = (
        f"import sys; {statement}; "
        f"print(' '.join(m for m in {(*OPTIONAL, 'matplotlib.pyplot')!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_package_imports_no_extra_and_no_pyplot():
    assert _imported_after("import cancergpt_scvi") == set()


@pytest.mark.parametrize(
    "statement",
    [
        "from cancergpt_scvi import CancerGPTModel",
        "import cancergpt_scvi.datasets, cancergpt_scvi.corpus, cancergpt_scvi.benchmark",
    ],
)
def test_the_core_and_the_example_data_need_no_extra(statement):
    assert _imported_after(statement).isdisjoint(OPTIONAL)


def test_subpackages_and_models_are_reachable_from_the_package():
    import cancergpt_scvi

    for name in cancergpt_scvi.__all__:
        assert getattr(cancergpt_scvi, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = cancergpt_scvi.nonexistent
