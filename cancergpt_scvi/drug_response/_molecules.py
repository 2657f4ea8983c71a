"""Drug structures from SMILES with RDKit (extra ``[drug]``): parsing, fingerprints, similarity."""

from __future__ import annotations

import numpy as np

from cancergpt_scvi._extras import require

# RDKit is the optional extra [drug]: without it, importing this subpackage names the install
Chem = require("rdkit.Chem", extra="drug", feature="DrugResponseModel")
rdBase = require("rdkit.rdBase", extra="drug", feature="DrugResponseModel")
rdFingerprintGenerator = require(
    "rdkit.Chem.rdFingerprintGenerator", extra="drug", feature="DrugResponseModel"
)


def parse_smiles(smiles: str, name: str | None = None) -> Chem.Mol:
    """Parse a SMILES string into an RDKit molecule.

    Parameters
    ----------
    smiles
        The SMILES string.
    name
        Drug name, used in error messages.

    Returns
    -------
    The RDKit molecule, with implicit hydrogens.

    Raises
    ------
    ValueError
        The SMILES is empty or not a string, or RDKit cannot parse it; the message names the
        drug.
    """
    label = f"drug {name!r}" if name is not None else "SMILES"
    if not isinstance(smiles, str) or not smiles.strip():
        raise ValueError(f"{label} has no SMILES (got {smiles!r}); give a SMILES string.")
    with rdBase.BlockLogs():  # RDKit's own log lines would duplicate the error below
        mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(
            f"{label}: RDKit cannot parse SMILES {smiles!r}; check the string (valence, "
            "ring closures, brackets) or look up the canonical SMILES of the drug."
        )
    return mol


def morgan_fingerprint(
    smiles: str, name: str | None = None, radius: int = 2, n_bits: int = 2048
) -> np.ndarray:
    """Morgan (ECFP-like) bit fingerprint of a molecule, as a float32 0/1 vector.

    Parameters
    ----------
    smiles
        The SMILES string.
    name
        Drug name, used in error messages.
    radius
        Radius of the circular environments (2 gives ECFP4).
    n_bits
        Length of the folded bit vector.

    Returns
    -------
    ``(n_bits,)`` float32 vector of 0s and 1s.
    """
    mol = parse_smiles(smiles, name)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    return generator.GetFingerprintAsNumPy(mol).astype(np.float32)


def tanimoto_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tanimoto (Jaccard) similarity between two sets of bit fingerprints.

    Parameters
    ----------
    a, b
        ``(m, n_bits)`` and ``(n, n_bits)`` arrays of 0s and 1s.

    Returns
    -------
    ``(m, n)`` similarities in [0, 1] (0 between two empty fingerprints).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    shared = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - shared
    return np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
