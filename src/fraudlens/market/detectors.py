"""Market detectors on the shared detector API.

- :class:`CNNDetector` (``market-cnn``): trades rendered over the bars as small images,
  classified by a CNN trained in PyTorch and served through ONNX Runtime.
- :class:`FeatureDetector` (``market-features``): gradient boosting on features read from
  the trades and their bars directly.

Both take a :class:`~fraudlens.market.data.MarketData` and return one score per account,
in ``data.account_ids`` order.
"""

from fraudlens.market._cnn import CNNDetector
from fraudlens.market._gbm import FeatureDetector

__all__ = ["CNNDetector", "FeatureDetector"]
