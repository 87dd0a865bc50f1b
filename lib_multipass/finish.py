"""The last pixel steps: super resolution, colour grading (a film look or a `.cube` LUT),
then film grain; and what the standalone engine needs for them, checked up front.

They run on the finished composite, after the person and face passes (in the WebUI after
its face restoration too), so the whole image shares one look and one grain: a subject
in-painted into a graded, grainy scene would otherwise stand out as the clean part.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageFilter

from .errors import OptionsError
from .image_models import KNOWN
from .options import LANCZOS, MultipassOptions

LUT_POINTS = 33  # per channel, as most .cube files


def _saturate(r: float, g: float, b: float, amount: float) -> tuple[float, float, float]:
    grey = 0.299 * r + 0.587 * g + 0.114 * b
    return grey + (r - grey) * amount, grey + (g - grey) * amount, grey + (b - grey) * amount


def _s_curve(x: float, contrast: float) -> float:
    """Contrast around the middle grey; 0 and 1 stay where they are."""
    return x + contrast * (x - 0.5) * 4 * x * (1 - x)


def _velvia(r: float, g: float, b: float) -> tuple[float, float, float]:
    """Fujichrome Velvia: deep saturation, hard contrast, cool greens and blues."""
    r, g, b = _saturate(r, g, b, 1.4)
    return _s_curve(r, 0.25), _s_curve(g, 0.25) * 1.01, _s_curve(b, 0.25) * 1.03


def _portra(r: float, g: float, b: float) -> tuple[float, float, float]:
    """Kodak Portra: soft contrast, lifted shadows, warm and gentle on skin."""
    r, g, b = _saturate(r, g, b, 0.9)
    lift = 0.035
    return (lift + (1 - lift) * _s_curve(r, -0.1) * 1.02, lift + (1 - lift) * _s_curve(g, -0.1),
            lift + (1 - lift) * _s_curve(b, -0.1) * 0.96)


def _ektar(r: float, g: float, b: float) -> tuple[float, float, float]:
    """Kodak Ektar: vivid, fine, punchy reds, neutral greys."""
    r, g, b = _saturate(r, g, b, 1.25)
    return _s_curve(r, 0.15) * 1.02, _s_curve(g, 0.15), _s_curve(b, 0.15)


PRESETS: dict[str, Callable[[float, float, float], tuple[float, float, float]]] = {
    "film velvia": _velvia, "film portra": _portra, "ektar": _ektar}
PRESET_NAMES = ("Film Velvia", "Film Portra", "Ektar")


def _clipped(look: Callable[[float, float, float], tuple[float, float, float]]):
    return lambda r, g, b: tuple(min(1.0, max(0.0, v)) for v in look(r, g, b))


@lru_cache(maxsize=8)
def _preset_lut(name: str) -> ImageFilter.Color3DLUT:
    return ImageFilter.Color3DLUT.generate(LUT_POINTS, _clipped(PRESETS[name]))


def read_cube(path: str | Path) -> ImageFilter.Color3DLUT:
    """A 3D LUT from an Adobe/Resolve `.cube` file (red changes fastest, as Pillow wants)."""
    where = f"color_grading {str(path)!r}"
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise OptionsError(f"{where}: cannot read it ({err.strerror or err.__class__.__name__})", "color_grading") from None
    size, low, high, table = 0, [0.0] * 3, [1.0] * 3, []
    for number, line in enumerate(lines, start=1):
        words = line.split("#", 1)[0].split()
        if not words or words[0] == "TITLE":
            continue
        key = words[0].upper()
        try:
            if key == "LUT_3D_SIZE":
                size = int(words[1])
            elif key == "LUT_1D_SIZE":
                raise OptionsError(f"{where}: a 1D LUT; give a 3D one (LUT_3D_SIZE)", "color_grading")
            elif key == "DOMAIN_MIN":
                low = [float(w) for w in words[1:4]]
            elif key == "DOMAIN_MAX":
                high = [float(w) for w in words[1:4]]
            elif words[0].isupper():
                continue  # other keywords (LUT_3D_INPUT_RANGE, ...) do not change the table
            else:
                table.append([float(w) for w in words[:3]])
        except (ValueError, IndexError):
            raise OptionsError(f"{where}: line {number} is not a .cube line", "color_grading") from None
    if not 2 <= size <= 256 or len(table) != size**3 or any(len(row) != 3 for row in table):
        raise OptionsError(f"{where}: not a 3D .cube LUT (LUT_3D_SIZE {size or 'missing'}, {len(table)} rows; "
                           f"it needs size^3 rows of three numbers)", "color_grading")
    values = np.asarray(table, np.float32)
    if low != [0.0] * 3 or high != [1.0] * 3:  # outputs in the domain's units: back to 0..1
        values = (values - np.asarray(low, np.float32)) / np.maximum(np.asarray(high, np.float32) - low, 1e-6)
    return ImageFilter.Color3DLUT(size, np.clip(values, 0, 1).ravel().tolist())


def grading_lut(grading: str) -> ImageFilter.Color3DLUT:
    """A preset by name (any case) or a `.cube` file; OptionsError names what is wrong."""
    key = grading.strip().lower()
    if key in PRESETS:
        return _preset_lut(key)
    if key.endswith(".cube"):
        return read_cube(grading.strip())
    raise OptionsError(f"color_grading {grading!r}: use {', '.join(PRESET_NAMES)} or a .cube LUT file", "color_grading")


def grade(image: Image.Image, grading: str, strength: float = 1.0) -> Image.Image:
    """The image through the look, blended with the original by `strength`."""
    rgb = image.convert("RGB")
    graded = rgb.filter(grading_lut(grading))
    return graded if strength >= 1 else Image.blend(rgb, graded, strength)


def film_grain(image: Image.Image, strength: float, seed: int) -> Image.Image:
    """Monochrome grain, the same for the same seed: strongest in the midtones (none on pure
    black or white), one grain about a pixel at 512 px and larger on larger images, so it
    looks the same when the image is shown at the same size."""
    rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0
    height, width = rgb.shape[:2]
    scale = max(1.0, min(width, height) / 512.0)
    small = np.random.default_rng(seed).standard_normal((math.ceil(height / scale), math.ceil(width / scale)))
    noise = np.asarray(cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
                       if small.shape != (height, width) else small, np.float32)
    luma = rgb @ np.asarray([0.299, 0.587, 0.114], np.float32)
    grain = noise * (0.08 * strength) * (4.0 * luma * (1.0 - luma))
    return Image.fromarray(np.rint(np.clip(rgb + grain[..., None], 0, 1) * 255).astype(np.uint8))


def wanted(options: MultipassOptions) -> bool:
    """Whether the job asks for any finishing step."""
    return (bool(options.color_grading and options.color_grading_strength > 0) or options.film_grain > 0
            or options.super_resolution > 1)


FACE_RESTORER = "GFPGANv1.4"  # the standalone face restorer without face_correct_model (downloaded once)
#: the named upscalers of the standalone engine, by option ("Latent": resized in latent space);
#: besides them, either takes the path of upscaler weights (ESRGAN, Real-ESRGAN, SwinIR, ...)
STANDALONE_UPSCALERS = {"super_resolution_upscaler": (LANCZOS,), "hires_upscaler": (LANCZOS, "Latent")}


def check_upscaler(name: str | None, option: str) -> None:
    """Refuse, up front, an upscaler the standalone engine does not have; blank means Lanczos."""
    known = STANDALONE_UPSCALERS[option]
    if (name or LANCZOS).lower() in {k.lower() for k in known} or name in KNOWN:
        return
    if not Path(name or "").expanduser().is_file():
        raise OptionsError(f"`{option}` {name!r}: the standalone engine takes {' or '.join(known)}, a known name "
                           f"({', '.join(n for n in KNOWN if 'GFPGAN' not in n)}, downloaded once) or the path of "
                           "upscaler weights: no such file", option)


def check_standalone(options: MultipassOptions) -> None:
    """What the standalone engine needs for the last steps, checked before any model loads."""
    for option in STANDALONE_UPSCALERS:
        check_upscaler(getattr(options, option), option)
    model = options.face_correct_model or FACE_RESTORER
    if options.face_correct and model not in KNOWN and not Path(model).expanduser().is_file():
        raise OptionsError(f"`face_correct_model` {model!r}: give the path of GFPGAN weights, or leave it blank for "
                           f"{FACE_RESTORER} (downloaded once)", "face_correct_model")


def finish_image(image: Image.Image, options: MultipassOptions, seed: int, engine: Any) -> Image.Image:
    """The job's last pixel steps: super resolution (by the `engine`'s upscaler the job names,
    Lanczos when none), grading, then grain (grain is in the film, under the look of the print,
    and sized for the final image)."""
    if options.super_resolution > 1:
        size = (image.width * options.super_resolution, image.height * options.super_resolution)
        image = engine.upscale(image, size, options.super_resolution_upscaler or LANCZOS)
    if options.color_grading and options.color_grading_strength > 0:
        image = grade(image, options.color_grading, options.color_grading_strength)
    if options.film_grain > 0:
        image = film_grain(image, options.film_grain, seed)
    return image
