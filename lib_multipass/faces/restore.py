"""Face restoration in the standalone engine (GFPGAN through spandrel), as the WebUI restores
faces: each face aligned to the FFHQ layout at 512 px by its five points, restored, and put
back through the inverse warp with a feathered mask, so nothing outside the faces changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .detect import Face, five_points

SIZE = 512
#: where eyes, nose tip and mouth corners sit in a 512 px FFHQ-aligned face (GFPGAN's input)
FFHQ = np.array([[192.98, 239.95], [318.90, 240.19], [256.63, 314.02], [201.26, 371.41], [313.09, 371.15]],
                np.float32)
BORDER = (135, 133, 132)  # the grey the aligned crop is padded with where the face meets the image edge


def restore_faces(image: Image.Image, faces: Sequence[Face], model: Any, min_size: int) -> tuple[Image.Image, int]:
    """(the image with every face of at least `min_size` px restored by `model`, how many)."""
    pixels = np.asarray(image.convert("RGB")).astype(np.float32)
    restored = 0
    for face in faces:
        points = five_points(image, face) if face.size >= min_size else None
        if points is None:
            continue
        matrix, _ = cv2.estimateAffinePartial2D(points, FFHQ, method=cv2.LMEDS)
        if matrix is None:
            continue
        aligned = cv2.warpAffine(pixels, matrix, (SIZE, SIZE), borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER)
        face_out = _run(model, aligned)
        inverse = cv2.invertAffineTransform(matrix)
        height, width = pixels.shape[:2]
        back = cv2.warpAffine(face_out, inverse, (width, height), flags=cv2.INTER_LINEAR)
        alpha = _soft_mask(cv2.warpAffine(np.ones((SIZE, SIZE), np.float32), inverse, (width, height)))
        pixels = (alpha[..., None] * back + (1 - alpha[..., None]) * pixels).astype(np.float32)
        restored += 1
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)), restored


def _run(model: Any, aligned: np.ndarray) -> np.ndarray:
    """GFPGAN on one aligned face: in and out in -1..1, its noise fixed (the same image gives
    the same face)."""
    import torch

    tensor = torch.from_numpy(aligned / 127.5 - 1.0).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        out = model.model(tensor, return_rgb=False, randomize_noise=False)[0]
    return ((out[0].clamp(-1, 1).permute(1, 2, 0).numpy() + 1.0) * 127.5).astype(np.float32)


def _soft_mask(region: np.ndarray) -> np.ndarray:
    """The warped face square, feathered in proportion to its size (no hard edge), shrunk by
    the feather's reach first so it never spreads past the square."""
    inside = (region > 0.999).astype(np.float32)
    reach = max(1, int(np.sqrt(inside.sum())) // 10)
    kernel = 2 * reach + 1
    return cv2.GaussianBlur(cv2.erode(inside, np.ones((kernel, kernel), np.uint8)), (kernel, kernel), 0)
