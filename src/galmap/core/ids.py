"""Galaxy identifiers that are safe to use in file names.

Every galaxy has a string ``id`` made of ``[A-Za-z0-9_.-]`` only, so it can become
part of a path without escaping its directory.
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize_id(raw: str) -> str:
    """Turn an arbitrary object name into a path-safe id.

    Runs of characters outside ``[A-Za-z0-9_.-]`` become ``_``; leading dots are
    replaced so the result is never ``.``/``..`` or a hidden file name.

    >>> sanitize_id("J123456.7+012345")
    'J123456.7_012345'
    >>> sanitize_id("../../etc/passwd")
    '__.._etc_passwd'
    """
    text = _UNSAFE_CHARS.sub("_", str(raw).strip())
    if text.startswith("."):
        text = "_" + text.lstrip(".")
    if not text or text == "_":
        raise ValueError(f"object name {raw!r} has no usable characters for an id")
    return text


def is_safe_id(value: str) -> bool:
    """True if ``value`` is already a path-safe id."""
    return bool(_SAFE.match(value)) and not value.startswith(".")


def mock_id(index: int) -> str:
    """The id of the ``index``-th galaxy of the mock survey (``mock-0000042``)."""
    return f"mock-{index:07d}"
