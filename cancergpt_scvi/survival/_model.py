"""SurvivalModel: Cox proportional-hazards patient stratification on sample embeddings."""

from __future__ import annotations

import copy
import logging
import warnings
from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scvi
import torch
from lightning.pytorch.callbacks import EarlyStopping
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalJointObsField,
    LayerField,
    NumericalJointObsField,
    NumericalObsField,
    ObsmField,
)
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainingPlan, TrainRunner

from cancergpt_scvi._listing import listing

from ._metrics import RiskGroupMethod, concordance_harrell, plot_kaplan_meier, risk_groups
from ._module import SURVIVAL_REGISTRY_KEYS, CoxPHModule, Ties, cox_partial_nll_terms
from ._tuning import Scoring, cox_penalty_grid, tune_cox_penalty

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

Optimizer = Literal["LBFGS", "Adam"]


# --- input checks (bad input gets a clear error, never a silent wrong answer) ---------------


def _validate_outcome(adata: ad.AnnData, duration_key: str, event_key: str) -> None:
    for key, what in ((duration_key, "duration_key"), (event_key, "event_key")):
        if key not in adata.obs:
            raise KeyError(f"{what}={key!r} is not a column of adata.obs.")
    durations = adata.obs[duration_key]
    if not pd.api.types.is_numeric_dtype(durations) or pd.api.types.is_bool_dtype(durations):
        raise TypeError(
            f"adata.obs[{duration_key!r}] must hold numeric follow-up times, got dtype "
            f"{durations.dtype}."
        )
    d = durations.to_numpy(dtype=float)
    bad = ~np.isfinite(d)
    if bad.any():
        raise ValueError(
            f"adata.obs[{duration_key!r}] has {int(bad.sum())} missing or infinite durations "
            f"({listing(adata.obs_names[bad], 3)}); drop those samples or fill in their "
            "last follow-up time."
        )
    if (d <= 0).any():
        nonpos = d <= 0
        raise ValueError(
            f"adata.obs[{duration_key!r}] has {int(nonpos.sum())} durations <= 0 "
            f"({listing(adata.obs_names[nonpos], 3)}); follow-up times must be positive. "
            "A time of 0 (death at diagnosis) should be given a small positive value, e.g. "
            "half a day; negative times are data errors."
        )
    events = adata.obs[event_key]
    if pd.api.types.is_bool_dtype(events):
        e = events.to_numpy(dtype=float)
    else:
        if not pd.api.types.is_numeric_dtype(events):
            raise TypeError(
                f"adata.obs[{event_key!r}] must be boolean or 0/1 (1 = event observed), got "
                f"dtype {events.dtype}."
            )
        e = events.to_numpy(dtype=float)
        if np.isnan(e).any():
            raise ValueError(
                f"adata.obs[{event_key!r}] has {int(np.isnan(e).sum())} missing values; every "
                "sample needs an event indicator (1 = event, 0 = censored)."
            )
        odd = ~np.isin(e, (0.0, 1.0))
        if odd.any():
            raise ValueError(
                f"adata.obs[{event_key!r}] must be 0/1 or boolean (1 = event observed, 0 = "
                f"censored); found values {listing(sorted(set(e[odd].tolist())))}."
            )
    if e.sum() == 0:
        raise ValueError(
            f"Every sample is censored (adata.obs[{event_key!r}] is all 0): the Cox model has "
            "nothing to learn from. Check the event coding (1 = event observed)."
        )


def _validate_covariates(
    adata: ad.AnnData,
    covariate_keys: Sequence[str] | None,
    categorical_covariate_keys: Sequence[str] | None,
) -> None:
    for key in list(covariate_keys or []) + list(categorical_covariate_keys or []):
        if key not in adata.obs:
            raise KeyError(f"Covariate {key!r} is not a column of adata.obs.")
    for key in covariate_keys or []:
        col = adata.obs[key]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise TypeError(
                f"Continuous covariate {key!r} has dtype {col.dtype}; pass categorical "
                "covariates through categorical_covariate_keys."
            )
        n_bad = int((~np.isfinite(col.to_numpy(dtype=float))).sum())
        if n_bad:
            raise ValueError(
                f"Covariate {key!r} has {n_bad} missing or infinite values; impute them (e.g. "
                "the median plus a missingness indicator column) or drop those samples."
            )
    for key in categorical_covariate_keys or []:
        n_bad = int(adata.obs[key].isna().sum())
        if n_bad:
            raise ValueError(
                f"Categorical covariate {key!r} has {n_bad} missing values; give them their own "
                "category (e.g. 'unknown') or drop those samples."
            )


def _feature_matrix(adata: ad.AnnData, embedding_key: str | None, layer: str | None):
    if embedding_key is not None:
        if embedding_key not in adata.obsm:
            raise KeyError(
                f"embedding_key={embedding_key!r} is not in adata.obsm (keys: "
                f"{list(adata.obsm)}); store the embedding there first, e.g. "
                "adata.obsm['X_cancergpt'] = embed_bulk(model, adata)."
            )
        return adata.obsm[embedding_key], f"adata.obsm[{embedding_key!r}]"
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"layer={layer!r} is not in adata.layers ({list(adata.layers)}).")
        return adata.layers[layer], f"adata.layers[{layer!r}]"
    return adata.X, "adata.X"


def _check_finite(x, where: str) -> None:
    values = x.data if sparse.issparse(x) else np.asarray(x, dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(
            f"{where} contains NaN or infinite values; the Cox model needs complete features. "
            "Impute or drop the affected samples or features."
        )


def _column_std(x) -> np.ndarray:
    if sparse.issparse(x):
        x = sparse.csr_matrix(x, dtype=np.float64)
        mean = np.asarray(x.mean(axis=0)).ravel()
        sq = np.asarray(x.multiply(x).mean(axis=0)).ravel()
        return np.sqrt(np.maximum(sq - mean**2, 0.0))
    return np.asarray(x, dtype=np.float64).std(axis=0)


def _check_alpha(alpha) -> np.ndarray | None:
    """``None`` for a fixed penalty; the candidate penalties (empty: the default path)."""
    if isinstance(alpha, str):
        if alpha != "cv":
            raise ValueError(f"alpha must be 'cv', a number or a list of numbers, got {alpha!r}.")
        return np.array([])
    values = np.atleast_1d(np.asarray(alpha, dtype=float))
    if values.size == 0 or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"alpha must be non-negative, got {alpha!r}.")
    if np.ndim(alpha) == 0:
        return None
    return np.unique(values)[::-1]


def _fit_penalty_path(
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

    A float64 copy of ``module`` is standardised on ``rows`` and fitted at each penalty from
    the largest to the smallest, each fit warm-started from the previous one: L-BFGS to
    convergence (smooth problems) or Adam, ``max_epochs`` steps for the first penalty and a
    quarter of them for each next one.
    """
    work = copy.deepcopy(module).double()
    for layer in work.head.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    if isinstance(work.head, torch.nn.Linear):
        torch.nn.init.zeros_(work.head.weight)
    fit = design[rows]
    mean, scale = fit.mean(0), fit.std(0, unbiased=False)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    z = (design - mean) / scale
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


class SurvivalModel(BaseModelClass):
    """Cox proportional-hazards model of patient survival on sample features.

    The features are a sample embedding (e.g. CancerGPT embeddings of bulk tumour RNA from
    :func:`~cancergpt_scvi.bulk.embed_bulk`, in ``adata.obsm``) or expression values, plus
    optional clinical covariates. The head is linear (a penalised Cox model) or a small MLP,
    fitted on the Cox partial likelihood (Efron or Breslow ties) with an elastic-net penalty.
    The partial likelihood of an event needs its whole risk set, so training is full-batch
    (one batch holds every training sample); bulk cohorts are small enough for that.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_hidden
        Hidden width of an MLP head; ``None`` (default) for the linear Cox model.
    n_layers
        Hidden layers of the MLP head.
    dropout_rate
        Dropout of the MLP head.
    ties
        ``"efron"`` (default, as lifelines and R's ``coxph``) or ``"breslow"``.
    alpha
        Penalty strength on the standardised weights (glmnet's ``lambda``). ``"cv"``
        (default): chosen at every :meth:`train` by ``cv_folds``-fold cross-validation of the
        training samples along a path of ``n_alphas`` penalties
        (:func:`~cancergpt_scvi.survival.cox_penalty_grid`), as glmnet's ``cv.glmnet``. A list
        of values: chosen among them the same way. A number: that penalty, no tuning.
    l1_ratio
        Share of L1 in the penalty: 0 ridge (default), 1 lasso.
    n_alphas
        Length of the penalty path when ``alpha="cv"``.
    alpha_min_ratio
        Smallest penalty of the path as a fraction of its largest, when ``alpha="cv"``.
    cv_folds
        Folds of the inner cross-validation that tunes the penalty, stratified on the event
        (:func:`~cancergpt_scvi.train.survival_folds`).
    cv_scoring
        Score of that cross-validation: ``"deviance"`` (default; the cross-validated
        partial-likelihood deviance, glmnet's default for Cox models, smooth in the penalty
        and stable on small folds, needs no extra) or ``"c_index"`` (Harrell's C; needs the
        ``[survival]`` extra). See :func:`~cancergpt_scvi.survival.tune_cox_penalty`.

    Attributes
    ----------
    alpha_
        The penalty of the last :meth:`train` (chosen or given); ``None`` before.
    alpha_path_
        The inner cross-validation curve of the last tuned :meth:`train`: one row per
        penalty with ``alpha``, the mean score, its standard error and ``chosen``; ``None``
        when the penalty was given as a number.
    cv_results_
        Per-fold C-indices of the last :func:`~cancergpt_scvi.benchmark.cross_validate_survival`
        of this model's configuration; ``None`` before.
    oof_risk_
        Each sample's risk predicted by the fold model that did not train on it.
    oof_risk_percentile_
        The same risks as percentiles of each fold's training risks, which
        :meth:`risk_groups` and :meth:`plot_kaplan_meier` cut.

    Notes
    -----
    Training, prediction and :meth:`risk_groups` need only the base install; the C-index,
    the log-rank test and the Kaplan–Meier curves need the ``[survival]`` extra (lifelines,
    scikit-survival).

    Examples
    --------
    >>> from cancergpt_scvi.benchmark import cross_validate_survival
    >>> adata = simulate_survival_cohort(n_patients=200)
    >>> adata.obsm["X_cancergpt"] = embed_bulk(cancergpt_model, adata)
    >>> SurvivalModel.setup_anndata(adata, "duration", "event", embedding_key="X_cancergpt")
    >>> model = SurvivalModel(adata)  # penalty tuned by inner cross-validation
    >>> model.train()
    >>> model.alpha_, model.alpha_path_
    >>> folds = cross_validate_survival(model, n_folds=5)
    >>> ax, p = model.plot_kaplan_meier()
    """

    _module_cls = CoxPHModule
    _data_splitter_cls = DataSplitter
    _training_plan_cls = TrainingPlan
    _train_runner_cls = TrainRunner

    def __init__(
        self,
        adata: ad.AnnData,
        n_hidden: int | None = None,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        ties: Ties = "efron",
        alpha: float | Sequence[float] | Literal["cv"] = "cv",
        l1_ratio: float = 0.0,
        n_alphas: int = 50,
        alpha_min_ratio: float = 1e-4,
        cv_folds: int = 5,
        cv_scoring: Scoring = "deviance",
    ):
        super().__init__(adata)
        self._alpha_grid = _check_alpha(alpha)
        if cv_scoring not in ("deviance", "c_index"):
            raise ValueError(f"cv_scoring must be 'deviance' or 'c_index', got {cv_scoring!r}.")
        if cv_folds < 2:
            raise ValueError(f"cv_folds must be at least 2, got {cv_folds}.")
        if n_alphas < 2:
            raise ValueError(f"n_alphas must be at least 2, got {n_alphas}.")
        if not 0.0 < alpha_min_ratio < 1.0:
            raise ValueError(f"alpha_min_ratio must lie in (0, 1), got {alpha_min_ratio}.")
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.cv_folds = cv_folds
        self.cv_scoring: Scoring = cv_scoring
        x = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        names = self._feature_names()
        constant = np.flatnonzero(_column_std(x) == 0.0)
        if constant.size:
            raise ValueError(
                f"{constant.size} feature column(s) are constant across all samples "
                f"({listing(names[constant])}); a constant column carries no information and "
                "cannot be standardised. Drop them first (for genes: sc.pp.filter_genes or a "
                "highly-variable subset; for an embedding: check that it was computed per sample)."
            )
        n_cont = 0
        if REGISTRY_KEYS.CONT_COVS_KEY in self.adata_manager.data_registry:
            n_cont = self.adata_manager.get_from_registry(REGISTRY_KEYS.CONT_COVS_KEY).shape[1]
        n_cats = None
        if REGISTRY_KEYS.CAT_COVS_KEY in self.adata_manager.data_registry:
            n_cats = list(
                self.adata_manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY).n_cats_per_key
            )
        self.module = self._module_cls(
            n_input=x.shape[1],
            n_continuous_cov=n_cont,
            n_cats_per_cov=n_cats,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            ties=ties,
            # a tuned penalty is set by train(); until then the module holds the null penalty
            alpha=0.0 if self._alpha_grid is not None else float(alpha),
            l1_ratio=l1_ratio,
        )
        head = "linear" if n_hidden is None else f"MLP ({n_layers}x{n_hidden})"
        if isinstance(alpha, str):
            penalty = f"alpha by {cv_folds}-fold CV ({cv_scoring}) on a {n_alphas}-value path"
        elif self._alpha_grid is not None and len(self._alpha_grid):
            penalty = f"alpha by {cv_folds}-fold CV ({cv_scoring}) among {len(self._alpha_grid)}"
        else:
            penalty = f"alpha={alpha}"
        self._model_summary_string = (
            f"SurvivalModel: Cox PH, {head} head on {x.shape[1]} features"
            f" + {self.module.n_design - x.shape[1]} covariate columns, ties={ties}, "
            f"{penalty}, l1_ratio={l1_ratio}."
        )
        self.init_params_ = self._get_init_params(locals())
        self.alpha_: float | None = None
        self.alpha_path_: pd.DataFrame | None = None
        # filled by cancergpt_scvi.benchmark.cross_validate_survival
        self.cv_results_: pd.DataFrame | None = None
        self.oof_risk_: np.ndarray | None = None
        self.oof_risk_percentile_: np.ndarray | None = None

    # --- data registration ------------------------------------------------------------------

    @classmethod
    def setup_anndata(
        cls,
        adata: ad.AnnData,
        duration_key: str,
        event_key: str,
        covariate_keys: Sequence[str] | None = None,
        embedding_key: str | None = None,
        categorical_covariate_keys: Sequence[str] | None = None,
        layer: str | None = None,
        **kwargs,
    ) -> None:
        """Register the outcome, the features and the covariates of a cohort.

        Parameters
        ----------
        adata
            Samples x genes AnnData (one row per patient).
        duration_key
            ``adata.obs`` column of positive follow-up times (time to event or censoring).
        event_key
            ``adata.obs`` column: 1 / ``True`` when the event (death, progression) was
            observed, 0 / ``False`` when the sample is censored.
        covariate_keys
            Numeric ``adata.obs`` columns (age, stage as a number, ...) entering the model
            linearly next to the features.
        embedding_key
            ``adata.obsm`` key of the sample embedding to use as features. ``None``: use the
            expression in ``X`` (or ``layer``), which should then be log-normalised.
        categorical_covariate_keys
            Categorical ``adata.obs`` columns, one-hot encoded.
        layer
            Layer of expression features when ``embedding_key`` is ``None``.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if kwargs.get("source_registry") is None:
            # outcomes are only needed to train: a transfer for prediction may lack them
            _validate_outcome(adata, duration_key, event_key)
        _validate_covariates(adata, covariate_keys, categorical_covariate_keys)
        x, where = _feature_matrix(adata, embedding_key, layer)
        _check_finite(x, where)
        feature_field = (
            ObsmField(REGISTRY_KEYS.X_KEY, embedding_key)
            if embedding_key is not None
            else LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False)
        )
        fields = [
            feature_field,
            NumericalObsField(SURVIVAL_REGISTRY_KEYS["duration"], duration_key),
            NumericalObsField(SURVIVAL_REGISTRY_KEYS["event"], event_key),
            NumericalJointObsField(REGISTRY_KEYS.CONT_COVS_KEY, covariate_keys),
            CategoricalJointObsField(REGISTRY_KEYS.CAT_COVS_KEY, categorical_covariate_keys),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    def _feature_names(self) -> np.ndarray:
        args = self.adata_manager.registry["setup_args"]
        if args["embedding_key"] is not None:
            return np.arange(self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY).shape[1])
        return np.asarray(self.adata.var_names)

    def _outcome(self) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(self.adata_manager.get_from_registry("duration"), float).ravel()
        e = np.asarray(self.adata_manager.get_from_registry("event"), float).ravel()
        return d, e

    # --- training -----------------------------------------------------------------------------

    @torch.inference_mode()
    def _design(self, indices: np.ndarray) -> torch.Tensor:
        """Unstandardised float64 design matrix of registered samples, in ``indices`` order."""
        loader = self._make_data_loader(self.adata, indices=indices, batch_size=len(indices))
        tensors = next(iter(loader))
        inf = self.module._get_inference_input(tensors)
        return self.module.design(inf["x"], inf["cont_covs"], inf["cat_covs"]).double()

    def _design_stats(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        design = self._design(indices)
        mean = design.mean(0)
        scale = design.std(0, unbiased=False)
        flat = scale == 0
        if flat.any():
            # constant within this training set only (e.g. a rare category in a CV fold):
            # such a column cannot inform the fit, so it is centred and left unscaled
            warnings.warn(
                f"{int(flat.sum())} design column(s) are constant in the training samples and "
                "get no weight.",
                UserWarning,
                stacklevel=3,
            )
            scale = torch.where(flat, torch.ones_like(scale), scale)
        return mean.float(), scale.float()

    def tune_penalty(
        self,
        train_indices: np.ndarray,
        seed: int | None = None,
        optimizer: Optimizer | None = None,
        lr: float | None = None,
        max_epochs: int | None = None,
    ) -> tuple[float, pd.DataFrame]:
        """Choose the penalty by inner cross-validation of ``train_indices`` (the model's setting).

        The candidates are the model's ``alpha`` list, or for ``alpha="cv"`` the path
        :func:`~cancergpt_scvi.survival.cox_penalty_grid` of the training samples'
        standardised design. The folds are
        ``survival_folds(events[train_indices], cv_folds, seed)``
        (:func:`~cancergpt_scvi.train.survival_folds`, stratified on the event), positions
        within the sorted ``train_indices``; each fold refits the path, standardised on its
        own training part, and :func:`~cancergpt_scvi.survival.tune_cox_penalty` scores it.
        Called by :meth:`train`; it does not change the model.

        Parameters
        ----------
        train_indices
            Samples to tune on.
        seed
            Seed of the inner folds; default ``scvi.settings.seed`` (0 when unset).
        optimizer, lr, max_epochs
            As in :meth:`train` (L-BFGS runs to convergence whatever ``lr``), so that the
            penalty is chosen for fits trained as the final one is.

        Returns
        -------
        The chosen penalty and the cross-validation curve (see ``alpha_path_``).
        """
        from cancergpt_scvi.train import survival_folds

        if self._alpha_grid is None:
            raise RuntimeError("This model has a fixed alpha; pass alpha='cv' or a list to tune.")
        train_idx = np.unique(np.asarray(train_indices, dtype=int))
        optimizer, lr, max_epochs = self._optimizer_defaults(optimizer, lr, max_epochs, tuned=True)
        if seed is None:
            seed = scvi.settings.seed if scvi.settings.seed is not None else 0
        d_all, e_all = self._outcome()
        d, e = d_all[train_idx], e_all[train_idx]
        folds = survival_folds(e, n_folds=self.cv_folds, seed=seed)
        design = self._design(train_idx).clone()  # a normal tensor, for autograd
        alphas = self._alpha_grid
        if alphas.size == 0:
            alphas = cox_penalty_grid(
                design.numpy(),
                d,
                e,
                l1_ratio=self.module.l1_ratio,
                n_alphas=self.n_alphas,
                min_ratio=self.alpha_min_ratio,
                ties=self.module.ties,
            )
        d_t, e_t = torch.as_tensor(d), torch.as_tensor(e)

        def fit_path(rows: np.ndarray, path: np.ndarray) -> np.ndarray:
            return _fit_penalty_path(
                self.module, design, d_t, e_t, rows, path, optimizer, lr, max_epochs
            )

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return tune_cox_penalty(
                fit_path, d, e, alphas, folds, scoring=self.cv_scoring, ties=self.module.ties
            )

    def _optimizer_defaults(
        self,
        optimizer: Optimizer | None,
        lr: float | None,
        max_epochs: int | None,
        tuned: bool = False,
    ) -> tuple[Optimizer, float, int]:
        """The optimiser, learning rate and epochs that :meth:`train` uses by default."""
        penalised = tuned or self.module.alpha > 0.0
        linear_smooth = isinstance(self.module.head, torch.nn.Linear) and (
            self.module.l1_ratio == 0.0 or not penalised
        )
        if optimizer is None:
            optimizer = "LBFGS" if linear_smooth else "Adam"
        if optimizer not in ("LBFGS", "Adam"):
            raise ValueError(f"optimizer must be 'LBFGS' or 'Adam', got {optimizer!r}.")
        if max_epochs is None:
            max_epochs = 50 if optimizer == "LBFGS" else 400
        if lr is None:
            lr = 1.0 if optimizer == "LBFGS" else 0.01
        return optimizer, lr, max_epochs

    def train(
        self,
        max_epochs: int | None = None,
        lr: float | None = None,
        optimizer: Optimizer | None = None,
        train_size: float = 1.0,
        validation_size: float | None = None,
        train_indices: np.ndarray | None = None,
        cv_seed: int | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Fit the Cox model, full-batch, with scvi-tools' ``TrainingPlan`` and ``TrainRunner``.

        Parameters
        ----------
        max_epochs
            Epochs (one optimiser step each). Default 50 for L-BFGS, 400 for Adam.
        lr
            Learning rate. Default 1.0 for L-BFGS (with a strong-Wolfe line search), 0.01
            for Adam.
        optimizer
            ``"LBFGS"`` (default for a linear head with a pure L2 penalty: the problem is
            smooth and convex) or ``"Adam"`` (default for an MLP head or an L1 share, where
            the loss is not smooth; Adam then shrinks but does not zero weights exactly).
        train_size, validation_size
            Random split of the samples (``scvi.settings.seed``) when ``train_indices`` is
            not given; default all samples train.
        train_indices
            Explicit training samples (the others are not used), e.g. a cross-validation fold.
        cv_seed
            Seed of the inner folds that tune the penalty (see :meth:`tune_penalty`); default
            ``scvi.settings.seed``. Unused with a fixed ``alpha``.
        accelerator, devices
            As in scvi-tools.
        plan_kwargs
            Extra keyword arguments of :class:`scvi.train.TrainingPlan`.
        **trainer_kwargs
            Extra keyword arguments of :class:`scvi.train.Trainer` (e.g.
            ``enable_progress_bar=False``).
        """
        n_obs = self.adata.n_obs
        if train_indices is not None:
            train_idx = np.unique(np.asarray(train_indices, dtype=int))
            val_idx = np.array([], dtype=int)
        else:
            # scvi-tools' rule and seed (DataSplitter): ceil for train, the rest validates
            if not 0.0 < train_size <= 1.0:
                raise ValueError(f"train_size must lie in (0, 1], got {train_size}.")
            n_train = int(np.ceil(train_size * n_obs))
            n_val = n_obs - n_train
            if validation_size is not None:
                n_val = min(int(np.floor(n_obs * validation_size)), n_val)
            perm = np.random.RandomState(seed=scvi.settings.seed).permutation(n_obs)
            val_idx = np.sort(perm[:n_val])
            train_idx = np.sort(perm[n_val : n_val + n_train])
        _, events = self._outcome()
        if events[train_idx].sum() == 0:
            raise ValueError("The training samples contain no event; the Cox model cannot fit.")
        if self._alpha_grid is not None:
            alpha, self.alpha_path_ = self.tune_penalty(
                train_idx, seed=cv_seed, optimizer=optimizer, lr=lr, max_epochs=max_epochs
            )
            self.module.alpha = alpha
            grid = self.alpha_path_["alpha"]
            logger.info(
                "SurvivalModel: alpha = %.4g chosen by %d-fold cross-validation (%s) among "
                "%d penalties from %.3g to %.3g.",
                alpha,
                self.cv_folds,
                self.cv_scoring,
                len(grid),
                grid.max(),
                grid.min(),
            )
        self.alpha_ = float(self.module.alpha)
        optimizer, lr, max_epochs = self._optimizer_defaults(optimizer, lr, max_epochs)
        self.module.set_standardization(*self._design_stats(train_idx))

        # one batch holds every sample of a split: the partial likelihood needs full risk sets
        batch_size = int(max(len(train_idx), len(val_idx)))
        # samples in neither split (e.g. a cross-validation fold's test set) are the test set
        test_idx = np.setdiff1d(np.arange(n_obs), np.concatenate([train_idx, val_idx]))
        data_splitter = self._data_splitter_cls(
            self.adata_manager,
            external_indexing=[train_idx, val_idx, test_idx],
            batch_size=batch_size,
        )
        plan_kwargs = dict(plan_kwargs or {})
        if optimizer == "LBFGS":
            # a converged L-BFGS run changes the loss no more: stop instead of idling
            callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
            callbacks.append(
                EarlyStopping(
                    monitor="train_loss",
                    min_delta=1e-7,
                    patience=2,
                    check_on_train_epoch_end=True,
                )
            )
            trainer_kwargs["callbacks"] = callbacks
            plan_kwargs.setdefault("optimizer", "Custom")
            plan_kwargs.setdefault(
                "optimizer_creator",
                lambda params: torch.optim.LBFGS(
                    params, lr=lr, max_iter=20, history_size=20, line_search_fn="strong_wolfe"
                ),
            )
        else:
            plan_kwargs.setdefault("optimizer", "Adam")
            plan_kwargs.setdefault("lr", lr)
            plan_kwargs.setdefault("weight_decay", 0.0)  # the penalty is in the loss
        training_plan = self._training_plan_cls(self.module, **plan_kwargs)
        trainer_kwargs.setdefault("log_every_n_steps", 1)  # one step per epoch
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1 if len(val_idx) else None)
        if trainer_kwargs["check_val_every_n_epoch"] is None:
            trainer_kwargs.pop("check_val_every_n_epoch")
        runner = self._train_runner_cls(
            self,
            training_plan=training_plan,
            data_splitter=data_splitter,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        return runner()

    # --- prediction ---------------------------------------------------------------------------

    def _prediction_adata(self, adata: ad.AnnData | None) -> ad.AnnData | None:
        if adata is None:
            return None
        args = self.adata_manager.registry["setup_args"]
        x, where = _feature_matrix(adata, args["embedding_key"], args["layer"])
        _check_finite(x, where)
        missing = {k: v for k, v in (("duration_key", 1.0), ("event_key", 0.0))}
        missing = {args[k]: v for k, v in missing.items() if args[k] not in adata.obs}
        if not missing:
            return adata
        # new patients without outcomes: a shallow stand-in with placeholder outcome columns
        # (not used by prediction) so that the registered fields transfer
        return ad.AnnData(
            X=adata.X,
            obs=adata.obs.assign(**missing),
            var=adata.var,
            obsm=dict(adata.obsm),
            layers=dict(adata.layers),
        )

    @torch.inference_mode()
    def predict_risk(
        self,
        adata: ad.AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Predicted log relative hazard of each sample (higher = shorter expected survival).

        Parameters
        ----------
        adata
            Samples with the registered features and covariates; default the training AnnData.
            Outcome columns are not needed.
        indices
            Samples to predict; default all.
        batch_size
            Samples per batch (prediction needs no risk set); default all at once.

        Returns
        -------
        ``(n,)`` float array of log hazard ratios relative to the training mean profile.
        """
        self._check_if_trained(warn=False)
        if adata is not None and adata.n_obs == 0:
            raise ValueError("adata has no samples (n_obs == 0); pass the samples to score.")
        adata = self._validate_anndata(self._prediction_adata(adata))
        if indices is None:
            indices = np.arange(adata.n_obs)
        indices = np.asarray(indices, dtype=int)
        loader = self._make_data_loader(
            adata, indices=indices, batch_size=batch_size or max(len(indices), 1)
        )
        self.module.eval()
        out = []
        for tensors in loader:
            inf = self.module.inference(**self.module._get_inference_input(tensors))
            out.append(inf["log_hazard"].detach().cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def concordance(self, indices: Sequence[int] | None = None) -> float:
        """Harrell's C-index of the fitted model on registered samples (default all).

        In-sample when the samples trained the model; for a held-out estimate use
        :func:`~cancergpt_scvi.benchmark.cross_validate_survival`. Needs the ``[survival]``
        extra.
        """
        d, e = self._outcome()
        idx = np.arange(self.adata.n_obs) if indices is None else np.asarray(indices, dtype=int)
        return concordance_harrell(d[idx], e[idx], self.predict_risk(indices=idx))

    # --- stratification -------------------------------------------------------------------------

    def risk_groups(
        self,
        method: RiskGroupMethod = "median",
        source: Literal["cv", "fit"] = "cv",
    ) -> pd.Series:
        """Risk group of each registered sample.

        Parameters
        ----------
        method
            ``"median"`` (low / high) or ``"tertiles"`` (low / intermediate / high).
        source
            ``"cv"``: held-out risks from
            :func:`~cancergpt_scvi.benchmark.cross_validate_survival`, cut at the training
            median or tertiles of each fold (an honest stratification). ``"fit"``: the
            trained model's in-sample risks (optimistic).

        Returns
        -------
        Ordered categorical Series indexed by ``obs_names``.
        """
        if source == "cv":
            if self.oof_risk_percentile_ is None:
                raise RuntimeError(
                    "No held-out risks yet: run "
                    "cancergpt_scvi.benchmark.cross_validate_survival(model) first, or pass "
                    "source='fit'."
                )
            pct = self.oof_risk_percentile_
        elif source == "fit":
            risk = self.predict_risk()
            pct = pd.Series(risk).rank(pct=True, method="average").to_numpy()
            pct = pct - 0.5 / len(pct)
        else:
            raise ValueError(f"source must be 'cv' or 'fit', got {source!r}.")
        groups = risk_groups(pct, method)
        return pd.Series(groups, index=self.adata.obs_names, name="risk_group")

    def plot_kaplan_meier(
        self,
        method: RiskGroupMethod = "median",
        source: Literal["cv", "fit"] = "cv",
        ax: Axes | None = None,
        title: str | None = None,
    ) -> tuple[Axes, float]:
        """Kaplan–Meier curves of the risk groups with the log-rank p-value.

        Drawn by :func:`~cancergpt_scvi.survival.plot_kaplan_meier` (lifelines; needs the
        ``[survival]`` extra).

        Parameters
        ----------
        method, source
            As in :meth:`risk_groups`.
        ax
            Axes to draw on; a new figure when ``None``.
        title
            Axes title.

        Returns
        -------
        The axes and the log-rank p-value.
        """
        groups = self.risk_groups(method=method, source=source)
        d, e = self._outcome()
        return plot_kaplan_meier(d, e, groups.array, ax=ax, title=title)
