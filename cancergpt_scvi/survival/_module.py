"""Cox proportional-hazards module: a linear or small-MLP log-hazard head on sample features."""

from __future__ import annotations

from typing import Literal

import torch
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from cancergpt_scvi._constants import CAT_COVS_KEY, CONT_COVS_KEY, DURATION_KEY, EVENT_KEY, X_KEY
from cancergpt_scvi.nn import Standardization

Ties = Literal["efron", "breslow"]


def cox_partial_nll_terms(
    log_hazard: torch.Tensor,
    duration: torch.Tensor,
    event: torch.Tensor,
    ties: Ties = "efron",
) -> torch.Tensor:
    """Per-sample terms of the negative Cox partial log-likelihood.

    The negative log partial likelihood is the sum of the returned terms; censored samples
    contribute 0. The risk set of time ``t`` holds every sample with ``duration >= t``
    (a sample censored at ``t`` is still at risk at ``t``).

    Parameters
    ----------
    log_hazard
        ``(n,)`` log relative hazards (the linear predictor).
    duration
        ``(n,)`` positive follow-up times.
    event
        ``(n,)`` 1 for an observed event, 0 for censoring.
    ties
        ``"breslow"``: every tied event sees the whole risk set. ``"efron"``: the tied events'
        own hazards are removed from the risk set in ``d`` equal steps, which approximates the
        exact partial likelihood far better when many events share a time.

    Returns
    -------
    ``(n,)`` terms: for an event ``i`` in a group ``D`` of ``d`` tied events at its time, of
    which ``l`` come before it, ``log(R - l/d * S) - eta_i`` with ``R`` the risk-set sum and
    ``S`` the tied events' sum of ``exp(eta)`` (``l = 0`` for Breslow).
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}.")
    log_hazard = log_hazard.reshape(-1)
    duration = duration.reshape(-1)
    is_event = event.reshape(-1) > 0.5
    n = log_hazard.shape[0]
    order = torch.argsort(duration, stable=True)
    t = duration[order].contiguous()
    eta = log_hazard[order]
    e = is_event[order]
    e_f = e.to(eta.dtype)
    # log sum_{j >= i} exp(eta_j) in ascending-time order; ties share it at their first index
    log_cum = torch.logcumsumexp(eta.flip(0), dim=0).flip(0)
    first = torch.searchsorted(t, t, right=False)
    log_risk = log_cum[first]
    if ties == "breslow":
        terms = torch.where(e, log_risk - eta, torch.zeros_like(eta))
    else:
        # group of tied times = index of its first member
        d = torch.zeros(n, dtype=eta.dtype, device=eta.device).index_add_(0, first, e_f)
        # S_g = sum of exp(eta) over the group's events, computed with a detached max shift
        masked = torch.where(e, eta.detach(), torch.full_like(eta, -torch.inf))
        m = torch.full_like(eta, -torch.inf).scatter_reduce(0, first, masked, reduce="amax")
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        shifted = torch.where(e, eta - m[first], torch.zeros_like(eta))
        s = torch.zeros_like(eta).index_add_(0, first, torch.where(e, shifted.exp(), 0.0 * eta))
        # groups without events get a dummy 1 so no log(0) reaches the (masked) gradient
        log_s = m + torch.log(torch.where(d > 0, s, torch.ones_like(s)))
        cum_e = torch.cumsum(e_f, dim=0)
        before_group = torch.where(first > 0, cum_e[(first - 1).clamp(min=0)], 0.0 * cum_e)
        n_before = cum_e - e_f - before_group
        frac = n_before / d[first].clamp(min=1.0)
        ratio = torch.exp(torch.clamp(log_s[first] - log_risk, max=0.0))
        log_efron = log_risk + torch.log1p(-frac * ratio)
        terms = torch.where(e, log_efron - eta, torch.zeros_like(eta))
    out = torch.empty_like(terms)
    out[order] = terms
    return out


def fit_standardization(standardization: Standardization, design: torch.Tensor) -> torch.Tensor:
    """Fix ``standardization`` to the column means and standard deviations of ``design``.

    The one standardisation rule of the Cox fits (the model, the penalty path, the penalty grid):
    the population standard deviation, as glmnet and lifelines. A column that is constant in
    ``design`` (e.g. a category absent from a cross-validation fold) cannot inform the fit; it
    is centred and left unscaled (scale 1).

    Parameters
    ----------
    standardization
        The component to set, e.g. a :class:`CoxPHModule`'s ``standardization``.
    design
        Unstandardised design matrix of the training samples.

    Returns
    -------
    Boolean mask of the columns that are constant in ``design``.
    """
    scale = design.std(0, unbiased=False)
    standardization.set(design.mean(0), scale)
    return scale == 0


class CoxPHModule(BaseModuleClass):
    """Cox proportional-hazards head: standardised features to a log relative hazard.

    The design matrix is ``[features, continuous covariates, one-hot categorical covariates]``,
    standardised with a mean and scale fitted on the training samples (a
    :class:`~cancergpt_scvi.nn.Standardization`, saved with the weights; a column constant in
    the training samples is centred and left unscaled). The head is linear by default (a
    penalised Cox model) or a small MLP. It is trained on the Cox partial likelihood, averaged
    over the samples as in glmnet, plus an elastic-net penalty
    ``alpha * (l1_ratio * |w|_1 + (1 - l1_ratio) / 2 * |w|_2^2)`` on the weight matrices.
    There is no intercept: the baseline hazard absorbs it.

    Parameters
    ----------
    n_input
        Number of feature columns (embedding dimensions or genes).
    n_continuous_cov
        Number of continuous covariates.
    n_cats_per_cov
        Number of categories of each categorical covariate.
    n_hidden
        Width of the MLP's hidden layers; ``None`` for the linear Cox model.
    n_layers
        Hidden layers of the MLP (ignored when linear).
    dropout_rate
        Dropout of the MLP's hidden layers.
    ties
        Handling of tied event times, ``"efron"`` or ``"breslow"``.
    alpha
        Strength of the penalty.
    l1_ratio
        Share of the L1 part of the penalty (0: ridge, 1: lasso).
    """

    def __init__(
        self,
        n_input: int,
        n_continuous_cov: int = 0,
        n_cats_per_cov: list[int] | None = None,
        n_hidden: int | None = None,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        ties: Ties = "efron",
        alpha: float = 0.05,
        l1_ratio: float = 0.0,
    ):
        super().__init__()
        if ties not in ("efron", "breslow"):
            raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}.")
        if alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {alpha}.")
        if not 0.0 <= l1_ratio <= 1.0:
            raise ValueError(f"l1_ratio must lie in [0, 1], got {l1_ratio}.")
        self.n_input = n_input
        self.n_continuous_cov = n_continuous_cov
        self.n_cats_per_cov = list(n_cats_per_cov or [])
        self.ties = ties
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        n_design = n_input + n_continuous_cov + sum(self.n_cats_per_cov)
        self.n_design = n_design
        self.standardization = Standardization(n_design)
        if n_hidden is None:
            self.head = nn.Linear(n_design, 1, bias=False)
            # the Cox likelihood is convex in a linear head: start at the null model, as
            # lifelines and scikit-survival do
            nn.init.zeros_(self.head.weight)
        else:
            layers: list[nn.Module] = []
            width = n_design
            for _ in range(n_layers):
                layers += [nn.Linear(width, n_hidden), nn.ReLU(), nn.Dropout(dropout_rate)]
                width = n_hidden
            layers.append(nn.Linear(width, 1, bias=False))
            self.head = nn.Sequential(*layers)

    def design(
        self,
        x: torch.Tensor,
        cont_covs: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unstandardised design matrix ``[x, cont_covs, one_hot(cat_covs)]``."""
        parts = [x.float()]
        if self.n_continuous_cov > 0 and cont_covs is not None:
            parts.append(cont_covs.float())
        if self.n_cats_per_cov and cat_covs is not None:
            for k, n_cat in enumerate(self.n_cats_per_cov):
                parts.append(nn.functional.one_hot(cat_covs[:, k].long(), n_cat).float())
        return torch.cat(parts, dim=1)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {
            "x": tensors[X_KEY],
            "cont_covs": tensors.get(CONT_COVS_KEY),
            "cat_covs": tensors.get(CAT_COVS_KEY),
        }

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {}

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor,
        cont_covs: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Log relative hazard of each sample."""
        z = self.standardization(self.design(x, cont_covs, cat_covs))
        return {"log_hazard": self.head(z).squeeze(-1)}

    def generative(self, **kwargs) -> dict:
        """No generative part: the Cox model is discriminative."""
        return {}

    def penalty(self) -> torch.Tensor:
        """Elastic-net penalty on the weight matrices (biases are not penalised)."""
        weights = [p for name, p in self.head.named_parameters() if name.endswith("weight")]
        l1 = sum(w.abs().sum() for w in weights)
        l2 = sum(w.pow(2).sum() for w in weights)
        return self.alpha * (self.l1_ratio * l1 + 0.5 * (1.0 - self.l1_ratio) * l2)

    def loss(self, tensors, inference_outputs, generative_outputs, **kwargs) -> LossOutput:
        """Mean negative partial log-likelihood of the batch plus the penalty.

        The partial likelihood needs each event's whole risk set, so a batch should hold all
        training samples (``SurvivalModel`` trains full-batch).
        """
        log_hazard = inference_outputs["log_hazard"]
        terms = cox_partial_nll_terms(
            log_hazard,
            tensors[DURATION_KEY].reshape(-1).to(log_hazard.dtype),
            tensors[EVENT_KEY].reshape(-1),
            ties=self.ties,
        )
        nll = terms.mean()
        penalty = self.penalty()
        return LossOutput(
            loss=nll + penalty,
            reconstruction_loss=terms,
            extra_metrics={"neg_partial_loglik": nll.detach(), "penalty": penalty.detach()},
        )

    def sample(self, *args, **kwargs):
        """Not available: the Cox model does not model the features."""
        raise NotImplementedError("CoxPHModule is discriminative and cannot sample.")
