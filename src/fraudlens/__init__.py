"""fraudlens: local-first fraud detection for brokerages and card issuers."""

from fraudlens.errors import (
    ConfigError,
    DataError,
    FraudlensError,
    ModelNotFoundError,
    QueueError,
)

__all__ = [
    "ConfigError",
    "DataError",
    "FraudlensError",
    "ModelNotFoundError",
    "QueueError",
    "__version__",
]

__version__ = "0.1.0"
