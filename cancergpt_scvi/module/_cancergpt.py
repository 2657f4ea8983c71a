"""The CancerGPT transformer as an scvi-tools module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from cancergpt_scvi._constants import DOMAIN_KEYS, TISSUE_KEY
from cancergpt_scvi.data import BinningMode, GeneSelection, TokenBatch, bin_expression, tokenize
from cancergpt_scvi.nn import (
    ContinuousValueEncoder,
    DomainDiscriminator,
    ExpressionDecoder,
    GeneEncoder,
    GradientReversal,
    MVCDecoder,
    TransformerEncoder,
)

#: Value given to masked tokens in the masked-expression objective.
MASK_VALUE = -1.0

AdversarialInput = Literal["embedding", "training"]
AdversaryTarget = Literal["encoder", "offsets"]


def fisher_separation(
    z: torch.Tensor,
    domain: torch.Tensor,
    condition: torch.Tensor | None,
    n_domains: int,
    n_conditions: int,
    ridge: float = 1e-5,
) -> torch.Tensor:
    """Mahalanobis spread of the domain means within each condition.

    ``sum_g share_g (mu_g - mu_c)^T S^-1 (mu_g - mu_c)`` over groups ``g`` = (condition c,
    domain), with ``S`` the within-group covariance (detached; ``ridge`` relative to its mean
    variance), so a shift is as visible in a direction of small spread as in a large one.
    """
    condition = torch.zeros_like(domain) if condition is None else condition
    n_cells, dim = z.shape
    groups = F.one_hot(condition * n_domains + domain, n_conditions * n_domains).to(z.dtype)
    conds = F.one_hot(condition, n_conditions).to(z.dtype)
    group_n, cond_n = groups.sum(0), conds.sum(0)
    group_mean = groups.T @ z / group_n.clamp(min=1)[:, None]
    cond_mean = conds.T @ z / cond_n.clamp(min=1)[:, None]
    with torch.no_grad():
        resid = z - groups @ group_mean
        # double precision: directions of tiny spread must not escape the whitening
        resid = resid.double()
        cov = resid.T @ resid / max(n_cells - 1, 1)
        eye = torch.eye(dim, device=z.device, dtype=cov.dtype)
        precision = torch.linalg.inv(cov + ridge * cov.diagonal().mean() * eye).to(z.dtype)
    diff = group_mean - cond_mean.repeat_interleave(n_domains, dim=0)
    # empty groups have mean 0: leave them out
    share = group_n / n_cells
    return (share * ((diff @ precision) * diff).sum(-1)).sum()


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
    n_conditions
        Categories of the registered tissue; with more than one, every discriminator is told
        the cell's tissue (:class:`~cancergpt_scvi.nn.DomainDiscriminator`), so the adversarial
        push removes batch and technology within a tissue rather than the tissue itself.
    embed_dim, n_layers, n_heads, ffn_dim, dropout
        Transformer size (release: 256, 6, 8, 512, 0.2).
    n_bins
        Expression bins, zero bin included.
    max_seq_len
        Longest token sequence, ``<cls>`` included.
    gene_selection
        ``"expressed"`` (each cell's expressed genes) or ``"fixed"`` (every input gene).
    mask_ratio
        Fraction of gene tokens masked for the masked-expression objective.
    use_mvc
        Add the MVC objective (expression predicted from the cell embedding).
    train_binning, eval_binning
        Tie rule of the binning while training (``"release"``: random spreading) and when
        embedding (``"deterministic"`` by default, so embeddings are reproducible).
    adversarial_input
        Which cell embedding the domain discriminators judge. ``"training"`` (default): the
        ``<cls>`` output of the masked training pass with randomly drawn genes.
        ``"embedding"``: the embedding :meth:`embed` returns, from a second encoder pass over
        the unmasked cell with the inference gene choice and binning (about twice the
        training time). Measured on the pretraining docs page: it fools the discriminators on
        the very embedding users get, yet a refitted probe still reads the technology there
        and the biology suffers more, so it is not the default.
    condition_decoders
        Tell both expression decoders each cell's domains (a learned vector per category of
        every adversarial covariate, added to their input), as scGPT does with batch labels.
        Technology- and batch-specific expression is then explained by the decoders, so the
        objectives do not need it in the cell embedding that the discriminators strip of it.
        Embedding needs no domain labels: the decoders are used in training only.
    discriminator_memory
        Number of recent training cells whose (detached) ``<cls>`` outputs, read with the
        current offsets and normalised, the discriminators also learn from at every step,
        next to the current minibatch (0: the minibatch only). A
        discriminator that sees a few thousand cells at once judges the embedding the way a
        classifier fitted afterwards does, instead of the few dozen cells of one step.
    fisher_scale
        Strength of a linear adversary solved in closed form, relative to the reversal weight:
        Fisher's separation of the technologies within each tissue (between-technology mean
        differences in the within-group whitened embedding, what a linear classifier fitted
        afterwards reads), over the current minibatch and the ``discriminator_memory``, is
        added to the loss times ``fisher_scale`` x the current reversal weight. 0: off.
    fisher_ridge
        Ridge added to that covariance, relative to its mean variance. Small (the default
        1e-5) sees a shift in any direction; around 1 the separation weighs directions by
        their spread, as a regularised classifier does, and is far better conditioned.
    embedding_offsets
        ``["technology"]``: each technology gets a learned offset added to the ``<cls>``
        output before L2 normalisation, so the embedding can be moved as a whole per
        technology. Zero-initialised and read by no decoder: only the adversaries train it.
        Embedding then needs each cell's technology (for data other than the registered
        AnnData: the same ``obs`` column). Batches get none: an offset per batch would leave
        new batches without one.
    adversary_trains
        What the adversaries' gradients (reversed discriminator losses, Fisher separation)
        train. ``"encoder"`` (default): the encoder (and any offsets). ``"offsets"``: the
        ``embedding_offsets`` only; the encoder learns from the expression objectives alone,
        so the biology it encodes is untouched, and the technology is removed as a learned
        shift per technology. The discriminators then judge the encoder output without
        gradients (one forward pass more per step with ``adversarial_input="embedding"``),
        and the memory keeps encoder outputs, to which the current offsets are added.
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
        use_mvc: bool = True,
        train_binning: BinningMode = "release",
        eval_binning: BinningMode = "deterministic",
        adversarial_input: AdversarialInput = "training",
        condition_decoders: bool = True,
        discriminator_memory: int = 0,
        fisher_scale: float = 0.0,
        fisher_ridge: float = 1e-5,
        embedding_offsets: Sequence[str] = (),
        adversary_trains: AdversaryTarget = "encoder",
    ):
        super().__init__()
        if adversarial_input not in ("embedding", "training"):
            raise ValueError(
                f"adversarial_input must be 'embedding' or 'training', got {adversarial_input!r}."
            )
        if embed_dim % n_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by n_heads={n_heads}.")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}.")
        self.register_buffer("gene_ids", torch.as_tensor(gene_ids, dtype=torch.long))
        self.cls_id, self.pad_id = int(cls_id), int(pad_id)
        self.n_bins, self.max_seq_len = n_bins, max_seq_len
        self.gene_selection, self.mask_ratio, self.use_mvc = gene_selection, mask_ratio, use_mvc
        self.train_binning, self.eval_binning = train_binning, eval_binning
        self.embed_dim = embed_dim
        self.adversarial_input = adversarial_input

        self.gene_encoder = GeneEncoder(n_tokens, embed_dim, padding_idx=pad_id)
        self.value_encoder = ContinuousValueEncoder(embed_dim, dropout)
        self.encoder = TransformerEncoder(embed_dim, n_layers, n_heads, ffn_dim, dropout)
        self.expr_decoder = ExpressionDecoder(embed_dim)
        self.mvc_decoder = MVCDecoder(embed_dim) if use_mvc else None
        self.grl = GradientReversal(1.0)
        # one tissue (or none registered) conditions nothing
        self.n_conditions = int(n_conditions) if int(n_conditions) > 1 else 0
        self.domain_discriminators = nn.ModuleDict(
            {
                key: DomainDiscriminator(embed_dim, int(n), n_conditions=self.n_conditions)
                for key, n in (n_domains or {}).items()
                if int(n) > 1
            }
        )
        if discriminator_memory < 0:
            raise ValueError(f"discriminator_memory must be >= 0, got {discriminator_memory}.")
        self.discriminator_memory = int(discriminator_memory) if self.domain_discriminators else 0
        self.fisher_scale = float(fisher_scale)
        if self.fisher_scale < 0:
            raise ValueError(f"fisher_scale must be >= 0, got {fisher_scale}.")
        if self.fisher_scale and self.discriminator_memory < 4 * embed_dim:
            raise ValueError(
                f"fisher_scale needs a discriminator_memory of at least 4 x embed_dim = "
                f"{4 * embed_dim} cells (got {discriminator_memory}): its covariance is "
                "estimated over the memory."
            )
        if self.discriminator_memory:
            # not saved with the model: it is a cache of recent training steps
            size = self.discriminator_memory
            self.register_buffer("memory_z", torch.zeros(size, embed_dim), persistent=False)
            self.register_buffer(
                "memory_labels",
                torch.zeros(size, len(self.domain_discriminators), dtype=torch.long),
                persistent=False,
            )
            self.register_buffer(
                "memory_condition", torch.zeros(size, dtype=torch.long), persistent=False
            )
            self.register_buffer(
                "memory_count", torch.zeros((), dtype=torch.long), persistent=False
            )
        unknown = sorted(set(embedding_offsets) - {"technology"})
        if unknown:
            # a batch (patient) offset would tie the embedding to the batches seen in training
            raise ValueError(
                f"embedding_offsets names {unknown}: only 'technology' can have offsets "
                "(an offset per batch would leave new batches without one)."
            )
        # zero-initialised: an untrained offset leaves the embedding as the encoder makes it
        self.embedding_offsets = nn.ModuleDict(
            {
                key: nn.Embedding(
                    disc.n_domains, embed_dim, _weight=torch.zeros(disc.n_domains, embed_dim)
                )
                for key, disc in self.domain_discriminators.items()
                if key in embedding_offsets
            }
        )
        if adversary_trains not in ("encoder", "offsets"):
            raise ValueError(
                f"adversary_trains must be 'encoder' or 'offsets', got {adversary_trains!r}."
            )
        if adversary_trains == "offsets" and not self.embedding_offsets:
            raise ValueError(
                "adversary_trains='offsets' needs embedding_offsets (e.g. ['technology']): "
                "the adversaries would have nothing to train."
            )
        self.adversary_trains = adversary_trains
        if fisher_ridge <= 0:
            raise ValueError(f"fisher_ridge must be positive, got {fisher_ridge}.")
        self.fisher_ridge = float(fisher_ridge)
        # zero-initialised: training starts from the unconditioned decoders
        self.decoder_domains = nn.ModuleDict(
            {
                key: nn.Embedding(int(n), embed_dim, _weight=torch.zeros(int(n), embed_dim))
                for key, n in (n_domains or {}).items()
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
        binning = binning or (self.train_binning if self.training else self.eval_binning)
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

    def encode(self, tokens: TokenBatch, values: torch.Tensor | None = None) -> torch.Tensor:
        """Transformer output ``(B, L, E)`` for token ids and (possibly masked) values."""
        values = tokens.values if values is None else values
        h = self.gene_encoder(tokens.gene_ids) + self.value_encoder(values)
        return self.encoder(h, tokens.padding_mask)

    def cell_embedding(
        self,
        x: torch.Tensor,
        gene_ids: torch.Tensor | None = None,
        binning: BinningMode | None = None,
        generator: torch.Generator | None = None,
        domains: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """L2-normalised ``<cls>`` output of the unmasked cell, with gradients.

        Genes are chosen deterministically (``random_genes=False``); ``binning`` defaults to
        the mode's rule (``eval_binning`` in eval mode).
        """
        cls_out = self._cls_output(x, gene_ids, binning=binning, generator=generator)
        return self._readout(cls_out.float(), domains)

    def _cls_output(
        self,
        x: torch.Tensor,
        gene_ids: torch.Tensor | None,
        binning: BinningMode | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``<cls>`` output of the unmasked cell, genes chosen deterministically."""
        tokens = self.tokenize(x, gene_ids, binning=binning, generator=generator)
        return self.encode(tokens)[:, 0]

    def _domain_cls(
        self, x: torch.Tensor, gene_ids: torch.Tensor | None, token_out: torch.Tensor
    ) -> torch.Tensor:
        """The ``<cls>`` output the adversaries judge (``adversarial_input``), before offsets."""
        if self.adversarial_input == "training":
            cls_out = token_out[:, 0]
        elif self.adversary_trains == "offsets":
            # the encoder's output is a constant to adversaries that train the offsets only
            with torch.no_grad():
                cls_out = self._cls_output(x, gene_ids, binning=self.eval_binning)
        else:
            # masked values and randomly drawn genes make a different input from the one
            # embedded for users: what is hidden from the discriminators there stays readable
            cls_out = self._cls_output(x, gene_ids, binning=self.eval_binning)
        return cls_out.detach() if self.adversary_trains == "offsets" else cls_out

    def _readout(
        self, cls_out: torch.Tensor, domains: Mapping[str, torch.Tensor] | None
    ) -> torch.Tensor:
        """Cell embedding from the ``<cls>`` output: plus the domains' offsets, L2-normalised."""
        missing = [key for key in self.embedding_offsets if key not in (domains or {})]
        if missing:
            raise ValueError(
                f"The embedding carries learned offsets of {missing} (embedding_offsets): "
                "pass each cell's category codes."
            )
        for key, table in self.embedding_offsets.items():
            cls_out = cls_out + table(domains[key].long().view(-1).to(cls_out.device))
        return F.normalize(cls_out, dim=-1)

    @torch.inference_mode()
    def embed(
        self,
        x: torch.Tensor,
        gene_ids: torch.Tensor | None = None,
        binning: BinningMode | None = None,
        generator: torch.Generator | None = None,
        domains: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """L2-normalised ``<cls>`` embedding of each cell (no masking, eval mode expected)."""
        return self.cell_embedding(
            x, gene_ids, binning=binning, generator=generator, domains=domains
        )

    # -- scvi-tools module contract ---------------------------------------------------------
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "domains": {key: tensors[DOMAIN_KEYS[key]] for key in self.embedding_offsets},
        }

    def _get_generative_input(self, tensors: dict, inference_outputs: dict) -> dict:
        return {
            "token_out": inference_outputs["token_out"],
            "tokens": inference_outputs["tokens"],
            "domains": {key: tensors[DOMAIN_KEYS[key]] for key in self.decoder_domains},
        }

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor,
        gene_ids: torch.Tensor | None = None,
        domains: Mapping[str, torch.Tensor] | None = None,
    ) -> dict:
        """Tokenise, mask a fraction of gene tokens, and encode.

        Returns the token batch, the mask, the transformer output and the cell embedding
        (the L2-normalised ``<cls>`` output); with domain discriminators also ``cls_domain``,
        the ``<cls>`` output the adversaries judge (the training pass, or with
        ``adversarial_input="embedding"`` the unmasked cell as :meth:`embed` encodes it;
        detached with ``adversary_trains="offsets"``), and ``z_domain``, its embedding.
        """
        tokens = self.tokenize(x, gene_ids, random_genes=self.training)
        masked = tokens.gene_positions & (
            torch.rand(tokens.values.shape, device=x.device) < self.mask_ratio
        )
        values = torch.where(masked, torch.full_like(tokens.values, MASK_VALUE), tokens.values)
        token_out = self.encode(tokens, values)
        cell = self._readout(token_out[:, 0], domains)
        out = {"tokens": tokens, "masked": masked, "token_out": token_out, "z": cell}
        if len(self.domain_discriminators):
            out["cls_domain"] = self._domain_cls(x, gene_ids, token_out)
            out["z_domain"] = self._readout(out["cls_domain"].float(), domains)
        return out

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
        out = {"expr_pred": self.expr_decoder(decoder_in)}
        if self.mvc_decoder is not None:
            out["mvc_pred"] = self.mvc_decoder(decoder_in[:, 0], self.gene_encoder(tokens.gene_ids))
        return out

    @torch.no_grad()
    def _remember(
        self, z: torch.Tensor, labels: torch.Tensor, condition: torch.Tensor | None
    ) -> None:
        """Write a minibatch into the discriminators' ring buffer of recent cells."""
        size = self.discriminator_memory
        z, labels = z[-size:], labels[-size:]
        slots = (self.memory_count + torch.arange(z.shape[0], device=z.device)) % size
        self.memory_z[slots] = z.to(self.memory_z.dtype)
        self.memory_labels[slots] = labels
        if condition is not None:
            self.memory_condition[slots] = condition[-size:]
        self.memory_count += z.shape[0]

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        mvc_weight: float = 1.0,
    ) -> LossOutput:
        """Masked expression MSE + MVC MSE + adversarial domain cross-entropies.

        The discriminators learn to recognise each domain from the cell embedding (``z_domain``
        when the inference pass computed it, see ``adversarial_input``); the gradient reversal
        layer in front of them (weight set by the training plan) pushes the encoder the other
        way, towards an embedding that does not reveal the domain.
        """
        tokens: TokenBatch = inference_outputs["tokens"]
        masked = inference_outputs["masked"].float()
        # bins on a 0..1 scale: raw bins (up to 50) would take an Adam-trained output layer
        # thousands of steps just to reach their mean
        target = tokens.values / (self.n_bins - 1)
        sq = (generative_outputs["expr_pred"] - target) ** 2
        n_masked = masked.sum(dim=1).clamp(min=1)
        mlm = (sq * masked).sum(dim=1) / n_masked  # per cell
        per_cell = mlm
        metrics = {"mlm_loss": mlm.mean()}
        if "mvc_pred" in generative_outputs:
            genes = tokens.gene_positions.float()
            mvc = ((generative_outputs["mvc_pred"] - target) ** 2 * genes).sum(dim=1)
            mvc = mvc / genes.sum(dim=1).clamp(min=1)
            per_cell = per_cell + mvc_weight * mvc
            metrics["mvc_loss"] = mvc.mean()

        adversarial = torch.zeros((), device=target.device)
        z_domain = inference_outputs.get("z_domain", inference_outputs["z"])
        n_cells = z_domain.shape[0]
        labels = (
            torch.stack(
                [tensors[DOMAIN_KEYS[key]].long().view(-1) for key in self.domain_discriminators],
                dim=1,
            )
            if self.domain_discriminators
            else None
        )
        condition = tensors[TISSUE_KEY].long().view(-1) if self.n_conditions else None
        use_memory = self.discriminator_memory and self.training and labels is not None
        all_labels, all_condition = labels, condition
        remembered = z_domain[:0]
        if use_memory:
            n_memory = int(self.memory_count.clamp(max=self.discriminator_memory))
            remembered = self.memory_z[:n_memory]
            all_labels = torch.cat([labels, self.memory_labels[:n_memory]])
            if condition is not None:
                all_condition = torch.cat([condition, self.memory_condition[:n_memory]])
            # the memory holds encoder outputs: today's offsets are added to all of them
            codes = dict(zip(self.domain_discriminators, all_labels[n_cells:].T, strict=True))
            remembered = self._readout(remembered, codes)
        pool = torch.cat([z_domain, remembered])
        # the reversed push reaches whatever the adversaries train: the encoder (through
        # the minibatch; remembered cells are detached) or the offsets (through every cell)
        disc_in = self.grl(pool)
        for i, (key, disc) in enumerate(self.domain_discriminators.items()):
            logits = disc(disc_in, all_condition)
            ce = F.cross_entropy(logits[:n_cells], labels[:, i])
            adversarial = adversarial + ce
            if logits.shape[0] > n_cells:
                # the remembered cells teach the discriminator; their embeddings are detached
                # from the encoder, so it is pushed by the current minibatch alone
                adversarial = adversarial + F.cross_entropy(
                    logits[n_cells:], all_labels[n_cells:, i]
                )
            metrics[f"adv_loss_{key}"] = ce.detach()
            metrics[f"disc_acc_{key}"] = (
                (logits[:n_cells].argmax(-1) == labels[:, i]).float().mean()
            )
        fisher = use_memory and self.fisher_scale and "technology" in self.domain_discriminators
        # a covariance needs many more cells than dimensions: wait for the memory to fill
        if fisher and pool.shape[0] >= 4 * self.embed_dim:
            tech = list(self.domain_discriminators).index("technology")
            # minimised directly (no reversal): it is the adversary's optimum, solved in
            # closed form
            separation = fisher_separation(
                pool,
                all_labels[:, tech],
                all_condition,
                self.domain_discriminators["technology"].n_domains,
                max(self.n_conditions, 1),
                ridge=self.fisher_ridge,
            )
            adversarial = adversarial + self.grl.weight * self.fisher_scale * separation
            metrics["fisher_separation_technology"] = separation.detach()
        if use_memory:
            self._remember(inference_outputs["cls_domain"].detach(), labels, condition)
        total = per_cell.mean() + adversarial
        return LossOutput(
            loss=total,
            reconstruction_loss=per_cell,
            n_obs_minibatch=per_cell.shape[0],
            extra_metrics=metrics,
        )
