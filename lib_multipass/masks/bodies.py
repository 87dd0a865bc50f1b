"""A person's body where no face is seen: mediapipe's pose model (its weights are in its
wheel, so offline), for the mask's parts that no face explains.

A person of 12 % of a wide shot has a face of a few pixels, and one seen from the side or
behind shows none; a cat's face, a cup or a motorbike the segmenter misreads has no body.
On the scenes of `make bench-masks`, pose found a body on 71 of 104 parts that were people
and on 8 of 49 that were not (none of the large ones that flood a mask).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..faces.detect import Face
from ..parallel import PerThread
from .crop import Box

#: BlazePose landmarks: the head (nose, eyes, ears, mouth) and the torso (shoulders, hips)
HEAD = range(0, 11)
NOSE, SHOULDERS, HIPS = 0, (11, 12), (23, 24)
TORSO = SHOULDERS + HIPS
ANKLES = (27, 28)
LIMBS = range(11, 33)  # shoulders to toes
#: an ankle pose sees this surely: the person stands whole in the crop. Measured on
#: bench-masks: standing people in real photos 0.88-1.00; people cut at the waist (the
#: composites' cut-outs) at most 0.65, people seated behind a table 0.06-0.34
SEEN = 0.8
#: face boxes in a torso (shoulders' middle to hips' middle). A head's landmarks span less
#: than a face box when it is seen from the side (a walker's ear to nose), and the body box
#: a head gives is counted in its size: measured on bench-masks, torso / 3 is 0.85-1.0 of the
#: true face box (the cut-outs) and a tenth of a walker's height (the pedestrians)
TORSO_FACES = 3.0


@dataclass(frozen=True)
class Body(Face):
    """A body's head as a face box (it seeds the person's mask as a face would), and, when pose
    sees the feet surely, `extent`: the box of the limbs it sees so (hands, feet), half a head
    more each way. A standing or kicking person reaches further than the body box a face alone
    gives (7 faces below, 3 to each side): without this legs were cut at the knee. `upright`:
    the torso within 45 degrees of vertical and the nose above the shoulders (standing, walking
    or sitting up), which pose's bodies on textures rarely are (a motorbike's mirror: one
    shoulder above the nose, the torso lying)."""

    extent: Box | None = None
    upright: bool = False


class PoseBodyFinder:
    """mediapipe pose on a crop: a body whose shoulders and hips it is sure of (mean
    visibility >= `min_visibility`), given as its head's box (a face box, to seed the person's
    mask as a face would)."""

    name = "mediapipe pose"

    def __init__(self, min_visibility: float = 0.5):
        self.min_visibility = min_visibility
        self._model = PerThread(_pose_model)  # safe to call from several threads (parallel.py)

    def head(self, image: Image.Image, box: Box) -> Body | None:
        x0, y0, x1, y1 = box
        crop = np.ascontiguousarray(np.asarray(image.crop(box).convert("RGB")))
        found = self._model.get().process(crop).pose_landmarks
        if found is None:
            return None
        marks = found.landmark
        visibility = float(np.mean([marks[i].visibility for i in TORSO]))
        if visibility < self.min_visibility:
            return None
        width, height = x1 - x0, y1 - y0

        def pixels(landmarks: Iterable[int]) -> np.ndarray:
            return np.array([(x0 + marks[i].x * width, y0 + marks[i].y * height) for i in landmarks])

        head = pixels(HEAD)
        shoulders, hips = pixels(SHOULDERS), pixels(HIPS)
        torso = float(np.hypot(*(shoulders.mean(axis=0) - hips.mean(axis=0))))
        side = max(float(np.ptp(head[:, 0])), float(np.ptp(head[:, 1])), 0.5 * float(np.ptp(shoulders[:, 0])),
                   torso / TORSO_FACES, 4.0)
        cx, cy = head.mean(axis=0)
        extent = None
        if max(marks[i].visibility for i in ANKLES) >= SEEN:
            seen = pixels(i for i in LIMBS if marks[i].visibility >= SEEN)
            (left, top), (right, bottom) = seen.min(axis=0) - side / 2, seen.max(axis=0) + side / 2
            extent = (round(left), round(top), round(right), round(bottom))
        dx, dy = hips.mean(axis=0) - shoulders.mean(axis=0)
        nose_y = y0 + marks[NOSE].y * height
        upright = bool(dy > abs(dx) and nose_y < shoulders[:, 1].min())
        return Body((round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)),
                    visibility, extent=extent, upright=upright)


def _pose_model() -> Any:
    from mediapipe.python.solutions import pose

    return pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)


def make_body_finder() -> PoseBodyFinder | None:
    """The offline body finder, or None where mediapipe is not installed (the WebUI: its
    protobuf pin keeps mediapipe out)."""
    try:
        from mediapipe.python.solutions import pose  # noqa: F401
    except ImportError:
        return None
    return PoseBodyFinder()
