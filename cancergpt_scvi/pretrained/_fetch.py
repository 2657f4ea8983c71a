"""Downloading a registered model into the cache: complete and checked, or not there at all.

A download goes to a hidden temporary folder of the cache (``.<name>-<host>-<pid>-*.partial``),
is checked against its known hash, unzipped there, and its release folder read by the strict
release reader; only then is the folder published under its final name by one rename. A failed,
interrupted or killed download, a truncated zip, a wrong hash or a folder the reader refuses
leaves no folder under a final name, so no later call takes it for a model; the temporaries of
killed downloads are removed by a later call.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import zipfile
from pathlib import Path

from cancergpt_scvi.release import ReleaseCheckpointError, read_release_checkpoint

from ._registry import RegisteredModel, cache_dir, registered_model

logger = logging.getLogger(__name__)

#: What the cache records beside each fetched model folder's files.
SOURCE_FILE = "cancergpt_scvi_source.json"
_RELEASE_FILES = ("model.pth", "args.json", "vocab.json")
_PARTIAL = re.compile(r"^\..+-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[^/]*\.partial$")


class ModelDownloadError(OSError):
    """A registered model could not be downloaded, or its download is not a valid model."""


def fetch_model(name: str) -> Path:
    """The folder of a registered model, downloaded into the cache on first use.

    The first call downloads the zip (with a progress bar), checks its hash when the entry
    has one, unzips it, checks the release folder in it as
    :meth:`~cancergpt_scvi.model.CancerGPTModel.load_pretrained` does, records the SHA-256 of
    the zip and of ``model.pth`` in ``cancergpt_scvi_source.json``, and publishes the folder in
    the cache (:func:`cache_dir`) in one step. Later calls return that folder without any
    network access.

    Parameters
    ----------
    name
        A name of :func:`registered_models`, e.g. ``"cancergpt"``.

    Returns
    -------
    The model folder (``model.pth``, ``args.json``, ``vocab.json``).

    Raises
    ------
    KeyError
        No model is registered under ``name``.
    ModelDownloadError
        The download failed or was refused (network error, wrong hash, not a zip, no valid
        release folder in it). The message names the address and how to fetch it by hand;
        nothing is left in the cache.
    """
    entry = registered_model(name)
    root = cache_dir()
    folder = root / cached_folder_name(entry)
    if folder.is_dir():
        _check_cached_hash(folder, entry)
        return folder
    return _download(entry, root, folder)


def cached_folder_name(entry: RegisteredModel) -> str:
    """``<name>-<12 hex of the URL's SHA-256>``: another address of a name is another folder."""
    return f"{entry.name}-{hashlib.sha256(entry.url.encode()).hexdigest()[:12]}"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fallback(entry: RegisteredModel, what: str, root: Path) -> str:
    return (
        f"Could not fetch the model {entry.name!r} from {entry.url}: {what}. Nothing was kept "
        f"in the cache ({root}). To fetch it by hand: download {entry.url}, unzip it, and pass "
        "the folder that holds model.pth, args.json and vocab.json, "
        "CancerGPTModel.load_pretrained('path/to/folder', adata) (or --model path/to/folder)."
    )


def _download(entry: RegisteredModel, root: Path, folder: Path) -> Path:
    import pooch  # a dependency; imported here so that loading a folder does not need it

    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(root)
    prefix = f".{entry.name}-{_host_tag()}-{os.getpid()}-"
    work = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=root))
    try:
        logger.info("Downloading the model %r from %s into %s.", entry.name, entry.url, root)
        try:
            archive = Path(
                pooch.retrieve(
                    entry.url,
                    known_hash=entry.known_hash,
                    fname="model.zip",
                    path=work,
                    progressbar=True,
                )
            )
        except Exception as err:  # requests' and pooch's errors (HTTP, connection, hash)
            what = f"the download failed ({type(err).__name__}: {err})"
            raise ModelDownloadError(_fallback(entry, what, root)) from err
        try:
            # extracts beside the zip, into work / "unzipped"
            pooch.Unzip(extract_dir="unzipped")(str(archive), "download", None)
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            what = f"the download is not a complete zip archive (truncated?) ({err})"
            raise ModelDownloadError(_fallback(entry, what, root)) from err
        release = _release_folder(entry, work / "unzipped", root)
        try:
            read_release_checkpoint(release)
        except (ReleaseCheckpointError, FileNotFoundError, ValueError) as err:
            inside = release.relative_to(work / "unzipped")
            what = f"the folder {inside} in the zip is refused ({err})"
            raise ModelDownloadError(_fallback(entry, what, root)) from err
        source = {
            "name": entry.name,
            "url": entry.url,
            "layout": entry.layout,
            "archive_sha256": file_sha256(archive),
            "model_sha256": file_sha256(release / "model.pth"),
            "fetched": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        (release / SOURCE_FILE).write_text(json.dumps(source, indent=1))
        try:
            release.rename(folder)  # atomic; fails when another download published it first
        except OSError:
            if not folder.is_dir():
                raise
            logger.info("Another download published %s first; using it.", folder)
            return folder
        if entry.known_hash is None:
            logger.info(
                "The zip of %r has SHA-256 %s (no known hash was checked); pin it with "
                "register_model(%r, %r, known_hash='sha256:%s').",
                entry.name,
                source["archive_sha256"],
                entry.name,
                entry.url,
                source["archive_sha256"],
            )
        return folder
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _release_folder(entry: RegisteredModel, unzipped: Path, root: Path) -> Path:
    """The one folder of the unzipped tree that holds the three release files."""
    found = sorted(
        path.parent
        for path in unzipped.rglob(_RELEASE_FILES[0])
        if "__MACOSX" not in path.parts
        and all((path.parent / name).is_file() for name in _RELEASE_FILES)
    )
    if len(found) != 1:
        what = (
            "the zip holds no folder with model.pth, args.json and vocab.json"
            if not found
            else f"the zip holds {len(found)} folders with model.pth, args.json and vocab.json"
        )
        raise ModelDownloadError(_fallback(entry, what, root))
    return found[0]


def _check_cached_hash(folder: Path, entry: RegisteredModel) -> None:
    """A cached zip whose recorded SHA-256 is not the entry's known hash is refused."""
    if entry.known_hash is None:
        return
    algorithm, _, digest = entry.known_hash.rpartition(":")
    if algorithm not in ("", "sha256"):
        return  # only the SHA-256 is recorded
    try:
        recorded = json.loads((folder / SOURCE_FILE).read_text())["archive_sha256"]
    except (OSError, ValueError, KeyError):
        recorded = None
    if recorded != digest.lower():
        raise ModelDownloadError(
            f"The cached copy of {entry.name!r} ({folder}, from {entry.url}) has zip SHA-256 "
            f"{recorded}, not the registered known_hash {entry.known_hash}. Delete {folder} to "
            "download it again, or correct known_hash."
        )


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _remove_stale_partials(root: Path) -> None:
    """Remove the temporary folders of downloads on this machine whose process is gone."""
    host = _host_tag()
    for path in root.iterdir():
        match = _PARTIAL.match(path.name)
        if not match or match["host"] != host or _alive(int(match["pid"])):
            continue
        logger.info("Removing %s, left by a download that was stopped.", path)
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. the process of another user
        return True
    return True
