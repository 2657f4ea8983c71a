"""Cell embeddings of a CancerGPT model: from its registered AnnData or any other."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import torch
from mudata import MuData
from scvi.utils import track

from cancergpt_scvi._argument_types import check_whole_number
from cancergpt_scvi._constants import X_KEY
from cancergpt_scvi.data import BinningMode, cell_indices, check_expression_values

from ._gene_alignment import align_genes, aligned_batches, genes_in_order, report_gene_share
from ._mudata import expression_layer
from ._precision import Precision, embedding_autocast


class CellEmbeddingMixin:
    """:meth:`get_latent_representation` of :class:`~cancergpt_scvi.model.CancerGPTModel`.

    Reads the registered AnnData as registered, or another AnnData with its genes matched to
    the model's input genes by symbol, and embeds it with the module in eval mode.
    """

    def registered_genes_match(self) -> bool:
        """Whether the registered AnnData's columns are the model's input genes, in order.

        The model's input genes (``input_genes_``) are the genes it was set up with; training
        and :meth:`get_latent_representation` read the registered columns as they are only
        while these are the same genes in the same order (not after reordering, subsetting in
        place, or loading the model onto other data). Another AnnData is embedded with its
        genes matched by symbol instead.

        Returns
        -------
        ``True`` when the symbols of the registered columns are the input genes, in order;
        ``False`` otherwise or when the model has no AnnData.
        """
        if self.adata is None:
            return False
        setup = self.registry_["setup_args"]
        cells = self._expression_adata(self.adata)
        return genes_in_order(cells, setup["gene_symbols_key"], self.input_genes_)

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: ad.AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        binning: BinningMode | None = None,
        progress_bar: bool = True,
        precision: Precision = "fp32",
        seed: int | None = None,
        chunk_size: int = 10_000,
        check_genes: bool = True,
    ) -> np.ndarray:
        """Cell embeddings: the L2-normalised ``<cls>`` output, ``(n_obs, embed_dim)`` float32.

        Deterministic with deterministic binning (the default of models trained here) or a
        ``seed``; on dense, sparse or backed (``backed="r"``) data. Runs in inference mode
        with fused attention; memory is bounded by ``chunk_size`` and ``batch_size``.

        Parameters
        ----------
        adata
            Cells to embed; default: the registered AnnData. Another AnnData may have its genes
            in another order or only some of them (matched by symbol; see ``check_genes``); it
            needs no setup. A MuData is read from its RNA modality (the one registered with
            :meth:`setup_mudata`, else ``"rna"``), one row per cell of the MuData, for
            ``mdata.obsm``.
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
        check_genes
            Report the share of the model's token genes that ``adata`` holds: a warning below
            90% (``GENE_SHARE_WARNING``), a ValueError below 10% (``MIN_GENE_SHARE``). Pass
            ``False`` only for data that hold a chosen subset of the genes on purpose (such as
            :func:`~cancergpt_scvi.bulk.embed_bulk`'s pseudo-cells).

        Raises
        ------
        ValueError
            ``adata`` holds none or less than 10% of the model's token genes (with
            ``check_genes``), or negative or non-finite expression; a MuData's RNA modality
            does not hold its cells in order.
        KeyError
            A MuData has no RNA modality (the message names the modalities it has).
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
        registered = source is self.adata
        source = self._expression_adata(source)  # a MuData's RNA modality
        if source is None:
            raise ValueError("This model has no AnnData; pass adata with the cells to embed.")
        indices = cell_indices(indices, source.n_obs)
        if indices is not None and len(indices) == 0:
            return np.zeros((0, self.module.embed_dim), dtype=np.float32)
        autocast = embedding_autocast(precision, self.device)
        generator = None
        if seed is not None:
            check_whole_number("seed", seed)
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        batch_size = batch_size or 64
        n_cells = source.n_obs if indices is None else len(indices)
        # the registered data is read column by column as registered, which is only right
        # while its genes are the model's input genes in order (not after reordering, in-place
        # subsetting or loading onto other data); otherwise genes are matched by symbol
        foreign = not registered or not self.registered_genes_match()
        adata = source
        setup = self.registry_["setup_args"]
        layer = expression_layer(setup)
        alignment = None
        if foreign:  # matched before the first batch, so a refusal comes before any work
            alignment = align_genes(
                adata,
                self.input_genes_,
                self.module.gene_ids,
                self.vocab.pad_id,
                layer,
                setup["gene_symbols_key"],
            )
            if check_genes:
                where = (
                    "var_names"
                    if setup["gene_symbols_key"] is None
                    else f"adata.var[{setup['gene_symbols_key']!r}]"
                )
                report_gene_share(
                    alignment.n_found,
                    alignment.n_tokens,
                    f"adata holds {alignment.n_found} of the model's {alignment.n_tokens} "
                    "token genes",
                    f"Genes are matched by symbol in {where}: name them as the model does "
                    "(model.input_genes_), or embed data that measure the model's genes.",
                    stacklevel=3,  # past torch's inference_mode wrapper, at the caller
                )
        sizes = [min(chunk_size, n_cells - s) for s in range(0, n_cells, chunk_size)]
        n_batches = (
            sum(-(-n // batch_size) for n in sizes) if foreign else -(-n_cells // batch_size)
        )

        def batches():
            if alignment is not None:
                yield from aligned_batches(adata, alignment, layer, indices, chunk_size, batch_size)
                return
            loader = self._make_data_loader(
                adata=self._validate_anndata(None),
                indices=indices,
                batch_size=batch_size,
                shuffle=False,
            )
            for tensors in loader:
                check_expression_values(tensors[X_KEY])
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
