"""Thumbnails and contact sheets: small JPEGs a person looks at, upright as viewers show them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

THUMB = 128  # the longer side of a thumbnail, in pixels
CELL = 112  # a contact sheet's cell
_BACKGROUND = (246, 246, 246)
_INK = (30, 30, 30)


def thumbnail(data: bytes | memoryview, size: int = THUMB) -> bytes | None:
    """A JPEG of at most ``size`` x ``size`` pixels, turned upright by its EXIF orientation
    (as viewers and ``datasets`` show it); what Pillow can decode of a damaged image; None
    when nothing can be decoded."""
    from PIL import Image, ImageFile, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (size, size))  # DCT scaling: a JPEG decodes small, fast
            previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = True  # a damaged image shows what is left
            try:
                upright = ImageOps.exif_transpose(image)
                rgb = upright.convert("RGB")
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
    except Exception:  # Pillow raises many types for data it cannot read
        return None
    rgb.thumbnail((size, size))
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=85)
    return out.getvalue()


@lru_cache(maxsize=4)
def _font(size: int) -> object:
    """DejaVu Sans from matplotlib's own files (the report's one required extra), else
    Pillow's built-in font."""
    from PIL import ImageFont

    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # no matplotlib, no FreeType: still a sheet, in the bitmap font
        return ImageFont.load_default()


@dataclass(frozen=True)
class Sheet:
    """A contact sheet: a title and the thumbnails, in the order drawn."""

    title: str
    thumbs: Sequence[bytes]
    columns: int = 8


def contact_sheet(sheet: Sheet, cell: int = CELL) -> bytes:
    """The sheet as one JPEG: a title strip over a grid of thumbnails, each centred in its
    cell."""
    from PIL import Image, ImageDraw

    columns = max(1, min(sheet.columns, len(sheet.thumbs)))
    rows = max(1, -(-len(sheet.thumbs) // columns))
    title_height = 30
    pad = 4
    font = _font(15)
    title_width = int(getattr(font, "getlength", lambda text: 8 * len(text))(sheet.title))
    width = max(columns * (cell + pad) + pad, title_width + 2 * pad + 8)
    height = title_height + rows * (cell + pad) + pad
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((pad + 2, 7), sheet.title, fill=_INK, font=font)  # type: ignore[arg-type]
    for n, data in enumerate(sheet.thumbs):
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((cell, cell))
            x = pad + (n % columns) * (cell + pad) + (cell - image.width) // 2
            y = title_height + pad + (n // columns) * (cell + pad) + (cell - image.height) // 2
            canvas.paste(image.convert("RGB"), (x, y))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=88)
    return out.getvalue()
