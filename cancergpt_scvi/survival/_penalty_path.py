"""A Cox module fitted along a path of penalties, outside the Lightning loop.

The inner cross-validation that tunes the penalty fits the whole path once per fold; a loop of
plain torch optimiser steps in float64, each fit warm-started from the previous penalty's, is
far cheaper than a Lightning run per penalty.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch

from ._module import CoxPHModule, cox_partial_nll_terms, fit_standardization

Optimizer = Literal["LBFGS", "Adam"]


def fit_penalty_path(
    module: CoxPHModule,
    design: torch.Tensor,
    durations: torch.Tensor,
    events: torch.Tensor,
    rows: np.ndarray,
    alphas: np.ndarray,
    optimizer: Optimizer,
    lr: float,
    max_epochs: int,
) -> np.ndarray:
    """Linear predictors of all samples of ``design`` along a penalty path fitted on ``rows``.

    A float64 copy of ``module``, its weights reinitialised, is standardised on ``rows`` and
    fitted at each penalty from the largest to the smallest, each fit warm-started from the
    previous one: L-BFGS to convergence (smooth problems) or Adam, ``max_epochs`` steps for
    the first penalty and a quarter of them for each next one. ``module`` is not changed.

    Parameters
    ----------
    module
        The model's module, whose head, ties and ``l1_ratio`` are fitted.
    design
        ``(n, p)`` unstandardised float64 design matrix of the samples.
    durations, events
        ``(n,)`` follow-up times and event indicators.
    rows
        Positions in ``design`` of the samples to fit on.
    alphas
        Penalties, from the largest to the smallest.
    optimizer, lr, max_epochs
        The optimiser (L-BFGS runs to convergence whatever ``lr`` and ``max_epochs``).

    Returns
    -------
    ``(len(alphas), n)`` linear predictors of every sample, one row per penalty.
    """
    work = copy.deepcopy(module).double()
    for layer in work.head.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    if isinstance(work.head, torch.nn.Linear):
        torch.nn.init.zeros_(work.head.weight)
    fit_standardization(work.standardization, design[rows])
    z = work.standardization(design)
    z_fit, d_fit, e_fit = z[rows], durations[rows], events[rows]
    params = list(work.head.parameters())

    def objective() -> torch.Tensor:
        eta = work.head(z_fit).squeeze(-1)
        return cox_partial_nll_terms(eta, d_fit, e_fit, ties=work.ties).mean() + work.penalty()

    out = np.empty((len(alphas), design.shape[0]))
    for i, alpha in enumerate(alphas):
        work.alpha = float(alpha)
        work.train()
        if optimizer == "LBFGS":
            opt = torch.optim.LBFGS(
                params,
                lr=1.0,
                max_iter=200,
                history_size=20,
                tolerance_grad=1e-7,
                tolerance_change=1e-10,
                line_search_fn="strong_wolfe",
            )

            def closure() -> torch.Tensor:
                for p in params:
                    p.grad = None
                loss = objective()
                loss.backward()
                return loss

            opt.step(closure)
        else:
            opt = torch.optim.Adam(params, lr=lr)
            for _ in range(max_epochs if i == 0 else max(max_epochs // 4, 1)):
                opt.zero_grad()
                objective().backward()
                opt.step()
        work.eval()
        with torch.no_grad():
            out[i] = work.head(z).squeeze(-1).numpy()
    return out
