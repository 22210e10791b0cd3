"""Validation of user-supplied values before they reach storage or the database."""

from __future__ import annotations

import re
import unicodedata

MAX_FILENAME_LENGTH = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOT_RUNS = re.compile(r"\.{2,}")


def sanitize_filename(filename: str, fallback: str = "upload") -> str:
    """A safe, short file name derived from a user's one.

    Path parts are dropped (``../../etc/passwd`` becomes ``passwd``), accents
    are folded to ASCII, anything outside ``[A-Za-z0-9._-]`` becomes ``_`` and
    leading dots are removed and runs of dots collapsed, so the result is never
    hidden or relative and never contains ``..`` at all. The
    result is used only as the last segment of a storage key, never as a
    path on its own.
    """
    name = (filename or "").replace("\x00", "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    name = _DOT_RUNS.sub(".", _UNSAFE.sub("_", name)).strip("._-")
    if not name:
        return fallback
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: MAX_FILENAME_LENGTH - len(ext) - 1].rstrip("._-") + "." + ext
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name
