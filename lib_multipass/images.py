"""Reading the user's images: files, or inline base64 as API clients send them (a data URL or
bare base64), with errors that say what is wrong and how to fix it."""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import MultipassError

DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,", re.IGNORECASE)
#: how bare base64 of a PNG, JPEG, WebP or GIF begins (a path never does)
BASE64_MAGIC = ("iVBORw0KGgo", "/9j/", "UklGR", "R0lGOD")


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


def longer_side(box: Box) -> int:
    """A box's longer side: a face box's is the unit a person's body is counted in."""
    return max(box[2] - box[0], box[3] - box[1])


def is_inline(source: str | Path) -> bool:
    """True for a base64 image (data URL or bare base64), False for a path."""
    return isinstance(source, str) and (bool(DATA_URL.match(source)) or source.startswith(BASE64_MAGIC))


def describe(source: str) -> str:
    """What infotext and logs show for an image source: never a whole base64 blob."""
    return f"inline image ({len(source) * 3 // 4 // 1024} KB)" if is_inline(source) else source


def encode_png(image: Image.Image) -> str:
    """The image as bare base64 PNG (what the API answers; `decode_image` reads it back)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(data: str, what: str = "image") -> Image.Image:
    """A base64 image (data URL or bare), fully loaded."""
    try:
        raw = base64.b64decode(DATA_URL.sub("", data.strip(), count=1), validate=False)
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            return image
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as err:
        raise MultipassError(f"{what} is not a base64 PNG/JPEG/WebP image ({err.__class__.__name__}); "
                             "send the file's bytes as base64 or a data URL") from None


def open_image(source: str | Path, what: str) -> Image.Image:
    """The image in `source` (a path or inline base64), fully loaded; `what` names it in errors."""
    if is_inline(source):
        return decode_image(str(source), what)
    try:
        with Image.open(source) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise MultipassError(f"{what} {str(source)!r} does not exist; give a PNG or JPEG file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise MultipassError(f"{what} {str(source)!r} cannot be read as an image ({err}); give a PNG or JPEG") from None
