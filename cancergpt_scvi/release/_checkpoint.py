"""Loading the published CancerGPT release folder (``model.pth``, ``args.json``, ``vocab.json``).

The authors' own loader copies whatever keys it can place and silently skips the rest, so a
wrong or truncated file gives random embeddings without a word. Here every encoder weight
must be present with the shape that ``args.json`` and ``vocab.json`` imply, or loading stops
with an error naming the offending keys.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import torch

from cancergpt_scvi.data import BinningMode, GeneVocab, cell_ranger_hvg

if TYPE_CHECKING:
    from cancergpt_scvi.model._cancergpt import CancerGPTModel

logger = logging.getLogger(__name__)

#: File names of the release folder.
WEIGHTS_FILE, ARGS_FILE, VOCAB_FILE = "model.pth", "args.json", "vocab.json"
#: ``args.json`` entries that fix the encoder, and the module argument each one drives.
ARCHITECTURE_ARGS: dict[str, str] = {
    "embsize": "embed_dim",
    "nlayers": "n_layers",
    "nheads": "n_heads",
    "d_hid": "ffn_dim",
    "max_seq_len": "max_seq_len",
    "n_bins": "n_bins",
}
#: Top-level modules of the zero-shot encoder; keys under any other prefix are training heads.
ENCODER_PREFIXES = ("gene_encoder.", "value_encoder.", "encoder.")
# some releases nest the attention module once more: encoder.layers.{i}.self_attn.self_attn.*
_NESTED_ATTENTION = re.compile(r"^(encoder\.layers\.\d+\.self_attn\.)self_attn\.")


class ReleaseCheckpointError(ValueError):
    """A release folder whose files do not describe a complete, consistent encoder."""


@dataclass
class ReleaseCheckpoint:
    """The parts of a release folder that the zero-shot encoder needs.

    Attributes
    ----------
    args
        ``args.json`` as read.
    vocab
        The release vocabulary.
    encoder_state
        Encoder weights under this package's (= the release's canonical) names.
    ignored_keys
        Keys of training-only heads, not loaded.
    """

    args: dict
    vocab: GeneVocab
    encoder_state: dict[str, torch.Tensor]
    ignored_keys: list[str] = field(default_factory=list)

    @property
    def module_kwargs(self) -> dict:
        """:class:`~cancergpt_scvi.module.CancerGPTModule` arguments set by ``args.json``."""
        kwargs = {ours: int(self.args[theirs]) for theirs, ours in ARCHITECTURE_ARGS.items()}
        kwargs["dropout"] = float(self.args.get("dropout", 0.2))
        return kwargs


def encoder_shapes(
    n_tokens: int, embed_dim: int, ffn_dim: int, n_layers: int
) -> dict[str, tuple[int, ...]]:
    """Name and shape of every encoder weight of the release (``release-format`` table)."""
    e, h = embed_dim, ffn_dim
    shapes: dict[str, tuple[int, ...]] = {
        "gene_encoder.embedding.weight": (n_tokens, e),
        "gene_encoder.enc_norm.weight": (e,),
        "gene_encoder.enc_norm.bias": (e,),
        "value_encoder.linear1.weight": (e, 1),
        "value_encoder.linear1.bias": (e,),
        "value_encoder.linear2.weight": (e, e),
        "value_encoder.linear2.bias": (e,),
        "value_encoder.norm.weight": (e,),
        "value_encoder.norm.bias": (e,),
    }
    for i in range(n_layers):
        p = f"encoder.layers.{i}."
        shapes.update(
            {
                p + "self_attn.in_proj_weight": (3 * e, e),
                p + "self_attn.in_proj_bias": (3 * e,),
                p + "self_attn.out_proj.weight": (e, e),
                p + "self_attn.out_proj.bias": (e,),
                p + "linear1.weight": (h, e),
                p + "linear1.bias": (h,),
                p + "linear2.weight": (e, h),
                p + "linear2.bias": (e,),
                p + "norm1.weight": (e,),
                p + "norm1.bias": (e,),
                p + "norm2.weight": (e,),
                p + "norm2.bias": (e,),
            }
        )
    return shapes


def _listing(keys, limit: int = 8) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _read_args(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"The release folder {path.parent} has no {ARGS_FILE}; it must hold {WEIGHTS_FILE}, "
            f"{ARGS_FILE} and {VOCAB_FILE} as published by the CancerGPT authors. "
            f"{ARGS_FILE} fixes the architecture, so it cannot be guessed."
        )
    with path.open() as fh:
        args = json.load(fh)
    if not isinstance(args, dict):
        raise ReleaseCheckpointError(f"{path} must hold a JSON object, got {type(args).__name__}.")
    missing = [k for k in ARCHITECTURE_ARGS if k not in args]
    if missing:
        raise ReleaseCheckpointError(f"{path} lacks the architecture entries {missing}.")
    for key in ARCHITECTURE_ARGS:
        value = args[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ReleaseCheckpointError(
                f"{path}: {key} must be a positive integer, got {value!r}."
            )
    if args["embsize"] % args["nheads"]:
        raise ReleaseCheckpointError(
            f"{path}: embsize={args['embsize']} is not divisible by nheads={args['nheads']}."
        )
    if args["max_seq_len"] < 2 or args["n_bins"] < 3:
        raise ReleaseCheckpointError(
            f"{path}: max_seq_len must be >= 2 and n_bins >= 3 (got {args['max_seq_len']}, "
            f"{args['n_bins']})."
        )
    return args


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"The release folder {path.parent} has no {WEIGHTS_FILE}.")
    try:
        # weights_only: a state dict needs no pickled code, and refusing code is the safe default
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for unreadable / unsafe files
        raise ReleaseCheckpointError(
            f"{path} could not be read as a torch state dict of tensors ({err})."
        ) from err
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ReleaseCheckpointError(
            f"{path} must hold a plain state dict {{name: tensor}}, as torch.save(state_dict) "
            "writes it."
        )
    return dict(state)


def canonical_encoder_state(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a release state dict onto the canonical encoder names and check it strictly.

    Returns the encoder weights and the ignored (training-only) keys. Raises
    :class:`ReleaseCheckpointError` naming missing, unexpected or misshapen encoder keys.
    """
    encoder: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, tensor in state.items():
        if not key.startswith(ENCODER_PREFIXES):
            ignored.append(key)
            continue
        name = _NESTED_ATTENTION.sub(r"\1", key)
        if name in encoder and not torch.equal(encoder[name], tensor):
            raise ReleaseCheckpointError(
                f"The checkpoint holds two different tensors for {name} (also stored as {key})."
            )
        encoder[name] = tensor
    missing = [k for k in expected if k not in encoder]
    unexpected = [k for k in encoder if k not in expected]
    misshapen = [
        f"{k}: {tuple(encoder[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in encoder and tuple(encoder[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing encoder keys: {_listing(missing)}")
    if misshapen:
        problems.append(f"shapes that do not fit args.json / vocab.json: {_listing(misshapen)}")
    if unexpected:
        problems.append(
            f"encoder keys that args.json does not account for (e.g. more layers than "
            f"nlayers): {_listing(unexpected)}"
        )
    if problems:
        raise ReleaseCheckpointError(
            "The checkpoint does not fit the CancerGPT encoder described by its args.json and "
            "vocab.json; " + "; ".join(problems) + ". Loading it anyway would give meaningless "
            "embeddings."
        )
    for key, tensor in encoder.items():
        if not torch.isfinite(tensor).all():
            raise ReleaseCheckpointError(f"The checkpoint's {key} holds NaN or inf values.")
    return encoder, ignored


def read_release_checkpoint(model_dir: str | PathLike) -> ReleaseCheckpoint:
    """Read and check a CancerGPT release folder.

    Parameters
    ----------
    model_dir
        Folder with ``model.pth`` (a state dict), ``args.json`` and ``vocab.json``.

    Returns
    -------
    The architecture arguments, the vocabulary and the encoder weights under canonical names
    (``encoder.layers.{i}.self_attn.self_attn.*`` becomes ``encoder.layers.{i}.self_attn.*``).
    Keys of training-only heads are left out and listed at debug level.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"No release folder at {model_dir}.")
    args = _read_args(model_dir / ARGS_FILE)
    vocab = GeneVocab.from_json(model_dir / VOCAB_FILE)
    state = _read_weights(model_dir / WEIGHTS_FILE)
    expected = encoder_shapes(vocab.size, args["embsize"], args["d_hid"], args["nlayers"])
    encoder, ignored = canonical_encoder_state(state, expected)
    if ignored:
        logger.debug("Ignored %d training-only keys: %s", len(ignored), ", ".join(ignored))
    return ReleaseCheckpoint(args=args, vocab=vocab, encoder_state=encoder, ignored_keys=ignored)


class PretrainedMixin:
    """Adds :meth:`load_pretrained` (the published release folder) to a CancerGPT model."""

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
        result = model.module.load_state_dict(checkpoint.encoder_state, strict=False)
        not_loaded = [k for k in result.missing_keys if k.startswith(ENCODER_PREFIXES)]
        if not_loaded or result.unexpected_keys:  # guards against a drift of our module's names
            raise ReleaseCheckpointError(
                f"Encoder weights not placed: {_listing(not_loaded + result.unexpected_keys)}."
            )
        model.module.eval()
        model.is_trained_ = True
        model.pretrained_from_ = str(Path(model_dir).resolve())
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to_device(device)
        return model
