"""A signed value (session cookie) with its signature altered."""

from __future__ import annotations


def tampered_signature(signed: str) -> str:
    """``signed`` with one character inside its trailing base64 signature changed.

    Not the last character: it carries two bits that base64 decoding drops, so the
    signature verifies under four spellings of it, and a change there alone may leave
    the signature's bytes as they were.
    """
    at = len(signed) - 5
    assert signed.rfind(".") < at, "the value has no signature of 5 characters or more"
    return signed[:at] + ("B" if signed[at] == "A" else "A") + signed[at + 1 :]
