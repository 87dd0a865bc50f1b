"""Faces: detection, face-shaped masks, and which person each face belongs to.

Detectors that work offline: mediapipe's face detection (full-range model, weights in its
wheel) and OpenCV's Haar cascade (ships with opencv-python, also inside the WebUI).
Face-shaped masks come from mediapipe's face mesh, or an ellipse in the box without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np
from PIL import Image

from .errors import ModelNotFoundError


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    score: float

    @property
    def size(self) -> int:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])


class FaceDetector(Protocol):
    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in the image, any order."""


def _clip_box(x: float, y: float, w: float, h: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    return (max(0, int(round(x))), max(0, int(round(y))), min(width, int(round(x + w))), min(height, int(round(y + h))))


class MediaPipeFaceDetector:
    """mediapipe face detection, full-range model (finds small faces and several people)."""

    def __init__(self, min_score: float = 0.5):
        self.min_score = min_score

    def detect(self, image: Image.Image) -> list[Face]:
        try:
            from mediapipe.python.solutions import face_detection
        except ImportError:
            raise ModelNotFoundError("mediapipe is not installed: `pip install --no-deps mediapipe==0.10.14`") from None
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        with face_detection.FaceDetection(model_selection=1, min_detection_confidence=self.min_score) as detector:
            found = detector.process(pixels).detections or []
        width, height = image.size
        faces = []
        for detection in found:
            box = detection.location_data.relative_bounding_box
            faces.append(Face(_clip_box(box.xmin * width, box.ymin * height, box.width * width, box.height * height,
                                        image.size), float(detection.score[0])))
        return faces


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade: coarse, but in every opencv-python build."""

    def detect(self, image: Image.Image) -> list[Face]:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        gray = cv2.equalizeHist(np.asarray(image.convert("L")))
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        return [Face(_clip_box(x, y, w, h, image.size), 1.0) for x, y, w, h in boxes]


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


def face_mask(image: Image.Image, face: Face) -> np.ndarray:
    """A face-shaped mask (H, W): the face mesh's outline, or an ellipse when no mesh is found."""
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError:
        return ellipse_mask(face, image.size)
    x0, y0, x1, y1 = face.box
    margin = int(math.ceil(0.5 * max(x1 - x0, y1 - y0)))
    crop_box = (max(0, x0 - margin), max(0, y0 - margin), min(image.width, x1 + margin), min(image.height, y1 + margin))
    crop = np.ascontiguousarray(np.asarray(image.convert("RGB").crop(crop_box)))
    with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        found = mesh.process(crop).multi_face_landmarks
    if not found:
        return ellipse_mask(face, image.size)
    cw, ch = crop_box[2] - crop_box[0], crop_box[3] - crop_box[1]
    points = np.array([(p.x * cw + crop_box[0], p.y * ch + crop_box[1]) for p in found[0].landmark], np.float32)
    mask = np.zeros((image.height, image.width), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points).astype(np.int32), 1)
    return mask.astype(bool)
