"""Training of a SurvivalModel: the penalty tuned by inner cross-validation, then the full fit."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import scvi
import torch
from lightning.pytorch.callbacks import EarlyStopping

from cancergpt_scvi.data import cell_indices
from cancergpt_scvi.train import validation_split

from ._module import fit_standardization
from ._tuning import tune_module_penalty

if TYPE_CHECKING:
    import pandas as pd

    from ._penalty_path import Optimizer

logger = logging.getLogger(__name__)


class CoxTrainingMixin:
    """:meth:`train` and :meth:`tune_penalty` of :class:`~cancergpt_scvi.survival.SurvivalModel`.

    Full-batch training with scvi-tools' ``DataSplitter``, ``TrainingPlan`` and
    ``TrainRunner``, after the penalty is chosen by inner cross-validation along a path fitted
    outside the Lightning loop. The model provides ``module`` (a
    :class:`~cancergpt_scvi.survival.CoxPHModule`), ``_outcome()``, ``_require_cohort()`` and
    its penalty setting (``_alpha_grid``, ``cv_folds``, ``cv_scoring``, ``n_alphas``,
    ``alpha_min_ratio``).
    """

    @torch.inference_mode()
    def _design(self, indices: np.ndarray) -> torch.Tensor:
        """Unstandardised float64 design matrix of registered samples, in ``indices`` order."""
        loader = self._make_data_loader(self.adata, indices=indices, batch_size=len(indices))
        tensors = next(iter(loader))
        inf = self.module._get_inference_input(tensors)
        return self.module.design(inf["x"], inf["cont_covs"], inf["cat_covs"]).double()

    def _standardize_on(self, indices: np.ndarray) -> None:
        """Fix the module's standardisation to the design of the training samples ``indices``."""
        flat = fit_standardization(self.module.standardization, self._design(indices))
        if flat.any():
            # constant within this training set only (e.g. a rare category in a CV fold):
            # such a column cannot inform the fit, so it is centred and left unscaled
            warnings.warn(
                f"{int(flat.sum())} design column(s) are constant in the training samples and "
                "get no weight.",
                UserWarning,
                stacklevel=3,
            )

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
            Samples to tune on: integer positions or a boolean mask.
        seed
            Seed of the inner folds; default ``scvi.settings.seed`` (0 when unset).
        optimizer, lr, max_epochs
            As in :meth:`train` (L-BFGS runs to convergence whatever ``lr``), so that the
            penalty is chosen for fits trained as the final one is.

        Returns
        -------
        The chosen penalty and the cross-validation curve (see ``alpha_path_``).
        """
        self._require_cohort()
        if self._alpha_grid is None:
            raise RuntimeError("This model has a fixed alpha; pass alpha='cv' or a list to tune.")
        train_idx = np.unique(cell_indices(train_indices, self.adata.n_obs))
        optimizer, lr, max_epochs = self._optimizer_defaults(optimizer, lr, max_epochs, tuned=True)
        if seed is None:
            seed = scvi.settings.seed if scvi.settings.seed is not None else 0
        d, e = (v[train_idx] for v in self._outcome())
        return tune_module_penalty(
            self.module,
            self._design(train_idx).clone(),  # a normal tensor, for autograd
            d,
            e,
            self._alpha_grid,
            n_folds=self.cv_folds,
            seed=seed,
            scoring=self.cv_scoring,
            n_alphas=self.n_alphas,
            min_ratio=self.alpha_min_ratio,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
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
            Random split of the samples by scvi-tools' rule
            (:func:`~cancergpt_scvi.train.validation_split`, seeded by ``scvi.settings.seed``)
            when ``train_indices`` is not given; default all samples train.
        train_indices
            Explicit training samples (integer positions or a boolean mask; the others are not
            used), e.g. a cross-validation fold.
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
        self._require_cohort()
        n_obs = self.adata.n_obs
        if train_indices is not None:
            train_idx = np.unique(cell_indices(train_indices, self.adata.n_obs))
            val_idx = np.array([], dtype=int)
        else:
            # scvi-tools' rule and seed (DataSplitter)
            train_idx, val_idx = validation_split(
                np.arange(n_obs),
                train_size,
                validation_size,
                np.random.RandomState(seed=scvi.settings.seed),
            )
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
        self._standardize_on(train_idx)

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
