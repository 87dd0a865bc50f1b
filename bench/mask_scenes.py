"""Scenes with exact ground truth for the mask benchmark: real cut-outs on real photos.

The cut-outs are scikit-image's astronaut and cameraman, cut along the hand-traced outlines
in `tests/data/` (so the pasted pixels are the reference mask, exactly), pasted onto
scikit-image's real photos at known places and sizes. Nothing is downloaded.

Categories: frame shape (square, portrait, landscape, panorama), subject height (100, 50,
25, 12 % of the frame), people alone or in groups of 2-4 (apart or touching, later ones in
front), plus the two original photos with their hand-traced references.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FRAMES = {"square": (512, 512), "portrait": (512, 768), "landscape": (768, 512), "panorama": (1152, 448)}
HEIGHTS = (1.0, 0.5, 0.25, 0.12)
#: face boxes (x0, y0, x1, y1) in the 512x512 originals (mediapipe's, checked by eye)
FACES = {"astronaut": (174, 68, 278, 172), "camera": (200, 123, 276, 199)}


def backgrounds() -> dict[str, np.ndarray]:
    def rgb(gray: np.ndarray) -> np.ndarray:
        return np.stack([gray] * 3, axis=-1)

    return {"coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket(), "grass": rgb(data.grass()),
            "gravel": rgb(data.gravel()), "brick": rgb(data.brick()), "motorcycle": data.stereo_motorcycle()[0]}


@dataclass
class Cutout:
    name: str
    rgba: Image.Image  # cropped to the outline's box; alpha = the traced outline
    face: tuple[int, int, int, int]  # in the cut-out's pixels


def reference_mask(name: str, size: tuple[int, int] = (512, 512)) -> np.ndarray:
    """The hand-traced person mask of a scikit-image photo."""
    polygons = json.loads((DATA / f"{name}_person.json").read_text())["polygons"]
    mask = Image.new("L", size, 0)
    for polygon in polygons:
        ImageDraw.Draw(mask).polygon([tuple(p) for p in polygon], fill=255)
    return np.asarray(mask) > 0


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def cutouts() -> list[Cutout]:
    out = []
    for name in FACES:
        mask = reference_mask(name)
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        rgba = photo(name).convert("RGBA")
        rgba.putalpha(Image.fromarray(mask.astype(np.uint8) * 255))
        fx0, fy0, fx1, fy1 = FACES[name]
        out.append(Cutout(name, rgba.crop(box), (fx0 - box[0], fy0 - box[1], fx1 - box[0], fy1 - box[1])))
    return out


@dataclass
class Scene:
    name: str
    category: dict[str, str]
    image: Image.Image
    people: list[np.ndarray] = field(default_factory=list)  # visible masks, left to right
    faces: list[tuple[int, int, int, int]] = field(default_factory=list)  # visible faces

    @property
    def subjects(self) -> np.ndarray:
        return np.any(self.people, axis=0) if self.people else np.zeros(self.image.size[::-1], bool)


def _cover(background: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The background scaled to cover `size` and centre-cropped (no padding)."""
    image = Image.fromarray(background).convert("RGB")
    scale = max(size[0] / image.width, size[1] / image.height)
    scaled = image.resize((max(size[0], round(image.width * scale)), max(size[1], round(image.height * scale))),
                          Image.Resampling.LANCZOS)
    left, top = (scaled.width - size[0]) // 2, (scaled.height - size[1]) // 2
    return scaled.crop((left, top, left + size[0], top + size[1]))


def compose(name: str, category: dict[str, str], background: np.ndarray, size: tuple[int, int],
            placed: list[tuple[Cutout, bool, float, int, int]]) -> Scene:
    """Paste (cut-out, mirrored, scale, x, y) in order, later ones in front; alpha is hard."""
    canvas = _cover(background, size)
    layers: list[np.ndarray] = []
    faces = []
    for cut, mirror, scale, x, y in placed:
        rgba = cut.rgba.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else cut.rgba
        rgba = rgba.resize((max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale))), Image.Resampling.LANCZOS)
        alpha = np.asarray(rgba.getchannel("A")) >= 128
        rgba.putalpha(Image.fromarray(alpha.astype(np.uint8) * 255))
        canvas.paste(rgba, (x, y), rgba)
        whole = Image.new("L", size, 0)
        whole.paste(rgba.getchannel("A"), (x, y))  # PIL clips at the frame
        layer = np.asarray(whole) > 0
        for earlier in layers:
            earlier &= ~layer
        layers.append(layer)
        fx0, fy0, fx1, fy1 = cut.face
        if mirror:
            fx0, fx1 = cut.rgba.width - fx1, cut.rgba.width - fx0
        faces.append((x + round(fx0 * scale), y + round(fy0 * scale), x + round(fx1 * scale), y + round(fy1 * scale)))
    visible = []
    for layer, face in zip(layers, faces):
        x0, y0, x1, y1 = (max(0, face[0]), max(0, face[1]), min(size[0], face[2]), min(size[1], face[3]))
        area = max(1, (face[2] - face[0]) * (face[3] - face[1]))
        if x1 > x0 and y1 > y0 and layer[y0:y1, x0:x1].sum() >= 0.5 * area:
            visible.append(face)
    people = sorted([layer for layer in layers if layer.any()], key=lambda m: int(np.nonzero(m.any(axis=0))[0][0]))
    return Scene(name, category, canvas, people, visible)


def scenes(seed: int = 0) -> Iterator[Scene]:
    """Every benchmark scene, the same for the same seed."""
    rng = random.Random(seed)
    backs = backgrounds()
    names = sorted(backs)
    cuts = cutouts()
    for real in FACES:
        yield Scene(f"photo-{real}", {"set": "photo", "frame": "square", "height": "100%", "group": "1"},
                    photo(real), [reference_mask(real)], [FACES[real]])
    number = 0
    for frame, size in FRAMES.items():
        for height in HEIGHTS:
            for variant in range(4):
                cut = cuts[variant % 2]
                scale = height * size[1] / cut.rgba.height
                w, h = round(cut.rgba.width * scale), round(cut.rgba.height * scale)
                x = rng.randint(min(0, size[0] - w), max(0, size[0] - w))
                bottom = variant < 2 or height == 1.0  # half stand on the frame's bottom edge
                y = size[1] - h if bottom else rng.randint(0, max(0, size[1] - h))
                back = names[number % len(names)]
                number += 1
                yield compose(f"{frame}-{int(height * 100)}-{variant}-{back}",
                              {"set": "single", "frame": frame, "height": f"{int(height * 100)}%", "group": "1"},
                              backs[back], size, [(cut, variant % 3 == 1, scale, x, y)])
    for frame in ("square", "landscape", "panorama"):
        size = FRAMES[frame]
        for height in (0.5, 0.25):
            for count in (2, 3, 4):
                for touching in (False, True):
                    placed = []
                    chosen = [cuts[(i + count) % 2] for i in range(count)]
                    scale_of = [height * size[1] / c.rgba.height for c in chosen]
                    widths = [round(c.rgba.width * s) for c, s in zip(chosen, scale_of)]
                    step = [round(w * (0.75 if touching else 1.12)) for w in widths]
                    total = sum(step[:-1]) + widths[-1]
                    if total > size[0]:
                        continue
                    x = rng.randint(0, size[0] - total)
                    for i, (cut, scale) in enumerate(zip(chosen, scale_of)):
                        h = round(cut.rgba.height * scale)
                        y = size[1] - h - rng.randint(0, max(0, (size[1] - h) // 3))
                        placed.append((cut, i % 2 == 1, scale, x, y))
                        x += step[i]
                    back = names[number % len(names)]
                    number += 1
                    kind = "touching" if touching else "apart"
                    yield compose(f"{frame}-{int(height * 100)}-{count}{kind}-{back}",
                                  {"set": "group", "frame": frame, "height": f"{int(height * 100)}%",
                                   "group": f"{count} {kind}"}, backs[back], size, placed)
