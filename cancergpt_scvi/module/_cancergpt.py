"""The CancerGPT transformer as an scvi-tools module."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from cancergpt_scvi._constants import DOMAIN_KEYS, TISSUE_KEY
from cancergpt_scvi.data import (
    BinningMode,
    GeneSelection,
    TokenBatch,
    bin_expression,
    sampled_tokens,
    tokenize,
)
from cancergpt_scvi.nn import (
    ContinuousValueEncoder,
    DomainAdversary,
    ExpressionDecoder,
    GeneEncoder,
    MVCDecoder,
    TransformerEncoder,
)

#: Value given to masked tokens in the masked-expression objective.
MASK_VALUE = -1.0
#: Tie rule of the binning in training: the authors' random spreading of tied values.
TRAIN_BINNING: BinningMode = "release"


class CancerGPTModule(BaseModuleClass):
    """Transformer over ``<cls>`` + gene tokens with binned expression values.

    The layout and names of the encoder (``gene_encoder``, ``value_encoder``, ``encoder``)
    are those of the published release, so its weights load as they are.

    Parameters
    ----------
    gene_ids
        ``(n_input_genes,)`` token id of each input gene (column of the registered data);
        ``pad_id`` for genes outside the vocabulary.
    n_tokens
        Size of the vocabulary's embedding table.
    cls_id, pad_id
        Ids of ``<cls>`` and ``<pad>``.
    n_domains
        Number of categories of each adversarial covariate, e.g.
        ``{"batch": 12, "technology": 2}``; covariates with one category get no discriminator.
        The adversary is :class:`~cancergpt_scvi.nn.DomainAdversary`.
    n_conditions
        Categories of the registered tissue; with more than one, the adversary is told each
        cell's tissue (:class:`~cancergpt_scvi.nn.DomainAdversary`).
    embed_dim, n_layers, n_heads, ffn_dim, dropout
        Transformer size (release: 256, 6, 8, 512, 0.2).
    n_bins
        Expression bins, zero bin included.
    max_seq_len
        Longest token sequence, ``<cls>`` included.
    gene_selection
        ``"expressed"`` (each cell's expressed genes), ``"fixed"`` (every input gene) or
        ``"sampled"`` (scGPT's zero-shot rule: each cell's expressed genes, binned among
        themselves, a random subset when more than ``max_seq_len - 1``, in eval mode too;
        see :func:`~cancergpt_scvi.data.sampled_tokens`).
    mask_ratio
        Fraction of gene tokens masked for the masked-expression objective.
    eval_binning
        Tie rule of the binning when embedding: ``"deterministic"`` (default, so embeddings
        are reproducible) or ``"release"`` (the authors' random spreading of ties, which
        training always uses).
    condition_decoders
        Tell both expression decoders each cell's domains (a learned vector per category of
        every adversarial covariate, added to their input), as scGPT does with batch labels,
        so that technology- and batch-specific expression is explained by the decoders rather
        than by the cell embedding. Embedding needs no domain labels: the decoders are used in
        training only.
    """

    def __init__(
        self,
        gene_ids: torch.Tensor,
        n_tokens: int,
        cls_id: int = 0,
        pad_id: int = 1,
        n_domains: Mapping[str, int] | None = None,
        n_conditions: int = 1,
        embed_dim: int = 256,
        n_layers: int = 6,
        n_heads: int = 8,
        ffn_dim: int = 512,
        dropout: float = 0.2,
        n_bins: int = 51,
        max_seq_len: int = 1200,
        gene_selection: GeneSelection = "expressed",
        mask_ratio: float = 0.4,
        eval_binning: BinningMode = "deterministic",
        condition_decoders: bool = True,
    ):
        super().__init__()
        if embed_dim % n_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by n_heads={n_heads}.")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}.")
        if eval_binning not in ("deterministic", "release"):
            raise ValueError(
                f"eval_binning must be 'deterministic' or 'release', got {eval_binning!r}."
            )
        self.register_buffer("gene_ids", torch.as_tensor(gene_ids, dtype=torch.long))
        self.cls_id, self.pad_id = int(cls_id), int(pad_id)
        self.n_bins, self.max_seq_len = n_bins, max_seq_len
        self.gene_selection, self.mask_ratio = gene_selection, mask_ratio
        self.eval_binning = eval_binning
        self.embed_dim = embed_dim
        n_domains = dict(n_domains or {})

        # creation order fixes the random initialisation: keep it
        self.gene_encoder = GeneEncoder(n_tokens, embed_dim, padding_idx=pad_id)
        self.value_encoder = ContinuousValueEncoder(embed_dim, dropout)
        self.encoder = TransformerEncoder(embed_dim, n_layers, n_heads, ffn_dim, dropout)
        self.expr_decoder = ExpressionDecoder(embed_dim)
        self.mvc_decoder = MVCDecoder(embed_dim)
        self.adversary = DomainAdversary(embed_dim, n_domains, n_conditions=n_conditions)
        # zero-initialised: training starts from the unconditioned decoders
        self.decoder_domains = nn.ModuleDict(
            {
                key: nn.Embedding(int(n), embed_dim, _weight=torch.zeros(int(n), embed_dim))
                for key, n in n_domains.items()
                if int(n) > 1 and condition_decoders
            }
        )

    # -- tokens and encoder -----------------------------------------------------------------
    def tokenize(
        self,
        x: torch.Tensor,
        gene_ids: torch.Tensor | None = None,
        binning: BinningMode | None = None,
        random_genes: bool = False,
        generator: torch.Generator | None = None,
    ) -> TokenBatch:
        """Bin each cell's expression and build its token sequence.

        With ``gene_selection="fixed"`` only the token genes are binned, so each cell's
        quantiles are those of the genes it is represented by (the release procedure).
        """
        gene_ids = self.gene_ids if gene_ids is None else gene_ids.to(x.device)
        binning = binning or (TRAIN_BINNING if self.training else self.eval_binning)
        if self.gene_selection == "sampled":
            return sampled_tokens(
                x,
                gene_ids,
                self.cls_id,
                self.pad_id,
                self.max_seq_len,
                self.n_bins,
                binning,
                generator,
            )
        if self.gene_selection == "fixed":
            keep = torch.nonzero(gene_ids != self.pad_id).squeeze(-1)
            if keep.numel() < gene_ids.numel():
                x, gene_ids = x[:, keep], gene_ids[keep]
        bins = bin_expression(x, self.n_bins, mode=binning, generator=generator)
        return tokenize(
            bins,
            gene_ids,
            self.cls_id,
            self.pad_id,
            self.max_seq_len,
            selection=self.gene_selection,
            random=random_genes,
            generator=generator,
        )

    def encode(
        self, tokens: TokenBatch, values: torch.Tensor | None = None, cls_only: bool = False
    ) -> torch.Tensor:
        """Transformer output ``(B, L, E)`` for token ids and (possibly masked) values.

        ``cls_only``: the output of the ``<cls>`` position only, ``(B, 1, E)``, the same values
        for less work (see :class:`~cancergpt_scvi.nn.TransformerEncoder`).
        """
        values = tokens.values if values is None else values
        h = self.gene_encoder(tokens.gene_ids) + self.value_encoder(values)
        return self.encoder(h, tokens.padding_mask, first_only=cls_only)

    @torch.inference_mode()
    def embed(
        self,
        x: torch.Tensor,
        gene_ids: torch.Tensor | None = None,
        binning: BinningMode | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """L2-normalised ``<cls>`` embedding of each cell (no masking, eval mode expected).

        Genes are chosen deterministically (``random_genes=False``), except under
        ``gene_selection="sampled"`` (a random subset of a cell with too many expressed genes,
        drawn from ``generator``); ``binning`` defaults to the mode's rule (``eval_binning`` in
        eval mode).
        """
        tokens = self.tokenize(x, gene_ids, binning=binning, generator=generator)
        return F.normalize(self.encode(tokens, cls_only=True)[:, 0].float(), dim=-1)

    # -- scvi-tools module contract ---------------------------------------------------------
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(self, tensors: dict, inference_outputs: dict) -> dict:
        return {
            "token_out": inference_outputs["token_out"],
            "tokens": inference_outputs["tokens"],
            "domains": {key: tensors[DOMAIN_KEYS[key]] for key in self.decoder_domains},
        }

    @auto_move_data
    def inference(self, x: torch.Tensor, gene_ids: torch.Tensor | None = None) -> dict:
        """Tokenise, mask a fraction of gene tokens, and encode.

        Returns the token batch, the mask, the transformer output and the cell embedding
        ``z`` (the L2-normalised ``<cls>`` output), which the adversary judges.
        """
        tokens = self.tokenize(x, gene_ids, random_genes=self.training)
        masked = tokens.gene_positions & (
            torch.rand(tokens.values.shape, device=x.device) < self.mask_ratio
        )
        values = torch.where(masked, torch.full_like(tokens.values, MASK_VALUE), tokens.values)
        token_out = self.encode(tokens, values)
        z = F.normalize(token_out[:, 0].float(), dim=-1)
        return {"tokens": tokens, "masked": masked, "token_out": token_out, "z": z}

    @auto_move_data
    def generative(
        self,
        token_out: torch.Tensor,
        tokens: TokenBatch,
        domains: Mapping[str, torch.Tensor] | None = None,
    ) -> dict:
        """Predict expression bins: per token (masked objective) and from the cell (MVC).

        ``domains`` holds the category codes ``(B,)`` or ``(B, 1)`` of the covariates the
        decoders are conditioned on (see ``condition_decoders``); missing ones are refused.
        """
        decoder_in = token_out
        missing = [key for key in self.decoder_domains if key not in (domains or {})]
        if missing:
            raise ValueError(f"The decoders are conditioned on {missing}: pass their codes.")
        for key, table in self.decoder_domains.items():
            decoder_in = decoder_in + table(domains[key].long().view(-1)).unsqueeze(1)
        return {
            "expr_pred": self.expr_decoder(decoder_in),
            "mvc_pred": self.mvc_decoder(decoder_in[:, 0], self.gene_encoder(tokens.gene_ids)),
        }

    def reconstruction_errors(
        self, inference_outputs: dict, generative_outputs: dict
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell mean squared errors ``(B,)`` of the masked bins and of the MVC prediction."""
        tokens: TokenBatch = inference_outputs["tokens"]
        masked = inference_outputs["masked"].float()
        # bins on a 0..1 scale: raw bins (up to 50) would take an Adam-trained output layer
        # thousands of steps just to reach their mean
        target = tokens.values / (self.n_bins - 1)
        sq = (generative_outputs["expr_pred"] - target) ** 2
        mlm = (sq * masked).sum(dim=1) / masked.sum(dim=1).clamp(min=1)
        genes = tokens.gene_positions.float()
        mvc = ((generative_outputs["mvc_pred"] - target) ** 2 * genes).sum(dim=1)
        return mlm, mvc / genes.sum(dim=1).clamp(min=1)

    def self_supervised_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Masked expression + MVC error of each cell ``(B,)``, with gradients.

        The pretraining objective without the adversary and without the decoders' batch and
        technology terms, so that it applies to cells of batches the model has not seen (a
        query being annotated). Masking and gene choice follow the module's mode.
        """
        inference_outputs = self.inference(x)
        token_out, tokens = inference_outputs["token_out"], inference_outputs["tokens"]
        generative_outputs = {
            "expr_pred": self.expr_decoder(token_out),
            "mvc_pred": self.mvc_decoder(token_out[:, 0], self.gene_encoder(tokens.gene_ids)),
        }
        mlm, mvc = self.reconstruction_errors(inference_outputs, generative_outputs)
        return mlm + mvc

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        mvc_weight: float = 1.0,
        adversarial_weight: float = 0.0,
    ) -> LossOutput:
        """Masked expression MSE + ``mvc_weight`` x MVC MSE + adversarial cross-entropies.

        The discriminators learn to recognise each domain from the cell embedding; the
        gradient reversal in front of them, scaled by ``adversarial_weight`` (0, the default:
        the discriminators learn, the encoder is not pushed), pushes the encoder towards an
        embedding that does not reveal the domain. The weight scales gradients only, never the
        loss's value. The training plan ramps both weights
        (:class:`~cancergpt_scvi.train.CancerGPTTrainingPlan`).
        """
        mlm, mvc = self.reconstruction_errors(inference_outputs, generative_outputs)
        per_cell = mlm + mvc_weight * mvc
        labels = {key: tensors[DOMAIN_KEYS[key]] for key in self.adversary.covariates}
        condition = tensors[TISSUE_KEY].long().view(-1) if self.adversary.n_conditions else None
        adversarial, metrics = self.adversary(
            inference_outputs["z"], labels, condition, weight=adversarial_weight
        )
        metrics = {"mlm_loss": mlm.mean(), "mvc_loss": mvc.mean(), **metrics}
        return LossOutput(
            loss=per_cell.mean() + adversarial,
            reconstruction_loss=per_cell,
            n_obs_minibatch=per_cell.shape[0],
            extra_metrics=metrics,
        )
