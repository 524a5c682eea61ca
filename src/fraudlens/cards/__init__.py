"""Card-transaction fraud detection."""

__all__: list[str] = []
