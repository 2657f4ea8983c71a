"""DrugResponseModel: drug response of cell lines from their representation and drug structure."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField, ObsmField
from scvi.model.base import BaseModelClass
from scvi.train import TrainingPlan, TrainRunner

from cancergpt_scvi._listing import listing

from ._data import (
    DrugResponseDataSplitter,
    DrugResponsePairs,
    response_matrix,
    response_pairs,
    validate_smiles,
)
from ._module import DrugResponseModule
from ._molecules import DrugFeaturizer

logger = logging.getLogger(__name__)

#: ``adata.obsm`` key of the cell lines x drugs response matrix written by ``setup_anndata``.
RESPONSES_KEY = "drug_response"
#: ``adata.uns`` key of the drug name -> SMILES mapping written by ``setup_anndata``.
SMILES_KEY = "drug_smiles"
_CELL_FEATURES = "cell_features"
#: Registry key of the arguments of ``setup_anndata`` (``model.registry_["setup_args"]``).
_SETUP_ARGS = "setup_args"
_TABLE_KEYS = ("cell_line_key", "drug_key", "response_key")


class DrugResponseModel(BaseModelClass):
    """Drug response (ln IC50, AUC, ...) of cell lines to drugs, for unseen cell lines and drugs.

    DeepCDR-style: an MLP over the cell line's representation (CancerGPT embedding, PCA or
    expression), a graph neural network over the drug's atoms and bonds from its SMILES (or an
    MLP over its Morgan fingerprint), and an MLP fusing both into the response. Cell lines are
    the observations of the AnnData; responses and drug structures are given to
    :meth:`setup_anndata`.

    Parameters
    ----------
    adata
        Cell lines x features, set up with :meth:`setup_anndata`.
    registry
        Registry of a saved model (used by :meth:`load` without AnnData).
    drug_representation
        ``"graph"`` (message passing over the molecular graph) or ``"fingerprint"`` (Morgan
        fingerprint MLP, the simple alternative).
    n_hidden, n_latent, n_layers, n_graph_layers, n_fingerprint_bits, dropout
        Architecture; see :class:`~cancergpt_scvi.drug_response.DrugResponseModule`.

    Examples
    --------
    >>> from cancergpt_scvi.datasets import simulate_drug_response
    >>> sim = simulate_drug_response()
    >>> DrugResponseModel.setup_anndata(sim.adata, responses=sim.responses, smiles=sim.smiles)
    >>> model = DrugResponseModel(sim.adata)
    >>> model.train(max_epochs=50)
    >>> model.predict(cell_lines=["CL0001"], drugs=["Erlotinib", "Olaparib"])
    """

    _module_cls = DrugResponseModule

    def __init__(
        self,
        adata: AnnData | None = None,
        registry: dict | None = None,
        drug_representation: Literal["graph", "fingerprint"] = "graph",
        n_hidden: int = 128,
        n_latent: int = 64,
        n_layers: int = 1,
        n_graph_layers: int = 3,
        n_fingerprint_bits: int = 2048,
        dropout: float = 0.1,
    ):
        super().__init__(adata, registry)
        self.module = self._module_cls(
            n_input=self.summary_stats[f"n_{_CELL_FEATURES}"],
            drug_representation=drug_representation,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            n_graph_layers=n_graph_layers,
            n_fingerprint_bits=n_fingerprint_bits,
            dropout=dropout,
        )
        # structures are part of the model: predictions for its drugs need no AnnData
        self.drug_smiles_ = dict(adata.uns.get(SMILES_KEY, {})) if adata is not None else {}
        self._model_summary_string = (
            f"DrugResponseModel: {self.summary_stats[f'n_{_CELL_FEATURES}']} cell-line "
            f"features, {len(self.drug_smiles_)} drugs, drug branch: {drug_representation}."
        )
        self.init_params_ = self._get_init_params(locals())

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
        field = (
            ObsmField(_CELL_FEATURES, embedding_key)
            if embedding_key is not None
            else LayerField(_CELL_FEATURES, layer, is_count_data=False)
        )
        adata_manager = AnnDataManager(fields=[field], setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)
        features = _dense(adata_manager.get_from_registry(_CELL_FEATURES))
        _check_features(features, adata.obs_names)
        if (
            embedding_key is None
            and features.max() > 100
            and np.array_equal(features, np.round(features))
        ):
            warnings.warn(
                "The expression looks like raw counts; the cell-line branch expects "
                "log-normalised expression (e.g. log1p TPM or CPM). Normalise it, or pass the "
                "layer that holds it with layer=.",
                UserWarning,
                stacklevel=2,
            )

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
            was set up with (same ``obsm`` key and width, or same genes in the same order); no
            responses or setup are needed.

        Returns
        -------
        Dense float32 array, one row per cell line of ``adata``.

        Raises
        ------
        ValueError
            ``adata`` lacks the representation, its genes or width differ from the model's,
            or a row is not finite.
        """
        if adata is None:
            if self.adata is None:
                raise ValueError("This model has no AnnData; pass adata with the cell lines.")
            adata = self.adata
        field = self.registry_["field_registries"][_CELL_FEATURES]
        state = field["state_registry"]
        # where setup read the representation: ("obsm", key), ("layers", layer) or ("X", None)
        attr_name = field["data_registry"]["attr_name"]
        attr_key = field["data_registry"]["attr_key"]
        n_features = self.summary_stats[f"n_{_CELL_FEATURES}"]
        container = getattr(adata, attr_name)
        if attr_key is not None and attr_key not in container:
            raise ValueError(
                f"adata.{attr_name} has no {attr_key!r}, the representation this model reads."
            )
        if attr_name != "obsm" and "column_names" in state:
            genes = np.asarray(state["column_names"])
            if len(genes) != adata.n_vars or not np.array_equal(genes, adata.var_names):
                raise ValueError(
                    "adata's genes differ from the model's (names or order); subset and "
                    "reorder with adata[:, model.adata.var_names]."
                )
        x = _dense(container if attr_key is None else container[attr_key])
        if x.shape[1] != n_features:
            raise ValueError(
                f"The representation has {x.shape[1]} features; the model expects {n_features}."
            )
        _check_features(x, adata.obs_names)
        return x

    def responses(self) -> pd.DataFrame:
        """Long table of the model's measured pairs.

        Columns: cell line, drug and response (named as at setup), and each pair's row
        (``cell_index``) and drug (``drug_index``) in ``adata.obsm["drug_response"]``. Rows are
        in the model's pair order: ``train_indices``, ``validation_indices`` and
        ``test_indices`` (the held-out pairs) index them.
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
        max_epochs: int | None = None,
        lr: float = 1e-3,
        batch_size: int = 128,
        train_size: float = 0.9,
        validation_by: Literal["pairs", "cell_lines", "drugs"] = "pairs",
        holdout_cell_lines: Sequence[str] | None = None,
        holdout_drugs: Sequence[str] | None = None,
        early_stopping: bool = False,
        seed: int = 0,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train on the measured pairs, keeping held-out cell lines and drugs unseen.

        Parameters
        ----------
        max_epochs
            Passes over the training pairs; default: enough for about 2,000 gradient steps
            (between 5 and 300 epochs).
        lr
            Learning rate (Adam).
        batch_size
            Pairs per minibatch; its unique cell lines and drugs are each encoded once.
        train_size
            Share of the available pairs (or of their cell lines / drugs, see
            ``validation_by``) used for training; the rest validate (``1.0``: no validation).
        validation_by
            Validation pairs: random ``"pairs"``, or whole ``"cell_lines"`` / ``"drugs"``.
        holdout_cell_lines, holdout_drugs
            Cell lines and drugs whose pairs are kept out of training and validation (the
            evaluation set; their pair indices become ``model.test_indices``).
        early_stopping
            Stop when ``elbo_validation`` (the validation mean squared error on the
            standardised response) stops improving; ``early_stopping_patience`` and other
            :class:`~scvi.train.Trainer` options go in ``trainer_kwargs``.
        seed
            Seed of the validation split.
        accelerator, devices
            Lightning device options.
        plan_kwargs
            Options of :class:`~scvi.train.TrainingPlan` (e.g. ``weight_decay``).
        **trainer_kwargs
            Options of :class:`~scvi.train.Trainer`.
        """
        pairs = self.responses()
        # the structures of the drugs it is trained on become part of the model
        self.drug_smiles_.update(self.adata.uns.get(SMILES_KEY, {}))
        cell_names = self.adata.obs_names
        drug_names = pd.Index(self.adata.obsm[RESPONSES_KEY].columns)
        held_out = np.zeros(len(pairs), dtype=bool)
        for names, known, column, what in (
            (holdout_cell_lines, cell_names, self._setup_arg("cell_line_key"), "cell lines"),
            (holdout_drugs, drug_names, self._setup_arg("drug_key"), "drugs"),
        ):
            if names is None:
                continue
            names = [str(n) for n in names]
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"Held-out {what} {listing(unknown)} are not in the data.")
            held_out |= pairs[column].isin(names).to_numpy()

        features = self.cell_features()
        dataset = DrugResponsePairs(
            features,
            DrugFeaturizer(
                {d: self.drug_smiles_[d] for d in drug_names},
                self.module.drug_representation,
                n_bits=self.module.n_fingerprint_bits,
            ),
            pairs["cell_index"].to_numpy(),
            pairs["drug_index"].to_numpy(),
            pairs[self._setup_arg("response_key")].to_numpy(),
        )
        splitter = DrugResponseDataSplitter(
            dataset, held_out, validation_by, train_size, batch_size, seed
        )
        if early_stopping and splitter.n_val == 0:
            raise ValueError("early_stopping needs validation pairs: use train_size < 1.")

        # Standardise with training statistics only (held-out cell lines stay unseen). Features
        # are centred and divided by one common scale: how much each PCA / embedding /
        # gene dimension varies is information that per-feature z-scores would erase.
        train_features = features[np.unique(dataset.cell_index[splitter.train_idx])]
        scale = max(float(np.sqrt(train_features.var(0).mean())), 1e-6)
        response = dataset.response[splitter.train_idx]
        self.module.set_standardization(
            torch.from_numpy(train_features.mean(0)),
            torch.full((features.shape[1],), scale),
            response.mean(),
            max(float(response.std()), 1e-6),
        )
        if max_epochs is None:
            steps_per_epoch = int(np.ceil(splitter.n_train / batch_size))
            max_epochs = int(np.clip(round(2000 / steps_per_epoch), 5, 300))
        plan_kwargs = {"lr": lr, **(plan_kwargs or {})}
        training_plan = TrainingPlan(self.module, **plan_kwargs)
        runner = TrainRunner(
            self,
            training_plan=training_plan,
            data_splitter=splitter,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            early_stopping=early_stopping,
            **trainer_kwargs,
        )
        with warnings.catch_warnings():
            # minibatches mix pair-level and unique-drug tensors; the pair-level ones come
            # first, so the batch size Lightning infers (and warns about) is the right one
            warnings.filterwarnings("ignore", message="Trying to infer the `batch_size`")
            runner()

    # ------------------------------------------------------------------ prediction
    @torch.inference_mode()
    def predict(
        self,
        cell_lines: Sequence[str] | None = None,
        drugs: Sequence[str] | None = None,
        adata: AnnData | None = None,
        smiles: Mapping[str, str] | pd.Series | None = None,
        pairs: pd.DataFrame | None = None,
        batch_size: int = 1024,
    ) -> pd.DataFrame:
        """Predicted response of cell lines to drugs, including unseen ones.

        Parameters
        ----------
        cell_lines
            Cell lines (``obs_names`` of ``adata``); default all.
        drugs
            Drugs; default all the model knows plus those of ``smiles``. A drug the model
            has not seen needs its SMILES in ``smiles``.
        adata
            Cell lines to predict for (default: the model's). New cell lines need only the
            representation the model reads (see :meth:`cell_features`).
        smiles
            Drug name -> SMILES of new drugs (or to override a known drug's structure).
        pairs
            Predict exactly these pairs (columns named as ``cell_line_key`` and ``drug_key``
            of setup) instead of all ``cell_lines`` x ``drugs``.
        batch_size
            Pairs per minibatch.

        Returns
        -------
        Long DataFrame with the cell-line and drug columns (named as at setup) and
        ``prediction``, in the order of ``pairs`` (or cell line-major).
        """
        self._check_if_trained(warn=False)
        cl_key, drug_key = self._setup_arg("cell_line_key"), self._setup_arg("drug_key")
        adata = self.adata if adata is None else adata
        if adata is None:
            raise ValueError("This model has no AnnData; pass adata with the cell lines.")
        structures = dict(self.drug_smiles_)
        if smiles is not None:
            structures.update(validate_smiles(smiles, []))
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
        needed = pd.unique(pair_drugs)
        unknown_drugs = [d for d in needed if d not in structures]
        if unknown_drugs:
            raise ValueError(
                f"The model does not know drug(s) {listing(unknown_drugs)}; pass their "
                "structures with smiles={drug: SMILES}."
            )
        dataset = DrugResponsePairs(
            self.cell_features(adata),
            DrugFeaturizer(
                {d: structures[d] for d in needed},
                self.module.drug_representation,
                n_bits=self.module.n_fingerprint_bits,
            ),
            adata.obs_names.get_indexer(pair_cells),
            pd.Index(needed).get_indexer(pair_drugs),
        )
        self.module.eval()
        predictions = []
        for tensors in dataset.loader(np.arange(len(dataset)), batch_size):
            _, generative_outputs = self.module(tensors, compute_loss=False)
            predictions.append(generative_outputs["prediction"].cpu().numpy())
        prediction = np.concatenate(predictions) if predictions else np.zeros(0, np.float32)
        return pd.DataFrame({cl_key: pair_cells, drug_key: pair_drugs, "prediction": prediction})


def _dense(x: np.ndarray | sparse.spmatrix | pd.DataFrame) -> np.ndarray:
    """A dense float32 array of a matrix, sparse matrix or DataFrame."""
    if isinstance(x, pd.DataFrame):
        x = x.to_numpy()
    if sparse.issparse(x):
        x = x.toarray()
    return np.asarray(x, dtype=np.float32)


def _check_features(x: np.ndarray, cell_lines: pd.Index) -> None:
    """Raise, naming the cell lines, if a row of ``x`` is not finite."""
    bad = ~np.isfinite(x).all(1)
    if bad.any():
        raise ValueError(
            f"The cell-line representation has non-finite values for {int(bad.sum())} cell "
            f"line(s): {listing(list(cell_lines[bad]))}."
        )
