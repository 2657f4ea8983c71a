"""CancerGPTModel: the user-facing scvi-tools model."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import scvi
import torch
from lightning.pytorch import LightningDataModule
from mudata import MuData
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.utils import setup_anndata_dsp

from cancergpt_scvi._argument_types import check_whole_number
from cancergpt_scvi._constants import BATCH_KEY, DOMAIN_KEYS, TECHNOLOGY_KEY, TISSUE_KEY, X_KEY
from cancergpt_scvi._listing import listing
from cancergpt_scvi._loading import check_load_device, explained_transfer_errors
from cancergpt_scvi._saving import WholeFolderSaveMixin
from cancergpt_scvi.data import (
    GeneVocab,
    check_categorical_obs,
    check_expression,
    check_unique_genes,
    gene_symbols,
    init_gene_embeddings,
)
from cancergpt_scvi.module import CancerGPTModule
from cancergpt_scvi.train import CancerGPTTrainingPlan, OversamplingDataSplitter, validation_cells

from ._adaptation import QueryAdaptationMixin
from ._embedding import CellEmbeddingMixin
from ._mudata import MuDataSetupMixin, expression_layer, refuse_mudata
from ._presets import PRESETS
from ._pretrained import PretrainedWeightsMixin
from ._saved_model import readable_saved_model, saved_model_weights

logger = logging.getLogger(__name__)


#: How a saved model embeds data it cannot attach at ``load``.
OTHER_DATA = (
    "To embed other data, load the model without adata and call "
    "model.get_latent_representation(adata), which matches genes by symbol and needs no setup."
)


class CancerGPTModel(
    WholeFolderSaveMixin,
    CellEmbeddingMixin,
    MuDataSetupMixin,
    QueryAdaptationMixin,
    PretrainedWeightsMixin,
    UnsupervisedTrainingMixin,
    BaseModelClass,
):
    """CancerGPT: a transformer foundation model of malignant cells.

    Each cell becomes a ``<cls>`` token followed by gene tokens whose values are the cell's
    expression binned by its own quantiles (51 bins). Pretraining combines masked expression
    prediction and expression prediction from the cell embedding (MVC), with tissue- and
    technology-aware oversampling. A domain adversary (gradient reversal against the registered
    batch and technology) is available and off by default: its discriminators train and report
    how much of each covariate the embedding carries, and ``train(adversarial_weight=...)``
    turns its push on. The cell embedding is the L2-normalised ``<cls>`` output.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`, or MuData registered with
        :meth:`setup_mudata` (its RNA modality is read as the AnnData below).
    vocab
        Gene vocabulary (a :class:`~cancergpt_scvi.data.GeneVocab` or ``{token: id}``
        mapping). Default: built from the registered genes.
    preset
        Architecture preset: ``"cpu-small"``, ``"cpu-base"`` or ``"release"`` (E=256,
        6 layers, 8 heads, FFN 512, dropout 0.2, 1,200 tokens).
    token_genes
        ``var_names`` of the genes that may become tokens (e.g. highly variable genes, as
        :meth:`load_pretrained` selects them); default: every gene in the vocabulary. The
        other genes stay in ``adata`` but never become tokens.
    gene_embedding_init
        Starting gene embeddings of the token genes: ``"pca"``, their loadings on the
        principal components of ``adata``'s log-normalised expression with each cell centred
        on the mean of its registered batch x technology
        (:func:`~cancergpt_scvi.data.pca_gene_loadings`, at most 20,000 cells), so that
        ``<cls>``, which pools its genes' embeddings, starts as a projection of the cell onto
        the main axes of variation within batches; ``"random"``, PyTorch's normal
        initialisation.
        Weights loaded afterwards (:meth:`load`, :meth:`load_pretrained`) replace them.
    **module_kwargs
        Overrides of the preset and other :class:`~cancergpt_scvi.module.CancerGPTModule`
        arguments (``embed_dim``, ``n_layers``, ``mask_ratio``, ``gene_selection``,
        ``condition_decoders``...). ``domain_sizes`` is set by :meth:`load`: the categories
        of each adversarial covariate the saved module was built with.

    Notes
    -----
    A batch or technology covariate gets a discriminator and a decoder domain table when at
    least 2 of its categories are in use in ``adata``; unused categories of a categorical
    ``obs`` column are not counted.

    Examples
    --------
    >>> adata = cancergpt_scvi.datasets.simulate_malignant_atlas(n_cells=2000)
    >>> CancerGPTModel.setup_anndata(
    ...     adata, batch_key="batch", technology_key="technology", tissue_key="tissue"
    ... )
    >>> model = CancerGPTModel(adata, preset="cpu-small")
    >>> model.train(max_epochs=5)
    >>> adata.obsm["X_cancergpt"] = model.get_latent_representation()
    >>> sc.pp.neighbors(adata, use_rep="X_cancergpt")
    """

    _module_cls = CancerGPTModule
    _training_plan_cls = CancerGPTTrainingPlan
    _data_splitter_cls = OversamplingDataSplitter

    def __init__(
        self,
        adata: ad.AnnData | MuData | None = None,
        vocab: GeneVocab | Mapping[str, int] | None = None,
        preset: Literal["cpu-small", "cpu-base", "release"] = "cpu-small",
        token_genes: Sequence[str] | None = None,
        gene_embedding_init: Literal["pca", "random"] = "pca",
        registry: dict | None = None,
        **module_kwargs,
    ):
        super().__init__(adata, registry)
        adata = self._expression_adata(adata)  # a MuData's RNA modality: genes and expression
        # the sizes a saved module was built with, given back by load (see _domain_sizes)
        recorded_domains = module_kwargs.pop("domain_sizes", None)
        if gene_embedding_init not in ("pca", "random"):
            raise ValueError(
                f"gene_embedding_init must be 'pca' or 'random', got {gene_embedding_init!r}."
            )
        if preset not in PRESETS:
            raise ValueError(f"Unknown preset {preset!r}; choose one of {list(PRESETS)}.")
        if adata is None and vocab is None:
            raise ValueError("A model built without adata (from a registry) needs its vocab.")
        if adata is not None:
            symbols = list(gene_symbols(adata, self.registry_["setup_args"]["gene_symbols_key"]))
        else:  # loading without data: input genes and their ids come back with the saved state
            symbols = [str(g) for g in self.get_var_names()]
        if vocab is None:
            vocab = GeneVocab.from_genes(symbols)
        elif not isinstance(vocab, GeneVocab):
            vocab = GeneVocab(vocab)
        self.vocab = vocab
        if adata is not None:
            key = self.registry_["setup_args"]["gene_symbols_key"]
            ids = vocab.match(adata, key)
            # checked here, where the vocabulary is known: a repeat outside it is never read
            check_unique_genes(gene_symbols(adata, key)[ids >= 0], key)
        else:
            ids = np.full(len(symbols), -1)
        if token_genes is not None and adata is not None:
            token_genes = [str(g) for g in token_genes]
            unknown = sorted(set(token_genes) - set(adata.var_names.astype(str)))
            if unknown:
                raise ValueError(
                    f"token_genes holds {len(unknown)} names that are not var_names of adata, "
                    f"e.g. {unknown[:3]}."
                )
            ids = np.where(adata.var_names.isin(token_genes), ids, -1)
        gene_ids = np.where(ids >= 0, ids, vocab.pad_id)
        #: Gene symbols of the registered columns: the model's input gene space.
        self.input_genes_ = symbols

        n_domains = self._domain_sizes(recorded_domains, fresh=registry is None)
        # discriminators are told the tissue (patients are nested in tissues), see the module
        n_tissues = int(self.summary_stats.get(f"n_{TISSUE_KEY}", 1))
        config = {**PRESETS[preset], "n_conditions": n_tissues, **module_kwargs}
        self.module = self._module_cls(
            gene_ids=torch.as_tensor(gene_ids),
            n_tokens=vocab.size,
            cls_id=vocab.cls_id,
            pad_id=vocab.pad_id,
            n_domains=n_domains,
            **config,
        )
        if gene_embedding_init == "pca" and adata is not None:
            # axes of the variation within each batch x technology: what sets a whole batch
            # apart (depth, chemistry, copy number) is not made an axis of the embedding
            batch = np.asarray(self.adata_manager.get_from_registry(BATCH_KEY)).ravel()
            technology = np.asarray(self.adata_manager.get_from_registry(TECHNOLOGY_KEY)).ravel()
            init_gene_embeddings(
                self.module.gene_encoder.embedding.weight,
                adata,
                gene_ids,
                vocab.pad_id,
                layer=expression_layer(self.registry_["setup_args"]),
                groups=batch * (int(technology.max()) + 1) + technology,
                seed=scvi.settings.seed,
            )
        self._model_summary_string = (
            f"CancerGPTModel ({preset}: embed_dim={config['embed_dim']}, "
            f"n_layers={config['n_layers']}, n_heads={config['n_heads']}), "
            f"{len(symbols)} input genes, adversarial covariates: "
            f"{self.module.adversary.covariates or 'none'}"
        )
        vocab = vocab.to_dict()  # stored as a plain mapping in init_params_
        self.init_params_ = self._get_init_params(locals())
        # scvi-tools' load passes every entry of init_params_["kwargs"] back to __init__; kept
        # out of module_kwargs, which adapt() reuses for other cells with their own categories
        self.init_params_["kwargs"]["saved_module"] = {"domain_sizes": n_domains}

    def _domain_sizes(self, recorded: Mapping[str, int] | None, fresh: bool) -> dict[str, int]:
        """Categories of each adversarial covariate (batch, technology) to build the module with.

        A covariate with fewer than 2 categories in use in the registered data gets that count (no
        discriminator, no decoder domain table): unused categories of a categorical ``obs``
        column (``["p0"]`` with categories ``["p0", "ghost"]``) are not a domain to remove.
        Otherwise the registered categories are counted, so that every category code has a
        place. A loaded model is built as it was saved: with ``recorded`` sizes, or the
        registry's category counts for models saved before sizes were recorded.
        """
        if recorded is not None:
            return {name: int(n) for name, n in recorded.items()}
        sizes = {
            name: int(self.summary_stats[f"n_{key}"])
            for name, key in DOMAIN_KEYS.items()
            if f"n_{key}" in self.summary_stats
        }
        if not fresh or self.adata is None:
            return sizes
        for name in sizes:
            codes = np.asarray(self.adata_manager.get_from_registry(DOMAIN_KEYS[name]))
            in_use = len(np.unique(codes))
            # with 2 or more in use, unused categories keep their codes and so their places
            if in_use < 2:
                sizes[name] = in_use
        return sizes

    # -- data registration ------------------------------------------------------------------
    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: ad.AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        technology_key: str | None = None,
        tissue_key: str | None = None,
        gene_symbols_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register an AnnData for CancerGPT.

        Parameters
        ----------
        adata
            Cells x genes, raw counts or other non-negative expression (binned per cell, so
            the scale does not matter).
        layer
            Layer with the expression; ``None`` uses ``adata.X``.
        batch_key
            ``obs`` column of the batch (sample, patient, study): an adversarial covariate.
        technology_key
            ``obs`` column of the sequencing technology: an adversarial covariate and an
            oversampling stratum.
        tissue_key
            ``obs`` column of the tissue of origin: drives oversampling of rare tissues.
        gene_symbols_key
            ``var`` column with gene symbols, when ``var_names`` are not symbols.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        refuse_mudata(adata, "setup_anndata", "CancerGPTModel.setup_mudata(mdata)")
        if adata.n_obs == 0:
            raise ValueError("adata has no cells (n_obs == 0); pass an AnnData with cells.")
        if adata.n_vars == 0:
            raise ValueError("adata has no genes.")
        check_expression(adata, layer)
        for argument, key in (
            ("batch_key", batch_key),
            ("technology_key", technology_key),
            ("tissue_key", tissue_key),
        ):
            check_categorical_obs(adata, key, argument)
        if gene_symbols_key is not None and gene_symbols_key not in adata.var.columns:
            raise KeyError(
                f"gene_symbols_key={gene_symbols_key!r} is not a column of adata.var "
                f"(columns: {list(adata.var.columns)})."
            )
        anndata_fields = [
            LayerField(X_KEY, layer, is_count_data=False),
            CategoricalObsField(BATCH_KEY, batch_key),
            CategoricalObsField(TECHNOLOGY_KEY, technology_key),
            CategoricalObsField(TISSUE_KEY, tissue_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    # -- training ---------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = 64,
        lr: float = 1e-4,
        oversample: bool = True,
        adversarial_weight: float = 0.0,
        mvc_start: float = 0.25,
        mvc_ramp: float = 0.25,
        weight_decay: float = 0.01,
        train_size: float | None = None,
        validation_size: float | None = None,
        early_stopping: bool = False,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        datamodule: LightningDataModule | None = None,
        **trainer_kwargs,
    ):
        """Pretrain (or fine-tune) with scvi-tools' training plan and runner on Lightning.

        Parameters
        ----------
        max_epochs
            Passes over the (oversampled) training set; default: scvi-tools' heuristic.
        batch_size
            Cells per minibatch.
        lr
            AdamW learning rate.
        oversample
            Tissue- and technology-aware oversampling of the training cells
            (:func:`~cancergpt_scvi.data.oversampling_weights`).
        adversarial_weight
            Weight of the reversed discriminator gradient against the registered batch and
            technology covariates. Default 0: no adversarial push (the discriminators still
            train and log their accuracy, so how much of each covariate the embedding carries
            is on record); a positive weight, e.g. 0.03, pushes the embedding to mix them, at
            some cost in biology (see the integration page). The weight is 0 until the MVC
            ramp ends, then rises to its value along the DANN ramp
            (:class:`~cancergpt_scvi.train.CancerGPTTrainingPlan`). The discriminators see the
            embedding standardised per dimension, which scales the reversed gradient up by the
            inverse of the embedding's small spread: weights much above 0.03 trade biology for
            domain mixing.
        mvc_start, mvc_ramp
            Fractions of training: MVC (expression from the cell embedding) is off for the
            first ``mvc_start`` and its weight then rises linearly to 1 over ``mvc_ramp``.
            Started from the first step, MVC holds ``<cls>`` at predicting every gene's mean
            (see :class:`~cancergpt_scvi.train.CancerGPTTrainingPlan`); ``mvc_start=0,
            mvc_ramp=0`` trains it from the start.
        weight_decay
            AdamW weight decay.
        train_size, validation_size
            Split fractions (scvi-tools' :class:`~scvi.dataloaders.DataSplitter`).
        early_stopping
            Stop when the validation reconstruction loss stops improving.
        accelerator, devices
            Lightning accelerator and devices.
        datasplitter_kwargs, plan_kwargs
            More arguments for :class:`~cancergpt_scvi.train.OversamplingDataSplitter` and
            :class:`~cancergpt_scvi.train.CancerGPTTrainingPlan`.
        datamodule
            Feed training from this Lightning data module instead of the registered AnnData,
            e.g. a :class:`~cancergpt_scvi.corpus.CorpusDataModule` over an out-of-core corpus
            (``batch_size``, ``oversample``, split sizes and ``datasplitter_kwargs`` are then
            the data module's business).
        **trainer_kwargs
            Passed to :class:`~scvi.train.Trainer` (e.g. ``enable_progress_bar``, ``strategy``,
            ``precision``, ``callbacks``, ``ckpt_path``).
        """
        check_whole_number("max_epochs", max_epochs, minimum=1, optional=True)
        check_whole_number("batch_size", batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if datamodule is None:
            self._check_trainable_data()
            n_val = validation_cells(self.adata.n_obs, train_size, validation_size)
            if n_val == 0:
                if early_stopping:
                    raise ValueError(
                        f"early_stopping needs validation cells; {self.adata.n_obs} cells with "
                        f"train_size={train_size} leave none. Lower train_size or train more cells."
                    )
                warnings.warn(
                    f"{self.adata.n_obs} cells leave no validation cells at train_size="
                    f"{train_size if train_size is not None else 0.9}; training without a "
                    "validation curve.",
                    UserWarning,
                    stacklevel=2,
                )
                trainer_kwargs.setdefault("limit_val_batches", 0)
        setup = self.registry_["setup_args"]
        lonely = [
            name
            for name in DOMAIN_KEYS
            if setup.get(f"{name}_key") is not None and name not in self.module.adversary.covariates
        ]
        if lonely and adversarial_weight > 0:
            named = [f"{name}_key={setup[name + '_key']!r}" for name in lonely]
            warnings.warn(
                f"{listing(named)}: one category only in use, so no discriminator and nothing "
                "to remove for it (the adversarial loss covers the other covariates).",
                UserWarning,
                stacklevel=2,
            )
        plan = {
            "lr": lr,
            "optimizer": "AdamW",
            "eps": 1e-8,
            "weight_decay": weight_decay,
            "adversarial_weight": adversarial_weight,
            "mvc_start": mvc_start,
            "mvc_ramp": mvc_ramp,
            **(plan_kwargs or {}),
        }
        splitter = {"oversample": oversample, **(datasplitter_kwargs or {})}
        # Lightning keeps each submodule's mode: after embedding or loading (eval mode) the
        # model would otherwise train without dropout
        self.module.train()
        if self.is_trained_ and self.history_ is None:
            # weights from load_pretrained come without a history: record fine-tuning afresh
            # (scvi-tools would otherwise drop it with a "cannot be updated" warning)
            self.is_trained_ = False
        # scvi-tools validates only with early stopping; users want the validation curve
        if trainer_kwargs.get("limit_val_batches") != 0:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        return super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            train_size=train_size,
            validation_size=validation_size,
            batch_size=batch_size,
            early_stopping=early_stopping,
            datasplitter_kwargs=splitter,
            plan_kwargs=plan,
            datamodule=datamodule,
            **trainer_kwargs,
        )

    def _check_trainable_data(self) -> None:
        """Refuse training on registered data whose genes or values no longer fit the model."""
        if self.adata is None:
            raise ValueError("This model has no AnnData; load it with adata= to train.")
        if not self.registered_genes_match():
            raise ValueError(
                "The registered AnnData's genes are not the model's input genes in their order "
                "(reordered, subset in place, or another AnnData given to load). Training reads "
                "the registered columns as they are: train on adata[:, genes] with the model's "
                "genes in order (model.input_genes_), set up with setup_anndata."
            )
        check_expression(
            self._expression_adata(self.adata), expression_layer(self.registry_["setup_args"])
        )

    # -- persistence ------------------------------------------------------------------------
    @classmethod
    def load(
        cls, dir_path: str | PathLike, adata: ad.AnnData | MuData | None = None, **kwargs
    ) -> CancerGPTModel:
        """Load a model saved with :meth:`save`, through scvi-tools' ``load``.

        Parameters
        ----------
        dir_path
            The folder :meth:`save` wrote (``model.pt``, ``vocab.json``).
        adata
            AnnData or MuData to attach (set up like the training data, which it is registered
            as); default: the one saved with the model, if any.
        **kwargs
            Other arguments of scvi-tools' ``load`` (``accelerator``, ``device``, ``prefix``).

        Raises
        ------
        FileNotFoundError
            No folder, or a folder without ``model.pt`` (e.g. the authors' release folder,
            which :meth:`load_pretrained` reads).
        ValueError
            ``model.pt`` is not a readable saved model (truncated, or another file), a CUDA
            device is asked for on a machine without one, or ``adata`` cannot be attached
            (other genes or new categories: embed such data with
            :meth:`get_latent_representation` instead).
        """
        path = Path(dir_path)
        check_load_device(kwargs)
        weights = saved_model_weights(path, kwargs.get("prefix"))
        with readable_saved_model(weights), explained_transfer_errors(OTHER_DATA):
            model = super().load(str(path), adata=adata, **kwargs)
        # the weights and token rule of published weights, which the summary names
        model._model_summary_string += getattr(model, "pretrained_summary_", "")
        return model

    def _save_extras(self, folder: Path, overwrite: bool) -> None:
        """The vocabulary (``vocab.json``) beside the weights."""
        self.vocab.to_json(folder / "vocab.json")
