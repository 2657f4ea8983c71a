"""Drug structures from SMILES with RDKit (extra ``[drug]``): molecular graphs, fingerprints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from cancergpt_scvi._extras import require

# RDKit is the optional extra [drug]: without it, importing this subpackage names the install
Chem = require("rdkit.Chem", extra="drug", feature="DrugResponseModel")
rdBase = require("rdkit.rdBase", extra="drug", feature="DrugResponseModel")
rdFingerprintGenerator = require(
    "rdkit.Chem.rdFingerprintGenerator", extra="drug", feature="DrugResponseModel"
)

#: Elements with their own one-hot slot; anything else (Pt, As, ...) falls into "other".
ATOM_ELEMENTS: tuple[str, ...] = ("C", "N", "O", "S", "F", "Cl", "Br", "I", "P", "B", "Si", "Se")
_DEGREES = (0, 1, 2, 3, 4, 5)
_HYBRIDISATIONS = (
    Chem.HybridizationType.SP,
    Chem.HybridizationType.SP2,
    Chem.HybridizationType.SP3,
    Chem.HybridizationType.SP3D,
    Chem.HybridizationType.SP3D2,
)
_CHARGES = (-1, 0, 1)
_N_HYDROGENS = (0, 1, 2, 3)
_BOND_TYPES = (
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)

#: Names of the atom feature columns of :class:`MolecularGraph` (one-hot blocks with an
#: "other" slot, then flags).
ATOM_FEATURE_NAMES: tuple[str, ...] = (
    *(f"element={e}" for e in ATOM_ELEMENTS),
    "element=other",
    *(f"degree={d}" for d in _DEGREES),
    "degree=other",
    *(f"hybridisation={h}" for h in _HYBRIDISATIONS),
    "hybridisation=other",
    "aromatic",
    *(f"charge={c:+d}" for c in _CHARGES),
    "charge=other",
    *(f"hydrogens={h}" for h in _N_HYDROGENS),
    "hydrogens>=4",
    "in_ring",
)
#: Names of the bond feature columns of :class:`MolecularGraph`.
BOND_FEATURE_NAMES: tuple[str, ...] = (
    "single",
    "double",
    "triple",
    "aromatic",
    "conjugated",
    "in_ring",
)
N_ATOM_FEATURES = len(ATOM_FEATURE_NAMES)
N_BOND_FEATURES = len(BOND_FEATURE_NAMES)


def _one_hot(value: Any, choices: Sequence) -> list[float]:
    """One-hot over ``choices`` plus a final "other" slot."""
    out = [0.0] * (len(choices) + 1)
    out[choices.index(value) if value in choices else len(choices)] = 1.0
    return out


def _atom_features(atom: Chem.Atom) -> list[float]:
    return [
        *_one_hot(atom.GetSymbol(), ATOM_ELEMENTS),
        *_one_hot(atom.GetDegree(), _DEGREES),
        *_one_hot(atom.GetHybridization(), _HYBRIDISATIONS),
        float(atom.GetIsAromatic()),
        *_one_hot(atom.GetFormalCharge(), _CHARGES),
        *_one_hot(atom.GetTotalNumHs(), _N_HYDROGENS),
        float(atom.IsInRing()),
    ]


def _bond_features(bond: Chem.Bond) -> list[float]:
    bond_type = bond.GetBondType()
    return [
        *(float(bond_type == t) for t in _BOND_TYPES),
        float(bond.GetIsConjugated()),
        float(bond.IsInRing()),
    ]


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


@dataclass(frozen=True)
class MolecularGraph:
    """A molecule as a graph of heavy atoms (nodes) and bonds (edges, both directions).

    Attributes
    ----------
    atom_features
        ``(n_atoms, N_ATOM_FEATURES)`` float32, columns :data:`ATOM_FEATURE_NAMES`.
    bond_index
        ``(2, 2 * n_bonds)`` int64 source and target atom of each directed edge.
    bond_features
        ``(2 * n_bonds, N_BOND_FEATURES)`` float32, columns :data:`BOND_FEATURE_NAMES`.
    """

    atom_features: np.ndarray
    bond_index: np.ndarray
    bond_features: np.ndarray

    @property
    def n_atoms(self) -> int:
        """Number of heavy atoms."""
        return self.atom_features.shape[0]

    @property
    def n_bonds(self) -> int:
        """Number of (undirected) bonds between heavy atoms."""
        return self.bond_index.shape[1] // 2


def smiles_to_graph(smiles: str, name: str | None = None) -> MolecularGraph:
    """Featurise a molecule as a graph of atoms and bonds.

    Atom features: element, degree, hybridisation, aromaticity, formal charge, number of
    attached hydrogens, ring membership (:data:`ATOM_FEATURE_NAMES`). Bond features: bond
    type, conjugation, ring membership (:data:`BOND_FEATURE_NAMES`). Hydrogens are implicit
    (counted on their heavy atom), as is usual for molecular graph networks.

    Parameters
    ----------
    smiles
        The SMILES string.
    name
        Drug name, used in error messages.

    Returns
    -------
    The molecule's atoms, directed bonds and their features.
    """
    mol = parse_smiles(smiles, name)
    atoms = np.asarray([_atom_features(a) for a in mol.GetAtoms()], dtype=np.float32)
    src, dst, feats = [], [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        f = _bond_features(bond)
        src += [i, j]
        dst += [j, i]
        feats += [f, f]
    return MolecularGraph(
        atom_features=atoms,
        bond_index=np.asarray([src, dst], dtype=np.int64).reshape(2, -1),
        bond_features=np.asarray(feats, dtype=np.float32).reshape(-1, N_BOND_FEATURES),
    )


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


DrugRepresentation = Literal["graph", "fingerprint"]


class DrugFeaturizer:
    """Featurised structures of a set of drugs, batched by drug index.

    Each drug is featurised once, here; a minibatch then gathers the few drugs it needs, so
    a drug's structure is encoded once per minibatch, not once per (cell line, drug) pair.

    Parameters
    ----------
    smiles
        Drug name to SMILES.
    representation
        ``"graph"``: molecular graphs for a graph neural network; ``"fingerprint"``: Morgan
        fingerprints.
    radius, n_bits
        Morgan fingerprint parameters (``"fingerprint"`` only).

    Attributes
    ----------
    names
        Drug names, in the order that drug indices refer to.
    representation
        ``"graph"`` or ``"fingerprint"``.
    """

    def __init__(
        self,
        smiles: Mapping[str, str],
        representation: DrugRepresentation = "graph",
        radius: int = 2,
        n_bits: int = 2048,
    ):
        if representation not in ("graph", "fingerprint"):
            raise ValueError(
                f"representation must be 'graph' or 'fingerprint', got {representation!r}."
            )
        self.names = list(smiles)
        self.representation = representation
        if representation == "graph":
            self._graphs = [smiles_to_graph(s, name) for name, s in smiles.items()]
        else:
            self._fingerprints = (
                np.stack(
                    [morgan_fingerprint(s, name, radius, n_bits) for name, s in smiles.items()]
                )
                if len(smiles)
                else np.zeros((0, n_bits), dtype=np.float32)
            )

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, drug_indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Tensors of the drugs ``drug_indices``, in that order.

        Graphs are concatenated into one disconnected graph: ``atom_features``,
        ``bond_index`` (offset into the concatenation), ``bond_features`` and ``atom_to_drug``
        (position of each atom's drug in ``drug_indices``). Fingerprints: ``fingerprints``.

        Parameters
        ----------
        drug_indices
            Positions of the drugs in :attr:`names`.

        Returns
        -------
        Tensors by minibatch key.
        """
        if self.representation == "fingerprint":
            return {"fingerprints": torch.from_numpy(self._fingerprints[drug_indices])}
        graphs = [self._graphs[i] for i in drug_indices]
        n_atoms = np.asarray([g.n_atoms for g in graphs])
        offsets = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
        return {
            "atom_features": torch.from_numpy(np.concatenate([g.atom_features for g in graphs])),
            "bond_index": torch.from_numpy(
                np.concatenate([g.bond_index + o for g, o in zip(graphs, offsets, strict=True)], 1)
            ),
            "bond_features": torch.from_numpy(np.concatenate([g.bond_features for g in graphs])),
            "atom_to_drug": torch.from_numpy(np.repeat(np.arange(len(graphs)), n_atoms)),
        }
