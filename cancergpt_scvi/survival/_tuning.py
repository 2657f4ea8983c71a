"""The penalty of a Cox model chosen by cross-validation along a path of penalties.

Three pieces:

* :func:`cox_penalty_grid`: a geometric grid from a penalty strong enough to keep every
  coefficient (near) zero down to a small fraction of it, as glmnet's and scikit-survival's
  ``CoxnetSurvivalAnalysis`` paths;
* :func:`tune_cox_penalty`: the path fitted on the training part of each fold and scored on
  its held-out part, by the cross-validated partial-likelihood deviance (glmnet's
  ``cv.glmnet(family="cox")`` default) or by Harrell's C. Any penalised Cox fitter can be tuned
  with it (the benchmark tunes lifelines' ``CoxPHFitter`` so);
* :func:`tune_module_penalty`: the two applied to a :class:`~cancergpt_scvi.survival.CoxPHModule`
  (:meth:`~cancergpt_scvi.survival.SurvivalModel.tune_penalty`, the model's default
  ``alpha="cv"``).

None needs the ``[survival]`` extra except the ``"c_index"`` scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch

from cancergpt_scvi.nn import Standardization
from cancergpt_scvi.train import survival_folds

from ._metrics import concordance_harrell
from ._module import CoxPHModule, Ties, cox_partial_nll_terms, fit_standardization
from ._penalty_path import Optimizer, fit_penalty_path

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

Scoring = Literal["deviance", "c_index"]

#: Smallest L1 share used to place the start of the path (glmnet uses 0.001): for a ridge
#: penalty no finite value zeroes the coefficients, and at ``max|gradient| / 0.01`` every
#: standardised coefficient is about 0.01 or less.
_MIN_L1_SHARE = 0.01


def cox_log_partial_likelihood(
    log_hazard: ArrayLike, durations: ArrayLike, events: ArrayLike, ties: Ties = "efron"
) -> float:
    """Log partial likelihood of a Cox model (Efron or Breslow ties), summed over events.

    Parameters
    ----------
    log_hazard
        Linear predictor of each sample (a constant shift does not change the value).
    durations, events
        Follow-up times and event indicators (1 = event).
    ties
        ``"efron"`` or ``"breslow"``.
    """
    eta = torch.as_tensor(np.asarray(log_hazard, dtype=np.float64))
    terms = cox_partial_nll_terms(
        eta,
        torch.as_tensor(np.asarray(durations, dtype=np.float64)),
        torch.as_tensor(np.asarray(events, dtype=np.float64)),
        ties=ties,
    )
    return -float(terms.sum())


def cox_penalty_grid(
    design: ArrayLike,
    durations: ArrayLike,
    events: ArrayLike,
    l1_ratio: float = 0.0,
    n_alphas: int = 50,
    min_ratio: float = 1e-4,
    ties: Ties = "efron",
) -> np.ndarray:
    """Decreasing geometric grid of Cox penalties for standardised features (glmnet's rule).

    The objective is the mean negative partial log-likelihood plus
    ``alpha * (l1_ratio * |w|_1 + (1 - l1_ratio) / 2 * |w|_2^2)`` on standardised columns, as
    in :class:`~cancergpt_scvi.survival.CoxPHModule`, lifelines' ``CoxPHFitter(penalizer=)``
    and glmnet. The grid starts at ``alpha_max = max_j |g_j| / max(l1_ratio, 0.01)``, with
    ``g`` the gradient of the mean negative partial log-likelihood at ``w = 0``: for a lasso
    the smallest penalty that keeps every coefficient at 0, for a ridge one at which every
    coefficient is about ``0.01`` or less. It ends at ``min_ratio * alpha_max``.

    Parameters
    ----------
    design
        ``(n, p)`` features of the training samples (standardised here, each column to mean 0
        and standard deviation 1; constant columns are left at 0).
    durations, events
        Follow-up times and event indicators (1 = event) of the same samples.
    l1_ratio
        Share of the L1 part of the penalty.
    n_alphas
        Number of penalties on the grid (at least 2).
    min_ratio
        Smallest penalty as a fraction of the largest, in (0, 1).
    ties
        ``"efron"`` or ``"breslow"``.

    Returns
    -------
    ``(n_alphas,)`` penalties, from the largest to the smallest.
    """
    if n_alphas < 2:
        raise ValueError(f"n_alphas must be at least 2, got {n_alphas}.")
    if not 0.0 < min_ratio < 1.0:
        raise ValueError(f"min_ratio must lie in (0, 1), got {min_ratio}.")
    x = torch.as_tensor(np.asarray(design, dtype=np.float64))
    standardization = Standardization(x.shape[1]).double()
    fit_standardization(standardization, x)
    z = standardization(x)
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    nll = cox_partial_nll_terms(
        z @ w,
        torch.as_tensor(np.asarray(durations, dtype=np.float64)),
        torch.as_tensor(np.asarray(events, dtype=np.float64)),
        ties=ties,
    ).mean()
    (grad,) = torch.autograd.grad(nll, w)
    g_max = float(grad.abs().max())
    if not g_max > 0:
        raise ValueError(
            "The features carry no first-order information on the outcome (zero gradient at "
            "the null model); there is no penalty path to tune."
        )
    alpha_max = g_max / max(l1_ratio, _MIN_L1_SHARE)
    return alpha_max * np.geomspace(1.0, min_ratio, n_alphas)


def tune_cox_penalty(
    fit_path: Callable[[np.ndarray, np.ndarray], np.ndarray],
    durations: ArrayLike,
    events: ArrayLike,
    alphas: Sequence[float] | np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    scoring: Scoring = "deviance",
    ties: Ties = "efron",
) -> tuple[float, pd.DataFrame]:
    """Choose a Cox penalty by K-fold cross-validation along a path.

    For each fold, ``fit_path`` fits the model at every penalty (largest first, so that a
    fitter can warm-start each fit from the previous one) on the fold's training samples and
    returns the linear predictor of every sample. The penalties are scored by

    * ``"deviance"`` (default): the cross-validated partial-likelihood deviance of
      Verweij and van Houwelingen (1993), glmnet's default for Cox models. Fold ``k``
      contributes ``-2 * (l(b_k) - l_k(b_k))``, with ``b_k`` fitted without fold ``k``,
      ``l`` the log partial likelihood of all samples and ``l_k`` that of the samples outside
      fold ``k``: the held-out samples are scored within the full risk sets, which keeps the
      score stable when a fold holds few events. Reported per event; lower is better.
    * ``"c_index"``: the mean Harrell's C of the held-out folds (needs the ``[survival]``
      extra). It only ranks, so it is flat over a wide range of penalties and noisy on small
      folds.

    The best penalty wins; on a tie, the larger one.

    Parameters
    ----------
    fit_path
        ``fit_path(train_positions, alphas)`` returns a ``(len(alphas), n)`` array: for each
        penalty, the linear predictor of all ``n`` samples of a model fitted on
        ``train_positions``.
    durations, events
        Follow-up times and event indicators (1 = event) of the ``n`` samples.
    alphas
        Penalties to compare (sorted here from the largest to the smallest).
    folds
        ``(training positions, test positions)`` pairs, e.g. from
        :func:`~cancergpt_scvi.train.survival_folds`.
    scoring
        ``"deviance"`` or ``"c_index"``.
    ties
        Ties of the partial likelihood in the deviance.

    Returns
    -------
    The chosen penalty, and the curve: one row per penalty with ``alpha``, the mean score over
    folds (``deviance`` or ``c_index``), its standard error (``*_se``), and ``chosen``.
    """
    if scoring not in ("deviance", "c_index"):
        raise ValueError(f"scoring must be 'deviance' or 'c_index', got {scoring!r}.")
    d = np.asarray(durations, dtype=np.float64)
    e = np.asarray(events, dtype=np.float64)
    alphas = np.sort(np.asarray(alphas, dtype=np.float64))[::-1]
    if alphas.size == 0 or alphas[-1] < 0:
        raise ValueError(f"alphas must be non-empty and non-negative, got {alphas!r}.")
    if len(folds) < 2:
        raise ValueError(f"Cross-validation needs at least 2 folds, got {len(folds)}.")
    scores = np.empty((len(folds), alphas.size))
    weights = np.empty(len(folds))
    for k, (train, test) in enumerate(folds):
        eta = np.asarray(fit_path(np.asarray(train), alphas), dtype=np.float64)
        if eta.shape != (alphas.size, d.size):
            raise ValueError(
                f"fit_path returned shape {eta.shape}, expected {(alphas.size, d.size)}."
            )
        weights[k] = e[test].sum()
        for i in range(alphas.size):
            if not np.isfinite(eta[i]).all():
                scores[k, i] = np.inf if scoring == "deviance" else 0.5
            elif scoring == "deviance":
                full = cox_log_partial_likelihood(eta[i], d, e, ties)
                inner = cox_log_partial_likelihood(eta[i, train], d[train], e[train], ties)
                scores[k, i] = -2.0 * (full - inner)
            else:
                scores[k, i] = concordance_harrell(d[test], e[test], eta[i, test])
    if scoring == "deviance":
        # glmnet: each fold's deviance per event, averaged with the events as weights
        per_event = scores / np.maximum(weights, 1.0)[:, None]
        mean = scores.sum(axis=0) / max(weights.sum(), 1.0)
        var = np.average((per_event - mean) ** 2, axis=0, weights=np.maximum(weights, 1e-12))
        se = np.sqrt(var / (len(folds) - 1))
        best = int(np.argmin(np.where(np.isfinite(mean), mean, np.inf)))
    else:
        mean = scores.mean(axis=0)
        se = scores.std(axis=0, ddof=1) / np.sqrt(len(folds))
        best = int(np.argmax(mean))
    # argmin / argmax return the first optimum: the largest penalty on a tie
    curve = pd.DataFrame(
        {
            "alpha": alphas,
            scoring: mean,
            f"{scoring}_se": se,
            "chosen": np.arange(alphas.size) == best,
        }
    )
    return float(alphas[best]), curve


def tune_module_penalty(
    module: CoxPHModule,
    design: torch.Tensor,
    durations: np.ndarray,
    events: np.ndarray,
    alphas: np.ndarray,
    n_folds: int,
    seed: int,
    scoring: Scoring = "deviance",
    n_alphas: int = 50,
    min_ratio: float = 1e-4,
    optimizer: Optimizer = "LBFGS",
    lr: float = 1.0,
    max_epochs: int = 50,
) -> tuple[float, pd.DataFrame]:
    """Choose the penalty of ``module`` by cross-validation of the samples of ``design``.

    The folds are ``survival_folds(events, n_folds, seed)``
    (:func:`~cancergpt_scvi.train.survival_folds`, stratified on the event); each fold fits the
    path with a copy of ``module`` standardised on its own training part, and
    :func:`tune_cox_penalty` scores it. Weights are initialised from ``seed``; ``module`` is not
    changed.

    Parameters
    ----------
    module
        The module whose head, ties and ``l1_ratio`` are tuned.
    design
        ``(n, p)`` unstandardised float64 design matrix of the training samples.
    durations, events
        Their follow-up times and event indicators.
    alphas
        Candidate penalties; empty: the path :func:`cox_penalty_grid` of ``design`` with
        ``n_alphas`` and ``min_ratio``.
    n_folds, seed
        Folds of the cross-validation and their seed.
    scoring
        ``"deviance"`` or ``"c_index"`` (see :func:`tune_cox_penalty`).
    n_alphas, min_ratio
        The default path's length and smallest penalty, as a fraction of the largest.
    optimizer, lr, max_epochs
        The optimiser of each fit (see :func:`fit_penalty_path`).

    Returns
    -------
    The chosen penalty and the cross-validation curve (see :func:`tune_cox_penalty`).
    """
    folds = survival_folds(events, n_folds=n_folds, seed=seed)
    if alphas.size == 0:
        alphas = cox_penalty_grid(
            design.numpy(),
            durations,
            events,
            l1_ratio=module.l1_ratio,
            n_alphas=n_alphas,
            min_ratio=min_ratio,
            ties=module.ties,
        )
    d_t, e_t = torch.as_tensor(durations), torch.as_tensor(events)

    def fit_path(rows: np.ndarray, path: np.ndarray) -> np.ndarray:
        return fit_penalty_path(module, design, d_t, e_t, rows, path, optimizer, lr, max_epochs)

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return tune_cox_penalty(
            fit_path, durations, events, alphas, folds, scoring=scoring, ties=module.ties
        )
