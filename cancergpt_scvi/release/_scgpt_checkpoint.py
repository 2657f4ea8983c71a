"""Loading an scGPT checkpoint folder (``best_model.pt``, ``args.json``, ``vocab.json``).

scGPT (bowang-lab/scGPT) publishes its whole-human, pan-cancer and organ models as folders of
a state dict of its ``TransformerModel``, the training arguments and the vocabulary. Its
encoder has the arithmetic of this package's: a LayerNorm'd gene embedding plus a continuous
value encoder, post-norm ReLU transformer layers, the ``<cls>`` output read at position 0.
Only the key names differ, and they come in three spellings of the attention weights: torch's
(``self_attn.in_proj_weight``) and flash-attention's (``self_attn.Wqkv.weight``, or nested
once more, ``self_attn._impl.Wqkv.weight``). All three hold q, k and v stacked in that order,
so they load as they are.

scGPT's own loader copies the keys it can place and silently skips the rest. Here every
encoder weight must be present with the shape that ``args.json`` and ``vocab.json`` imply, and
every key outside the encoder (decoders, classifier, batch encoder, batch norms, ...) is named
in a warning, since the zero-shot embedding does not use them.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import torch

from cancergpt_scvi._listing import listing
from cancergpt_scvi.data import GeneVocab

from ._checkpoint import (
    ARGS_FILE,
    VOCAB_FILE,
    WEIGHTS_FILE,
    ReleaseCheckpointError,
    check_encoder_state,
    read_state_dict,
    release_encoder,
)

#: Name of the scGPT folder layout (and of the CancerGPT release's), as models report it.
SCGPT_LAYOUT, CANCERGPT_LAYOUT = "scGPT", "CancerGPT"
#: scGPT's weights file (``scgpt/tasks/cell_emb.py::embed_data`` reads this name).
SCGPT_WEIGHTS_FILE = "best_model.pt"
#: Special tokens scGPT appends to a vocabulary that lacks them, in this order.
SCGPT_SPECIAL_TOKENS = ("<pad>", "<cls>", "<eoc>")
#: scGPT's data collator bins into 51 bins whatever ``args.json`` says.
SCGPT_N_BINS = 51
#: ``max_length`` of scGPT's ``embed_data``, used when ``args.json`` has no ``max_seq_len``.
SCGPT_MAX_SEQ_LEN = 1200
#: The value of ``<cls>`` in this package's token sequences; scGPT gives it ``pad_value``.
SCGPT_CLS_VALUE = -2
#: ``args.json`` entries that fix the encoder, and the module argument each one drives.
SCGPT_ARCHITECTURE_ARGS: dict[str, str] = {
    "embsize": "embed_dim",
    "nlayers": "n_layers",
    "nheads": "n_heads",
    "d_hid": "ffn_dim",
}

# scGPT name -> this package's name, applied in order; the attention renames cover torch's,
# flash-attention's and the nested flash-attention spelling
_RENAMES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"^encoder\.", "gene_encoder."),
        (r"^transformer_encoder\.layers\.", "encoder.layers."),
        (r"\.self_attn\.(?:_impl\.)?Wqkv\.(weight|bias)$", r".self_attn.in_proj_\1"),
        (r"\.self_attn\._impl\.out_proj\.", ".self_attn.out_proj."),
    )
)
_ENCODER_PREFIXES = ("encoder.", "value_encoder.", "transformer_encoder.layers.")


def checkpoint_layout(model_dir: str | PathLike) -> str:
    """The layout of a checkpoint folder: ``"CancerGPT"`` (``model.pth``) or ``"scGPT"``.

    Parameters
    ----------
    model_dir
        A CancerGPT release folder (``model.pth``) or an scGPT folder (``best_model.pt``),
        each with ``args.json`` and ``vocab.json``.

    Raises
    ------
    FileNotFoundError
        No folder at ``model_dir``.
    ReleaseCheckpointError
        The folder holds both weights files, so which one is meant is unclear.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"No checkpoint folder at {model_dir}.")
    has_release = (model_dir / WEIGHTS_FILE).is_file()
    has_scgpt = (model_dir / SCGPT_WEIGHTS_FILE).is_file()
    if has_release and has_scgpt:
        raise ReleaseCheckpointError(
            f"{model_dir} holds both {WEIGHTS_FILE} (CancerGPT release) and "
            f"{SCGPT_WEIGHTS_FILE} (scGPT); keep the one of the model you mean in a folder of "
            "its own."
        )
    return SCGPT_LAYOUT if has_scgpt else CANCERGPT_LAYOUT


def is_checkpoint_folder(path: str | PathLike) -> bool:
    """Whether ``path`` is a folder with published weights: ``model.pth`` or ``best_model.pt``.

    Parameters
    ----------
    path
        Any path.
    """
    path = Path(path)
    return (path / WEIGHTS_FILE).is_file() or (path / SCGPT_WEIGHTS_FILE).is_file()


@dataclass
class ScGPTCheckpoint:
    """The parts of an scGPT folder that the zero-shot encoder needs.

    Attributes
    ----------
    args
        ``args.json`` as read.
    vocab
        The vocabulary, with ``<pad>``, ``<cls>`` and ``<eoc>`` appended when missing (as
        scGPT's ``embed_data`` does).
    encoder_state
        Encoder weights under this package's names.
    extra_keys
        Keys outside the encoder, not loaded.
    """

    args: dict
    vocab: GeneVocab
    encoder_state: dict[str, torch.Tensor]
    extra_keys: list[str] = field(default_factory=list)

    @property
    def module_kwargs(self) -> dict:
        """:class:`~cancergpt_scvi.module.CancerGPTModule` arguments of the scGPT encoder."""
        kwargs = {ours: int(self.args[theirs]) for theirs, ours in SCGPT_ARCHITECTURE_ARGS.items()}
        kwargs["dropout"] = float(self.args.get("dropout", 0.2))
        kwargs["max_seq_len"] = int(self.args.get("max_seq_len", SCGPT_MAX_SEQ_LEN))
        kwargs["n_bins"] = SCGPT_N_BINS
        return kwargs


def scgpt_key(key: str) -> str:
    """This package's name for an scGPT encoder key (other keys come back unchanged).

    ``encoder.*`` (scGPT's gene embedding) becomes ``gene_encoder.*``,
    ``transformer_encoder.layers.{i}.*`` becomes ``encoder.layers.{i}.*``, and the
    flash-attention ``self_attn.Wqkv.*`` / ``self_attn._impl.Wqkv.*`` become
    ``self_attn.in_proj_*``; ``self_attn._impl.out_proj.*`` becomes ``self_attn.out_proj.*``.
    """
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def _read_args(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"The scGPT folder {path.parent} has no {ARGS_FILE}; it must hold "
            f"{SCGPT_WEIGHTS_FILE}, {ARGS_FILE} and {VOCAB_FILE} as scGPT publishes them. "
            f"{ARGS_FILE} fixes the architecture, so it cannot be guessed."
        )
    try:
        with path.open() as fh:
            args = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReleaseCheckpointError(f"{path} is not valid JSON ({err}).") from err
    if not isinstance(args, dict):
        raise ReleaseCheckpointError(f"{path} must hold a JSON object, got {type(args).__name__}.")
    missing = [k for k in SCGPT_ARCHITECTURE_ARGS if k not in args]
    if missing:
        raise ReleaseCheckpointError(f"{path} lacks the architecture entries {missing}.")
    for key in [*SCGPT_ARCHITECTURE_ARGS, "max_seq_len"]:
        value = args.get(key, SCGPT_MAX_SEQ_LEN)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ReleaseCheckpointError(
                f"{path}: {key} must be a positive integer, got {value!r}."
            )
    if args["embsize"] % args["nheads"]:
        raise ReleaseCheckpointError(
            f"{path}: embsize={args['embsize']} is not divisible by nheads={args['nheads']}."
        )
    if args.get("max_seq_len", SCGPT_MAX_SEQ_LEN) < 2:
        raise ReleaseCheckpointError(f"{path}: max_seq_len must be at least 2.")
    # what the encoder here cannot reproduce is refused rather than approximated
    style = args.get("input_emb_style", "continuous")
    if style != "continuous":
        raise ReleaseCheckpointError(
            f"{path}: input_emb_style={style!r}; only scGPT's 'continuous' value encoder (that "
            "of its published models) is supported."
        )
    if args.get("pad_value", SCGPT_CLS_VALUE) != SCGPT_CLS_VALUE:
        raise ReleaseCheckpointError(
            f"{path}: pad_value={args['pad_value']!r}; scGPT gives <cls> this value and this "
            f"package gives it {SCGPT_CLS_VALUE} (that of scGPT's published models), so the "
            "embeddings would differ."
        )
    if args.get("pre_norm", False):
        raise ReleaseCheckpointError(
            f"{path}: pre_norm=true; only post-norm transformer layers (those of scGPT's "
            "published models) are supported."
        )
    return args


def _read_vocab(path: Path) -> GeneVocab:
    if not path.is_file():
        raise FileNotFoundError(f"The scGPT folder {path.parent} has no {VOCAB_FILE}.")
    try:
        with path.open() as fh:
            tokens = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReleaseCheckpointError(
            f"{path} is not valid JSON ({err}); scGPT's vocab.json is a JSON object {{token: id}}."
        ) from err
    if not isinstance(tokens, dict):
        raise ReleaseCheckpointError(f"{path} must hold a JSON object {{token: id}}.")
    tokens = {str(k): v for k, v in tokens.items()}
    # scGPT appends the specials it does not find, each with the next id
    for special in SCGPT_SPECIAL_TOKENS:
        if special not in tokens:
            tokens[special] = len(tokens)
    try:
        return GeneVocab(tokens)
    except (TypeError, ValueError) as err:
        raise ReleaseCheckpointError(f"{path}: {err}") from err


def _scgpt_name(key: str) -> str:
    """scGPT's (torch) spelling of one of this package's encoder keys, for messages."""
    if key.startswith("gene_encoder."):
        return "encoder." + key.removeprefix("gene_encoder.")
    if key.startswith("encoder.layers."):
        key = "transformer_encoder." + key.removeprefix("encoder.")
        return re.sub(r"in_proj_(weight|bias)$", r"in_proj_\1 (or Wqkv.\1)", key)
    return key


def _warn_extra_keys(extra: list[str], stacklevel: int) -> None:
    groups: dict[str, list[str]] = {}
    for key in extra:
        groups.setdefault(key.split(".", 1)[0], []).append(key)
    named = "; ".join(f"{head}: {listing(keys, limit=3)}" for head, keys in groups.items())
    warnings.warn(
        f"The scGPT checkpoint holds {len(extra)} weights outside the encoder, which the "
        f"zero-shot embedding does not use and which are not loaded ({named}). Decoders, the "
        "classifier and the MVC head are training heads; a batch encoder or batch norm "
        "(dsbn, bn) of a fine-tuned checkpoint is not applied either, as in scGPT's own "
        "zero-shot embed_data.",
        UserWarning,
        stacklevel=stacklevel + 1,
    )


def read_scgpt_checkpoint(model_dir: str | PathLike, stacklevel: int = 1) -> ScGPTCheckpoint:
    """Read and check an scGPT checkpoint folder.

    Parameters
    ----------
    model_dir
        Folder with ``best_model.pt`` (a state dict of scGPT's ``TransformerModel``),
        ``args.json`` and ``vocab.json``.
    stacklevel
        Of the warning about keys outside the encoder, counted from the caller as by
        :func:`warnings.warn`.

    Returns
    -------
    The architecture arguments, the vocabulary and the encoder weights under this package's
    names (see :func:`scgpt_key`).

    Raises
    ------
    FileNotFoundError
        The folder or one of its files is missing.
    ReleaseCheckpointError
        A missing, misshapen or non-finite encoder weight, an invalid ``args.json`` or
        ``vocab.json``, or an architecture other than that of scGPT's published models
        (``input_emb_style`` other than continuous, ``pre_norm``, ``pad_value`` other than -2).

    Warns
    -----
    UserWarning
        Naming the keys outside the encoder, which are not loaded.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"No scGPT folder at {model_dir}.")
    args = _read_args(model_dir / ARGS_FILE)
    vocab = _read_vocab(model_dir / VOCAB_FILE)
    state = read_state_dict(model_dir / SCGPT_WEIGHTS_FILE, "scGPT folder")
    extra = [key for key in state if not key.startswith(_ENCODER_PREFIXES)]
    renamed = {scgpt_key(k): v for k, v in state.items() if k.startswith(_ENCODER_PREFIXES)}
    if len(renamed) < len(state) - len(extra):
        raise ReleaseCheckpointError(
            "The scGPT checkpoint holds the same attention weights under two spellings "
            "(e.g. self_attn.Wqkv and self_attn.in_proj_weight); keep one."
        )
    expected = {
        key: tuple(tensor.shape)
        for key, tensor in release_encoder(args, vocab.size).state_dict().items()
    }
    check_encoder_state(renamed, expected, "scGPT checkpoint", _scgpt_name)
    if extra:
        _warn_extra_keys(extra, stacklevel + 1)
    return ScGPTCheckpoint(args=args, vocab=vocab, encoder_state=renamed, extra_keys=extra)
