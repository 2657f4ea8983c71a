"""Drug-structure encoders: a message-passing network over molecular graphs, a fingerprint MLP."""

from __future__ import annotations

import torch
from torch import nn


class MessagePassingLayer(nn.Module):
    """One round of message passing with bond features (GINE-style), residual and LayerNorm.

    ``h_i <- LayerNorm(h_i + MLP(h_i + sum_j ReLU(h_j + W e_ij)))`` over the bonds ``j -> i``.

    Parameters
    ----------
    n_hidden
        Width of atom states.
    n_bond_features
        Width of bond features.
    dropout
        Dropout on the update.
    """

    def __init__(self, n_hidden: int, n_bond_features: int, dropout: float = 0.0):
        super().__init__()
        self.bond_embedding = nn.Linear(n_bond_features, n_hidden)
        self.update = nn.Sequential(
            nn.Linear(n_hidden, n_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(n_hidden, n_hidden),
        )
        self.norm = nn.LayerNorm(n_hidden)

    def forward(
        self, h: torch.Tensor, bond_index: torch.Tensor, bond_features: torch.Tensor
    ) -> torch.Tensor:
        src, dst = bond_index
        messages = torch.relu(h[src] + self.bond_embedding(bond_features))
        aggregated = torch.zeros_like(h).index_add_(0, dst, messages)
        return self.norm(h + self.update(h + aggregated))


class MolecularGraphEncoder(nn.Module):
    """Graph neural network from a batch of molecular graphs to one vector per molecule.

    Atoms are embedded, updated by ``n_layers`` rounds of :class:`MessagePassingLayer`, and
    pooled per molecule by mean and max (so size and the strongest local motif both count).

    Parameters
    ----------
    n_atom_features, n_bond_features
        Widths of the atom and bond features.
    n_hidden
        Width of atom states.
    n_output
        Width of the molecule vector.
    n_layers
        Message-passing rounds (the radius of the environment an atom state sees).
    dropout
        Dropout in the layers.
    """

    def __init__(
        self,
        n_atom_features: int,
        n_bond_features: int,
        n_hidden: int = 128,
        n_output: int = 64,
        n_layers: int = 3,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.atom_embedding = nn.Linear(n_atom_features, n_hidden)
        self.layers = nn.ModuleList(
            [MessagePassingLayer(n_hidden, n_bond_features, dropout) for _ in range(n_layers)]
        )
        self.readout = nn.Sequential(nn.Linear(2 * n_hidden, n_output), nn.ReLU())

    def forward(
        self,
        atom_features: torch.Tensor,
        bond_index: torch.Tensor,
        bond_features: torch.Tensor,
        atom_to_drug: torch.Tensor,
        n_drugs: int,
    ) -> torch.Tensor:
        """``(n_drugs, n_output)`` vectors of the molecules that ``atom_to_drug`` indexes."""
        h = self.atom_embedding(atom_features)
        for layer in self.layers:
            h = layer(h, bond_index, bond_features)
        index = atom_to_drug.unsqueeze(1).expand_as(h)
        total = torch.zeros(n_drugs, h.shape[1], dtype=h.dtype, device=h.device)
        total = total.scatter_add(0, index, h)
        counts = torch.bincount(atom_to_drug, minlength=n_drugs).clamp(min=1).unsqueeze(1)
        maximum = torch.full_like(total, float("-inf")).scatter_reduce(
            0, index, h, reduce="amax", include_self=True
        )
        return self.readout(torch.cat([total / counts, maximum], dim=1))


class FingerprintEncoder(nn.Module):
    """MLP from Morgan fingerprint bits to one vector per molecule.

    Parameters
    ----------
    n_bits
        Fingerprint length.
    n_hidden
        Hidden width.
    n_output
        Width of the molecule vector.
    dropout
        Dropout after the hidden layer.
    """

    def __init__(self, n_bits: int, n_hidden: int = 128, n_output: int = 64, dropout: float = 0.1):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(n_bits, n_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(n_hidden, n_output),
            nn.ReLU(),
        )

    def forward(self, fingerprints: torch.Tensor) -> torch.Tensor:
        """``(n_drugs, n_output)`` vectors of the fingerprints' molecules."""
        return self.mlp(fingerprints)
