"""Names of published models: where each one is downloaded from, and the cache it goes to."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: Environment variable of the cache folder of downloaded models.
CACHE_ENV = "CANCERGPT_SCVI_CACHE"
#: The authors' share of the CancerGPT release (the link of their README, plus ``/download``).
CANCERGPT_URL = "https://polybox.ethz.ch/index.php/s/pZR9VH7uEHwO5CL/download"
#: The layout of the authors' release folder (``model.pth``, ``args.json``, ``vocab.json``).
RELEASE_LAYOUT = "CancerGPT release"

# a name becomes a folder of the cache, so it may hold no path separator
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# pooch's form of a hash: "[algorithm:]hex digest"
_HASH = re.compile(r"^(?:(?:md5|sha1|sha256|sha512):)?[0-9a-fA-F]+$")
_SCHEMES = ("http://", "https://", "ftp://", "doi:")


@dataclass(frozen=True)
class RegisteredModel:
    """A published model that :func:`fetch_model` can download by name.

    Attributes
    ----------
    name
        The name it is loaded by.
    url
        The download of the zipped model folder.
    known_hash
        Hash of the zip (``"sha256:<hex>"``, pooch's form), or ``None`` for none checked.
    layout
        The layout of the folder in the zip.
    """

    name: str
    url: str
    known_hash: str | None = None
    layout: str = RELEASE_LAYOUT


_REGISTRY: dict[str, RegisteredModel] = {}


def register_model(name: str, url: str, known_hash: str | None = None) -> None:
    """Make a zipped model folder loadable by name.

    After ``register_model("my-mirror", url)``,
    ``CancerGPTModel.load_pretrained("my-mirror", adata)`` and
    ``cancergpt-scvi embed ... --model my-mirror`` download the zip once into the cache
    (:func:`cache_dir`) and load it from there afterwards, offline. Registering a name again
    replaces its entry (e.g. to pin the hash of ``"cancergpt"``). Registrations last for the
    Python session.

    Parameters
    ----------
    name
        The name to load the model by: letters, digits, ``.``, ``_`` and ``-``.
    url
        An ``http(s)://``, ``ftp://`` or ``doi:`` address of a zip that holds one release
        folder (``model.pth``, ``args.json``, ``vocab.json``), at its top or in a subfolder.
    known_hash
        The zip's hash as pooch takes it (``"sha256:<hex>"``, or another of pooch's
        algorithms): a download with another hash is refused. ``None``: no check; the
        SHA-256 of the download is logged and recorded in the cache, to pin it here later.

    Raises
    ------
    ValueError
        A name that cannot be a folder name, an address pooch cannot download, or a hash
        that is not ``[algorithm:]hex``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"A model name must start with a letter or digit and hold only letters, digits, "
            f"'.', '_' and '-' (it names a cache folder); got {name!r}."
        )
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        raise ValueError(
            f"The address of {name!r} must start with one of {', '.join(_SCHEMES)} (what "
            f"pooch downloads); got {url!r}. For a folder on disk, pass its path to "
            "load_pretrained instead."
        )
    if known_hash is not None and (not isinstance(known_hash, str) or not _HASH.match(known_hash)):
        raise ValueError(
            f"known_hash must be None or '[algorithm:]hex digest' (e.g. 'sha256:3f2a...'); "
            f"got {known_hash!r}."
        )
    if name in _REGISTRY:
        logger.info("Replacing the registered model %r (%s).", name, _REGISTRY[name].url)
    _REGISTRY[name] = RegisteredModel(name, url, known_hash)


def registered_models() -> dict[str, RegisteredModel]:
    """The registered models, by name (a copy)."""
    return dict(_REGISTRY)


def registered_model(name: str) -> RegisteredModel:
    """The entry of ``name``; an unknown name raises :class:`KeyError` listing the names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise KeyError(
            f"No model is registered as {name!r}; registered: {', '.join(sorted(_REGISTRY))}. "
            "Add one with cancergpt_scvi.pretrained.register_model(name, url)."
        ) from None


def cache_dir() -> Path:
    """The folder downloaded models are kept in.

    ``$CANCERGPT_SCVI_CACHE`` when set, else the platform's cache folder for
    ``cancergpt_scvi`` (``pooch.os_cache``, e.g. ``~/.cache/cancergpt_scvi`` on Linux). Read
    at each call, so setting the variable takes effect at once.
    """
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return Path(folder).expanduser()
    import pooch  # a dependency; imported here so that loading a folder does not need it

    return Path(pooch.os_cache("cancergpt_scvi"))


# The authors' release. Its hash is not pinned: the archive could not be downloaded when this
# entry was written, so no digest was seen (the first download logs and records it).
register_model("cancergpt", CANCERGPT_URL)
