"""DrugResponseModel: drug response of cell lines from their representation and drug structure."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField, ObsmField
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainingPlan, TrainRunner
from sklearn.linear_model import RidgeCV

from cancergpt_scvi._argument_types import names_list
from cancergpt_scvi._constants import CELL_FEATURES_KEY, RESPONSE_KEY
from cancergpt_scvi._listing import listing
from cancergpt_scvi._loading import ExplainedLoadMixin
from cancergpt_scvi._saving import WholeFolderSaveMixin
from cancergpt_scvi.data import check_expression_scale, expression_scale
from cancergpt_scvi.train import BestWeights, validation_split

from ._cell_features import (
    check_features,
    dense,
    read_cell_features,
    reads_expression,
    warn_if_counts,
)
from ._data import holdout_mask, response_matrix, response_pairs, validate_smiles
from ._module import DrugResponseModule
from ._molecules import morgan_fingerprint, tanimoto_similarity
from ._nearest_drugs import nearest_drugs_average

#: ``adata.obsm`` key of the cell lines x drugs response matrix written by ``setup_anndata``.
RESPONSES_KEY = "drug_response"
#: ``adata.uns`` key of the drug name -> SMILES mapping written by ``setup_anndata``.
SMILES_KEY = "drug_smiles"
#: Validation metric of early stopping and of the restored best epoch.
_MONITOR = "reconstruction_loss_validation"
#: Ridge penalties searched (per drug, by generalised cross-validation) for the linear term.
_RIDGE_ALPHAS = np.logspace(-1, 6, 15)
#: Registry key of the arguments of ``setup_anndata`` (``model.registry_["setup_args"]``).
_SETUP_ARGS = "setup_args"
_TABLE_KEYS = ("cell_line_key", "drug_key", "response_key")


class DrugResponseModel(ExplainedLoadMixin, WholeFolderSaveMixin, BaseModelClass):
    """Drug response (ln IC50, AUC, ...) of cell lines to drugs, for unseen cell lines and drugs.

    Cell lines are the observations of the AnnData; their responses (a cell lines x drugs
    matrix with gaps) and the drugs' structures (SMILES) are given to :meth:`setup_anndata`.
    The model reads a cell line's representation (expression, PCA or a CancerGPT embedding)
    and predicts its response to every trained drug at once:

    - an ensemble of multi-task networks (:class:`DrugResponseModule`): a shared MLP of the
      representation and one learned vector and bias per drug, trained on whole rows of the
      response matrix, early-stopped on held-back cell lines, the best epoch restored;
    - averaged with one ridge regression per drug on the same representation (its penalty
      chosen per drug by generalised cross-validation), fitted after the networks.

    A drug outside training (held out, or new with its SMILES) is predicted from the trained
    drugs that resemble it in structure: the Tanimoto-weighted mean of the predictions for its
    ``n_neighbor_drugs`` most similar trained drugs (Morgan fingerprints;
    :func:`~cancergpt_scvi.drug_response.nearest_drugs_average`), averaged with the cell
    line's average sensitivity (its mean measured response over the trained drugs; for a cell
    line without measurements, its mean prediction over them).

    Parameters
    ----------
    adata
        Cell lines x features, set up with :meth:`setup_anndata` with responses.
    registry
        Registry of a saved model (used by :meth:`load` without AnnData).
    n_hidden, n_latent, n_ensemble, dropout
        Architecture of the networks; see
        :class:`~cancergpt_scvi.drug_response.DrugResponseModule`.
    n_neighbor_drugs
        Trained drugs whose predictions make up an unseen drug's.

    Examples
    --------
    >>> from cancergpt_scvi.datasets import simulate_drug_response
    >>> sim = simulate_drug_response()
    >>> DrugResponseModel.setup_anndata(sim.adata, responses=sim.responses, smiles=sim.smiles)
    >>> model = DrugResponseModel(sim.adata)
    >>> model.train()
    >>> model.predict(cell_lines=["CL0001"], drugs=["Erlotinib", "Olaparib"])
    """

    _other_data = "Load it without adata; model.predict(adata=...) matches genes by name."

    _module_cls = DrugResponseModule

    def __init__(
        self,
        adata: AnnData | None = None,
        registry: dict | None = None,
        n_hidden: int = 256,
        n_latent: int = 64,
        n_ensemble: int = 5,
        dropout: float = 0.3,
        n_neighbor_drugs: int = 10,
    ):
        super().__init__(adata, registry)
        if f"n_{RESPONSE_KEY}" not in self.summary_stats:
            raise ValueError(
                "This AnnData was set up without responses; create the model on one set up "
                "with DrugResponseModel.setup_anndata(adata, responses=..., smiles=...)."
            )
        if n_neighbor_drugs < 1:
            raise ValueError(f"n_neighbor_drugs must be at least 1, got {n_neighbor_drugs}.")
        self.n_neighbor_drugs = n_neighbor_drugs
        self.module = self._module_cls(
            n_input=self.summary_stats[f"n_{CELL_FEATURES_KEY}"],
            n_drugs=self.summary_stats[f"n_{RESPONSE_KEY}"],
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_ensemble=n_ensemble,
            dropout=dropout,
        )
        # structures are part of the model: predictions for its drugs need no AnnData
        self.drug_smiles_ = dict(adata.uns.get(SMILES_KEY, {})) if adata is not None else {}
        # each training cell line's mean measured response over the trained drugs
        self.cell_line_sensitivity_ = pd.Series(dtype=float)
        # the scale of expression read as representation (counts, log, ...), checked on new data
        self.expression_scale_ = None
        if adata is not None and reads_expression(self.registry_):
            self.expression_scale_ = expression_scale(
                self.adata_manager.get_from_registry(CELL_FEATURES_KEY)
            )
        self._model_summary_string = (
            f"DrugResponseModel: {self.summary_stats[f'n_{CELL_FEATURES_KEY}']} cell-line "
            f"features, {len(self.drugs)} drugs, {n_ensemble} multi-task networks + a ridge "
            "per drug."
        )
        self.init_params_ = self._get_init_params(locals())

    @property
    def drugs(self) -> list[str]:
        """The drugs of the response matrix (the model's columns), in order."""
        state = self.registry_["field_registries"][RESPONSE_KEY]["state_registry"]
        return [str(d) for d in state["column_names"]]

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        responses: pd.DataFrame | None = None,
        smiles: Mapping[str, str] | pd.Series | None = None,
        cell_line_key: str = "cell_line",
        drug_key: str = "drug",
        response_key: str = "response",
        embedding_key: str | None = None,
        layer: str | None = None,
        tissue_key: str | None = None,
        drop_unknown_cell_lines: bool = False,
        duplicates: Literal["refuse", "mean"] = "refuse",
        **kwargs,
    ) -> None:
        """Register cell lines, their responses and the drugs' structures.

        The response table is checked and stored as a cell lines x drugs matrix in
        ``adata.obsm["drug_response"]`` (NaN where unmeasured), the structures in
        ``adata.uns["drug_smiles"]``; neither goes into the saved registry.

        Parameters
        ----------
        adata
            One row per cell line, ``obs_names`` the cell-line names.
        responses
            Long table of measurements, one row per (cell line, drug). May be None on an
            AnnData used only for prediction (or already set up).
        smiles
            Drug name -> SMILES, for every drug of ``responses`` (more drugs are fine).
        cell_line_key, drug_key, response_key
            Columns of ``responses``.
        embedding_key
            ``adata.obsm`` key of the cell-line representation (e.g. ``"X_cancergpt"``).
        layer
            Layer of log-normalised expression used as representation when ``embedding_key``
            is None (default: ``X``).
        tissue_key
            ``adata.obs`` column of the tissue, used to stratify held-out cell-line splits.
        drop_unknown_cell_lines
            Drop (with a warning counting them) response rows whose cell line is not in
            ``adata``; by default they are an error.
        duplicates
            A pair measured more than once: ``"refuse"`` (error) or ``"mean"`` (average).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        # the table and structures live in adata (obsm/uns); keep the saved registry small
        setup_method_args[_SETUP_ARGS].update(responses=None, smiles=None)
        if embedding_key is not None and layer is not None:
            raise ValueError("Give either embedding_key (obsm) or layer (expression), not both.")
        if adata.obs_names.has_duplicates:
            dup = adata.obs_names[adata.obs_names.duplicated()].unique()
            raise ValueError(
                f"adata.obs_names must name each cell line once; repeated: {listing(dup)}."
            )
        if tissue_key is not None and tissue_key not in adata.obs:
            raise ValueError(f"tissue_key {tissue_key!r} is not a column of adata.obs.")
        if embedding_key is not None and embedding_key not in adata.obsm:
            raise ValueError(
                f"embedding_key {embedding_key!r} is not in adata.obsm (keys: "
                f"{list(adata.obsm)}). Compute the embedding first, e.g. "
                "adata.obsm['X_cancergpt'] = CancerGPTModel(...).get_latent_representation()."
            )
        if responses is not None:
            if smiles is None:
                raise ValueError("Give the drugs' structures: smiles={drug: SMILES, ...}.")
            matrix = response_matrix(
                adata.obs_names,
                responses,
                cell_line_key,
                drug_key,
                response_key,
                drop_unknown_cell_lines,
                duplicates,
            )
            adata.uns[SMILES_KEY] = validate_smiles(smiles, list(matrix.columns))
            adata.obsm[RESPONSES_KEY] = matrix
        elif smiles is not None:
            adata.uns[SMILES_KEY] = validate_smiles(smiles, [])
        source = kwargs.get("source_registry")
        if (
            RESPONSES_KEY not in adata.obsm
            and source is not None
            and RESPONSE_KEY in source["field_registries"]
        ):
            # cell lines given to a saved model for prediction: nothing measured
            drugs = source["field_registries"][RESPONSE_KEY]["state_registry"]["column_names"]
            adata.obsm[RESPONSES_KEY] = pd.DataFrame(
                np.nan, index=adata.obs_names, columns=list(drugs), dtype=np.float32
            )
        fields = [
            ObsmField(CELL_FEATURES_KEY, embedding_key)
            if embedding_key is not None
            else LayerField(CELL_FEATURES_KEY, layer, is_count_data=False)
        ]
        if RESPONSES_KEY in adata.obsm:
            fields.append(ObsmField(RESPONSE_KEY, RESPONSES_KEY))
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)
        features = dense(adata_manager.get_from_registry(CELL_FEATURES_KEY))
        check_features(features, adata.obs_names)
        if embedding_key is None:
            warn_if_counts(features)

    # ------------------------------------------------------------------ data access
    def _setup_arg(self, name: str) -> str | None:
        """The value of ``setup_anndata``'s argument ``name`` in the model's registry."""
        return self.registry_[_SETUP_ARGS][name]

    def cell_features(self, adata: AnnData | None = None) -> np.ndarray:
        """The cell-line representation the model reads, ``(n_cell_lines, n_features)``.

        Parameters
        ----------
        adata
            Cell lines to read (default: the model's). They need the representation the model
            was set up with (same ``obsm`` key and width, or expression of every training
            gene, matched by name in any order, on the training data's scale); no responses
            or setup are needed.

        Returns
        -------
        Dense float32 array, one row per cell line of ``adata``.

        Raises
        ------
        ValueError
            ``adata`` lacks the representation or one of the model's genes (expression is
            matched by gene name, in any order), its width differs from the model's, a row is
            not finite, or its expression is on another scale than the training data's
            (e.g. counts for a model trained on log-normalised expression).
        """
        if adata is None:
            if self.adata is None:
                raise ValueError("This model has no AnnData; pass adata with the cell lines.")
            adata = self.adata
        features = read_cell_features(
            adata,
            self.registry_["field_registries"][CELL_FEATURES_KEY],
            self.summary_stats[f"n_{CELL_FEATURES_KEY}"],
        )
        if reads_expression(
            self.registry_
        ):  # also a loaded model's AnnData, which it did not train on
            check_expression_scale(getattr(self, "expression_scale_", None), features)
        return features

    def responses(self) -> pd.DataFrame:
        """Long table of the model's measured pairs.

        Columns: cell line, drug and response (named as at setup), and each pair's row
        (``cell_index``) and drug (``drug_index``) in ``adata.obsm["drug_response"]``, cell
        line-major. (``train_indices``, ``validation_indices`` and ``test_indices`` index the
        cell lines, the model's observations.)
        """
        if self.adata is None or RESPONSES_KEY not in self.adata.obsm:
            raise ValueError(
                "No responses: run DrugResponseModel.setup_anndata(adata, responses=..., "
                "smiles=...) and create the model on that adata."
            )
        matrix = self.adata.obsm[RESPONSES_KEY]
        if not isinstance(matrix, pd.DataFrame) or not matrix.index.equals(self.adata.obs_names):
            raise ValueError(
                f"adata.obsm[{RESPONSES_KEY!r}] is not the matrix setup_anndata wrote; "
                "run setup_anndata again with responses."
            )
        return response_pairs(matrix, *map(self._setup_arg, _TABLE_KEYS))

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int = 300,
        lr: float = 1e-3,
        batch_size: int = 64,
        train_size: float = 0.9,
        holdout_cell_lines: Sequence[str] | None = None,
        holdout_drugs: Sequence[str] | None = None,
        early_stopping: bool = True,
        early_stopping_patience: int = 30,
        seed: int = 0,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the networks on whole rows of the response matrix, then the linear term.

        Parameters
        ----------
        max_epochs
            Most passes over the training cell lines (early stopping usually ends sooner).
        lr
            Learning rate (AdamW).
        batch_size
            Cell lines per minibatch, each with its responses to every drug.
        train_size
            Share of the available cell lines used for training (rounded up, as scvi-tools'
            :class:`~scvi.dataloaders.DataSplitter`); the rest (whole cell lines) validate, for
            early stopping and for choosing the epoch kept (``1.0``: none).
        holdout_cell_lines, holdout_drugs
            Cell lines and drugs kept out of training and validation (the evaluation set).
            Held-out cell lines become ``model.test_indices``; held-out drugs are predicted
            as unseen drugs.
        early_stopping
            Stop when the validation error has not improved for ``early_stopping_patience``
            epochs. Either way the weights of the best validation epoch are kept.
        early_stopping_patience
            Epochs without improvement before stopping.
        seed
            Seed of the validation draw.
        accelerator, devices
            Lightning device options.
        plan_kwargs
            Options of :class:`~scvi.train.TrainingPlan` (default AdamW, ``weight_decay=1e-4``).
        **trainer_kwargs
            Options of :class:`~scvi.train.Trainer`.
        """
        holdout_cell_lines = names_list("holdout_cell_lines", holdout_cell_lines)
        holdout_drugs = names_list("holdout_drugs", holdout_drugs)
        matrix = self._response_matrix()
        # the structures of the drugs it is trained on become part of the model
        self.drug_smiles_.update(self.adata.uns.get(SMILES_KEY, {}))
        held_cells = holdout_mask(holdout_cell_lines, self.adata.obs_names, "cell lines")
        held_drugs = holdout_mask(holdout_drugs, pd.Index(self.drugs), "drugs")
        values = matrix.to_numpy(np.float64)
        available = np.flatnonzero(~held_cells)
        measured = np.isfinite(values[available][:, ~held_drugs])
        trained = ~held_drugs
        trained[~held_drugs] = measured.any(0)
        if not trained.any():
            raise ValueError(
                "The held-out cell lines and drugs cover every measurement: nothing to train on."
            )
        train_idx, val_idx = validation_split(
            available, train_size, None, np.random.default_rng(seed)
        )
        n_val = len(val_idx)
        if early_stopping and n_val == 0:
            raise ValueError(
                "early_stopping needs validation cell lines: use train_size < 1 (with enough "
                "cell lines for one to validate) or early_stopping=False."
            )

        # Standardise with training statistics only (held-out cell lines stay unseen).
        features = self.cell_features()
        train_features = features[train_idx]
        train_values = values[train_idx]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # drugs without training values
            mean = np.nan_to_num(np.nanmean(train_values, 0))
            scale = np.nan_to_num(np.nanstd(train_values, 0), nan=1.0)
        # one scale for all features (their relative variation is information)
        self.module.cell_standardization.set(
            train_features.mean(0), max(float(np.sqrt(train_features.var(0).mean())), 1e-6)
        )
        # a drug whose training responses do not vary is only centred
        self.module.response_standardization.set(mean, scale, min_scale=1e-6)
        self.module.set_trained_drugs(torch.from_numpy(trained))
        self.module.set_linear_term(
            torch.zeros_like(self.module.linear_weight), torch.zeros(len(trained)), share=0.0
        )
        splitter = DataSplitter(
            self.adata_manager,
            external_indexing=[train_idx, val_idx, np.flatnonzero(held_cells)],
            batch_size=batch_size,
        )
        plan_kwargs = {
            "optimizer": "AdamW",
            "lr": lr,
            "weight_decay": 1e-4,
            "eps": 1e-8,
            **(plan_kwargs or {}),
        }
        callbacks = list(trainer_kwargs.pop("callbacks", []))
        if n_val > 0:
            callbacks.append(BestWeights(_MONITOR))
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        else:  # scvi-tools' splitter has no validation loader to give Lightning
            trainer_kwargs.setdefault("limit_val_batches", 0)
        runner = TrainRunner(
            self,
            training_plan=TrainingPlan(self.module, **plan_kwargs),
            data_splitter=splitter,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            early_stopping=early_stopping,
            early_stopping_monitor=_MONITOR,
            early_stopping_patience=early_stopping_patience,
            callbacks=callbacks,
            **trainer_kwargs,
        )
        runner()
        fitted = np.concatenate([train_idx, val_idx])  # every cell line not held out
        self._fit_linear_term(fitted, features, values, trained)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # cell lines without measurements
            sensitivity = np.nanmean(values[np.ix_(fitted, np.flatnonzero(trained))], 1)
        known = np.isfinite(sensitivity)
        self.cell_line_sensitivity_ = pd.Series(
            sensitivity[known], index=self.adata.obs_names[fitted][known], dtype=float
        )

    def _fit_linear_term(
        self, rows: np.ndarray, features: np.ndarray, values: np.ndarray, trained: np.ndarray
    ) -> None:
        """One ridge per trained drug on the standardised representation and response."""
        module = self.module
        x = module.cell_standardization(torch.from_numpy(features[rows])).numpy()
        response = module.response_standardization
        y = (values[rows] - response.mean.numpy()) / response.scale.numpy()
        y = np.nan_to_num(y[:, trained])  # unmeasured: the drug's mean (0 once standardised)
        ridge = RidgeCV(alphas=_RIDGE_ALPHAS, alpha_per_target=True).fit(x, y)
        weight = np.zeros((features.shape[1], len(trained)), dtype=np.float32)
        bias = np.zeros(len(trained), dtype=np.float32)
        weight[:, trained] = ridge.coef_.T
        bias[trained] = ridge.intercept_
        module.set_linear_term(torch.from_numpy(weight), torch.from_numpy(bias), share=0.5)

    def _response_matrix(self) -> pd.DataFrame:
        """The model's cell lines x drugs response matrix, checked."""
        self.responses()  # raises with the fix if the matrix is missing or stale
        return self.adata.obsm[RESPONSES_KEY]

    # ------------------------------------------------------------------ prediction
    @torch.inference_mode()
    def predict(
        self,
        cell_lines: Sequence[str] | None = None,
        drugs: Sequence[str] | None = None,
        adata: AnnData | None = None,
        smiles: Mapping[str, str] | pd.Series | None = None,
        pairs: pd.DataFrame | None = None,
        batch_size: int = 256,
    ) -> pd.DataFrame:
        """Predicted response of cell lines to drugs, including unseen ones.

        Parameters
        ----------
        cell_lines
            Cell lines (``obs_names`` of ``adata``); default all.
        drugs
            Drugs; default all the model knows plus those of ``smiles``. A drug the model
            has no structure for needs its SMILES in ``smiles``.
        adata
            Cell lines to predict for (default: the model's). New cell lines need only the
            representation the model reads (see :meth:`cell_features`).
        smiles
            Drug name -> SMILES of new drugs (or to override a known drug's structure, which
            makes it a new drug).
        pairs
            Predict exactly these pairs (columns named as ``cell_line_key`` and ``drug_key``
            of setup) instead of all ``cell_lines`` x ``drugs``.
        batch_size
            Cell lines per minibatch.

        Returns
        -------
        Long DataFrame with the cell-line and drug columns (named as at setup) and
        ``prediction``, in the order of ``pairs`` (or cell line-major).
        """
        self._check_if_trained(warn=False)
        cell_lines, drugs = names_list("cell_lines", cell_lines), names_list("drugs", drugs)
        cl_key, drug_key = self._setup_arg("cell_line_key"), self._setup_arg("drug_key")
        adata = self.adata if adata is None else adata
        if adata is None:
            raise ValueError("This model has no AnnData; pass adata with the cell lines.")
        new_smiles = validate_smiles(smiles, []) if smiles is not None else {}
        structures = {**self.drug_smiles_, **new_smiles}
        if pairs is not None:
            for col in (cl_key, drug_key):
                if col not in pairs:
                    raise ValueError(f"pairs needs a {col!r} column; it has {list(pairs.columns)}.")
            pair_cells = pairs[cl_key].astype(str).to_numpy()
            pair_drugs = pairs[drug_key].astype(str).to_numpy()
        else:
            cells = list(adata.obs_names) if cell_lines is None else [str(c) for c in cell_lines]
            drug_list = list(structures) if drugs is None else [str(d) for d in drugs]
            pair_cells = np.repeat(cells, len(drug_list))
            pair_drugs = np.tile(drug_list, len(cells))
        unknown_cells = pd.unique(pair_cells[~pd.Index(pair_cells).isin(adata.obs_names)])
        if len(unknown_cells):
            raise ValueError(
                f"{len(unknown_cells)} cell line(s) are not in adata.obs_names: "
                f"{listing(unknown_cells)}. Pass adata with their representation."
            )
        queries = list(pd.unique(pair_drugs))
        unknown_drugs = [d for d in queries if d not in structures]
        if unknown_drugs:
            raise ValueError(
                f"The model does not know drug(s) {listing(unknown_drugs)}; pass their "
                "structures with smiles={drug: SMILES}."
            )
        cells = list(pd.unique(pair_cells))
        rows = adata.obs_names.get_indexer(cells)
        table = self._predict_matrix(
            self.cell_features(adata)[rows], cells, queries, new_smiles, batch_size
        )
        out = table.to_numpy()[
            pd.Index(cells).get_indexer(pair_cells), pd.Index(queries).get_indexer(pair_drugs)
        ]
        return pd.DataFrame({cl_key: pair_cells, drug_key: pair_drugs, "prediction": out})

    def _predict_matrix(
        self,
        features: np.ndarray,
        cells: list[str],
        queries: list[str],
        new_smiles: Mapping[str, str],
        batch_size: int = 256,
    ) -> pd.DataFrame:
        """Cell lines x ``queries`` predictions; drugs outside training from their neighbours."""
        self.module.eval()
        trained = self.module.trained_drugs.cpu().numpy()

        def head(rows: np.ndarray) -> np.ndarray:
            inputs = {CELL_FEATURES_KEY: torch.from_numpy(rows)}
            return self.module(inputs, compute_loss=False)[1]["prediction"].cpu().numpy()

        chunks = [head(features[k : k + batch_size]) for k in range(0, len(features), batch_size)]
        predicted = np.concatenate(chunks) if chunks else np.zeros((0, len(trained)), np.float32)
        drugs = self.drugs
        trained_columns = np.flatnonzero(trained)
        column = {drugs[j]: j for j in trained_columns}
        known = [d for d in queries if d in column and d not in new_smiles]
        unseen = [d for d in queries if d not in known]
        table = pd.DataFrame(np.nan, index=cells, columns=queries)
        table[known] = predicted[:, [column[d] for d in known]]
        if unseen:
            # trained drugs keep the structure they were trained with
            reference = np.stack(
                [morgan_fingerprint(self.drug_smiles_[drugs[j]]) for j in trained_columns]
            )
            structures = {**self.drug_smiles_, **new_smiles}
            query = np.stack([morgan_fingerprint(structures[d], d) for d in unseen])
            candidates = predicted[:, trained_columns]
            by_structure = nearest_drugs_average(
                candidates, tanimoto_similarity(query, reference), self.n_neighbor_drugs
            )
            # a drug similar to no trained drug: all trained drugs alike
            alike = candidates.mean(1, dtype=float)[:, None]
            by_structure = np.where(np.isnan(by_structure), alike, by_structure)
            # a cell line's average sensitivity: measured where it was trained on, else predicted
            average = pd.Series(cells).map(self.cell_line_sensitivity_).to_numpy(float)
            average = np.where(np.isfinite(average), average, predicted[:, trained].mean(1))
            table[unseen] = (by_structure + average[:, None]) / 2
        return table
