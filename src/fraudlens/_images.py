"""Decoding untrusted images with bounded memory.

A PNG of a few kilobytes can declare 20,000 x 20,000 pixels and inflate to gigabytes
(a "decompression bomb"). :func:`decode_image` reads the dimensions from the file header
(Pillow's ``Image.open`` is lazy: it parses the header and stops before the pixel data),
refuses an image over ``max_pixels`` with :class:`ImageTooLargeError` before a single
pixel is decoded, and only then decodes. Only PNG and JPEG are opened at all, so none of
Pillow's other decoders is reachable from a request. A JPEG of more than
:data:`MAX_JPEG_SCANS` scans is refused unread too: each scan is a pass over the whole
image, so a small file of many scans takes minutes to decode. The header of a JPEG (the
marker segments before its first scan) is walked by Pillow in Python, segment by segment
and stray byte by stray byte, before anything is decoded; it is checked first at the speed
of ``bytes.find``, and a header of more than :data:`MAX_JPEG_SEGMENTS` segments, more than
:data:`MAX_JPEG_STRAY_BYTES` fill or stray bytes, or more than
:data:`MAX_JPEG_PARSED_BYTES` bytes of the segments Pillow reads item by item is refused
unread: a 5 MB header of tiny segments took 3 to 5 s to open, once for the size check and
again for the decode. Pillow reads a PNG chunk by chunk in Python too, so a PNG of more
than :data:`MAX_PNG_CHUNKS` chunks is refused unread, its chunks counted from their lengths.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

from fraudlens.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "MAX_JPEG_PARSED_BYTES",
    "MAX_JPEG_SCANS",
    "MAX_JPEG_SEGMENTS",
    "MAX_JPEG_STRAY_BYTES",
    "MAX_PNG_CHUNKS",
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

#: Most marker segments a JPEG may hold before its first scan. Pillow reads the header in
#: Python, a few microseconds a segment, so 5 MB of 5-byte comments took 3 s to open (and
#: were opened twice, for the size check and the decode). Encoders write a few dozen: APP0
#: (JFIF), APP1 (EXIF, XMP), APP2 (an ICC profile, split in at most 255 chunks), APP13,
#: APP14, DQT, DHT, DRI, COM, SOF. 1,000 leaves room for the longest ICC profile besides
#: every other kind, and for more full-sized (64 KB) segments than the body limit holds;
#: 1,000 segments take Pillow about 4 ms.
MAX_JPEG_SEGMENTS = 1000

#: Most fill (FF) or stray bytes a JPEG may hold between the markers before its first
#: scan. The standard allows any number of FF bytes before a marker, and Pillow and
#: libjpeg skip other stray bytes; Pillow reads them one by one in Python (5 MB of FF took
#: 4 s to open). Encoders write none; 4,096 takes Pillow about 3 ms.
MAX_JPEG_STRAY_BYTES = 4096

#: Most bytes a JPEG may hold, before its first scan, in the segments whose content Pillow
#: reads item by item in Python: frame headers (SOF, 3 bytes a component), quantisation
#: tables (DQT, 65 or 129 bytes a table) and Photoshop resources (APP13). 5 MB of them
#: took 0.5 to 1 s to open, yet an image has one frame header of a few dozen bytes and at
#: most four tables (516 bytes), and Photoshop writes tens of kilobytes of resources. 256 KB
#: takes Pillow at most about 50 ms.
MAX_JPEG_PARSED_BYTES = 256 * 1024

#: Most chunks a PNG may hold. Pillow reads a PNG chunk by chunk in Python, a few
#: microseconds a chunk: every chunk before the image data when it opens the file, the image
#: data's chunks when it decodes them and every chunk after when it finishes, so 5 MB of
#: empty chunks took 2 s to open and as long again to decode. Encoders write a dozen chunks
#: besides the image data, which they split into chunks of 8 KB or more: under 700 for a
#: 5 MB body, about 4,000 for the largest image the pixel limit lets through unpacked.
#: 10,000 chunks take Pillow about 50 ms.
MAX_PNG_CHUNKS = 10_000


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
        more than :data:`MAX_JPEG_SCANS` scans or a header past the limits
        :data:`MAX_JPEG_SEGMENTS`, :data:`MAX_JPEG_STRAY_BYTES` and
        :data:`MAX_JPEG_PARSED_BYTES` (nothing was decoded).
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

    if payload[:3] == b"\xff\xd8\xff":
        _check_jpeg_header(payload)  # before Pillow walks the header in Python
    elif payload[:8] == _PNG_SIGNATURE:
        _check_png_chunks(payload)  # before Pillow walks the chunks in Python
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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png_chunks(payload: bytes) -> None:
    """Refuse a PNG of more than :data:`MAX_PNG_CHUNKS` chunks up to its end chunk
    (DataError). Each chunk is stepped over by its length, its content unread, and the walk
    stops past the limit, so it runs at most :data:`MAX_PNG_CHUNKS` + 1 times whatever the
    payload."""
    i, n, chunks = len(_PNG_SIGNATURE), len(payload), 0
    while i + 8 <= n:
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise DataError(
                f"the PNG holds over {MAX_PNG_CHUNKS:,} chunks (each one read in Python); "
                "it is refused unread"
            )
        if payload[i + 4 : i + 8] == b"IEND":
            return
        # length, type, data, CRC
        i += 12 + int.from_bytes(payload[i : i + 4], "big")


# JPEG start-of-frame markers (they hold the image size); C4, C8 and CC are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _header_size(payload: bytes) -> tuple[int, int]:
    """Width and height declared by a PNG's IHDR chunk or a JPEG's frame header
    ((0, 0) when neither is found)."""
    if payload[:8] == _PNG_SIGNATURE and payload[12:16] == b"IHDR":
        return int.from_bytes(payload[16:20], "big"), int.from_bytes(payload[20:24], "big")
    if payload[:3] == b"\xff\xd8\xff":
        return _check_jpeg_header(payload)
    return 0, 0


# JPEG markers that Pillow reads without a length (RST0-7, SOI, EOI, the extensions JPG
# and JPG0-13); those it reads as frame headers (SOF, and DHP, the hierarchical one); and
# those whose content it reads item by item in Python (see MAX_JPEG_PARSED_BYTES): frame
# headers, DQT, APP13. Any other marker is followed by its length. (Pillow 13's table.)
_STANDALONE = frozenset([*range(0xD0, 0xDA), 0xC8, *range(0xF0, 0xFE)])
_FRAME = _SOF | {0xDE}
_PARSED = _FRAME | {0xDB, 0xED}
_NOT_FF = re.compile(rb"[^\xff]")


def _check_jpeg_header(payload: bytes) -> tuple[int, int]:
    """Walk a JPEG's marker segments up to its first scan (SOS, where Pillow stops reading
    the header) as Pillow does, and return the size its last frame header declares ((0, 0)
    if none). DataError when the header holds more than :data:`MAX_JPEG_SEGMENTS`
    segments, :data:`MAX_JPEG_STRAY_BYTES` fill or stray bytes or
    :data:`MAX_JPEG_PARSED_BYTES` bytes of SOF, DQT and APP13 segments.

    Each pass of the loop takes one marker or at least one stray byte, and the walk stops
    past either limit, so it runs at most a few thousand times whatever the payload; runs of
    stray bytes are skipped with ``bytes.find`` and a regular expression, which look no
    further than the stray bytes still allowed, so the whole walk reads a bounded number of
    bytes however long the payload is.
    """
    size = (0, 0)
    segments = stray = parsed = 0
    i, n = 2, len(payload)
    while i < n:
        # Look no further than the stray bytes still allowed (and the marker after them).
        end = min(n, i + MAX_JPEG_STRAY_BYTES - stray + 2)
        if payload[i] != 0xFF:  # stray bytes up to the next FF
            j = payload.find(b"\xff", i, end)
            j = end if j < 0 else j
            stray += j - i
        else:  # FF bytes: the last one starts a marker, any before it are fill
            found = _NOT_FF.search(payload, i, end)
            j = end if found is None else found.start()
            stray += j - i - 1
        if stray > MAX_JPEG_STRAY_BYTES:
            raise DataError(
                f"the JPEG holds over {MAX_JPEG_STRAY_BYTES:,} fill or stray bytes between "
                "the markers of its header; they are refused unread"
            )
        if j >= n or payload[j - 1] != 0xFF:
            i = j
            continue
        marker, i = payload[j], j + 1
        if marker == 0x00:  # FF 00 outside a scan: skipped as one stray byte
            stray += 1
            continue
        if marker == 0xDA:  # start of scan: the header ends
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise DataError(
                f"the JPEG holds over {MAX_JPEG_SEGMENTS:,} marker segments before its "
                "image data (encoders write a few dozen); it is refused unread"
            )
        if marker in _STANDALONE:
            continue
        length = max(int.from_bytes(payload[i : i + 2], "big"), 2)
        if marker in _PARSED:
            parsed += length
            if parsed > MAX_JPEG_PARSED_BYTES:
                raise DataError(
                    f"the JPEG holds over {MAX_JPEG_PARSED_BYTES:,} bytes of frame headers, "
                    "quantisation tables and Photoshop resources before its image data; "
                    "it is refused unread"
                )
            if marker in _FRAME and i + 7 <= n:
                height = int.from_bytes(payload[i + 3 : i + 5], "big")
                width = int.from_bytes(payload[i + 5 : i + 7], "big")
                size = (width, height)
        i += length
    return size
