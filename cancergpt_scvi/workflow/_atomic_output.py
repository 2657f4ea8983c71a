"""Write an output file so that it is complete or absent, whatever else runs or signals.

The file is written to a hidden temporary beside it whose name holds the writer's machine and
process id, then published in one step: a no-replace hard link (so of two runs to one output
exactly one wins) or, with ``overwrite``, :func:`os.replace`. SIGINT and SIGTERM inside
:func:`stop_on_signals` stop the run and remove the temporary; a later run removes the
temporaries of writers that died (``kill -9``, a crash).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# A temporary whose writer is gone, or older than this, is a leftover of a killed run (the age
# covers a process id reused by another program; a live writer keeps its file's mtime fresh).
_STALE_AFTER_S = 24 * 3600
# ".<output name>.<host tag>-<writer pid>-<8 random hex>.partial": the names temporary_name
# makes, and no other
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.partial")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived inside :func:`stop_on_signals`.

    A :class:`KeyboardInterrupt`, so code that cleans up on Ctrl-C cleans up on SIGTERM too.

    Parameters
    ----------
    signum
        The signal that arrived.
    written
        The output this run had already published when it arrived, else ``None``.
    """

    def __init__(self, signum: int, written: Path | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.written = written

    @property
    def exit_status(self) -> int:
        """The shell's status of a process ended by the signal: 128 + its number (130, 143)."""
        return 128 + self.signum


@dataclass
class _SignalState:
    """What :func:`stop_on_signals` met, kept because a raise in a finaliser is swallowed."""

    received: int | None = None
    written: Path | None = None


_state = _SignalState()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` for the duration of the block.

    Without this, SIGTERM ends Python without running any cleanup, and a Ctrl-C raised inside
    a finaliser (e.g. an HDF5 object's ``__del__``) is printed as "Exception ignored" and lost,
    so the run went on and exited 0. Here every signal is also recorded: the output is not
    published after one arrived, and the block ends with :class:`Interrupted` even where the
    first raise was swallowed. Outside the main thread (where Python cannot set handlers) the
    signals keep their usual effect.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        _state.received = signum
        raise Interrupted(signum, _state.written)

    _state.received, _state.written = None, None
    previous: dict[int, Callable | int | None] = {}
    try:
        for signum in _STOP_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
        yield
        raise_if_interrupted()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        _state.received, _state.written = None, None


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if a signal arrived inside :func:`stop_on_signals`."""
    if _state.received is not None:
        raise Interrupted(_state.received, _state.written)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block, so it runs whole or not at all."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        # a signal held back is delivered here, after the block
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


#: Longest file name (in characters) of common file systems (ext4, XFS, APFS, NTFS).
_MAX_NAME_LENGTH = 255


def temporary_name(out_path: Path, *, pid: int | None = None, host: str | None = None) -> Path:
    """A hidden name beside ``out_path`` (same file system, so publishing is one step).

    The name holds a tag of the machine and the writer's process id, so a later run can tell a
    dead writer's leftover from a file being written now (by this machine or, in a folder
    shared over the network, by another one).

    Parameters
    ----------
    out_path
        The output the temporary is for.
    pid
        The writer's process id; ``None``: this process.
    host
        The writer's host name; ``None``: this machine.
    """
    pid = os.getpid() if pid is None else pid
    tag = _host_tag(socket.gethostname() if host is None else host)
    tail = f".{tag}-{pid}-{secrets.token_hex(4)}.partial"
    name = out_path.name
    room = _MAX_NAME_LENGTH - len(tail) - 1  # the leading dot
    if len(name) > room:
        # a long output name would make the temporary's too long for the file system: keep
        # its start and a digest of the whole, so that the temporary stays unique
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: room - len(digest) - 1]}~{digest}"
    return out_path.with_name(f".{name}{tail}")


def _host_tag(host: str) -> str:
    """Eight hex digits naming a machine (a host name may hold any character)."""
    return hashlib.sha256(host.encode()).hexdigest()[:8]


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporaries in ``folder`` whose writer has died (e.g. ``kill -9``).

    Only names :func:`temporary_name` makes are considered, whatever output they were for; the
    file of a writer that is still running is kept. Whether a writer on another machine lives
    cannot be told from here: its temporaries are removed only once a day old.
    """
    here = _host_tag(socket.gethostname())
    for tmp in folder.glob(".*.partial"):
        match = _TEMPORARY.fullmatch(tmp.name)
        if match is None:
            continue  # not a name temporary_name makes: not ours to delete
        pid = int(match.group("pid"))
        if match.group("host") == here and pid == os.getpid():
            continue  # this process is alive and may be writing it
        try:
            age = time.time() - tmp.stat().st_mtime
        except OSError:
            continue  # gone meanwhile
        dead = match.group("host") == here and not _process_alive(pid)
        if dead or age > _STALE_AFTER_S:
            logger.info("Removing %s, left behind by an interrupted run.", tmp)
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (``True`` where that cannot be told)."""
    if os.name != "posix":
        return True  # os.kill would terminate it on Windows; the age limit applies instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def write_atomically(write: Callable[[Path], None], out_path: Path, overwrite: bool) -> None:
    """Write a file with ``write(temporary)``, flush it to disk, then publish it as ``out_path``.

    Parameters
    ----------
    write
        Writes the whole file to the path it is given, e.g. ``adata.write_h5ad``.
    out_path
        The file to publish.
    overwrite
        Whether to replace an existing ``out_path``. Without it, the check that ``out_path``
        does not exist is made by the publishing step itself, so of several runs to one output
        exactly one publishes and the others raise :class:`FileExistsError`.

    Raises
    ------
    FileExistsError
        ``out_path`` exists (e.g. another run published it meanwhile) and ``overwrite`` is
        ``False``; this run's file is discarded.
    Interrupted
        A signal arrived inside :func:`stop_on_signals`; nothing is published after it.
    """
    raise_if_interrupted()
    tmp = temporary_name(out_path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        with _signals_deferred():
            raise_if_interrupted()  # a signal whose raise a finaliser swallowed while writing
            if overwrite:
                os.replace(tmp, out_path)
            else:
                _publish_without_replacing(tmp, out_path)
            _state.written = out_path  # what an interruption from here on reports
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _publish_without_replacing(tmp: Path, out_path: Path) -> None:
    """Give ``tmp`` the name ``out_path`` in one step that fails if ``out_path`` exists."""
    try:
        os.link(tmp, out_path)  # fails with FileExistsError if the name is taken
    except FileExistsError:
        raise _exists_now(out_path) from None
    except OSError:
        # no hard links on this file system (e.g. FAT, some network shares): claim the name by
        # an exclusive create, then move the complete file over the empty claim
        try:
            os.close(os.open(out_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise _exists_now(out_path) from None
        try:
            os.replace(tmp, out_path)
        except BaseException:
            with contextlib.suppress(OSError):
                if out_path.stat().st_size == 0:  # still our empty claim
                    out_path.unlink()
            raise
    else:
        tmp.unlink()


def _exists_now(out_path: Path) -> FileExistsError:
    """The refusal of a run that found ``out_path`` taken when it came to publish."""
    return FileExistsError(
        f"{out_path} exists: another run wrote it while this one was working, and this run's "
        "output was discarded. Pass overwrite=True (--overwrite) to replace it, or another "
        "output path."
    )
