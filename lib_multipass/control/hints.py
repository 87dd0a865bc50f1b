"""ControlNet hint images made from a photo: pose, canny, tile, inpaint; depth/lineart via an annotator.

Pose uses mediapipe's pose landmarks (weights inside its wheel, offline) drawn as an
OpenPose-style 18-keypoint skeleton on black, which openpose ControlNets understand.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from ..errors import ModelNotFoundError, MultipassError

KINDS = ("pose", "canny", "depth", "lineart", "tile", "inpaint")

# OpenPose (COCO 18) keypoints from mediapipe's 33: (openpose name, mediapipe index or pair to average)
OPENPOSE_FROM_MEDIAPIPE: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("nose", (0,)), ("neck", (11, 12)), ("r_shoulder", (12,)), ("r_elbow", (14,)), ("r_wrist", (16,)),
    ("l_shoulder", (11,)), ("l_elbow", (13,)), ("l_wrist", (15,)), ("r_hip", (24,)), ("r_knee", (26,)),
    ("r_ankle", (28,)), ("l_hip", (23,)), ("l_knee", (25,)), ("l_ankle", (27,)), ("r_eye", (5,)),
    ("l_eye", (2,)), ("r_ear", (8,)), ("l_ear", (7,)),
)
# limbs as in OpenPose's renderer (1-based pairs of the 18 keypoints) and its colours
LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13),
         (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))
COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
           (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
           (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))


def pose_keypoints(image: Image.Image, min_visibility: float = 0.5) -> np.ndarray | None:
    """(18, 3) OpenPose keypoints (x px, y px, visible 0/1) of the main person, or None."""
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError:
        raise ModelNotFoundError("pose hints need mediapipe: `pip install --no-deps mediapipe==0.10.14`") from None
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    with mp_pose.Pose(static_image_mode=True, model_complexity=1) as detector:
        found = detector.process(pixels).pose_landmarks
    if found is None:
        return None
    marks = found.landmark
    width, height = image.size
    points = np.zeros((len(OPENPOSE_FROM_MEDIAPIPE), 3), np.float32)
    for i, (_, sources) in enumerate(OPENPOSE_FROM_MEDIAPIPE):
        chosen = [marks[s] for s in sources]
        points[i] = (np.mean([m.x for m in chosen]) * width, np.mean([m.y for m in chosen]) * height,
                     float(min(m.visibility for m in chosen) >= min_visibility))
    return points


def draw_openpose(points: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The OpenPose-style skeleton of `points` (18, 3) on black."""
    width, height = size
    canvas = np.zeros((height, width, 3), np.uint8)
    stick = max(2, round(min(size) / 128))
    for (a, b), colour in zip(LIMBS, COLOURS):
        pa, pb = points[a - 1], points[b - 1]
        if pa[2] and pb[2]:
            cv2.line(canvas, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])),
                     tuple(int(c * 0.6) for c in colour), stick * 2, cv2.LINE_AA)
    for point, colour in zip(points, COLOURS):
        if point[2]:
            cv2.circle(canvas, (int(point[0]), int(point[1])), stick * 2, colour, -1, cv2.LINE_AA)
    return Image.fromarray(canvas)


def pose_hint(image: Image.Image) -> Image.Image:
    points = pose_keypoints(image)
    if points is None:
        raise MultipassError("no person pose found in the control image; give another image or --control-image")
    return draw_openpose(points, image.size)


def canny_hint(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    edges = cv2.Canny(np.asarray(image.convert("L")), low, high)
    return Image.fromarray(np.repeat(edges[..., None], 3, axis=2))


def annotator_hint(kind: str, image: Image.Image) -> Image.Image:
    """depth/lineart through controlnet_aux when it and its weights are installed."""
    try:
        import controlnet_aux  # noqa: F401 - optional
    except ImportError:
        raise ModelNotFoundError(
            f"{kind} hints need the controlnet_aux package and its 'lllyasviel/Annotators' weights; "
            "or make the hint yourself and pass it as the control image"
        ) from None
    from controlnet_aux import LineartDetector, MidasDetector

    detector = {"depth": MidasDetector, "lineart": LineartDetector}[kind]
    try:
        model = detector.from_pretrained("lllyasviel/Annotators")
    except OSError as err:
        raise ModelNotFoundError(f"{kind} annotator weights 'lllyasviel/Annotators' not found ({err})") from None
    return model(image).resize(image.size)


def make_hint(kind: str, image: Image.Image) -> Image.Image:
    """The hint of `kind` for a full image (the inpaint hint is made per crop, see `inpaint_condition`)."""
    if kind not in KINDS:
        raise MultipassError(f"unknown ControlNet type {kind!r}; use one of: {', '.join(KINDS)}")
    image = image.convert("RGB")
    if kind == "pose":
        return pose_hint(image)
    if kind == "canny":
        return canny_hint(image)
    if kind in ("tile", "inpaint"):
        return image
    return annotator_hint(kind, image)


def inpaint_condition(image: Image.Image, mask: Image.Image):
    """The inpaint ControlNet's condition: the image in 0..1 with masked pixels set to -1."""
    import torch

    pixels = np.asarray(image.convert("RGB"), np.float32) / 255.0
    pixels[np.asarray(mask.convert("L")) > 127] = -1.0
    return torch.from_numpy(pixels.transpose(2, 0, 1))[None]
