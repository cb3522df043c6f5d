"""Text from the lake made safe to show: terminals, logs and reports see no control or bidi characters.

Entity names, keys and other strings read from log data can hold C0/C1 control characters, bidi
overrides (U+202E), zero-width characters (U+200B) or line separators. Printed raw they can rewrite
a terminal line, reorder what an analyst reads, or forge a log line. Every display path (``scoring
show``, CLI prints, log lines with entity names) writes them as ``\\xNN`` / ``\\uNNNN`` escapes and
counts them, so a report can say how many were escaped. Backslashes are doubled, so an escape cannot
be forged by the data itself.
"""

from __future__ import annotations

import unicodedata
from typing import Any

#: Unicode categories written as escapes: control, format (bidi, zero-width), surrogate, separators.
UNSAFE_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")


def is_unsafe_char(ch: str) -> bool:
    """Whether ``ch`` is a control, format (bidi, zero-width), surrogate or line/paragraph separator."""
    return ch != "\\" and unicodedata.category(ch) in UNSAFE_CATEGORIES


def escape_char(ch: str) -> str:
    """``ch`` as a Python-style escape: ``\\x1b``, ``\\u202e``, ``\\U000e0001``."""
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(value: Any, limit: int | None = None) -> tuple[str, int]:
    """``value`` as printable text and the number of characters that were escaped.

    :param value: any value; non-strings are shown with ``str()``.
    :param limit: keep at most this many characters of the input (``...`` marks a cut).
    """
    text = value if isinstance(value, str) else str(value)
    cut = text if limit is None else text[:limit]
    tail = "..." if limit is not None and len(text) > limit else ""
    if cut.isprintable() and "\\" not in cut:  # every unsafe category is unprintable: nothing to escape
        return cut + tail, 0
    count = 0
    parts = []
    for ch in cut:
        if ch == "\\":
            parts.append("\\\\")
        elif is_unsafe_char(ch):
            parts.append(escape_char(ch))
            count += 1
        else:
            parts.append(ch)
    return "".join(parts) + tail, count


class Escaper:
    """Escapes many strings and keeps the running count (for a report's trailer line)."""

    def __init__(self) -> None:
        self.escaped = 0

    def __call__(self, value: Any, limit: int | None = None) -> str:
        text, n = escape(value, limit)
        self.escaped += n
        return text


def error_line(exc: BaseException) -> str:
    """An input error as one printable line (file-system errors name their path)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc)
    return escape(" ".join(text.split()), 2000)[0]
