"""Decoding untrusted images with bounded memory.

A PNG of a few kilobytes can declare 20,000 x 20,000 pixels and inflate to gigabytes
(a "decompression bomb"). :func:`decode_image` reads the dimensions from the file header
(Pillow's ``Image.open`` is lazy: it parses the header and stops before the pixel data),
refuses an image over ``max_pixels`` with :class:`ImageTooLargeError` before a single
pixel is decoded, and only then decodes. Only PNG and JPEG are opened at all, so none of
Pillow's other decoders is reachable from a request. A JPEG of more than
:data:`MAX_JPEG_SCANS` scans is refused unread too: each scan is a pass over the whole
image, so a small file of many scans takes minutes to decode.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from fraudlens.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "MAX_JPEG_SCANS",
    "ImageTooLargeError",
    "check_image",
    "decode_image",
]

#: Largest image decoded by default: 4 megapixels (2048 x 2048; 12 MB as RGB). The
#: rendered account images are 64 x 288 (CNN look) or 250 x 150 (reference look).
DEFAULT_MAX_PIXELS = 4 * 1024 * 1024

#: Image formats that are decoded; anything else is refused unread.
FORMATS = ("PNG", "JPEG")

#: Most scans a JPEG may hold. A progressive JPEG is decoded scan by scan, each one a pass
#: over the whole image; encoders write about ten (Pillow: 10 in colour, 6 in grey). A
#: 65 KB JPEG of 2048 x 2048 pixels that repeats one scan 3,000 times had taken 14 s to
#: decode, and a 5 MB body of such scans would take over 20 minutes.
MAX_JPEG_SCANS = 100


class ImageTooLargeError(DataError):
    """An image whose header declares more pixels than the limit (the service answers 413).

    Attributes
    ----------
    width, height
        The declared size.
    max_pixels
        The limit.
    """

    def __init__(self, width: int, height: int, max_pixels: int) -> None:
        self.width = width
        self.height = height
        self.max_pixels = max_pixels
        super().__init__(
            f"the image is {width:,} x {height:,} pixels ({width * height:,}); "
            f"at most {max_pixels:,} pixels are decoded"
        )


def check_image(payload: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Read an image's size from its header, without decoding, and check it.

    Returns
    -------
    tuple of int
        ``(width, height)``.

    Raises
    ------
    ImageTooLargeError, DataError
        As :func:`decode_image`.
    """
    with _open(payload, max_pixels) as im:
        size = _checked_size(im, max_pixels)
        _check_scans(payload)
        return size


def decode_image(payload: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a PNG or JPEG into an RGB array ``(height, width, 3)``, uint8.

    Parameters
    ----------
    payload
        The encoded image.
    max_pixels
        Refuse images whose header declares more pixels than this.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    ImageTooLargeError
        The header declares more than ``max_pixels`` pixels (nothing was decoded).
    DataError
        The bytes are not a PNG or JPEG image, the image data is corrupt, or a JPEG holds
        more than :data:`MAX_JPEG_SCANS` scans (nothing was decoded).
    """
    import numpy as np
    from PIL import Image

    with _open(payload, max_pixels) as im:
        _checked_size(im, max_pixels)
        _check_scans(payload)
        try:
            im.load()
            rgb = im.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"the request body is not a decodable image: {exc}") from None
        return np.asarray(rgb)


def _open(payload: bytes, max_pixels: int) -> Image.Image:
    """Open lazily (header only), PNG or JPEG only."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(payload), formats=FORMATS)
    except Image.DecompressionBombError:
        # Pillow's own guard fires in open() for absurd sizes; report ours instead.
        width, height = _header_size(payload)
        raise ImageTooLargeError(width, height, max_pixels) from None
    except UnidentifiedImageError:
        # Pillow's message names an in-memory buffer object: of no use to a client.
        raise DataError(
            f"the request body ({len(payload):,} bytes) is not a JPEG or PNG image"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"the request body is not a decodable image: {exc}") from None


def _checked_size(im: Image.Image, max_pixels: int) -> tuple[int, int]:
    width, height = im.size
    if width * height > max_pixels:
        raise ImageTooLargeError(width, height, max_pixels)
    return width, height


def _check_scans(payload: bytes) -> None:
    """Refuse a JPEG of more than :data:`MAX_JPEG_SCANS` scans (DataError).

    Every scan starts with the marker bytes FF DA, which entropy-coded data never holds (an
    FF there is followed by 00 or a restart marker), so counting them counts every scan;
    other segments' bytes (an EXIF thumbnail's own scans, say) can only add to the count.
    """
    if payload[:2] != b"\xff\xd8":
        return
    scans = payload.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise DataError(
            f"the JPEG holds {scans:,} scans; at most {MAX_JPEG_SCANS} are decoded "
            "(each scan is a pass over the whole image)"
        )


# JPEG start-of-frame markers (they hold the image size); C4, C8 and CC are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _header_size(payload: bytes) -> tuple[int, int]:
    """Width and height declared by a PNG's IHDR chunk or a JPEG's frame header
    ((0, 0) when neither is found)."""
    if payload[:8] == b"\x89PNG\r\n\x1a\n" and payload[12:16] == b"IHDR":
        return int.from_bytes(payload[16:20], "big"), int.from_bytes(payload[20:24], "big")
    i = 2 if payload[:2] == b"\xff\xd8" else len(payload)
    while i + 9 <= len(payload) and payload[i] == 0xFF:
        marker = payload[i + 1]
        if marker in _SOF:
            height = int.from_bytes(payload[i + 5 : i + 7], "big")
            width = int.from_bytes(payload[i + 7 : i + 9], "big")
            return width, height
        i += 2 + int.from_bytes(payload[i + 2 : i + 4], "big")
    return 0, 0
