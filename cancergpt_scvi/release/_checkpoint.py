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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import torch
from torch import nn

from cancergpt_scvi._listing import listing
from cancergpt_scvi.data import GeneVocab
from cancergpt_scvi.nn import ContinuousValueEncoder, GeneEncoder, TransformerEncoder

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
ENCODER_MODULES = ("gene_encoder", "value_encoder", "encoder")
ENCODER_PREFIXES = tuple(f"{name}." for name in ENCODER_MODULES)
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


def release_encoder(args: Mapping, n_tokens: int) -> nn.ModuleDict:
    """The zero-shot encoder of a release, under the names of its state dict.

    Built on the meta device (no memory, no draws from the random generator): its
    ``state_dict()`` gives every encoder key with its shape, and a model's own encoder modules
    in the same container load a release state dict with ``load_state_dict(strict=True)``.

    Parameters
    ----------
    args
        ``args.json`` of the release (``embsize``, ``nlayers``, ``nheads``, ``d_hid``).
    n_tokens
        Size of the vocabulary.
    """
    with torch.device("meta"):
        embed_dim = int(args["embsize"])
        return nn.ModuleDict(
            {
                "gene_encoder": GeneEncoder(n_tokens, embed_dim),
                "value_encoder": ContinuousValueEncoder(embed_dim),
                "encoder": TransformerEncoder(
                    embed_dim, int(args["nlayers"]), int(args["nheads"]), int(args["d_hid"])
                ),
            }
        )


def encoder_modules(module: nn.Module) -> nn.ModuleDict:
    """A module's encoder parts (``gene_encoder``, ``value_encoder``, ``encoder``), shared."""
    return nn.ModuleDict({name: getattr(module, name) for name in ENCODER_MODULES})


def _read_args(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"The release folder {path.parent} has no {ARGS_FILE}; it must hold {WEIGHTS_FILE}, "
            f"{ARGS_FILE} and {VOCAB_FILE} as published by the CancerGPT authors. "
            f"{ARGS_FILE} fixes the architecture, so it cannot be guessed."
        )
    try:
        with path.open() as fh:
            args = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReleaseCheckpointError(
            f"{path} is not valid JSON ({err}); it must be the release's {ARGS_FILE}, a JSON "
            "object of the architecture (nlayers, nheads, embsize, d_hid, ...)."
        ) from err
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
    dropout = args.get("dropout", 0.2)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ReleaseCheckpointError(
            f"{path}: dropout must be a number in [0, 1), got {dropout!r}."
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


def read_state_dict(path: Path, folder: str) -> dict[str, torch.Tensor]:
    """A plain state dict ``{name: tensor}`` from ``path``, read without pickled code.

    ``folder`` names the kind of folder for the messages (e.g. ``"release folder"``).
    """
    if not path.is_file():
        raise FileNotFoundError(f"The {folder} {path.parent} has no {path.name}.")
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


def check_encoder_state(
    encoder: Mapping[str, torch.Tensor],
    expected: Mapping[str, tuple[int, ...]],
    what: str = "checkpoint",
    spelling: Callable[[str], str] = str,
) -> None:
    """Refuse a missing, misshapen, unaccounted-for or non-finite encoder weight.

    Parameters
    ----------
    encoder
        Encoder weights under this package's names.
    expected
        The shape of every weight the encoder described by ``args.json`` and ``vocab.json`` has.
    what
        The checkpoint's name in the messages (e.g. ``"scGPT checkpoint"``).
    spelling
        The checkpoint's own spelling of one of this package's keys, for the messages.
    """
    missing = [spelling(k) for k in expected if k not in encoder]
    unexpected = [spelling(k) for k in encoder if k not in expected]
    misshapen = [
        f"{spelling(k)}: {tuple(encoder[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in encoder and tuple(encoder[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing encoder keys: {listing(missing)}")
    if misshapen:
        problems.append(f"shapes that do not fit args.json / vocab.json: {listing(misshapen)}")
    if unexpected:
        problems.append(
            "encoder keys that args.json does not account for (e.g. more layers than nlayers, "
            f"or another value encoder than the continuous one): {listing(unexpected)}"
        )
    if problems:
        raise ReleaseCheckpointError(
            f"The {what} does not fit the encoder described by its args.json and vocab.json; "
            + "; ".join(problems)
            + ". Loading it anyway would give meaningless embeddings."
        )
    for key, tensor in encoder.items():
        if not torch.isfinite(tensor).all():
            raise ReleaseCheckpointError(f"The {what}'s {spelling(key)} holds NaN or inf values.")


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
    check_encoder_state(encoder, expected)
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
    state = read_state_dict(model_dir / WEIGHTS_FILE, "release folder")
    expected = {
        key: tuple(tensor.shape)
        for key, tensor in release_encoder(args, vocab.size).state_dict().items()
    }
    encoder, ignored = canonical_encoder_state(state, expected)
    if ignored:
        logger.debug("Ignored %d training-only keys: %s", len(ignored), ", ".join(ignored))
    return ReleaseCheckpoint(args=args, vocab=vocab, encoder_state=encoder, ignored_keys=ignored)
