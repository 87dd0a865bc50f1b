"""Face swap with insightface's `inswapper_128.onnx`, run directly on onnxruntime.

The source identity is the mean ArcFace embedding (`w600k_r50.onnx`, from insightface's
`buffalo_l`) of the subject's reference photos. Each target face is aligned to 128x128
with the ArcFace 5-point template, swapped, colour-matched to the original face, and
pasted back through a face-shaped feathered mask. Models are looked up where the WebUI
keeps them (`models/insightface/`) or at a given path; a missing one is an error that
names the file and where to put it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import ModelNotFoundError, MultipassError
from ..images import is_inline, open_image
from ..model_cache import ModelCache, file_stamp
from .detect import Face, FaceDetector, five_points, select_faces

#: what face swap needs beyond the WebUI's own packages (install.py does not add it for everyone;
#: onnx moves the WebUI's protobuf pin from 3.20.0 to 3.20.x, harmless but reinstalled at start)
FACE_SWAP_INSTALL = 'pip install "onnxruntime>=1.16" "onnx==1.14.1" "insightface==2.1" (in the WebUI\'s venv)'
SWAPPER_FILE = "inswapper_128.onnx"
RECOGNIZER_FILE = "w600k_r50.onnx"  # inside insightface's buffalo_l
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]], np.float32)


def template(size: int) -> np.ndarray:
    """The 5-point template at `size` px, as insightface's face_align.estimate_norm places it."""
    if size % 112 == 0:
        return ARCFACE_112 * (size / 112)
    ratio = size / 128.0
    return ARCFACE_112 * ratio + np.array([8.0 * ratio, 0.0], np.float32)


def align(image: np.ndarray, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(aligned face size x size, the 2x3 similarity transform from image to aligned)."""
    matrix, _ = cv2.estimateAffinePartial2D(points, template(size), method=cv2.LMEDS)
    if matrix is None:
        raise MultipassError("face alignment failed (degenerate landmarks)")
    return cv2.warpAffine(image, matrix, (size, size), borderValue=0.0), matrix


def find_model(name: str, given: str | None, folders: Sequence[str | Path]) -> Path:
    """The model file: the given path, or `name` in one of `folders` (searched recursively)."""
    if given:
        path = Path(given)
        if path.is_file():
            return path
        raise ModelNotFoundError(f"{name}: {given!r} does not exist; download {name} and give its path")
    for folder in folders:
        found = sorted(Path(folder).rglob(name)) if Path(folder).is_dir() else []
        if found:
            return found[0]
    where = " or ".join(str(f) for f in folders) or "a folder of your choice"
    raise ModelNotFoundError(f"{name} not found: put it in {where} (insightface's model files), or give its path")


def _session(path: Path):
    try:
        import onnxruntime
    except ImportError:
        raise ModelNotFoundError(f"face swap needs onnxruntime: {FACE_SWAP_INSTALL}") from None
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


class Recognizer:
    """ArcFace embeddings of aligned 112x112 faces."""

    def __init__(self, path: Path):
        self.session = _session(path)
        self.input = self.session.get_inputs()[0].name

    def embedding(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        face, _ = align(image, points, 112)
        blob = ((face.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        vector = self.session.run(None, {self.input: blob})[0][0]
        return vector / (np.linalg.norm(vector) + 1e-8)


@dataclass
class Swapper:
    """inswapper: (aligned 128x128 target, source latent) -> swapped face."""

    path: Path

    def __post_init__(self) -> None:
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:
            raise ModelNotFoundError(f"face swap needs onnx to read inswapper's embedding map: {FACE_SWAP_INSTALL}") from None

        self.session = _session(self.path)
        self.emap = numpy_helper.to_array(onnx.load(str(self.path)).graph.initializer[-1])
        names = [i.name for i in self.session.get_inputs()]
        self.target_input, self.source_input = names[0], names[1]

    def swap(self, aligned: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        latent = embedding.reshape(1, -1) @ self.emap
        latent = (latent / np.linalg.norm(latent)).astype(np.float32)
        blob = (aligned.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = self.session.run(None, {self.target_input: blob, self.source_input: latent})[0][0]
        return np.clip(out.transpose(1, 2, 0) * 255.0, 0, 255)


def match_colour(swapped: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The swapped face with the original face's mean and spread per LAB channel (inside `mask`)."""
    if not mask.any():
        return swapped
    src = cv2.cvtColor(np.clip(swapped, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(original.astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    for c in range(3):
        s, r = src[..., c][mask], ref[..., c][mask]
        src[..., c] = (src[..., c] - s.mean()) * (r.std() / (s.std() + 1e-6)) + r.mean()
    return cv2.cvtColor(np.clip(src, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)


class FaceSwapper:
    """Swaps faces to one identity (the mean embedding of the reference photos). Cheap to make:
    the ONNX sessions behind it are kept in `models` (the engine's), once per model file."""

    def __init__(self, swapper: Path, recognizer: Path, detector: FaceDetector, upscale: bool = False,
                 models: ModelCache | None = None):
        self.models = models = ModelCache() if models is None else models
        self.swapper = models.get(("swapper", file_stamp(swapper)), lambda: Swapper(Path(swapper)))
        self.recognizer = models.get(("recognizer", file_stamp(recognizer)), lambda: Recognizer(Path(recognizer)))
        self.detector = detector
        self.upscale = upscale

    def identity(self, references: Sequence[Image.Image]) -> np.ndarray:
        """Mean normalised embedding of the largest face of each reference photo."""
        vectors = []
        for image in references:
            faces = select_faces(self.detector.detect(image), 16, 1)
            points = five_points(image, faces[0]) if faces else None
            if points is not None:
                vectors.append(self.recognizer.embedding(np.asarray(image.convert("RGB")), points))
        if not vectors:
            raise MultipassError("no face found in the face swap reference images; give clear photos of the face")
        mean = np.mean(vectors, axis=0)
        return mean / (np.linalg.norm(mean) + 1e-8)

    def swap(self, image: Image.Image, face: Face, identity: np.ndarray, mask: np.ndarray) -> Image.Image:
        """`image` with `face` swapped to `identity`, pasted through `mask` (H, W) feathered."""
        points = five_points(image, face)
        if points is None:
            raise MultipassError(f"face at {face.box}: no landmarks found for alignment")
        pixels = np.asarray(image.convert("RGB")).astype(np.float32)
        aligned, matrix = align(pixels, points, 128)
        swapped = self.swapper.swap(aligned, identity)
        size = 128
        if self.upscale:  # resample once at 4x to keep the 128 px face sharp when pasted large
            size = 512
            swapped = cv2.resize(swapped, (size, size), interpolation=cv2.INTER_LANCZOS4)
            matrix = matrix * (size / 128.0)
        inverse = cv2.invertAffineTransform(matrix)
        height, width = pixels.shape[:2]
        back = cv2.warpAffine(swapped, inverse, (width, height), flags=cv2.INTER_CUBIC, borderValue=0.0)
        inside = cv2.warpAffine(np.ones((size, size), np.float32), inverse, (width, height)) > 0.99
        region = mask & inside
        back = match_colour(back, pixels, region)
        blur = max(2, face.size // 12)
        alpha = cv2.GaussianBlur(region.astype(np.float32), (2 * blur + 1, 2 * blur + 1), blur / 2.0)[..., None]
        alpha = alpha * inside[..., None]
        out = np.where(alpha > 0, pixels * (1 - alpha) + back * alpha, pixels)
        return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


REFERENCE_SIDE = 1024  # references are kept at most this large: ArcFace sees 112 px faces


def reference_sources(sources: Sequence[str]) -> list[str]:
    """The reference photos: files, the images in folders, and inline base64 images."""
    found: list[str] = []
    for source in sources:
        path = Path(source)
        if not is_inline(source) and path.is_dir():
            found += [str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")]
        else:
            found.append(source)
    if not found:
        raise MultipassError("face swap needs reference images of the subject: give a folder or files")
    return found


def load_references(sources: Sequence[str], models: ModelCache | None = None) -> list[Image.Image]:
    """Reference photos (see `reference_sources`), each read once into `models` while unchanged."""
    models = ModelCache() if models is None else models
    images = []
    for source in reference_sources(sources):
        key = ("inline", hash(source), len(source)) if is_inline(source) else _reference_stamp(source)
        images.append(models.get(("reference", key), functools.partial(_read_reference, source)))
    return images


def _reference_stamp(source: str) -> tuple[str, int, int]:
    try:
        return file_stamp(source)
    except OSError:
        open_image(source, "face swap reference")  # names the missing or unreadable file
        raise


def _read_reference(source: str) -> Image.Image:
    image = open_image(source, "face swap reference").convert("RGB")
    image.thumbnail((REFERENCE_SIDE, REFERENCE_SIDE), Image.Resampling.LANCZOS)
    return image
