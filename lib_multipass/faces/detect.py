"""Faces: detection, face-shaped masks, and which person each face belongs to.

Detectors that work offline: mediapipe's face detection (full-range model, weights in its
wheel) and OpenCV's Haar cascade (ships with opencv-python, also inside the WebUI).
Face-shaped masks come from mediapipe's face mesh, or an ellipse in the box without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np
from PIL import Image

from ..errors import ModelNotFoundError
from ..images import Box, longer_side
from ..parallel import PerThread, parallel_map


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    score: float
    points: tuple[tuple[float, float], ...] | None = None  # 5 alignment points, when the detector gives them

    @property
    def size(self) -> int:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])


class FaceDetector(Protocol):
    name: str  # said in the infotext

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in the image, any order."""


def faces_in(detect: Callable[[Image.Image], list[Face]], image: Image.Image, box: Box | None = None) -> list[Face]:
    """The faces `detect` finds in the crop `box` of the image, in the image's coordinates."""
    if box is None:
        return detect(image)
    x, y = box[0], box[1]
    return [Face((f.box[0] + x, f.box[1] + y, f.box[2] + x, f.box[3] + y), f.score,
                 None if f.points is None else tuple((px + x, py + y) for px, py in f.points))
            for f in detect(image.crop(box))]


def _clip_box(x: float, y: float, w: float, h: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    return (max(0, int(round(x))), max(0, int(round(y))), min(width, int(round(x + w))), min(height, int(round(y + h))))


def tiles(width: int, height: int, side: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) squares of `side` (the image, when smaller) overlapping by half, covering it."""
    if side >= max(width, height):
        return [(0, 0, width, height)]
    side = min(side, width, height)

    def starts(length: int) -> list[int]:
        out = list(range(0, length - side + 1, side // 2))
        return out + [length - side] if out[-1] + side < length else out

    return [(x, y, side, side) for y in starts(height) for x in starts(width)]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class Found(Protocol):
    """A detection: a face, or a subject the subject detector boxed."""

    @property
    def box(self) -> Box: ...

    @property
    def score(self) -> float: ...


F = TypeVar("F", bound=Found)


def suppress(found: Sequence[F], overlap: float = 0.3, rivals: Callable[[F, F], bool] = lambda a, b: True) -> list[F]:
    """The best of each group of overlapping boxes (tiles and views overlap, so one thing is
    seen twice): a box is dropped where it overlaps a better one of its `rivals` by `overlap`
    or more."""
    kept: list[F] = []
    for one in sorted(found, key=lambda f: -f.score):
        if all(not rivals(one, k) or box_iou(one.box, k.box) < overlap for k in kept):
            kept.append(one)
    return kept


class MediaPipeFaceDetector:
    """mediapipe's short-range face detection over tiles at several sizes, so that faces of
    20 px in a wide shot are found as well as a close-up's.

    The model reads 128 px: a 20 px face in a whole 512 px image is 5 px to it. Tiles of 64
    and 128 px (overlapping by half) show such faces magnified or at their own size, larger
    tiles the larger faces, the whole image a close-up. A face found with less than `sure`
    is kept only when a crop centred on it finds it again (textures fool a single look at
    small tiles), and a face from the 64 px tiles needs `small_tile_score` (measured on the
    mask benchmark's candidates: every false one there scored under 0.76, 21 of 25 faces
    under 20 px are found, none before). A large face scoring under `large_score` (a
    profile scores like a texture) is kept when the full-range model is sure of it too.
    The 64 px tiles (most of the looks: 345 at 768x512) are looked at only where the larger
    ones found no face of `LARGE` px or more: faces of 10-20 px beside a close subject are
    bystanders, not what person prompts or inpaint faces mean.
    """

    name = "mediapipe face detection (tiled)"
    TILE_SIDES = (64, 128, 384)
    LARGE = 40  # px: a face this large is seen well; below `large_score` it is a texture

    def __init__(self, min_score: float = 0.7, sure: float = 0.85, large_score: float = 0.8,
                 small_tile_score: float = 0.78):
        self.min_score = min_score
        self.sure = sure
        self.large_score = large_score
        self.small_tile_score = small_tile_score  # the smallest tiles magnify gravel into faces (0.75)
        # one graph of each model per thread: tiles are looked at on every core (parallel.py)
        self._short_range = PerThread(lambda: self._mediapipe_model(0))
        self._full_range = PerThread(lambda: self._mediapipe_model(1))

    def _mediapipe_model(self, selection: int) -> Any:
        from mediapipe.python.solutions import face_detection

        return face_detection.FaceDetection(model_selection=selection, min_detection_confidence=self.min_score)

    def _look(self, pixels: np.ndarray, x: int, y: int, w: int, h: int, full_range: bool = False) -> list[Face]:
        """The faces the short-range (or full-range) model finds in a crop, in the image's pixels."""
        model = (self._full_range if full_range else self._short_range).get()
        found = model.process(np.ascontiguousarray(pixels[y : y + h, x : x + w])).detections or []
        faces = []
        for detection in found:
            box = detection.location_data.relative_bounding_box
            faces.append(Face(_clip_box(x + box.xmin * w, y + box.ymin * h, box.width * w, box.height * h,
                                        (pixels.shape[1], pixels.shape[0])), float(detection.score[0])))
        return [face for face in faces if face.score >= self.min_score and face.size > 0]

    def detect(self, image: Image.Image) -> list[Face]:
        try:  # said here, not in a worker thread
            import mediapipe  # noqa: F401
        except ImportError:
            raise ModelNotFoundError("mediapipe is not installed: `pip install --no-deps mediapipe==0.10.14`") from None
        pixels = np.asarray(image.convert("RGB"))
        height, width = pixels.shape[:2]
        small, *larger = self.tile_sides(width, height)
        kept = self._sure(self._over_tiles(pixels, [t for side in larger for t in tiles(width, height, side)]), pixels)
        if all(face.size < self.LARGE for face in kept):  # no close subject: look for the faces of a wide shot
            kept += self._sure([face for face in self._over_tiles(pixels, tiles(width, height, small))
                                if face.score >= self.small_tile_score], pixels)
        return suppress(kept)

    def tile_sides(self, width: int, height: int) -> list[int]:
        """TILE_SIDES, then three times as large while smaller than the image, then the whole
        image: a close face of a large image (300 px at 3072) fits no 384 px tile and is 12 px
        to the model in the whole image."""
        sides = list(self.TILE_SIDES)
        while sides[-1] * 3 < max(width, height):
            sides.append(sides[-1] * 3)
        return [*sides, max(width, height)]

    def _over_tiles(self, pixels: np.ndarray, crops: list[tuple[int, int, int, int]]) -> list[Face]:
        return [face for found in parallel_map(lambda crop: self._look(pixels, *crop), crops) for face in found]

    def _sure(self, seen: list[Face], pixels: np.ndarray) -> list[Face]:
        """The faces of `seen` that pass their score's check (see the class)."""
        def sure(face: Face) -> bool:
            return (face.score >= self.sure
                    or (face.score >= self.large_score or face.size < self.LARGE) and self._again(pixels, face)
                    or face.size >= self.LARGE and self._full_range_again(pixels, face))

        return [face for face, kept in zip(seen, parallel_map(sure, seen)) if kept]

    def _full_range_again(self, pixels: np.ndarray, face: Face) -> bool:
        """A large face the short-range model is unsure of (a profile) that the full-range
        model finds too, in a crop four faces wide centred on it."""
        return any(f.score >= self.large_score and box_iou(f.box, face.box) >= 0.3
                   for f in self._look(pixels, *around(face, 4, pixels.shape), full_range=True))

    def _again(self, pixels: np.ndarray, face: Face) -> bool:
        """Found again in a crop three faces wide centred on it."""
        return any(box_iou(f.box, face.box) >= 0.3 for f in self._look(pixels, *around(face, 3, pixels.shape)))


def around(face: Face, faces_wide: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x, y, w, h): a square `faces_wide` faces wide centred on the face, moved inside the image."""
    x0, y0, x1, y1 = face.box
    side = faces_wide * longer_side(face.box)
    height, width = shape[:2]
    x = min(max(0, (x0 + x1 - side) // 2), max(0, width - side))
    y = min(max(0, (y0 + y1 - side) // 2), max(0, height - side))
    return x, y, min(side, width), min(side, height)


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade: coarse, but in every opencv-python build."""

    name = "OpenCV Haar cascade"

    def detect(self, image: Image.Image) -> list[Face]:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]
        gray = cv2.equalizeHist(np.asarray(image.convert("L")))
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        return [Face(_clip_box(x, y, w, h, image.size), 1.0) for x, y, w, h in boxes]


class InsightFaceDetector:
    """insightface's detector (`buffalo_l`, det_10g.onnx) with 5 landmarks per face."""

    name = "insightface buffalo_l"

    def __init__(self, root: str | Path):
        try:
            from insightface.app import FaceAnalysis
        except ImportError:
            raise ModelNotFoundError("insightface is not installed: `pip install insightface onnxruntime`") from None
        model = Path(root) / "models" / "buffalo_l" / "det_10g.onnx"
        if not model.is_file():  # insightface would try to download buffalo_l.zip
            raise ModelNotFoundError(f"insightface's detector {model} is missing; put buffalo_l's det_10g.onnx there")
        try:
            self.app = FaceAnalysis(name="buffalo_l", root=str(root), allowed_modules=["detection"],
                                    providers=["CPUExecutionProvider"])
            self.app.prepare(ctx_id=-1, det_size=(640, 640))
        except (AssertionError, OSError, RuntimeError) as err:
            raise ModelNotFoundError(
                f"insightface's buffalo_l models not found under {root}/models/buffalo_l ({err.__class__.__name__}); "
                "put det_10g.onnx and w600k_r50.onnx there"
            ) from None

    def detect(self, image: Image.Image) -> list[Face]:
        pixels = np.asarray(image.convert("RGB"))[..., ::-1]  # insightface reads BGR
        return [Face(_clip_box(f.bbox[0], f.bbox[1], f.bbox[2] - f.bbox[0], f.bbox[3] - f.bbox[1], image.size),
                     float(f.det_score), tuple((float(x), float(y)) for x, y in f.kps))
                for f in self.app.get(np.ascontiguousarray(pixels))]


def make_face_detector(name: str | None = None) -> FaceDetector:
    """`mediapipe` (default when installed) or `haar`."""
    if name == "haar":
        return HaarFaceDetector()
    if name == "mediapipe":
        return MediaPipeFaceDetector()
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return HaarFaceDetector()
    return MediaPipeFaceDetector()


def select_faces(faces: Sequence[Face], min_size: int, max_faces: int) -> list[Face]:
    """Faces at least `min_size` px, the largest `max_faces` of them."""
    kept = [face for face in faces if face.size >= min_size]
    return sorted(kept, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))[:max_faces]


def assign_faces(faces: Sequence[Face], person_masks: Sequence[np.ndarray | None]) -> list[list[Face]]:
    """Faces per person: a face belongs to the person whose mask holds most of its box (at
    least half); faces outside every person mask belong to nobody and are left alone."""
    out: list[list[Face]] = [[] for _ in person_masks]
    for face in faces:
        x0, y0, x1, y1 = face.box
        area = max(1, (x1 - x0) * (y1 - y0))
        shares = [float(mask[y0:y1, x0:x1].sum()) / area if mask is not None else 0.0 for mask in person_masks]
        if shares and max(shares) >= 0.5:
            out[int(np.argmax(shares))].append(face)
    return out


def ellipse_mask(face: Face, size: tuple[int, int]) -> np.ndarray:
    """An upright ellipse in the face box, a little taller than wide (forehead to chin)."""
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = face.box
    centre = ((x0 + x1) // 2, (y0 + y1) // 2)
    axes = (max(1, (x1 - x0) // 2), max(1, int((y1 - y0) * 0.6)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    return mask.astype(bool)


def mesh_points(image: Image.Image, face: Face) -> np.ndarray | None:
    """mediapipe face mesh landmarks (N, 2) in image pixels for this face, or None."""
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError:
        return None
    x0, y0, x1, y1 = face.box
    margin = int(math.ceil(0.5 * longer_side(face.box)))
    box = (max(0, x0 - margin), max(0, y0 - margin), min(image.width, x1 + margin), min(image.height, y1 + margin))
    crop = np.ascontiguousarray(np.asarray(image.convert("RGB").crop(box)))
    with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        found = mesh.process(crop).multi_face_landmarks
    if not found:
        return None
    width, height = box[2] - box[0], box[3] - box[1]
    return np.array([(p.x * width + box[0], p.y * height + box[1]) for p in found[0].landmark], np.float32)


#: face mesh indices of the 5 points ArcFace-style alignment uses, image left to right:
#: eye (outer and inner corner averaged), other eye, nose tip, mouth corners
FIVE_POINTS = ((33, 133), (362, 263), (1,), (61,), (291,))


def five_points(image: Image.Image, face: Face) -> np.ndarray | None:
    """(5, 2) alignment points of the face (eyes, nose, mouth corners), or None without a mesh."""
    if face.points is not None:
        return np.array(face.points, np.float32)
    points = mesh_points(image, face)
    if points is None:
        return None
    return np.array([points[list(group)].mean(axis=0) for group in FIVE_POINTS], np.float32)


def face_mask(image: Image.Image, face: Face) -> np.ndarray:
    """A face-shaped mask (H, W): the face mesh's outline, or an ellipse when no mesh is found."""
    points = mesh_points(image, face)
    if points is None:
        return ellipse_mask(face, image.size)
    mask = np.zeros((image.height, image.width), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points).astype(np.int32), 1)
    return mask.astype(bool)
