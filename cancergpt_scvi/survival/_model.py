"""SurvivalModel: Cox proportional-hazards patient stratification on sample embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch
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
from tqdm.auto import tqdm

from cancergpt_scvi._constants import CAT_COVS_KEY, CONT_COVS_KEY, DURATION_KEY, EVENT_KEY, X_KEY
from cancergpt_scvi._extras import require
from cancergpt_scvi._loading import ExplainedLoadMixin
from cancergpt_scvi._saving import WholeFolderSaveMixin
from cancergpt_scvi.data import (
    cell_indices,
    check_expression_scale,
    expression_scale,
    match_genes_by_name,
)
from cancergpt_scvi.train import survival_folds

from ._metrics import (
    RiskGroupMethod,
    concordance_harrell,
    concordance_uno,
    percentile_among,
    plot_kaplan_meier,
    risk_groups,
)
from ._module import CoxPHModule, Ties
from ._training import CoxTrainingMixin
from ._validation import (
    check_alpha,
    check_finite,
    check_no_constant_columns,
    feature_matrix,
    prediction_adata,
    validate_covariates,
    validate_outcome,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes

    from ._tuning import Scoring


class SurvivalModel(ExplainedLoadMixin, WholeFolderSaveMixin, CoxTrainingMixin, BaseModelClass):
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
    registry
        Registry of a saved model (used by :meth:`load` without AnnData).

    Attributes
    ----------
    alpha_
        The penalty of the last :meth:`train` (chosen or given); ``None`` before.
    alpha_path_
        The inner cross-validation curve of the last tuned :meth:`train`: one row per
        penalty with ``alpha``, the mean score, its standard error and ``chosen``; ``None``
        when the penalty was given as a number.
    cv_results_
        Per-fold C-indices of the last :meth:`cross_validate` of this model's configuration;
        ``None`` before.
    oof_risk_
        Each sample's risk predicted by the fold model of :meth:`cross_validate` that did
        not train on it.
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
    >>> adata = simulate_survival_cohort(n_patients=200)
    >>> adata.obsm["X_cancergpt"] = embed_bulk(cancergpt_model, adata)
    >>> SurvivalModel.setup_anndata(adata, "duration", "event", embedding_key="X_cancergpt")
    >>> model = SurvivalModel(adata)  # penalty tuned by inner cross-validation
    >>> folds = model.cross_validate(n_folds=5)  # held-out C-indices and risks
    >>> ax, p = model.plot_kaplan_meier()  # held-out risk groups
    >>> model.train()  # the final model, on every sample
    >>> model.alpha_, model.alpha_path_
    """

    _other_data = "Load it without adata; model.predict_risk(adata) matches genes by name."

    _module_cls = CoxPHModule
    _data_splitter_cls = DataSplitter
    _training_plan_cls = TrainingPlan
    _train_runner_cls = TrainRunner

    def __init__(
        self,
        adata: ad.AnnData | None = None,
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
        registry: dict | None = None,
    ):
        super().__init__(adata, registry)
        # loaded without its cohort: scvi-tools adopts the first AnnData scored as the model's
        # data (placeholder outcomes included), which must never train or evaluate it
        self._scores_only = adata is None
        self._alpha_grid = check_alpha(alpha)
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
        # sizes from the registry, so that a saved model loads without its data
        fields = self.registry_["field_registries"]
        n_input = len(fields[X_KEY]["state_registry"]["column_names"])
        n_cont = int(self.summary_stats.get(f"n_{CONT_COVS_KEY}", 0))
        cat_state = fields.get(CAT_COVS_KEY, {}).get("state_registry", {})
        n_cats = list(cat_state.get("n_cats_per_key", [])) or None
        # the scale of expression features (counts, log, ...), checked on the samples scored
        self.expression_scale_ = None
        if adata is not None:
            x = self.adata_manager.get_from_registry(X_KEY)
            check_no_constant_columns(x, self._feature_names())
            self.expression_scale_ = expression_scale(x) if self._reads_expression() else None
        self.module = self._module_cls(
            n_input=n_input,
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
            f"SurvivalModel: Cox PH, {head} head on {n_input} features"
            f" + {self.module.n_design - n_input} covariate columns, ties={ties}, "
            f"{penalty}, l1_ratio={l1_ratio}."
        )
        self.init_params_ = self._get_init_params(locals())
        self.alpha_: float | None = None
        self.alpha_path_: pd.DataFrame | None = None
        # filled by cross_validate()
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
            validate_outcome(adata, duration_key, event_key)
        validate_covariates(adata, covariate_keys, categorical_covariate_keys)
        x, where = feature_matrix(adata, embedding_key, layer)
        check_finite(x, where)
        feature_field = (
            ObsmField(X_KEY, embedding_key)
            if embedding_key is not None
            else LayerField(X_KEY, layer, is_count_data=False)
        )
        fields = [
            feature_field,
            NumericalObsField(DURATION_KEY, duration_key),
            NumericalObsField(EVENT_KEY, event_key),
            NumericalJointObsField(CONT_COVS_KEY, covariate_keys),
            CategoricalJointObsField(CAT_COVS_KEY, categorical_covariate_keys),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    def _reads_expression(self) -> bool:
        """Whether the features are expression (``X`` or a layer), not an embedding."""
        return self.registry_["setup_args"]["embedding_key"] is None

    def _matched_expression(self, adata: ad.AnnData | None) -> ad.AnnData | None:
        """``adata`` (default the model's) with expression features in the training genes.

        Genes are matched by name: another order is reordered (a copy), a missing training
        gene refused; expression on another scale than the training data's is refused.
        ``adata`` is returned as it is when the features are an embedding.
        """
        if not self._reads_expression():
            return adata
        target = self.adata if adata is None else adata
        genes = self.registry_["field_registries"][X_KEY]["state_registry"]["column_names"]
        columns = match_genes_by_name(target.var_names, genes)
        if columns is not None:
            target = target[:, columns].copy()
            adata = target
        layer = self.registry_["setup_args"]["layer"]
        x, where = feature_matrix(target, None, layer)
        check_expression_scale(getattr(self, "expression_scale_", None), x, where)
        return adata

    def _feature_names(self) -> np.ndarray:
        args = self.registry_["setup_args"]
        if args["embedding_key"] is not None:
            return np.arange(self.adata_manager.get_from_registry(X_KEY).shape[1])
        return np.asarray(self.adata.var_names)

    def _require_cohort(self) -> None:
        """Refuse work on the training cohort when the model was loaded without it."""
        if self._scores_only:
            raise ValueError(
                "This model was loaded without its training cohort (SurvivalModel.load(path)): "
                "it scores new samples, model.predict_risk(adata), and nothing else. To train, "
                "cross-validate, evaluate or stratify, load it with the cohort: "
                "SurvivalModel.load(path, adata=cohort)."
            )

    def _outcome(self) -> tuple[np.ndarray, np.ndarray]:
        """Registered durations and event indicators (1 = event), as floats."""
        self._require_cohort()
        d = np.asarray(self.adata_manager.get_from_registry(DURATION_KEY), float).ravel()
        e = np.asarray(self.adata_manager.get_from_registry(EVENT_KEY), float).ravel()
        return d, e

    # --- prediction ---------------------------------------------------------------------------

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
            Outcome columns are not needed. Expression features are matched to the training
            genes by name (any order, other genes ignored; a missing one is an error) and
            must be on the training data's scale (e.g. log-normalised, not counts).
        indices
            Samples to predict: integer positions or a boolean mask; default all.
        batch_size
            Samples per batch (prediction needs no risk set); default all at once.

        Returns
        -------
        ``(n,)`` float array of log hazard ratios relative to the training mean profile.
        """
        self._check_if_trained(warn=False)
        if adata is not None and adata.n_obs == 0:
            raise ValueError("adata has no samples (n_obs == 0); pass the samples to score.")
        if adata is None:
            self._require_cohort()
        # expression is read by gene name, on the training data's scale
        adata = self._matched_expression(adata)
        if adata is not None:
            adata = prediction_adata(adata, self.registry_["setup_args"])
        adata = self._validate_anndata(adata)
        indices = cell_indices(indices, adata.n_obs)
        if indices is None:
            indices = np.arange(adata.n_obs)
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

        ``indices`` are integer positions or a boolean mask.

        In-sample when the samples trained the model; for a held-out estimate use
        :meth:`cross_validate`. Needs the ``[survival]`` extra.
        """
        d, e = self._outcome()
        idx = cell_indices(indices, self.adata.n_obs)
        idx = np.arange(self.adata.n_obs) if idx is None else idx
        return concordance_harrell(d[idx], e[idx], self.predict_risk(indices=idx))

    # --- cross-validation ---------------------------------------------------------------------

    def cross_validate(
        self,
        n_folds: int = 5,
        seed: int = 0,
        alpha: float | Sequence[float] | Literal["cv"] | None = None,
        inner_folds: int | None = None,
        progress_bar: bool = True,
        **train_kwargs,
    ) -> pd.DataFrame:
        """Stratified K-fold cross-validation of this model's configuration.

        Each fold fits a fresh model of this configuration on the fold's training samples
        (standardisation and penalty tuning included) and scores its held-out samples with
        Harrell's C and Uno's C (the censoring-weighted C, with the censoring distribution of
        the training samples). Folds are stratified on the event indicator
        (:func:`~cancergpt_scvi.train.survival_folds`), so each test fold holds events. This
        model itself is not trained; its ``cv_results_``, ``oof_risk_`` (each sample's
        held-out risk) and ``oof_risk_percentile_`` (that risk as a percentile of the fold's
        training risks) are set, for :meth:`risk_groups` and :meth:`plot_kaplan_meier`. Needs
        the ``[survival]`` extra.

        Parameters
        ----------
        n_folds
            Number of folds (at least 2, at most the number of events).
        seed
            Seed of the fold assignment; fold ``k``'s model is initialised, and its inner
            folds drawn, with seed ``1000 * seed + k``.
        alpha
            Penalty of the fold models: ``None`` keeps this model's (by default ``"cv"``); a
            number fixes it; ``"cv"`` or a list of values tunes it in each fold by the fold
            model's own inner cross-validation of the fold's training samples
            (:meth:`tune_penalty`: stratified inner folds, the model's ``cv_scoring``, on a
            tie the larger penalty), so the reported C-index is not optimistic about the
            choice.
        inner_folds
            Folds of that inner cross-validation; ``None`` keeps this model's ``cv_folds``.
        progress_bar
            Show a progress bar over folds.
        **train_kwargs
            Passed to :meth:`train`.

        Returns
        -------
        One row per fold (``n_train``, ``n_test``, ``n_events_test``, ``alpha``: the penalty
        used, chosen or given, ``c_index_harrell``, ``c_index_uno``), then rows ``mean`` and
        ``std`` (the spread across folds).
        """
        require("sksurv.metrics", extra="survival", feature="SurvivalModel.cross_validate")
        durations, events = self._outcome()
        folds = survival_folds(events, n_folds=n_folds, seed=seed)
        kwargs = dict(self.init_params_["non_kwargs"])
        if alpha is not None:
            kwargs["alpha"] = alpha
        if inner_folds is not None:
            kwargs["cv_folds"] = inner_folds
        train_kwargs.setdefault("enable_progress_bar", False)
        oof_risk = np.full(len(durations), np.nan)
        oof_pct = np.full(len(durations), np.nan)
        rows = []
        for k, (tr, te) in enumerate(tqdm(folds, desc="CV folds", disable=not progress_bar)):
            fold_seed = seed * 1000 + k
            with torch.random.fork_rng():
                torch.manual_seed(fold_seed)
                fold_model = type(self)(self.adata, **kwargs)
                fold_model.train(train_indices=tr, cv_seed=fold_seed, **train_kwargs)
            risk = fold_model.predict_risk()  # every sample in one pass
            oof_risk[te] = risk[te]
            oof_pct[te] = percentile_among(risk[tr], risk[te])
            rows.append(
                {
                    "n_train": len(tr),
                    "n_test": len(te),
                    "n_events_test": int(events[te].sum()),
                    "alpha": fold_model.alpha_,
                    "c_index_harrell": concordance_harrell(durations[te], events[te], risk[te]),
                    "c_index_uno": concordance_uno(
                        durations[tr], events[tr], durations[te], events[te], risk[te]
                    ),
                }
            )
        table = pd.DataFrame(rows, index=[f"fold {k}" for k in range(n_folds)])
        table.loc["mean"] = table.mean(numeric_only=True)
        table.loc["std"] = table.iloc[:n_folds].std(numeric_only=True)
        self.cv_results_ = table
        self.oof_risk_ = oof_risk
        self.oof_risk_percentile_ = oof_pct
        return table

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
            ``"cv"``: the held-out risks of :meth:`cross_validate`, cut at the training
            median or tertiles of each fold (an honest stratification). ``"fit"``: the
            trained model's in-sample risks (optimistic).

        Returns
        -------
        Ordered categorical Series indexed by ``obs_names``.
        """
        self._require_cohort()
        if source == "cv":
            if self.oof_risk_percentile_ is None:
                raise RuntimeError(
                    "No held-out risks yet: run model.cross_validate() first, or pass source='fit'."
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
