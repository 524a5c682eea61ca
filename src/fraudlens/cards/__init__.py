"""Card-transaction fraud detection.

The parts are imported from their modules, so importing the package stays cheap:
``fraudlens.cards.data`` (tables), ``fraudlens.cards.simulate``, ``fraudlens.cards.features``,
``fraudlens.cards.detectors``, ``fraudlens.cards.explain``, ``fraudlens.cards.evaluate`` and
``fraudlens.cards.benchmark``.
"""

__all__: list[str] = []
