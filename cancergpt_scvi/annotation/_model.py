"""CellStateModel: a cell-state head on CancerGPT embeddings, trained on an annotated reference."""

from __future__ import annotations

import copy
import logging
import warnings
from os import PathLike
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalObsField,
    LabelsWithUnlabeledObsField,
    LayerField,
    ObsmField,
)
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainingPlan, TrainRunner

from cancergpt_scvi._constants import EMBEDDING_KEY, LABELS_KEY, X_KEY
from cancergpt_scvi._listing import listing
from cancergpt_scvi._loading import ExplainedLoadMixin
from cancergpt_scvi._saving import WholeFolderSaveMixin
from cancergpt_scvi.data import holds_counts
from cancergpt_scvi.model import CancerGPTModel

from ._module import CellStateModule
from ._transfer import UNKNOWN, embedding_of, reference_labels

logger = logging.getLogger(__name__)

_ENCODER_FOLDER = "encoder"


class CellStateModel(ExplainedLoadMixin, WholeFolderSaveMixin, BaseModelClass):
    """A cell-state head: a classifier of annotated states on CancerGPT cell embeddings.

    Trained on a reference whose cells carry labels (e.g. MES-, AC-, OPC-, NPC-like), it
    predicts the states of new cells from their embeddings, with the probability of each
    state. Two ways to train it:

    - on precomputed embeddings (``obsm[embedding_key]``, from
      :meth:`~cancergpt_scvi.model.CancerGPTModel.get_latent_representation`): the
      foundation model stays as it is;
    - with ``encoder=`` a :class:`~cancergpt_scvi.model.CancerGPTModel` (e.g. the published
      weights from :meth:`~cancergpt_scvi.model.CancerGPTModel.load_pretrained`): a copy of
      its encoder is fine-tuned together with the classifier; the given model is not changed.
      Cells without a state (``unlabeled_category`` of :meth:`setup_anndata`, e.g. the
      query to be annotated, as with scANVI) take part through the encoder's self-supervised
      objective, kept alongside the labels while it is fine-tuned.

    Parameters
    ----------
    adata
        The annotated reference, registered with :meth:`setup_anndata`.
    encoder
        A CancerGPT model set up on ``adata`` (the same genes in the same order) whose encoder
        is fine-tuned with the classifier; ``None`` trains on ``obsm[embedding_key]``.
    n_hidden
        Hidden units of the classifier (0: linear, multinomial logistic regression).
    dropout
        Dropout of the classifier.
    n_input
        Dimensions of the embedding; set from the data or the encoder (given by :meth:`load`).

    Examples
    --------
    >>> reference.obsm["X_cancergpt"] = model.get_latent_representation(reference)
    >>> CellStateModel.setup_anndata(reference, labels_key="state")
    >>> head = CellStateModel(reference)
    >>> head.train()
    >>> query.obsm["X_cancergpt"] = model.get_latent_representation(query)
    >>> query.obs["state_pred"] = head.predict(query)
    """

    _other_data = "Load it without adata and call model.predict(adata) on other cells."

    _module_cls = CellStateModule
    _data_splitter_cls = DataSplitter
    _training_plan_cls = TrainingPlan
    _train_runner_cls = TrainRunner

    def __init__(
        self,
        adata: ad.AnnData | None = None,
        encoder: CancerGPTModel | None = None,
        n_hidden: int = 128,
        dropout: float = 0.1,
        n_input: int | None = None,
        registry: dict | None = None,
    ):
        super().__init__(adata, registry)
        args = self.registry_["setup_args"]
        # no trailing underscore: scvi-tools would pickle it with the head's attributes
        self._encoder: CancerGPTModel | None = None
        encoder_module = None
        if encoder is not None:
            self._check_encoder(encoder, adata, args)
            self._encoder = copy.copy(encoder)  # the user's model keeps its own weights
            self._encoder.module = copy.deepcopy(encoder.module)
            encoder_module = self._encoder.module
            n_input = encoder.module.embed_dim
        elif n_input is None:
            if args["embedding_key"] is None:
                raise ValueError(
                    "CellStateModel needs cell embeddings: set up the AnnData with "
                    "embedding_key= (an obsm key holding CancerGPT embeddings), or pass "
                    "encoder= a CancerGPTModel to fine-tune."
                )
            n_input = int(self.summary_stats[f"n_{EMBEDDING_KEY}"])
        # from the registry: a head loaded without data has no AnnData manager
        labels = self.registry_["field_registries"][LABELS_KEY]["state_registry"]
        mapping = list(labels["categorical_mapping"])
        unlabeled_code = None
        if labels.get(LabelsWithUnlabeledObsField.UNLABELED_CATEGORY) is not None:
            # scvi-tools puts the unlabeled category last
            unlabeled_code, mapping = len(mapping) - 1, mapping[:-1]
        self.labels_ = mapping
        self.module = self._module_cls(
            n_input=n_input,
            n_labels=len(self.labels_),
            n_hidden=n_hidden,
            dropout=dropout,
            encoder=encoder_module,
            unlabeled_code=unlabeled_code,
        )
        self._model_summary_string = (
            f"CellStateModel: {len(self.labels_)} states, "
            f"{'linear' if n_hidden == 0 else f'MLP ({n_hidden} hidden)'} on {n_input}-d "
            f"embeddings{', fine-tuning the encoder' if encoder is not None else ''}"
        )
        encoder = None  # not a saved parameter: the fine-tuned encoder is saved by save()
        self.init_params_ = self._get_init_params(locals())

    @property
    def encoder(self) -> CancerGPTModel | None:
        """The fine-tuned copy of the encoder (a CancerGPT model); ``None`` for a head on
        precomputed embeddings."""
        return self._encoder

    @staticmethod
    def _check_encoder(encoder: CancerGPTModel, adata: ad.AnnData | None, args: dict) -> None:
        if not isinstance(encoder, CancerGPTModel):
            raise TypeError(f"encoder must be a CancerGPTModel, got {type(encoder).__name__}.")
        if encoder.adata is None or adata is None:
            raise ValueError("Fine-tuning needs the encoder set up on the reference AnnData.")
        encoder_args = encoder.adata_manager.registry["setup_args"]
        # the encoder's module reads its registered columns in order
        same_genes = encoder.registered_genes_match() and list(encoder.adata.var_names) == list(
            adata.var_names
        )
        if not same_genes or encoder_args.get("layer") != args["layer"]:
            raise ValueError(
                "The encoder reads other expression than this AnnData: set up the reference "
                "for both with the same genes in the same order and the same layer (e.g. "
                "CancerGPTModel.load_pretrained(folder, reference) and "
                "CellStateModel.setup_anndata(reference, labels_key=...))."
            )

    @classmethod
    def setup_anndata(
        cls,
        adata: ad.AnnData,
        labels_key: str,
        embedding_key: str | None = "X_cancergpt",
        layer: str | None = None,
        unlabeled_category: str | None = None,
        **kwargs,
    ) -> None:
        """Register the annotated reference: its labels, embeddings and expression.

        Parameters
        ----------
        adata
            Reference cells.
        labels_key
            ``obs`` column with each cell's state; every cell needs one.
        embedding_key
            ``obsm`` key of the CancerGPT embeddings the classifier reads; ``None`` (or a key
            the AnnData lacks) when an encoder will be fine-tuned instead.
        layer
            Layer with the expression (default ``X``), read when fine-tuning.
        unlabeled_category
            The value of ``labels_key`` that marks cells without a known state (as in
            scANVI): typically the query, concatenated to the reference, so that a
            fine-tuned encoder adapts to its cells through the self-supervised objective.
            They add nothing to the classifier's loss. ``None``: every cell is labelled.
        """
        labels = reference_labels(adata, labels_key)
        if unlabeled_category is not None:
            states = [c for c in labels.categories if c != str(unlabeled_category)]
            if len(states) < 2:
                raise ValueError(
                    f"Besides unlabeled_category={unlabeled_category!r}, obs[{labels_key!r}] "
                    f"holds {len(states)} state(s) ({listing(states)}); a cell-state head needs "
                    "labelled cells of at least 2 states."
                )
        if embedding_key is not None and embedding_key not in adata.obsm:
            source = kwargs.get("source_registry")
            if source is not None and source["setup_args"].get("embedding_key") is not None:
                raise KeyError(
                    f"This head reads obsm[{embedding_key!r}], which the AnnData lacks: embed "
                    f"the cells first (adata.obsm[{embedding_key!r}] = "
                    "model.get_latent_representation(adata))."
                )
            embedding_key = None
        if embedding_key is not None:
            embedding_of(adata, embedding_key, "reference")
        setup_method_args = cls._get_setup_method_args(**locals())
        fields = [
            CategoricalObsField(LABELS_KEY, labels_key)
            if unlabeled_category is None
            else LabelsWithUnlabeledObsField(LABELS_KEY, labels_key, unlabeled_category)
        ]
        if embedding_key is not None:
            fields.append(ObsmField(EMBEDDING_KEY, embedding_key))
        if layer is not None or adata.X is not None:
            fields.append(LayerField(X_KEY, layer, is_count_data=False))
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    def _attach_encoder(self) -> None:
        """Put the fine-tuned encoder back into the module (a loaded model keeps it apart)."""
        if self._encoder is not None and self.module.encoder is None:
            self.module.encoder = self._encoder.module

    def _has_unlabeled_cells(self) -> bool:
        code = self.module.unlabeled_code
        if code is None or self.adata is None:
            return False
        codes = self.adata_manager.get_from_registry(LABELS_KEY)
        return bool((np.asarray(codes).ravel() == code).any())

    def _training_embeddings(self) -> np.ndarray:
        if self._encoder is not None:
            return self._encoder.get_latent_representation(self.adata, progress_bar=False)
        return embedding_of(self.adata, self.registry_["setup_args"]["embedding_key"], "reference")

    def train(
        self,
        max_epochs: int | None = None,
        lr: float = 1e-3,
        encoder_lr: float = 3e-4,
        self_supervised_weight: float | None = None,
        count_thinning: float | None = 0.3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        train_size: float = 0.9,
        validation_size: float | None = None,
        early_stopping: bool = True,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the classifier (and fine-tune the encoder, when there is one) on the labels.

        Parameters
        ----------
        max_epochs
            Passes over the reference; default 200 on embeddings, 15 when fine-tuning.
        lr
            Learning rate of the classifier (AdamW).
        encoder_lr
            Learning rate of the encoder when fine-tuning (AdamW, weight decay 0.01).
        self_supervised_weight
            Weight of the encoder's masked expression + MVC loss on every cell (labelled or
            not) when fine-tuning; default 0.1 when the AnnData holds cells of the
            unlabeled category (they adapt the encoder through it), else 0 (the labels
            alone). Ignored without an encoder.
        count_thinning
            When fine-tuning, the classifier learns from each cell's counts binomially
            thinned to a fraction drawn per cell (and step) from ``U(count_thinning, 1)``, as
            if sequenced shallower (:func:`~cancergpt_scvi.data.thin_counts`); the encoder is
            fine-tuned through them. ``None``: the counts as they are. Expression that is not
            whole numbers is not thinned (with a warning): set up a counts layer (``layer=``)
            to have it. No effect without an encoder (a value outside ``(0, 1]`` is still
            refused).
        weight_decay
            L2 weight decay (AdamW) of the classifier.
        batch_size
            Cells per step.
        train_size, validation_size
            scvi-tools' random split of the cells (``scvi.settings.seed``); the validation
            cells decide early stopping.
        early_stopping
            Stop when the validation loss has not improved for 10 epochs (needs validation
            cells); the weights of the last epoch are kept.
        accelerator, devices
            As in scvi-tools.
        plan_kwargs
            Extra keyword arguments of :class:`scvi.train.TrainingPlan`.
        **trainer_kwargs
            Extra keyword arguments of :class:`scvi.train.Trainer`.
        """
        if self_supervised_weight is not None and self_supervised_weight < 0:
            raise ValueError(f"self_supervised_weight must be >= 0, got {self_supervised_weight}.")
        if count_thinning is not None and not 0.0 < count_thinning <= 1.0:
            raise ValueError(f"count_thinning must be in (0, 1] or None, got {count_thinning}.")
        if self.adata is None:
            raise ValueError(
                "This head has no reference to train on: load it with adata= the reference, "
                "set up with CellStateModel.setup_anndata as when it was trained."
            )
        self._attach_encoder()
        fine_tune = self.module.encoder is not None
        if max_epochs is None:
            max_epochs = 15 if fine_tune else 200
        z = self._training_embeddings()
        self.module.standardization.set(torch.from_numpy(z.mean(0)), torch.from_numpy(z.std(0)))

        classifier = list(self.module.classifier.parameters())
        groups = [{"params": classifier, "lr": lr, "weight_decay": weight_decay}]
        if fine_tune:
            # AdamW's default decay (0.01), the setting the label-transfer benchmark measured
            groups.append(
                {
                    "params": list(self.module.encoder.parameters()),
                    "lr": encoder_lr,
                    "weight_decay": 0.01,
                }
            )
        has_unlabeled = self._has_unlabeled_cells()
        if self_supervised_weight is None:
            self_supervised_weight = 0.1 if has_unlabeled else 0.0
        layer = self.registry_["setup_args"]["layer"]
        if fine_tune and count_thinning is not None and not holds_counts(self.adata, layer):
            warnings.warn(
                f"{'adata.X' if layer is None else f'adata.layers[{layer!r}]'} does not hold "
                "counts (non-negative whole numbers), so they are not thinned in fine-tuning: "
                "set the AnnData up with layer= a layer of raw counts, or pass "
                "count_thinning=None to train without it.",
                UserWarning,
                stacklevel=2,
            )
            count_thinning = None
        self.module.count_thinning = count_thinning if fine_tune else None
        if not fine_tune and has_unlabeled:
            logger.warning(
                "Cells of the unlabeled category carry no signal for a head on fixed "
                "embeddings; they take part only when an encoder is fine-tuned (encoder=)."
            )
        plan_kwargs = dict(plan_kwargs or {})
        if fine_tune:
            plan_kwargs.setdefault("self_supervised_weight", self_supervised_weight)
        plan_kwargs.setdefault("optimizer", "Custom")
        plan_kwargs.setdefault("optimizer_creator", lambda _: torch.optim.AdamW(groups))
        if early_stopping and (train_size < 1.0 or validation_size):
            trainer_kwargs.setdefault("early_stopping", True)
            trainer_kwargs.setdefault("early_stopping_monitor", "validation_loss")
            trainer_kwargs.setdefault("early_stopping_patience", 10)
        keys = [LABELS_KEY, X_KEY if fine_tune else EMBEDDING_KEY]
        runner = self._train_runner_cls(
            self,
            training_plan=self._training_plan_cls(self.module, **plan_kwargs),
            data_splitter=self._data_splitter_cls(
                self.adata_manager,
                train_size=train_size,
                validation_size=validation_size,
                batch_size=batch_size,
                data_and_attributes=keys,
            ),
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        # Lightning keeps each submodule's mode (a trained or loaded head is in eval mode):
        # the classifier trains with its dropout and thinning; the encoder, as measured, without
        # its dropout and with the binning it embeds with (its eval_binning)
        self.module.train()
        if fine_tune:
            self.module.encoder.eval()
        try:
            out = runner()
        finally:
            self.module.eval()
        return out

    # -- prediction -------------------------------------------------------------------------
    def embeddings(self, adata: ad.AnnData | None = None, chunk_size: int = 10_000) -> np.ndarray:
        """The embeddings the head reads: the fine-tuned encoder's, else ``obsm[embedding_key]``.

        Parameters
        ----------
        adata
            Cells (dense, sparse or backed); default the reference.
        chunk_size
            Cells read at a time by the fine-tuned encoder.
        """
        adata = self.adata if adata is None else adata
        if self._encoder is not None:
            return self._encoder.get_latent_representation(
                adata, chunk_size=chunk_size, progress_bar=False
            )
        key = self.registry_["setup_args"]["embedding_key"]
        if key is None:
            raise ValueError(
                "This head has neither a fine-tuned encoder nor a registered embedding key; "
                "load it with the folder its save() wrote (with encoder/ if it was fine-tuned)."
            )
        return embedding_of(adata, key, "query" if adata is not self.adata else "reference")

    @torch.inference_mode()
    def predict(
        self,
        adata: ad.AnnData | None = None,
        soft: bool = False,
        unknown_threshold: float | None = None,
        batch_size: int = 4096,
    ) -> np.ndarray | pd.DataFrame:
        """Predicted state of each cell, or the probability of every state.

        Parameters
        ----------
        adata
            Cells to label, with ``obsm[embedding_key]`` (not needed with a fine-tuned
            encoder, which embeds them); may be backed. Default: the reference.
        soft
            Return the probabilities (a DataFrame, one column per state) instead of labels
            (``unknown_threshold`` applies to labels only).
        unknown_threshold
            Label ``"unknown"`` the cells whose uncertainty (1 - the largest probability) is
            above it; ``None`` gives every cell its most probable state.
        batch_size
            Cells classified at a time.
        """
        self._check_if_trained(warn=False)
        if unknown_threshold is not None and not 0 <= unknown_threshold <= 1:
            raise ValueError(
                f"unknown_threshold must be in [0, 1] or None, got {unknown_threshold}."
            )
        adata = self.adata if adata is None else adata
        z = self.embeddings(adata)
        if z.shape[1] != self.module.n_input:
            raise ValueError(
                f"The embeddings have {z.shape[1]} dimensions; this head reads "
                f"{self.module.n_input}: embed the cells with the model the head was trained on."
            )
        self.module.eval()
        device = next(self.module.parameters()).device
        probs = (
            np.concatenate(
                [
                    torch.softmax(
                        self.module.classify(torch.from_numpy(z[s : s + batch_size]).to(device)), -1
                    )
                    .cpu()
                    .numpy()
                    for s in range(0, len(z), batch_size)
                ]
            )
            if len(z)
            else np.zeros((0, len(self.labels_)), dtype=np.float32)
        )
        if soft:
            return pd.DataFrame(probs, index=adata.obs_names.copy(), columns=self.labels_)
        labels = np.asarray(self.labels_, dtype=object)[probs.argmax(axis=1)]
        if unknown_threshold is not None:
            labels[1.0 - probs.max(axis=1) > unknown_threshold] = UNKNOWN
        return labels

    # -- persistence ------------------------------------------------------------------------
    def save(self, dir_path: str | PathLike, **kwargs) -> None:
        """Save the head (scvi-tools format); a fine-tuned encoder goes to ``encoder/``.

        Takes the arguments of :meth:`scvi.model.base.BaseModelClass.save`; with
        ``overwrite=True`` the folder is replaced whole (no file of an earlier save stays).
        """
        # the encoder's weights are saved as a model of their own, not inside the head's
        encoder_module, self.module.encoder = self.module.encoder, None
        try:
            super().save(dir_path, **kwargs)
        finally:
            self.module.encoder = encoder_module

    def _save_extras(self, folder: Path, overwrite: bool) -> None:
        """A fine-tuned encoder, as a CancerGPT model folder ``encoder/``."""
        if self._encoder is not None:
            self._encoder.save(str(folder / _ENCODER_FOLDER), overwrite=overwrite)

    @classmethod
    def load(
        cls, dir_path: str | PathLike, adata: ad.AnnData | None = None, **kwargs
    ) -> CellStateModel:
        """Load a head saved with :meth:`save`, with its fine-tuned encoder if it has one.

        Parameters
        ----------
        dir_path
            The folder :meth:`save` wrote.
        adata
            The reference to attach (set up as when training); default: the one saved, if any.
        **kwargs
            Other arguments of scvi-tools' ``load`` (``accelerator``, ``device``).
        """
        model = super().load(str(dir_path), adata=adata, **kwargs)
        folder = Path(dir_path) / _ENCODER_FOLDER
        if folder.is_dir():
            device = {k: v for k, v in kwargs.items() if k in ("accelerator", "device")}
            with warnings.catch_warnings():
                # the encoder is saved without data on purpose: it embeds any AnnData given
                warnings.filterwarnings("ignore", message="Save path contains no saved anndata")
                model._encoder = CancerGPTModel.load(folder, **device)
        return model
