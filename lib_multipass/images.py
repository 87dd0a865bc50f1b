"""Reading the user's image files, with errors that say what is wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import MultipassError


def open_image(path: str | Path, what: str) -> Image.Image:
    """The image in `path`, fully loaded; `what` names it in errors ("mask image", ...)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise MultipassError(f"{what} {str(path)!r} does not exist; give a PNG or JPEG file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise MultipassError(f"{what} {str(path)!r} cannot be read as an image ({err}); give a PNG or JPEG") from None
