"""scGPT's published weights, loaded into a CancerGPT model for scGPT's zero-shot embedding."""

from __future__ import annotations

from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import torch

from cancergpt_scvi.data import BinningMode
from cancergpt_scvi.pretrained import PretrainedWeights, file_sha256
from cancergpt_scvi.release import (
    SCGPT_LAYOUT,
    read_scgpt_checkpoint,
)

from ._gene_alignment import percent, report_gene_share
from ._pretrained_encoder import install_pretrained_encoder

if TYPE_CHECKING:
    from ._cancergpt import CancerGPTModel


def load_scgpt_pretrained(
    cls: type[CancerGPTModel],
    model_dir: str | PathLike,
    adata: ad.AnnData,
    batch_key: str | None = None,
    layer: str | None = None,
    gene_symbols_key: str | None = None,
    binning: BinningMode = "release",
    device: str | torch.device | None = None,
    stacklevel: int = 2,
    weights: PretrainedWeights | None = None,
) -> CancerGPTModel:
    """A model with an scGPT folder's encoder, set up on ``adata`` for scGPT's zero-shot embedding.

    What :meth:`~cancergpt_scvi.model.CancerGPTModel.load_pretrained` does with a folder of
    scGPT's layout (``best_model.pt``). Every gene of ``adata`` found in the vocabulary is an
    input gene; the module's ``gene_selection="sampled"`` builds each cell's tokens as scGPT's
    ``get_batch_cell_embeddings`` does (:func:`~cancergpt_scvi.data.sampled_tokens`).

    Parameters
    ----------
    cls
        :class:`~cancergpt_scvi.model.CancerGPTModel`.
    model_dir, adata, batch_key, layer, gene_symbols_key, binning, device
        As for :meth:`~cancergpt_scvi.model.CancerGPTModel.load_pretrained`; ``batch_key`` is
        registered but plays no part in scGPT's zero-shot embedding.
    stacklevel
        Of the warnings, counted from the caller as by :func:`warnings.warn`.
    weights
        Where the folder came from (a registered name or a path), for the model's summary;
        ``None``: the folder itself.
    """
    checkpoint = read_scgpt_checkpoint(model_dir, stacklevel=stacklevel + 1)
    vocab = checkpoint.vocab
    ids = vocab.match(adata, gene_symbols_key, min_genes=1)
    n_in_vocab = int((ids >= 0).sum())
    where = "var_names" if gene_symbols_key is None else f"adata.var[{gene_symbols_key!r}]"
    found = f"{n_in_vocab} of adata's {adata.n_vars} genes are in the scGPT vocabulary"
    report_gene_share(
        n_in_vocab,
        adata.n_vars,
        found,
        f"Genes are matched by name in {where}: pass gene_symbols_key= the var column of "
        "symbols when var_names are other identifiers (scGPT's gene_col).",
        stacklevel=stacklevel + 1,
    )
    cls.setup_anndata(adata, layer=layer, batch_key=batch_key, gene_symbols_key=gene_symbols_key)
    model = cls(
        adata,
        vocab=vocab,
        preset="release",
        gene_selection="sampled",
        eval_binning=binning,
        # replaced by the checkpoint's weights at once: the PCA start would be wasted work
        gene_embedding_init="random",
        **checkpoint.module_kwargs,
    )
    if weights is None:
        weights = PretrainedWeights(folder=Path(model_dir), source=str(Path(model_dir).resolve()))
    weights = replace(
        weights,
        layout=SCGPT_LAYOUT,
        weights_file="best_model.pt",
        sha256=file_sha256(Path(model_dir) / "best_model.pt"),
    )
    n_slots = checkpoint.module_kwargs.get("max_seq_len", 1200) - 1
    summary = (
        f"; {SCGPT_LAYOUT} checkpoint, {found} ({percent(n_in_vocab, adata.n_vars)})\n"
        f"{weights.describe()}\n"
        f"tokens (scGPT rule): <cls>, then each cell's non-zero vocabulary genes in var order "
        f"(a random subset of {n_slots} when more; seed= fixes it), values binned by the "
        "cell's quantiles of its non-zero values"
    )
    install_pretrained_encoder(
        model, checkpoint.encoder_state, weights, SCGPT_LAYOUT, summary, device
    )
    return model
