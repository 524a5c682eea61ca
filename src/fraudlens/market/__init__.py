"""Brokerage account-takeover detection on trades and 5-minute bars.

Heavy parts (detectors, rendering, the simulator) are imported from their modules:
``fraudlens.market.detectors``, ``fraudlens.market.render``, ``fraudlens.market.simulate``.
"""

from fraudlens.market.data import (
    MarketData,
    attach_bars,
    import_reference,
    load_market,
    load_market_files,
    window,
    write_market,
)

__all__ = [
    "MarketData",
    "attach_bars",
    "import_reference",
    "load_market",
    "load_market_files",
    "window",
    "write_market",
]
