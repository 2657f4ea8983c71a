"""CancerGPTModel: the user-facing scvi-tools model."""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from os import PathLike
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import scvi
import torch
from lightning.pytorch import LightningDataModule
from scipy import sparse
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.utils import setup_anndata_dsp, track

from cancergpt_scvi._constants import BATCH_KEY, DOMAIN_KEYS, TECHNOLOGY_KEY, TISSUE_KEY, X_KEY
from cancergpt_scvi._listing import listing
from cancergpt_scvi.data import (
    BinningMode,
    GeneVocab,
    cell_ranger_hvg,
    check_categorical_obs,
    check_expression,
    check_unique_genes,
    gene_symbols,
    pca_gene_loadings,
)
from cancergpt_scvi.module import CancerGPTModule
from cancergpt_scvi.release import (
    ReleaseCheckpointError,
    encoder_modules,
    read_release_checkpoint,
)
from cancergpt_scvi.train import CancerGPTTrainingPlan, OversamplingDataSplitter

from ._presets import PRESETS

logger = logging.getLogger(__name__)

#: Arithmetic of embedding: float32, or bfloat16 autocast (CPU and GPU).
Precision = Literal["fp32", "bf16"]


def _cpu_has_bf16() -> bool:
    """Whether oneDNN has native bfloat16 kernels on this CPU (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


class CancerGPTModel(UnsupervisedTrainingMixin, BaseModelClass):
    """CancerGPT: a transformer foundation model of malignant cells.

    Each cell becomes a ``<cls>`` token followed by gene tokens whose values are the cell's
    expression binned by its own quantiles (51 bins). Pretraining combines masked expression
    prediction, expression prediction from the cell embedding (MVC), and domain-adversarial
    losses (gradient reversal) against the registered batch and technology, with tissue- and
    technology-aware oversampling. The cell embedding is the L2-normalised ``<cls>`` output.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
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
        ``condition_decoders``...).

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
        adata: ad.AnnData | None = None,
        vocab: GeneVocab | Mapping[str, int] | None = None,
        preset: Literal["cpu-small", "cpu-base", "release"] = "cpu-small",
        token_genes: Sequence[str] | None = None,
        gene_embedding_init: Literal["pca", "random"] = "pca",
        registry: dict | None = None,
        **module_kwargs,
    ):
        super().__init__(adata, registry)
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
            ids = vocab.match(adata, self.registry_["setup_args"]["gene_symbols_key"])
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

        n_domains = {
            name: self.summary_stats[f"n_{key}"]
            for name, key in DOMAIN_KEYS.items()
            if f"n_{key}" in self.summary_stats
        }
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
            self._init_gene_embeddings(adata, gene_ids)
        self._model_summary_string = (
            f"CancerGPTModel ({preset}: embed_dim={config['embed_dim']}, "
            f"n_layers={config['n_layers']}, n_heads={config['n_heads']}), "
            f"{len(symbols)} input genes, adversarial covariates: "
            f"{self.module.adversary.covariates or 'none'}"
        )
        vocab = vocab.to_dict()  # stored as a plain mapping in init_params_
        self.init_params_ = self._get_init_params(locals())

    def _init_gene_embeddings(self, adata: ad.AnnData, gene_ids: np.ndarray) -> None:
        """Set the token genes' embeddings to their loadings on ``adata``'s within-batch PCA."""
        tokens = np.flatnonzero(gene_ids != self.vocab.pad_id)
        if len(tokens) == 0:
            return
        layer = self.registry_["setup_args"]["layer"]
        # axes of the variation within each batch x technology: what sets a whole batch
        # apart (depth, chemistry, copy number) is not made an axis of the embedding
        batch = np.asarray(self.adata_manager.get_from_registry(BATCH_KEY)).ravel()
        technology = np.asarray(self.adata_manager.get_from_registry(TECHNOLOGY_KEY)).ravel()
        groups = batch * (int(technology.max()) + 1) + technology
        loadings = pca_gene_loadings(
            adata,
            self.module.embed_dim,
            layer=layer,
            genes=tokens,
            seed=scvi.settings.seed,
            groups=groups,
        )
        table = self.module.gene_encoder.embedding.weight
        with torch.no_grad():
            table[torch.as_tensor(gene_ids[tokens])] = torch.as_tensor(loadings, dtype=table.dtype)

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
        check_unique_genes(gene_symbols(adata, gene_symbols_key), gene_symbols_key)
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
        adversarial_schedule: Literal["constant", "linear", "dann"] = "dann",
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
            some cost in biology (see the integration page). The discriminators see the
            embedding standardised per dimension, which scales the reversed gradient up by the
            inverse of the embedding's small spread: weights much above 0.03 trade biology for
            domain mixing.
        adversarial_schedule
            Ramp of that weight: ``"constant"``, ``"linear"`` or ``"dann"``; it starts when
            the MVC ramp ends (``plan_kwargs={"adversarial_start": ...}`` to change).
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
        if max_epochs is not None and max_epochs < 1:
            raise ValueError(f"max_epochs must be at least 1, got {max_epochs}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if datamodule is None:
            self._check_trainable_data()
            n_val = _validation_cells(self.adata.n_obs, train_size, validation_size)
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
                f"{listing(named)}: one category only, so no discriminator and nothing to "
                "remove for it (the adversarial loss covers the other covariates).",
                UserWarning,
                stacklevel=2,
            )
        plan = {
            "lr": lr,
            "optimizer": "AdamW",
            "eps": 1e-8,
            "weight_decay": weight_decay,
            "adversarial_weight": adversarial_weight,
            "adversarial_schedule": adversarial_schedule,
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
        if not self._registered_genes_match():
            raise ValueError(
                "The registered AnnData's genes are not the model's input genes in their order "
                "(reordered, subset in place, or another AnnData given to load). Training reads "
                "the registered columns as they are: train on adata[:, genes] with the model's "
                "genes in order (model.input_genes_), set up with setup_anndata."
            )
        check_expression(self.adata, self.registry_["setup_args"]["layer"])

    # -- embedding --------------------------------------------------------------------------
    def _foreign_genes(self, adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """Match a foreign AnnData's genes to the model's input genes, once per call.

        Returns the matched columns of ``adata`` (``src``), their input-gene positions
        (``dst``) and the token ids with the model genes that ``adata`` lacks marked absent.
        """
        setup = self.registry_["setup_args"]
        check_expression(adata, setup["layer"])
        symbols = gene_symbols(adata, setup["gene_symbols_key"])
        position = {g: i for i, g in enumerate(self.input_genes_)}
        # repeats among the model's genes would be summed into one token: refuse them
        check_unique_genes(symbols[symbols.isin(self.input_genes_)], setup["gene_symbols_key"])
        src = np.array([j for j, g in enumerate(symbols) if g in position], dtype=np.int64)
        dst = np.array([position[symbols[j]] for j in src], dtype=np.int64)
        usable = self.module.gene_ids.cpu().numpy()[dst] != self.vocab.pad_id if len(dst) else []
        n_found = int(np.sum(usable))
        if n_found == 0:
            raise ValueError(
                f"None of the {adata.n_vars} genes of this AnnData are among the model's "
                f"{len(self.input_genes_)} input genes (e.g. {self.input_genes_[:3]}; this "
                f"AnnData has {list(symbols[:3])}). Match gene identifiers (symbols), or set "
                "gene_symbols_key."
            )
        n_tokens = int((self.module.gene_ids != self.vocab.pad_id).sum())
        if n_found < n_tokens:
            logger.info(
                "%d of the model's %d token genes are in this AnnData; the others are left out "
                "of the token sequences.",
                n_found,
                n_tokens,
            )
        present = np.zeros(len(self.input_genes_), dtype=bool)
        present[dst] = True
        gene_ids = torch.where(
            torch.as_tensor(present, device=self.module.gene_ids.device),
            self.module.gene_ids,
            torch.full_like(self.module.gene_ids, self.vocab.pad_id),
        )
        return src, dst, gene_ids

    def _foreign_batches(
        self, adata: ad.AnnData, indices: Sequence[int] | None, chunk_size: int, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Minibatches ``(x, token ids)`` of another AnnData, in the model's input gene space.

        Genes are matched by symbol (:meth:`_foreign_genes`); model genes missing from
        ``adata`` become absent tokens, never zeros posing as measurements. Rows are read
        ``chunk_size`` at a time (slices where they are contiguous, so backed data is read
        block by block) and come out in the order of ``indices``.
        """
        src, dst, gene_ids = self._foreign_genes(adata)
        layer = self.registry_["setup_args"]["layer"]
        select = sparse.csr_matrix(
            (np.ones(len(src), dtype=np.float32), (src, dst)),
            shape=(adata.n_vars, len(self.input_genes_)),
        )
        rows = np.arange(adata.n_obs) if indices is None else np.asarray(indices, dtype=np.int64)
        for start in range(0, len(rows), chunk_size):
            part = rows[start : start + chunk_size]
            if np.array_equal(part, np.arange(part[0], part[0] + len(part))):
                view, order = adata[int(part[0]) : int(part[-1]) + 1], None
            else:  # anndata reads rows in sorted order: read each once, then reorder
                unique, order = np.unique(part, return_inverse=True)
                view = adata[unique]
            matrix = view.X if layer is None else view.layers[layer]
            block = sparse.csr_matrix(matrix)
            _check_values(block.data)
            aligned = (block @ select).astype(np.float32)
            if order is not None:
                aligned = aligned[order]
            for b in range(0, len(part), batch_size):
                yield torch.from_numpy(aligned[b : b + batch_size].toarray()), gene_ids

    def _registered_genes_match(self) -> bool:
        """Whether the registered AnnData's columns are the model's input genes, in order."""
        if self.adata is None:
            return False
        symbols = gene_symbols(self.adata, self.registry_["setup_args"]["gene_symbols_key"])
        return len(symbols) == len(self.input_genes_) and bool(
            np.array_equal(symbols.to_numpy(), np.asarray(self.input_genes_, dtype=object))
        )

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: ad.AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        binning: BinningMode | None = None,
        progress_bar: bool = True,
        precision: Precision = "fp32",
        seed: int | None = None,
        chunk_size: int = 10_000,
    ) -> np.ndarray:
        """Cell embeddings: the L2-normalised ``<cls>`` output, ``(n_obs, embed_dim)`` float32.

        Deterministic with deterministic binning (the default of models trained here) or a
        ``seed``; on dense, sparse or backed (``backed="r"``) data. Runs in inference mode
        with fused attention; memory is bounded by ``chunk_size`` and ``batch_size``.

        Parameters
        ----------
        adata
            Cells to embed; default: the registered AnnData. Another AnnData may have its genes
            in another order or only some of them (matched by symbol); it needs no setup.
        indices
            Cells of ``adata`` to embed.
        batch_size
            Cells per forward pass (default 64).
        binning
            ``"deterministic"`` or ``"release"`` (random tie spreading); default: the
            module's (``"deterministic"``, or ``"release"`` for :meth:`load_pretrained`).
        progress_bar
            Show a progress bar.
        precision
            ``"fp32"`` (default) or ``"bf16"``: bfloat16 autocast of the encoder on CPU or
            GPU; embeddings stay within cosine 0.999 of fp32. Faster where the hardware has
            bfloat16 arithmetic (recent GPUs, CPUs with AVX512-BF16 / AMX).
        seed
            Seed of the random tie spreading of ``"release"`` binning (default: torch's global
            generator, e.g. set by ``scvi.settings.seed``).
        chunk_size
            Cells of a foreign AnnData read and aligned at a time.
        """
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}.")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.module.eval()
        if adata is not None and adata is not self.adata and adata.n_obs == 0:
            warnings.warn("The AnnData has no cells; returning an empty embedding.", stacklevel=2)
            return np.zeros((0, self.module.embed_dim), dtype=np.float32)
        source = self.adata if adata is None else adata
        if source is None:
            raise ValueError("This model has no AnnData; pass adata with the cells to embed.")
        indices = _cell_indices(indices, source.n_obs)
        if indices is not None and len(indices) == 0:
            return np.zeros((0, self.module.embed_dim), dtype=np.float32)
        if precision == "bf16" and self.device.type == "cpu" and not _cpu_has_bf16():
            warnings.warn(
                "This CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), so "
                "precision='bf16' is emulated and slower than 'fp32' here (measured 3.7x "
                "slower on an AMD Zen 3 with AVX2, see the pretrained-weights docs page); use "
                "precision='fp32'.",
                stacklevel=2,
            )
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if precision == "bf16"
            else nullcontext()
        )
        batch_size = batch_size or 64
        n_cells = source.n_obs if indices is None else len(indices)
        # the registered data is read column by column as registered, which is only right
        # while its genes are the model's input genes in order (not after reordering, in-place
        # subsetting or loading onto other data); otherwise genes are matched by symbol
        foreign = source is not self.adata or not self._registered_genes_match()
        adata = source
        sizes = [min(chunk_size, n_cells - s) for s in range(0, n_cells, chunk_size)]
        n_batches = (
            sum(-(-n // batch_size) for n in sizes) if foreign else -(-n_cells // batch_size)
        )

        def batches():
            if foreign:
                yield from self._foreign_batches(adata, indices, chunk_size, batch_size)
                return
            loader = self._make_data_loader(
                adata=self._validate_anndata(None),
                indices=indices,
                batch_size=batch_size,
                shuffle=False,
            )
            for tensors in loader:
                _check_values(tensors[X_KEY])
                yield tensors[X_KEY], None

        chunks, n_empty = [], 0
        with autocast:
            for x, gene_ids in track(
                batches(),
                total=n_batches,
                description="Embedding cells",
                disable=not progress_bar,
                style="tqdm",
            ):
                x = x.to(self.device)
                n_empty += int((x.sum(dim=1) == 0).sum())
                z = self.module.embed(x, gene_ids, binning=binning, generator=generator)
                chunks.append(z.float().cpu().numpy())
        if n_empty:
            warnings.warn(
                f"{n_empty} cells have no expression; their embedding carries no information "
                "(the <cls> token alone).",
                stacklevel=2,
            )
        if not chunks:
            return np.zeros((0, self.module.embed_dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    # -- the published weights -------------------------------------------------------------
    @classmethod
    def load_pretrained(
        cls,
        model_dir: str | PathLike,
        adata: ad.AnnData,
        batch_key: str | None = None,
        layer: str | None = None,
        gene_symbols_key: str | None = None,
        binning: BinningMode = "release",
        device: str | torch.device | None = None,
    ) -> CancerGPTModel:
        """Load the authors' published weights, set up on ``adata`` for zero-shot embedding.

        The returned model's :meth:`get_latent_representation` follows the authors'
        procedure: the genes of ``adata`` found in the release vocabulary; among them the
        ``max_seq_len - 1`` highly variable genes by scanpy's ``cell_ranger`` flavour (within
        each batch of ``batch_key`` when given), in ``var`` order; ``<cls>`` (value -2)
        followed by those genes with each cell's values binned by its own quantiles; the
        ``<cls>`` output, L2-normalised. ``adata`` is registered (scvi-tools adds its
        ``_scvi_*`` columns) but otherwise left as it is, with all its genes.

        The weights live in an ordinary :class:`CancerGPTModel`: it can be saved with
        :meth:`save`, reloaded with :meth:`load` and fine-tuned with :meth:`train`.

        Parameters
        ----------
        model_dir
            The release folder: ``model.pth``, ``args.json``, ``vocab.json``.
        adata
            Cells x genes, expression as given to the authors' code (counts or normalised).
            May be opened with ``backed="r"``.
        batch_key
            ``obs`` column of batches for the highly-variable-gene selection.
        layer
            Layer with the expression instead of ``X``.
        gene_symbols_key
            ``var`` column with gene symbols, when ``var_names`` are other identifiers.
        binning
            ``"release"`` (default): the authors' rule, tied values spread over their bins at
            random (pass ``seed=`` to :meth:`get_latent_representation` to fix it).
            ``"deterministic"``: a tied value gets the middle of its bins, so runs agree.
        device
            Where to put the model (default: CUDA when available, else CPU).

        Raises
        ------
        FileNotFoundError
            The folder or one of its files is missing.
        ReleaseCheckpointError
            Missing or misshapen encoder weights, or an invalid ``args.json``.
        ValueError
            None of ``adata``'s genes is in the vocabulary.
        """
        if binning not in ("release", "deterministic"):
            raise ValueError(f"binning must be 'release' or 'deterministic', got {binning!r}.")
        if adata.n_obs == 0:
            raise ValueError("adata has no cells (n_obs == 0); pass an AnnData with cells.")
        checkpoint = read_release_checkpoint(model_dir)
        vocab = checkpoint.vocab
        config = checkpoint.module_kwargs
        ids = vocab.match(adata, gene_symbols_key, min_genes=1)
        cls.setup_anndata(
            adata, layer=layer, batch_key=batch_key, gene_symbols_key=gene_symbols_key
        )
        n_tokens = config["max_seq_len"] - 1
        in_vocab = np.flatnonzero(ids >= 0)
        hvg = cell_ranger_hvg(adata, n_tokens, batch_key=batch_key, layer=layer, genes=in_vocab)
        chosen = in_vocab[hvg["highly_variable"].to_numpy()]
        # dispersion (variance / mean) of a constant gene is 0 up to rounding
        varying = hvg["dispersions"].to_numpy()[hvg["highly_variable"].to_numpy()] > 1e-6
        if adata.n_obs < 2 or not varying.any():
            raise ValueError(
                f"No gene of the vocabulary varies across the {adata.n_obs} cell(s) of adata, so "
                "no highly variable genes can be chosen as tokens (the release's gene choice). "
                "load_pretrained needs cells whose expression differs: pass the whole dataset "
                "(at least 2 cells), then embed any subset with get_latent_representation."
            )
        if len(chosen) > n_tokens:
            # ties at the dispersion cut-off: the authors' code would draw n_tokens of these
            # genes anew for every cell; one fixed set (the most dispersed) keeps runs equal
            norm = hvg["dispersions_norm"].to_numpy()[hvg["highly_variable"].to_numpy()]
            top = np.sort(np.argsort(-np.nan_to_num(norm, nan=-np.inf), kind="stable")[:n_tokens])
            logger.warning(
                "%d genes tie for the %d highly variable genes; keeping the %d with the highest "
                "normalised dispersion (the authors' code samples them per cell at random).",
                len(chosen),
                n_tokens,
                n_tokens,
            )
            chosen = chosen[top]
        logger.info(
            "%d of %d genes are in the vocabulary; %d highly variable genes become tokens.",
            len(in_vocab),
            adata.n_vars,
            len(chosen),
        )
        model = cls(
            adata,
            vocab=vocab,
            preset="release",
            token_genes=[str(g) for g in adata.var_names[chosen]],
            gene_selection="fixed",
            eval_binning=binning,
            **config,
        )
        try:  # strict: a drift of our module's names must not leave weights unplaced
            encoder_modules(model.module).load_state_dict(checkpoint.encoder_state, strict=True)
        except RuntimeError as err:
            raise ReleaseCheckpointError(f"Encoder weights not placed: {err}") from err
        model.module.eval()
        model.is_trained_ = True
        model.pretrained_from_ = str(Path(model_dir).resolve())
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to_device(device)
        return model

    # -- persistence ------------------------------------------------------------------------
    @classmethod
    def load(
        cls, dir_path: str | PathLike, adata: ad.AnnData | None = None, **kwargs
    ) -> CancerGPTModel:
        """Load a model saved with :meth:`save`, through scvi-tools' ``load``.

        Parameters
        ----------
        dir_path
            The folder :meth:`save` wrote (``model.pt``, ``vocab.json``).
        adata
            AnnData to attach (set up like the training data); default: the one saved with the
            model, if any.
        **kwargs
            Other arguments of scvi-tools' ``load`` (``accelerator``, ``device``, ``prefix``).

        Raises
        ------
        FileNotFoundError
            No folder, or a folder without ``model.pt`` (e.g. the authors' release folder,
            which :meth:`load_pretrained` reads).
        ValueError
            ``model.pt`` is not a readable saved model (truncated, or another file).
        """
        path = Path(dir_path)
        weights = path / f"{kwargs.get('prefix') or ''}model.pt"
        if not path.is_dir():
            raise FileNotFoundError(
                f"No model folder at {path}; give the folder that model.save(...) wrote."
            )
        if not weights.is_file():
            release = (path / "model.pth").is_file()
            hint = (
                " It looks like the authors' release folder (model.pth): read it with "
                "CancerGPTModel.load_pretrained(folder, adata)."
                if release
                else f" It holds: {listing(sorted(p.name for p in path.iterdir()))}."
            )
            raise FileNotFoundError(
                f"{path} holds no {weights.name}, so it is not a folder written by "
                f"model.save(...).{hint}"
            )
        try:
            return super().load(str(path), adata=adata, **kwargs)
        except (pickle.UnpicklingError, EOFError) as err:
            raise ValueError(
                f"{weights} is not a readable saved model ({type(err).__name__}: {err}); it may "
                "be truncated or another file. Save the model again with model.save(...)."
            ) from err
        except RuntimeError as err:
            if "PytorchStreamReader" not in str(err) and "zip" not in str(err):
                raise
            raise ValueError(
                f"{weights} is not a readable saved model ({err}); it may be truncated or "
                "another file. Save the model again with model.save(...)."
            ) from err

    def save(self, dir_path: str, overwrite: bool = False, save_anndata: bool = False, **kwargs):
        """Save the model (scvi-tools format) and its vocabulary (``vocab.json``) to a folder."""
        super().save(dir_path, overwrite=overwrite, save_anndata=save_anndata, **kwargs)
        self.vocab.to_json(Path(dir_path) / "vocab.json")


def _cell_indices(indices: Sequence[int] | np.ndarray | None, n_obs: int) -> np.ndarray | None:
    """Positions of the cells to embed: integer positions, or a boolean mask over the cells."""
    if indices is None:
        return None
    arr = np.asarray(indices)
    if arr.dtype == bool:
        if arr.shape != (n_obs,):
            raise ValueError(
                f"A boolean mask as indices must have one entry per cell ({n_obs}), got shape "
                f"{arr.shape}."
            )
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"indices must be integer positions or a boolean mask of the cells, got {arr.dtype} "
            f"with shape {arr.shape}."
        )
    bad = arr[(arr < 0) | (arr >= n_obs)]
    if len(bad):
        raise IndexError(
            f"indices {listing(bad.tolist())} are out of range for an AnnData of {n_obs} cells "
            f"(positions 0 to {n_obs - 1})."
        )
    return arr.astype(np.int64, copy=False)


def _check_values(values: np.ndarray | torch.Tensor) -> None:
    """Refuse negative or non-finite expression met while embedding (data changed after setup)."""
    values = torch.as_tensor(values)
    if values.numel() == 0:
        return
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ValueError(
            "The expression holds negative or non-finite values (NaN or inf): CancerGPT bins "
            "non-negative expression. Was the AnnData changed after setup_anndata? Restore raw "
            "counts or normalised (not scaled) values, or run setup_anndata again to check them."
        )


def _validation_cells(n_cells: int, train_size: float | None, validation_size: float | None) -> int:
    """Validation cells of scvi-tools' split rule (training: ``ceil(train_size * n)``)."""
    train = int(np.ceil((0.9 if train_size is None else train_size) * n_cells))
    if validation_size is None:
        return max(n_cells - train, 0)
    return int(np.floor(validation_size * n_cells))
