"""The authors' published weights, loaded into a CancerGPT model for zero-shot embedding."""

from __future__ import annotations

from dataclasses import replace
from os import PathLike
from typing import Self

import anndata as ad
import numpy as np
import torch
from mudata import MuData

from cancergpt_scvi.data import BinningMode
from cancergpt_scvi.pretrained import file_sha256, locate_pretrained
from cancergpt_scvi.release import (
    CANCERGPT_LAYOUT,
    SCGPT_LAYOUT,
    checkpoint_layout,
    read_release_checkpoint,
    release_token_genes,
)

from ._gene_alignment import MIN_GENE_SHARE, percent, report_gene_share
from ._mudata import RNA_MODALITY, rna_modality
from ._pretrained_encoder import install_pretrained_encoder
from ._scgpt_pretrained import load_scgpt_pretrained


class PretrainedWeightsMixin:
    """:meth:`load_pretrained` of :class:`~cancergpt_scvi.model.CancerGPTModel`."""

    @classmethod
    def load_pretrained(
        cls,
        model_dir: str | PathLike,
        adata: ad.AnnData | MuData,
        batch_key: str | None = None,
        layer: str | None = None,
        gene_symbols_key: str | None = None,
        binning: BinningMode = "release",
        device: str | torch.device | None = None,
        modality: str = RNA_MODALITY,
    ) -> Self:
        """Load the authors' published weights, set up on ``adata`` for zero-shot embedding.

        ``model_dir`` is the release folder, or the name of a published model
        (``"cancergpt"``, or one added with :func:`~cancergpt_scvi.pretrained.register_model`),
        downloaded into the cache on first use and read from there afterwards, offline.

        The returned model's :meth:`get_latent_representation` follows the authors'
        procedure: the genes of ``adata`` found in the release vocabulary; among them the
        ``max_seq_len - 1`` highly variable genes by scanpy's ``cell_ranger`` flavour (within
        each batch of ``batch_key`` when given), in ``var`` order; ``<cls>`` (value -2)
        followed by those genes with each cell's values binned by its own quantiles; the
        ``<cls>`` output, L2-normalised. ``adata`` is registered (scvi-tools adds its
        ``_scvi_*`` columns) but otherwise left as it is, with all its genes.

        The release reads ``max_seq_len - 1`` gene tokens per cell; the share of them that
        ``adata``'s genes fill is on the model's summary (``print(model)``), warned about
        below 90% and refused below 10% (as for
        :meth:`get_latent_representation` on other data). The summary also names the weights
        (name, address or folder, SHA-256 of ``model.pth``, layout) and the token rule;
        ``model.pretrained_weights_`` holds the former
        (:class:`~cancergpt_scvi.pretrained.PretrainedWeights`).

        A folder of scGPT's layout (``best_model.pt`` instead of ``model.pth``) is loaded
        into the same model and embedded by scGPT's zero-shot procedure instead: every gene
        of ``adata`` found in its vocabulary; per cell, ``<cls>`` followed by the non-zero
        genes in ``var`` order, binned by the cell's own quantiles, a random subset of
        ``max_seq_len - 1`` of them when there are more (``seed=`` of
        :meth:`get_latent_representation` fixes it); the ``<cls>`` output, L2-normalised.
        Keys outside scGPT's encoder are named in a warning and not loaded. The layout read
        is ``model.pretrained_layout_`` (``"CancerGPT"`` or ``"scGPT"``).

        The weights live in an ordinary :class:`~cancergpt_scvi.model.CancerGPTModel`: it can
        be saved with :meth:`save`, reloaded with :meth:`load` and fine-tuned with
        :meth:`train`.

        Parameters
        ----------
        model_dir
            The release folder (``model.pth``, ``args.json``, ``vocab.json``), an scGPT
            folder (``best_model.pt``, ``args.json``, ``vocab.json``), or a registered name
            (:func:`~cancergpt_scvi.pretrained.registered_models`); a path that exists is
            taken as a folder.
        adata
            Cells x genes, expression as given to the authors' code (counts or normalised).
            May be opened with ``backed="r"``. A MuData is registered with
            :meth:`setup_mudata`, its expression and ``batch_key`` read from the modality
            ``modality``; the embedding has one row per cell of the MuData (for
            ``mdata.obsm``).
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
        modality
            The RNA modality of a MuData ``adata``.

        Raises
        ------
        FileNotFoundError
            The folder or one of its files is missing, or a string is neither a folder nor a
            registered name.
        ~cancergpt_scvi.pretrained.ModelDownloadError
            A named model could not be downloaded, or its download is refused.
        KeyError
            A MuData has no modality ``modality`` (the message names the ones it has).
        ReleaseCheckpointError
            Missing or misshapen encoder weights, or an invalid ``args.json``.
        ValueError
            None of ``adata``'s genes is in the vocabulary, too few to fill 10% of the
            release's gene tokens, or none of them varies across the cells (e.g. fewer than 2
            cells); a MuData's modality does not hold its cells in order; ``modality`` is given
            for an AnnData.
        """
        if binning not in ("release", "deterministic"):
            raise ValueError(f"binning must be 'release' or 'deterministic', got {binning!r}.")
        data = adata  # what is registered; adata: the AnnData of its expression
        if isinstance(data, MuData):
            adata = rna_modality(data, modality)
        elif modality != RNA_MODALITY:
            raise ValueError(
                f"modality={modality!r} names a modality of a MuData; adata is not one."
            )
        if adata.n_obs == 0:
            raise ValueError("adata has no cells (n_obs == 0); pass an AnnData with cells.")
        weights = locate_pretrained(model_dir)
        model_dir = weights.folder
        if checkpoint_layout(model_dir) == SCGPT_LAYOUT:
            return load_scgpt_pretrained(
                cls,
                model_dir,
                adata,
                batch_key,
                layer,
                gene_symbols_key,
                binning,
                device,
                weights=weights,
            )
        checkpoint = read_release_checkpoint(model_dir)
        vocab = checkpoint.vocab
        config = checkpoint.module_kwargs
        ids = vocab.match(adata, gene_symbols_key, min_genes=1)
        n_slots, n_in_vocab = config["max_seq_len"] - 1, int((ids >= 0).sum())
        where = "var_names" if gene_symbols_key is None else f"adata.var[{gene_symbols_key!r}]"
        advice = (
            f"{n_in_vocab} of adata's {adata.n_vars} genes are in the release vocabulary. "
            f"Genes are matched by symbol in {where}: pass gene_symbols_key= the var column "
            "of symbols when var_names are other identifiers, or use data that measure more "
            "genes."
        )
        if n_in_vocab / n_slots < MIN_GENE_SHARE:
            # refused here, before the highly-variable-gene choice would blame these few
            # genes for not varying
            report_gene_share(
                n_in_vocab,
                n_slots,
                f"adata's genes fill only {n_in_vocab} of the release's {n_slots} gene tokens "
                "per cell",
                advice,
            )
        if isinstance(data, MuData):
            cls.setup_mudata(
                data,
                rna_layer=layer,
                batch_key=batch_key,
                gene_symbols_key=gene_symbols_key,
                modalities={"rna_layer": modality, "batch_key": modality},
            )
        else:
            cls.setup_anndata(
                adata, layer=layer, batch_key=batch_key, gene_symbols_key=gene_symbols_key
            )
        chosen = release_token_genes(
            adata,
            np.flatnonzero(ids >= 0),
            n_slots,
            batch_key=batch_key,
            layer=layer,
        )
        filled = f"adata's genes fill {len(chosen)} of the release's {n_slots} gene tokens per cell"
        report_gene_share(len(chosen), n_slots, filled, advice, stacklevel=2)
        model = cls(
            data,
            vocab=vocab,
            preset="release",
            token_genes=[str(g) for g in adata.var_names[chosen]],
            gene_selection="fixed",
            eval_binning=binning,
            # replaced by the checkpoint's weights at once: the PCA start would be wasted work
            gene_embedding_init="random",
            **config,
        )
        weights = replace(weights, sha256=file_sha256(model_dir / weights.weights_file))
        ties = "ties drawn at random, seed= fixes them" if binning == "release" else "ties centred"
        within = "" if batch_key is None else f" within each {batch_key!r}"
        summary = (
            f"; {filled} ({percent(len(chosen), n_slots)})\n{weights.describe()}\n"
            f"tokens (release rule): <cls>, then the {len(chosen)} highly variable vocabulary "
            f"genes (scanpy cell_ranger{within}), values binned by each cell's quantiles into "
            f"{config['n_bins']} bins ({binning!r}: {ties})"
        )
        install_pretrained_encoder(
            model, checkpoint.encoder_state, weights, CANCERGPT_LAYOUT, summary, device
        )
        return model
