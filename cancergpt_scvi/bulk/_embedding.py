"""Embed bulk RNA samples with a CancerGPT model: each bulk profile as one pseudo-cell.

How a bulk profile becomes a "cell"
-----------------------------------
CancerGPT never sees raw expression: each cell's values are binned by that cell's own
quantiles (51 bins, zeros stay 0) and only the bins reach the transformer. Two consequences
decide how bulk data must be prepared:

* **Scale does not matter, order does.** Any strictly increasing transform of a sample's
  values (library-size normalisation, CPM, TPM scaling, ``log1p``, ``log2``) gives exactly
  the same bins, so bulk counts need no normalisation for the model. What must hold is that
  the values are non-negative and that a value of 0 means "not expressed": non-positive
  values get bin 0. Log-scale microarray intensities (which may be negative after
  background correction or normalisation) are therefore shifted per sample so that the
  lowest probe sits just above 0: this keeps their order, which is all that the binning
  uses. Values centred per gene (z-scores, log-ratios against a reference) are not
  expression levels and cannot be embedded meaningfully.
* **Which genes become tokens.** A single cell expresses a few hundred to a few thousand
  genes; a bulk sample expresses nearly all. Fed as is, every gene of a bulk sample is
  "expressed", the model keeps only the ``max_seq_len - 1`` highest-binned genes (bins
  close to 50) and the value signal is lost. ``embed_bulk`` instead chooses
  ``max_seq_len - 1`` genes and bins each sample among them only, so that values again span
  bins 1..50: either the cohort's highly variable genes (default ``"hvg"``; the same gene set
  for every sample, the authors' own zero-shot procedure, selecting on log expression) or
  each sample's most expressed genes (``"top_expressed"``, the pseudo-cell closest to a
  single-cell profile). Only genes in the model's vocabulary are candidates.

``kind`` states what the values are: ``"counts"`` (raw read counts, any depth),
``"tpm"`` (TPM / FPKM / CPM: gene-length-normalised or not, any scale) or ``"microarray"``
(log2 or linear intensities). Counts of full-length bulk libraries carry more reads for
longer genes, unlike the 3' UMI single-cell data most of the pretraining corpus comes from;
TPM removes that bias, so prefer ``"tpm"`` when it is available.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from cancergpt_scvi._listing import listing
from cancergpt_scvi.data import gene_symbols

if TYPE_CHECKING:
    from cancergpt_scvi.model import CancerGPTModel

BulkKind = Literal["counts", "tpm", "microarray"]
#: Below this median |gene mean| / gene sd (with negative values), values are centred per gene.
_CENTRED_DISTANCE = 0.5
GeneChoice = Literal["hvg", "top_expressed"]


def bulk_log_expression(x: np.ndarray, kind: BulkKind) -> np.ndarray:
    """Non-negative log expression of bulk samples, in which 0 means "not expressed".

    Parameters
    ----------
    x
        ``(n_samples, n_genes)`` values.
    kind
        ``"counts"``: log1p of counts per million. ``"tpm"``: log1p of the values rescaled
        to sum to one million per sample. ``"microarray"``: values whose maximum is below 50
        are taken as log intensities, larger ones are log2(x + 1)-transformed; each sample is
        then shifted so its lowest value is a small positive number (the order within a
        sample, which the binning uses, is kept). Values centred per gene (z-scores,
        log-ratios against a reference) are refused.

    Returns
    -------
    ``(n_samples, n_genes)`` float64 array.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError(
            "The bulk expression holds NaN or infinite values; impute or drop those samples "
            "or genes first."
        )
    if kind in ("counts", "tpm"):
        if (x < 0).any():
            raise ValueError(
                f"kind={kind!r} needs non-negative values but the minimum is {x.min():.3g}. "
                "Log-scale or background-corrected intensities (which can be negative) are "
                "embedded with kind='microarray'; centred or scaled values (z-scores) cannot "
                "be embedded: use the uncentred expression."
            )
        total = x.sum(axis=1, keepdims=True)
        if (total == 0).any():
            raise ValueError(
                f"{int((total == 0).sum())} samples have no expression at all; drop them."
            )
        return np.log1p(x / total * 1e6)
    if kind == "microarray":
        refuse_centred_per_gene(x)
        logged = x if x.max() < 50 else np.log2(np.maximum(x, 0.0) + 1.0)
        low = logged.min(axis=1, keepdims=True)
        span = logged.max(axis=1, keepdims=True) - low
        if (span == 0).any():
            raise ValueError("Some samples have the same value for every gene; drop them.")
        # strictly positive, so that every probe counts as measured
        return logged - low + 1e-3 * span
    raise ValueError(f"kind must be 'counts', 'tpm' or 'microarray', got {kind!r}.")


def refuse_centred_per_gene(x: np.ndarray) -> None:
    """Refuse values centred per gene (z-scores, log-ratios against a reference).

    Such values are not expression levels: their order within a sample, all that the binning
    reads, says nothing about which genes the sample expresses. They are recognised by negative
    values together with gene means close to zero relative to the genes' spread across samples
    (log intensities, even with a few negative probes, have gene means far above their
    spread). Needs three samples or more to judge.
    """
    if x.shape[0] < 3 or not (x < 0).any():
        return
    mean, sd = x.mean(axis=0), x.std(axis=0)
    varying = sd > 0
    if not varying.any():
        return
    # how many of its standard deviations the typical gene's mean lies from 0
    distance = float(np.median(np.abs(mean[varying]) / sd[varying]))
    if distance < _CENTRED_DISTANCE:
        raise ValueError(
            f"The values look centred per gene (z-scores or log-ratios against a reference): "
            f"{(x < 0).mean():.0%} are negative and the typical gene's mean is "
            f"{distance:.2f} of its standard deviations from 0. Centred values are not "
            "expression levels (their order within a sample does not say which genes it "
            "expresses), so they cannot be embedded: use the uncentred expression (log or "
            "linear intensities, TPM or counts) with the matching kind=."
        )


def _model_genes(model: CancerGPTModel) -> set[str]:
    """Symbols of the model's input genes that have a vocabulary token."""
    ids = model.module.gene_ids.detach().cpu().numpy()
    pad = model.vocab.pad_id
    return {g for g, i in zip(model.input_genes_, ids, strict=True) if i != pad}


def select_bulk_genes(
    log_expr: np.ndarray,
    symbols: np.ndarray,
    known: set[str],
    n_genes: int,
    genes: GeneChoice = "hvg",
) -> np.ndarray:
    """The genes of each bulk sample that :func:`embed_bulk` turns into tokens.

    Parameters
    ----------
    log_expr
        ``(n_samples, n_genes_total)`` log expression from :func:`bulk_log_expression`.
    symbols
        Gene symbol of each column.
    known
        Symbols the model has a token for; only these are candidates.
    n_genes
        Genes to choose (per sample for ``"top_expressed"``).
    genes
        ``"hvg"``: the known genes ranked by scanpy's ``cell_ranger`` dispersion on the log
        expression (the release's zero-shot gene selection), one set for every sample.
        ``"top_expressed"``: each sample's highest known genes.

    Returns
    -------
    For ``"hvg"``, the column indices of the chosen genes in their original order; for
    ``"top_expressed"``, a boolean ``(n_samples, n_genes_total)`` mask of each sample's
    chosen (expressed) genes.

    Raises
    ------
    ValueError
        No symbol is known to the model, or ``genes`` is not one of the two choices.
    """
    import scanpy as sc

    is_known = np.array([s in known for s in symbols])
    if not is_known.any():
        raise ValueError(
            f"None of the bulk genes are among the model's genes (bulk: {listing(symbols, 3)}). "
            "Match gene identifiers: pass gene_symbols_key with the var column that holds "
            "gene symbols."
        )
    cand = np.flatnonzero(is_known)
    if genes == "hvg":
        if len(cand) <= n_genes:
            return cand
        expressed = cand[(log_expr[:, cand] > 0).any(axis=0)]
        varying = expressed[log_expr[:, expressed].std(axis=0) > 0]
        if len(varying) <= n_genes:
            return varying
        tmp = ad.AnnData(X=log_expr[:, varying].astype(np.float32))
        tmp.var_names = [str(i) for i in varying]
        with np.errstate(divide="ignore", invalid="ignore"):
            hvg = sc.pp.highly_variable_genes(
                tmp, flavor="cell_ranger", n_top_genes=n_genes, inplace=False
            )
        keep = varying[np.asarray(hvg["highly_variable"], dtype=bool)]
        return np.sort(keep)
    if genes == "top_expressed":
        masked = np.where(is_known[None, :], log_expr, -np.inf)
        k = min(n_genes, len(cand))
        top = np.argpartition(-masked, k - 1, axis=1)[:, :k]
        mask = np.zeros_like(log_expr, dtype=bool)
        np.put_along_axis(mask, top, True, axis=1)
        return mask & (log_expr > 0)
    raise ValueError(f"genes must be 'hvg' or 'top_expressed', got {genes!r}.")


def embed_bulk(
    model: CancerGPTModel,
    adata_bulk: ad.AnnData,
    kind: BulkKind = "counts",
    gene_symbols_key: str | None = None,
    batch_size: int | None = None,
    layer: str | None = None,
    genes: GeneChoice = "hvg",
    n_genes: int | None = None,
    progress_bar: bool = True,
) -> np.ndarray:
    """Embed bulk RNA samples (samples x genes) with a trained CancerGPT model.

    Each sample is treated as one pseudo-cell (see the module documentation for the
    reasoning): its values are turned into non-negative log expression
    (:func:`bulk_log_expression`), restricted to ``n_genes`` genes the model knows, and
    embedded with :meth:`CancerGPTModel.get_latent_representation`, which bins each sample
    by its own quantiles.

    Parameters
    ----------
    model
        A trained :class:`~cancergpt_scvi.model.CancerGPTModel`.
    adata_bulk
        Samples x genes; genes may be in any order and only partly shared with the model.
    kind
        ``"counts"``, ``"tpm"`` or ``"microarray"`` (see :func:`bulk_log_expression`).
    gene_symbols_key
        ``adata_bulk.var`` column of gene symbols, when ``var_names`` are other identifiers.
    batch_size
        Samples per forward pass (default 64).
    layer
        Layer of ``adata_bulk`` holding the values; default ``X``.
    genes
        ``"hvg"`` (default): the cohort's most variable known genes, one gene set for every
        sample. ``"top_expressed"``: each sample's most expressed known genes.
    n_genes
        Genes per sample; default ``max_seq_len - 1`` of the model, so every chosen gene
        becomes a token.
    progress_bar
        Show the embedding progress bar.

    Returns
    -------
    ``(n_samples, embed_dim)`` float32 array of L2-normalised embeddings, in the order of
    ``adata_bulk.obs_names``; store it in ``adata_bulk.obsm`` for
    :class:`~cancergpt_scvi.survival.SurvivalModel`.
    """
    if adata_bulk.n_obs == 0:
        raise ValueError("adata_bulk has no samples.")
    if layer is not None and layer not in adata_bulk.layers:
        raise KeyError(f"layer={layer!r} is not in adata_bulk.layers ({list(adata_bulk.layers)}).")
    matrix = adata_bulk.X if layer is None else adata_bulk.layers[layer]
    matrix = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    symbols = np.asarray(gene_symbols(adata_bulk, gene_symbols_key))
    log_expr = bulk_log_expression(matrix, kind)
    # one column per symbol: duplicated symbols (several probes of a gene) keep the first
    _, first = np.unique(symbols, return_index=True)
    first = np.sort(first)
    log_expr, symbols = log_expr[:, first], symbols[first]

    if n_genes is None:
        n_genes = int(model.module.max_seq_len) - 1
    if n_genes < 1:
        raise ValueError(f"n_genes must be positive, got {n_genes}.")
    chosen = select_bulk_genes(log_expr, symbols, _model_genes(model), n_genes, genes)
    if genes == "hvg":
        values, var_symbols = log_expr[:, chosen], symbols[chosen]
    else:
        keep = chosen.any(axis=0)
        values = np.where(chosen, log_expr, 0.0)[:, keep]
        var_symbols = symbols[keep]

    setup = model.registry_["setup_args"]
    var = pd.DataFrame(index=pd.Index(var_symbols, name=None))
    if setup.get("gene_symbols_key") is not None:
        var[setup["gene_symbols_key"]] = var_symbols
    pseudo = ad.AnnData(
        X=values.astype(np.float32), obs=pd.DataFrame(index=adata_bulk.obs_names.copy()), var=var
    )
    if setup.get("layer") is not None:
        pseudo.layers[setup["layer"]] = pseudo.X
    # the pseudo-cells hold the chosen genes only, on purpose: no share of the model's genes
    # to report
    return model.get_latent_representation(
        pseudo, batch_size=batch_size, progress_bar=progress_bar, check_genes=False
    )
