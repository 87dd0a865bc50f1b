"""Test photos built from scikit-image's bundled pictures (no download)."""

from PIL import Image
from skimage import data

#: where each astronaut sits in `two_people()`: (scale, x offset of the left one, of the right one, y offset)
PAIR_SCALE, PAIR_LEFT_X, PAIR_RIGHT_X, PAIR_Y = 448 / 512, 16, 560, 64


def two_people() -> Image.Image:
    """Two astronauts side by side on a grey canvas (the right one mirrored), 1024x512."""
    photo = Image.fromarray(data.astronaut())
    canvas = Image.new("RGB", (1024, 512), (128, 128, 128))
    canvas.paste(photo.resize((448, 448)), (PAIR_LEFT_X, PAIR_Y))
    canvas.paste(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((448, 448)), (PAIR_RIGHT_X, PAIR_Y))
    return canvas
