"""How much of a caller's own input an error message repeats.

Error replies of the service and reasons of dead-lettered messages quote the bad value,
so a user sees what was wrong; a hostile value of megabytes must not come back whole
(a 5 MB body of bad values used to get a 100 MB reply). :func:`clip_echoes` cuts every
quoted value, or run of text without blanks, longer than :data:`MAX_ECHO_CHARS`
characters there with an ellipsis, and the whole text at :data:`MAX_REPLY_CHARS`.
:func:`hide_password` keeps a password out of a message that quotes a URL.
"""

from __future__ import annotations

import re

__all__ = ["MAX_ECHO_CHARS", "MAX_REPLY_CHARS", "clip_echoes", "cut", "hide_password"]

#: Longest quoted value, or run of text without blanks, repeated whole.
MAX_ECHO_CHARS = 80
#: Longest text :func:`clip_echoes` returns.
MAX_REPLY_CHARS = 2000
# A quoted value (as repr() and the error messages quote them) or a run without blanks.
_TOKEN = re.compile(r"""'[^'\n]*'|"[^"\n]*"|[^\s'"]+""")
_ELLIPSIS = "\u2026"


def _clip_token(match: re.Match[str]) -> str:
    token = match.group(0)
    if len(token) <= MAX_ECHO_CHARS:
        return token
    if token[0] in "'\"":
        return token[: MAX_ECHO_CHARS - 2] + _ELLIPSIS + token[0]
    return token[: MAX_ECHO_CHARS - 1] + _ELLIPSIS


def clip_echoes(text: str, max_chars: int = MAX_REPLY_CHARS) -> str:
    """``text`` with every quoted value or run without blanks longer than
    :data:`MAX_ECHO_CHARS` cut there with an ellipsis (a quoted one keeps its closing
    quote), and the whole cut at ``max_chars``.

    >>> clip_echoes("not a number: '" + "x" * 500 + "'") == (
    ...     "not a number: '" + "x" * 77 + "\u2026'"
    ... )
    True
    """
    if len(text) <= MAX_ECHO_CHARS:
        return text
    # The pattern is linear (an unclosed quote is scanned to the end of its line once);
    # a text of megabytes is cut first all the same.
    clipped = _TOKEN.sub(_clip_token, text[: 16 * max_chars])
    if len(clipped) > max_chars:
        clipped = clipped[: max_chars - 1] + _ELLIPSIS
    return clipped


def cut(text: str, most: int) -> str:
    """``text`` cut to ``most`` characters, ``...`` marking the cut: an error line's
    quote of one value (a cell, a column name, a model name given on the command line).
    """
    return text if len(text) <= most else text[: most - 3] + "..."


def hide_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part as ``***``: for a URL
    too malformed for its library to render without it (an error message quotes it)."""
    return re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", url)
