"""Brokerage account-takeover detection on trades and 5-minute bars."""

from fraudlens.market.data import MarketData, attach_bars, window

__all__ = ["MarketData", "attach_bars", "window"]
