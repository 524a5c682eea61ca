"""``python -m fraudlens.cli``: the same as the ``fraudlens`` console script."""

from fraudlens.cli import main

main()
