"""Super-resolution and face-restoration weights through spandrel, the loader the WebUI uses:
ESRGAN and Real-ESRGAN (RRDB), Compact (realesr-general), SPAN, SwinIR, Real-CUGAN, PLKSR,
ATD, and GFPGAN for faces. The architecture and its sizes are read from the weights.

spandrel's package imports every architecture it knows when imported, two of which need
torchvision, which has no build beside this engine's torch. Where that import fails, the
architectures used here are imported one by one (they need only torch): same code, same
detection, without the two this engine has no use for.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import ModelNotFoundError

log = logging.getLogger(__name__)

#: spandrel architectures this engine loads, by what they are for
UPSCALERS = ("ESRGAN", "Compact", "SPAN", "SwinIR", "RealCUGAN", "PLKSR", "ATD")
FACE_RESTORERS = ("GFPGAN",)
SUFFIXES = (".safetensors", ".pth", ".pt")
#: weights a name stands for, downloaded on first use into the folder the WebUI keeps them in
#: (Real-ESRGAN: BSD-3-Clause; GFPGAN: Apache-2.0)
KNOWN = {
    "RealESRGAN_x4plus": ("RealESRGAN", "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/"
                                        "RealESRGAN_x4plus.pth"),
    "RealESRGAN_x2plus": ("RealESRGAN", "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/"
                                        "RealESRGAN_x2plus.pth"),
    "RealESRGAN_x4plus_anime_6B": ("RealESRGAN", "https://github.com/xinntao/Real-ESRGAN/releases/download/"
                                                 "v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth"),
    "GFPGANv1.4": ("GFPGAN", "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth"),
}
MODELS_DIR = Path("models")


def weights_path(source: str, models_dir: Path = MODELS_DIR) -> Path:
    """The weights file `source` names: a path, or a known name (downloaded once into
    `models_dir`/<kind>/, with a line saying what and how large)."""
    path = Path(source).expanduser()
    if path.is_file() or source not in KNOWN:
        return path
    kind, url = KNOWN[source]
    target = models_dir / kind / url.rsplit("/", 1)[-1]
    if not target.is_file():
        download(url, target)
    return target


def download(url: str, target: Path) -> None:
    """`url` into `target`, whole or not at all (a cut download is never left as the file)."""
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as answer, partial.open("wb") as file:  # noqa: S310 - https URLs of KNOWN
            size = int(answer.headers.get("Content-Length") or 0)
            log.info("downloading %s (%.0f MB) into %s (once)", url.rsplit("/", 1)[-1], size / 1e6, target.parent)
            while chunk := answer.read(1 << 20):
                file.write(chunk)
        partial.replace(target)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise ModelNotFoundError(f"cannot download {url} ({err}); download it yourself into {target}") from None


def _architecture(name: str) -> Any:
    """spandrel's `<name>Arch()`, imported without its registry when the registry cannot load."""
    try:
        import spandrel  # noqa: F401 - with torchvision there: spandrel as it comes
    except ImportError:
        spec = importlib.util.find_spec("spandrel")
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError("spandrel is not installed (pip install --no-deps spandrel==0.4.2)") from None
        package = types.ModuleType("spandrel")  # the package without its __init__ (which imports them all)
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["spandrel"] = package
    module = importlib.import_module(f"spandrel.architectures.{name}")
    return getattr(module, f"{name}Arch")()


def read_weights(path: Path) -> dict[str, Any]:
    """The tensors of a weights file: safetensors, or a pickle read with weights only (a
    `.pth` can run code when unpickled in full)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_image_model(source: str, kinds: tuple[str, ...] = UPSCALERS) -> Any:
    """spandrel's descriptor of the weights at `source` (`.model`, `.scale`), on the CPU in
    eval mode; an error naming what is wrong otherwise."""
    path = weights_path(source)
    if not path.is_file() or path.suffix not in SUFFIXES:
        raise ModelNotFoundError(f"{source!r} is not a weights file ({', '.join(SUFFIXES)}) nor a known name "
                                 f"({', '.join(KNOWN)}); give the path of an upscaler or face restorer")
    architectures = [_architecture(name) for name in kinds]
    from spandrel.__helpers.canonicalize import canonicalize_state_dict  # importable once spandrel is

    try:
        state = canonicalize_state_dict(read_weights(path))
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file: say so, with the file's name
        raise ModelNotFoundError(f"cannot read {source!r}: {err}") from None
    for architecture in architectures:
        if architecture.detect(state):
            model = architecture.load(state)
            model.model.eval()
            return model
    raise ModelNotFoundError(f"{source!r} is not one of the architectures this engine loads here "
                             f"({', '.join(kinds)})")


def run_tiled(model: Any, image: Image.Image, tile: int = 256, overlap: int = 24) -> Image.Image:
    """`model` on `image` in tiles of `tile` px with `overlap` px of context on each side,
    each tile's centre kept: a 4x of a 1024 px image needs the memory of one tile, not of
    the whole image (and equals the untiled result but for the context cut at tile edges)."""
    import torch

    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 255.0).permute(2, 0, 1)[None]
    _, _, height, width = pixels.shape
    scale = int(model.scale)
    out = np.zeros((height * scale, width * scale, 3), np.uint8)  # bytes: a 4x of 1024 px is 48 MiB
    step = max(1, tile - 2 * overlap)
    with torch.no_grad():
        for y in range(0, height, step):
            for x in range(0, width, step):
                y0, x0 = max(0, y - overlap), max(0, x - overlap)
                y1, x1 = min(height, y + step + overlap), min(width, x + step + overlap)
                result = model(pixels[:, :, y0:y1, x0:x1]).clamp(0, 1)
                keep_y, keep_x = (y - y0) * scale, (x - x0) * scale
                rows, cols = (min(y + step, height) - y) * scale, (min(x + step, width) - x) * scale
                kept = result[0, :, keep_y:keep_y + rows, keep_x:keep_x + cols].permute(1, 2, 0)
                out[y * scale:y * scale + rows, x * scale:x * scale + cols] = (kept * 255.0).round().byte().numpy()
    return Image.fromarray(out)


def upscale_with(model: Any, image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` at `size` by `model`: run until it is at least that large (up to 3 times, a 2x
    model asked for 4x), then Lanczos to the exact size, as the WebUI does."""
    for _ in range(3):
        if image.width >= size[0] and image.height >= size[1]:
            break
        image = run_tiled(model, image)
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)
