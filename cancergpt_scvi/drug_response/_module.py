"""Drug-response module: a cell-line branch and a drug-structure branch, fused to a response."""

from __future__ import annotations

from typing import Literal

import torch
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.nn import FCLayers
from torch import nn

from ._encoders import FingerprintEncoder, MolecularGraphEncoder
from ._molecules import N_ATOM_FEATURES, N_BOND_FEATURES

#: Minibatch keys of a drug's structure, by representation.
DRUG_INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "graph": ("atom_features", "bond_index", "bond_features", "atom_to_drug"),
    "fingerprint": ("fingerprints",),
}


class DrugResponseModule(BaseModuleClass):
    """DeepCDR-style response regression on (cell line, drug) pairs.

    A minibatch holds the *unique* cell lines and drugs of its pairs, plus each pair's
    position among them (``pair_cell``, ``pair_drug``): each branch encodes a cell line or a
    drug once per minibatch, whatever the number of pairs it appears in. The fusion MLP sees
    the two vectors and their elementwise product (a drug-specific weighting of cell-line
    features, the form drug-specific sensitivity takes). Inputs and the response are
    standardised with statistics of the training set (buffers saved with the weights).

    Parameters
    ----------
    n_input
        Width of the cell-line representation.
    drug_representation
        ``"graph"`` (message-passing network over atoms and bonds) or ``"fingerprint"``
        (MLP over Morgan fingerprint bits).
    n_hidden
        Hidden width of the MLPs and of atom states.
    n_latent
        Width of the cell-line and drug vectors.
    n_layers
        Layers of the cell-line and fusion MLPs.
    n_graph_layers
        Message-passing rounds of the drug graph network.
    n_fingerprint_bits
        Fingerprint length (``"fingerprint"`` only).
    dropout
        Dropout rate.
    """

    def __init__(
        self,
        n_input: int,
        drug_representation: Literal["graph", "fingerprint"] = "graph",
        n_hidden: int = 128,
        n_latent: int = 64,
        n_layers: int = 1,
        n_graph_layers: int = 3,
        n_fingerprint_bits: int = 2048,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.drug_representation = drug_representation
        self.n_fingerprint_bits = n_fingerprint_bits
        self.register_buffer("cell_mean", torch.zeros(n_input))
        self.register_buffer("cell_scale", torch.ones(n_input))
        self.register_buffer("response_mean", torch.zeros(()))
        self.register_buffer("response_scale", torch.ones(()))
        mlp = {"dropout_rate": dropout, "use_batch_norm": False, "use_layer_norm": True}
        self.cell_encoder = FCLayers(n_input, n_latent, n_layers=n_layers, n_hidden=n_hidden, **mlp)
        if drug_representation == "graph":
            self.drug_encoder = MolecularGraphEncoder(
                N_ATOM_FEATURES, N_BOND_FEATURES, n_hidden, n_latent, n_graph_layers, dropout
            )
        elif drug_representation == "fingerprint":
            self.drug_encoder = FingerprintEncoder(n_fingerprint_bits, n_hidden, n_latent, dropout)
        else:
            raise ValueError(
                "drug_representation must be 'graph' or 'fingerprint', "
                f"got {drug_representation!r}."
            )
        self.fusion = nn.Sequential(
            FCLayers(3 * n_latent, n_hidden, n_layers=n_layers, n_hidden=n_hidden, **mlp),
            nn.Linear(n_hidden, 1),
        )

    @torch.no_grad()
    def set_standardization(
        self,
        cell_mean: torch.Tensor,
        cell_scale: torch.Tensor,
        response_mean: float,
        response_scale: float,
    ) -> None:
        """Set the training-set statistics used to standardise inputs and the response.

        Parameters
        ----------
        cell_mean, cell_scale
            ``(n_input,)`` centre and scale of the cell-line representation.
        response_mean, response_scale
            Centre and scale of the response.
        """
        self.cell_mean.copy_(torch.as_tensor(cell_mean))
        self.cell_scale.copy_(torch.as_tensor(cell_scale))
        self.response_mean.fill_(float(response_mean))
        self.response_scale.fill_(float(response_scale))

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        """Cell-line features, the drug inputs of the representation, and the number of drugs."""
        return {
            "cell_features": tensors["cell_features"],
            "drug_inputs": {k: tensors[k] for k in DRUG_INPUT_KEYS[self.drug_representation]},
            "n_drugs": tensors["drug_ids"].shape[0],
        }

    @auto_move_data
    def inference(
        self, cell_features: torch.Tensor, drug_inputs: dict[str, torch.Tensor], n_drugs: int
    ) -> dict[str, torch.Tensor]:
        """Encode the minibatch's unique cell lines and unique drugs."""
        h_cell = self.cell_encoder((cell_features - self.cell_mean) / self.cell_scale)
        if self.drug_representation == "graph":
            h_drug = self.drug_encoder(**drug_inputs, n_drugs=n_drugs)
        else:
            h_drug = self.drug_encoder(**drug_inputs)
        return {"h_cell": h_cell, "h_drug": h_drug}

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict, **kwargs
    ) -> dict:
        """The encoded cell lines and drugs, and each pair's position among them."""
        return {
            "h_cell": inference_outputs["h_cell"],
            "h_drug": inference_outputs["h_drug"],
            "pair_cell": tensors["pair_cell"],
            "pair_drug": tensors["pair_drug"],
        }

    @auto_move_data
    def generative(
        self,
        h_cell: torch.Tensor,
        h_drug: torch.Tensor,
        pair_cell: torch.Tensor,
        pair_drug: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Fuse each pair's cell-line and drug vectors into its response."""
        c, d = h_cell[pair_cell], h_drug[pair_drug]
        standardised = self.fusion(torch.cat([c, d, c * d], dim=1)).squeeze(1)
        return {
            "standardised_prediction": standardised,
            "prediction": standardised * self.response_scale + self.response_mean,
        }

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
    ) -> LossOutput:
        """Mean squared error on the standardised response."""
        response = tensors["response"]
        target = (response - self.response_mean) / self.response_scale
        squared_error = (generative_outputs["standardised_prediction"] - target) ** 2
        rmse = torch.sqrt(((generative_outputs["prediction"] - response) ** 2).mean())
        return LossOutput(
            loss=squared_error.mean(),
            reconstruction_loss=squared_error,
            extra_metrics={"rmse": rmse.detach()},
        )
