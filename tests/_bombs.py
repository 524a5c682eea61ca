"""Decompression bombs for the hostile-input tests: tiny files that declare huge images."""

from __future__ import annotations

import itertools
import struct
import zlib

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bomb(width: int, height: int, *, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A valid PNG of ``width`` x ``height`` black pixels, made with zlib's best
    compression: 20000 x 20000 at 1 bit grey is about 48 KB, 13000 x 13000 RGB about 490 KB.
    """
    row_bytes = (width * _CHANNELS[color_type] * bit_depth + 7) // 8
    row = b"\x00" * (1 + row_bytes)  # filter byte 0, then zero samples
    comp = zlib.compressobj(9)
    block = 64
    parts = [comp.compress(row * block) for _ in range(height // block)]
    parts.append(comp.compress(row * (height % block)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def png_chunk_bomb(total: int = 5_000_000, *, split_idat: int = 0) -> bytes:
    """A valid 64 x 64 PNG padded after its header to about ``total`` bytes of empty
    ancillary chunks (12 bytes each), or, with ``split_idat``, whose image data is split
    into that many chunks instead (and no padding). Pillow reads a PNG chunk by chunk in
    Python: 5 MB of empty chunks took 2 s to open and as long again to decode."""
    row = b"\x00" * (1 + 64 * 3)
    data = zlib.compress(row * 64, 0)  # stored: 12 KB, enough to split in 2,000 chunks
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    if split_idat:
        cut = [len(data) * k // split_idat for k in range(split_idat + 1)]
        idat = b"".join(_chunk(b"IDAT", data[a:b]) for a, b in itertools.pairwise(cut))
        return head + idat + _chunk(b"IEND", b"")
    pad = _chunk(b"prVt", b"") * ((total - len(head) - len(data) - 24) // 12)
    return head + pad + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def jpeg_scan_bomb(extra_scans: int, size: int = 2048) -> bytes:
    """A valid progressive grey JPEG of ``size`` x ``size`` pixels whose last scan is
    repeated ``extra_scans`` more times (16 bytes each): libjpeg decodes every scan as a
    pass over the whole image, so 3,000 of them (65 KB) take seconds."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (size, size), 128).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    assert data.endswith(b"\xff\xd9")
    last_scan = data[data.rindex(b"\xff\xda") : -2]
    return data[:-2] + last_scan * extra_scans + b"\xff\xd9"


def jpeg_header_bomb(kind: str, total: int = 5_000_000) -> bytes:
    """A valid 64 x 64 JPEG whose header is padded, right after its start-of-image marker,
    to about ``total`` bytes of ``kind``: ``"comments"`` (5-byte COM segments),
    ``"app"`` (4-byte empty APP1 segments), ``"fill"`` (runs of 1,000 FF fill bytes, each
    before a 5-byte COM segment), ``"fill run"`` (one run of FF fill bytes) or
    ``"tables"`` (64 KB DQT segments of 65-byte quantisation tables). Pillow reads a header
    in Python, segment by segment and fill byte by fill byte: 5 MB of any of them took
    0.5 to 5 s to open."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(buf, "JPEG")
    data = buf.getvalue()
    assert data.startswith(b"\xff\xd8")
    tables = (b"\x00" + b"\x01" * 64) * 1008
    unit = {
        "comments": b"\xff\xfe\x00\x03x",
        "app": b"\xff\xe1\x00\x02",
        "fill": b"\xff" * 1000 + b"\xfe\x00\x03x",
        "fill run": b"\xff",
        "tables": b"\xff\xdb" + struct.pack(">H", len(tables) + 2) + tables,
    }[kind]
    return data[:2] + unit * ((total - len(data)) // len(unit)) + data[2:]
