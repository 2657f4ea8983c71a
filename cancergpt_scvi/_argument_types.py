"""Arguments of the wrong type, refused with a message naming the argument."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def check_whole_number(
    name: str, value: object, minimum: int | None = None, optional: bool = False
) -> None:
    """Refuse ``value`` unless it is an integer (not a bool), at least ``minimum``.

    Parameters
    ----------
    name
        The argument's name, for the message.
    value
        What was passed.
    minimum
        Smallest value allowed.
    optional
        ``None`` is allowed.

    Raises
    ------
    TypeError
        Not an integer (e.g. ``1.5`` or ``"3"``).
    ValueError
        Below ``minimum``.
    """
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")


def names_list(name: str, value: Iterable[str] | None) -> list[str] | None:
    """``value`` as a list of names; a single string is refused rather than read as letters.

    Raises
    ------
    TypeError
        ``value`` is a string (or bytes) instead of a list of names.
    """
    if value is None:
        return None
    if isinstance(value, str | bytes):
        raise TypeError(
            f"{name} must be a list of names, got the string {value!r} (which would be read "
            f"letter by letter); pass {name}=[{value!r}]."
        )
    return [str(v) for v in value]


def names_sequence(name: str, value: Sequence[str]) -> list[str]:
    """As :func:`names_list`, for an argument that may not be ``None``."""
    out = names_list(name, value)
    return [] if out is None else out
