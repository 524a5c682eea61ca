"""``fraudlens quickstart``: the whole market and cards flow on embedded defaults."""

from __future__ import annotations


def quickstart() -> None:
    """Run simulate, train, evaluate and score end to end."""
    raise NotImplementedError
