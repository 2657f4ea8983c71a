"""Drug-response module: an ensemble of multi-task networks over the cell lines x drugs matrix."""

from __future__ import annotations

import torch
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from cancergpt_scvi._constants import CELL_FEATURES_KEY, RESPONSE_KEY
from cancergpt_scvi.nn import Standardization


class DrugResponseModule(BaseModuleClass):
    """Responses of a cell line to every drug at once, from its representation.

    Each of ``n_ensemble`` members is a multi-task network: a shared MLP maps the cell line's
    (centred, scaled) representation to ``n_latent`` features, and each drug has its own
    learned vector and bias, whose dot product with the features is the drug's standardised
    response (each drug's response is centred and scaled by its training statistics, so every
    drug weighs alike in the loss whatever its range). A minibatch is a set of cell lines with
    their whole row of the response matrix; unmeasured entries (NaN) and drugs left out of
    training are masked from the loss. Members differ in their initialisation and dropout;
    their standardised predictions are averaged.

    Optionally a linear term, one ridge regression per drug fitted in closed form after the
    networks (see :meth:`set_linear_term`), is averaged with the networks' prediction.

    Drugs outside training get no prediction here: the model combines the predictions of
    trained drugs that resemble them (see :class:`~cancergpt_scvi.drug_response.DrugResponseModel`).

    Parameters
    ----------
    n_input
        Width of the cell-line representation.
    n_drugs
        Number of drugs (columns of the response matrix).
    n_hidden
        Hidden width of each member's MLP.
    n_latent
        Width of the cell-line features and of each drug's vector.
    n_ensemble
        Number of members.
    dropout
        Dropout rate, on the input and on the hidden layer.
    """

    def __init__(
        self,
        n_input: int,
        n_drugs: int,
        n_hidden: int = 256,
        n_latent: int = 64,
        n_ensemble: int = 5,
        dropout: float = 0.3,
    ):
        super().__init__()
        if n_ensemble < 1:
            raise ValueError(f"n_ensemble must be at least 1, got {n_ensemble}.")
        self.n_ensemble = n_ensemble
        # training statistics, set by the model: the representation gets one scale for all
        # features (how much each feature varies is information that per-feature z-scores
        # would erase), each drug's response its own centre and scale
        self.cell_standardization = Standardization(n_input)
        self.response_standardization = Standardization(n_drugs)
        self.register_buffer("trained_drugs", torch.ones(n_drugs, dtype=torch.bool))
        self.register_buffer("linear_weight", torch.zeros(n_input, n_drugs))
        self.register_buffer("linear_bias", torch.zeros(n_drugs))
        self.register_buffer("linear_share", torch.zeros(()))
        self.encoders = nn.ModuleList(
            nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(n_input, n_hidden),
                nn.LayerNorm(n_hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(n_hidden, n_latent),
            )
            for _ in range(n_ensemble)
        )
        self.drug_vectors = nn.Parameter(0.01 * torch.randn(n_ensemble, n_drugs, n_latent))
        self.drug_bias = nn.Parameter(torch.zeros(n_ensemble, n_drugs))

    @torch.no_grad()
    def set_trained_drugs(self, trained_drugs: torch.Tensor) -> None:
        """Set the drugs whose responses train the networks (``(n_drugs,)`` bool)."""
        self.trained_drugs.copy_(torch.as_tensor(trained_drugs, dtype=torch.bool))

    @torch.no_grad()
    def set_linear_term(self, weight: torch.Tensor, bias: torch.Tensor, share: float) -> None:
        """Set the per-drug linear term, on the standardised representation and response.

        Parameters
        ----------
        weight
            ``(n_input, n_drugs)`` coefficients.
        bias
            ``(n_drugs,)`` intercepts.
        share
            Weight of the linear term in the prediction (the networks get ``1 - share``).
        """
        self.linear_weight.copy_(torch.as_tensor(weight))
        self.linear_bias.copy_(torch.as_tensor(bias))
        self.linear_share.fill_(float(share))

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        """The minibatch's cell-line representation."""
        return {"cell_features": tensors[CELL_FEATURES_KEY]}

    @auto_move_data
    def inference(self, cell_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each member's features of the cell lines, ``(n_ensemble, n_cells, n_latent)``."""
        x = self.cell_standardization(cell_features)
        return {"h": torch.stack([encoder(x) for encoder in self.encoders])}

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict, **kwargs
    ) -> dict:
        """The members' features and the representation (for the linear term)."""
        return {"h": inference_outputs["h"], "cell_features": tensors[CELL_FEATURES_KEY]}

    @auto_move_data
    def generative(self, h: torch.Tensor, cell_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Standardised responses of each member and the prediction, cell lines x drugs."""
        members = torch.einsum("kcl,kdl->kcd", h, self.drug_vectors) + self.drug_bias[:, None]
        linear = self.cell_standardization(cell_features) @ self.linear_weight + self.linear_bias
        share = self.linear_share
        standardised = (1 - share) * members.mean(0) + share * linear
        return {
            "member_predictions": members,
            "prediction": self.response_standardization.inverse(standardised),
        }

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
    ) -> LossOutput:
        """Mean squared error of every member on the measured, trained entries."""
        response = tensors[RESPONSE_KEY]
        measured = torch.isfinite(response) & self.trained_drugs
        target = torch.where(measured, self.response_standardization(response), 0)
        weight = measured.to(target.dtype)
        squared_error = (generative_outputs["member_predictions"] - target) ** 2 * weight
        per_cell = squared_error.sum(-1).mean(0)  # summed over drugs, averaged over members
        error = torch.where(measured, generative_outputs["prediction"] - response, 0)
        rmse = torch.sqrt((error**2).sum() / weight.sum().clamp(min=1))
        return LossOutput(
            loss=per_cell.sum() / weight.sum().clamp(min=1),
            reconstruction_loss=per_cell,
            extra_metrics={"rmse": rmse.detach()},
        )
