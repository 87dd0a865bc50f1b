"""The WebUI engine: person passes as nested in-paint jobs on the WebUI-loaded model.

The only core module that imports the WebUI's `modules`. A nested
`StableDiffusionProcessingImg2Img` ("only masked", masked content "original") carries the
person's `<lora:...>` tags so the WebUI's own extra networks load them; it runs with only
whitelisted helper scripts, its own conditioning cache, torch's global generator seeded
from the pass's seed, and the outer job's title and params.txt put back afterwards. The
WebUI returns the raw crop; the paste into the image is ours, with the plan's alpha.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from inspect import signature
from pathlib import Path

import numpy as np
from modules import devices, paths, processing, shared
from PIL import Image

from ..engines.base import GenerateRequest, InpaintRequest
from ..errors import ModelNotFoundError, MultipassError, PassInterrupted
from ..faces.detect import Face, FaceDetector, InsightFaceDetector, faces_in, make_face_detector
from ..masks.colour import matched
from ..masks.crop import Box, paste
from ..masks.detector import BoxDetector, boxes_of
from ..masks.detector_choice import make_detector
from ..masks.refine import SamRefiner
from ..masks.segmenters import Segmenter, probabilities_in
from ..options import LANCZOS
from ..prompt import with_tags
from .controlnet import controlnet_for_nested
from .models import MODELS
from .settings import DEFAULT_WHITELIST, setting

log = logging.getLogger(__name__)


def available_loras() -> dict[str, object] | None:
    """The WebUI's LoRA list (its built-in Lora extension), or None when it cannot be read."""
    try:
        import networks  # extensions-builtin/Lora, on sys.path inside the WebUI
    except ImportError:
        return None
    if not networks.available_networks:
        networks.list_available_networks()
    return {**networks.available_networks, **networks.available_network_aliases}


@contextlib.contextmanager
def outer_job_kept() -> Iterator[None]:
    """Put back what a nested process_images changes and the outer job still shows: the job's
    title and params.txt. (Progress counters advance on purpose: see `JobProgress`.)"""
    title = shared.state.job
    params = Path(paths.data_path) / "params.txt"
    text = params.read_text(encoding="utf8") if params.is_file() else None
    try:
        yield
    finally:
        shared.state.job = title
        if text is not None:
            params.write_text(text, encoding="utf8")
        elif params.is_file():
            params.unlink()


@contextlib.contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Torch's global generator seeded from the pass's seed, and restored afterwards.

    The WebUI's VAE encode (and some samplers) draw from it; unseeded, a pass depended on
    whatever ran before it (a model load, the previous image of a batch)."""
    import torch
    from modules import devices

    device = torch.device(devices.device)
    accelerated = device.type in ("cuda", "xpu", "mps")
    with torch.random.fork_rng(devices=[device.index or 0] if accelerated else [],
                               device_type=device.type if accelerated else "cuda"):
        torch.manual_seed(seed)
        yield


#: what a nested pass changes on Forge's shared model and would leave behind: the patcher set and
#: LoRA hash its LoRA loading sets, and the infotext parts Forge keeps on the model (reset by
#: every process_images, merged into the job's infotext at every batch)
FORGE_MODEL_STATE = ("forge_objects", "forge_objects_after_applying_lora", "current_lora_hash",
                     "extra_generation_params", "comments")


@contextlib.contextmanager
def model_state_kept(sd_model) -> Iterator[None]:
    """Forge: the outer job's patcher set, LoRA hash and infotext parts put back after a nested
    pass, which loads its own LoRAs (Forge rebuilds the set per batch, but anything the outer
    job does after our hook, and the next batch's "same LoRAs, skip" check, must see its own).
    Nothing to keep on AUTOMATIC1111."""
    kept = {name: getattr(sd_model, name) for name in FORGE_MODEL_STATE if hasattr(sd_model, name)}
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(sd_model, name, value)


@contextlib.contextmanager
def option_set(name: str, value: object) -> Iterator[None]:
    """A WebUI option changed for a nested pass and put back exactly (absent stays absent).
    Not through `override_settings`: the WebUI puts back only the keys already in its options'
    data, and a fresh Forge has none there (no config.json yet), so the nested pass's value
    stayed for every later job of the user's."""
    data = shared.opts.data
    had, old = name in data, data.get(name)
    data[name] = value
    try:
        yield
    finally:
        if had:
            data[name] = old
        else:
            data.pop(name, None)


def paste_box(nested, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where the WebUI took its "only masked" crop (x0, y0, x1, y1); the whole image without one."""
    paste_to = getattr(nested, "paste_to", None)
    if not paste_to:
        return (0, 0, *size)
    x, y, w, h = paste_to
    return x, y, x + w, y + h


class JobProgress:
    """One progress bar for the whole job, as ADetailer keeps it: the person passes are counted
    into the WebUI's job count when the first batch starts (they are known then), each face pass
    when it starts; every nested pass advances the job number as it ends."""

    def __init__(self) -> None:
        self.reserved = 0

    def reserve(self, passes: int) -> None:
        state = shared.state
        if passes > 0 and state.job_count >= 0:
            state.job_count += passes
            self.reserved += passes

    def begin_pass(self) -> None:
        if self.reserved > 0:
            self.reserved -= 1
        elif shared.state.job_count >= 0:
            shared.state.job_count += 1

    def release(self, passes: int) -> None:
        """Passes that were counted but will not run (skipped, interrupted, no subject)."""
        passes = min(passes, self.reserved)
        shared.state.job_count -= passes
        self.reserved -= passes


def nested_scripts(p, whitelist: Sequence[str]):
    """A copy of the outer job's script runner with only whitelisted always-on scripts."""
    if p.scripts is None:
        return None
    runner = copy.copy(p.scripts)
    keep = set(whitelist)
    runner.alwayson_scripts = [s for s in p.scripts.alwayson_scripts
                               if Path(s.filename or "").stem in keep]
    runner.callback_map = {}
    return runner


class WebUIEngine:
    """The `Engine` protocol inside the WebUI, for the job `p` whose base images the WebUI made."""

    def __init__(self, p, segmenter: Segmenter, whitelist: Sequence[str] = DEFAULT_WHITELIST,
                 progress: JobProgress | None = None):
        self.p = p
        self.segmenter = segmenter
        self.whitelist = whitelist
        self.progress = progress or JobProgress()
        self.used: dict[str, str] = {}  # which segmenter and face detector ran, for the infotext
        self.models = MODELS  # face swap's sessions and references, kept for the WebUI's lifetime

    def check_loras(self, names: Sequence[str]) -> None:
        known = available_loras()
        if known is None:  # the WebUI's LoRA list cannot be read: its own extra networks will say
            return
        missing = [name for name in names if name not in known]
        if missing:
            listing = ", ".join(sorted(known)[:30]) or "none"
            raise ModelNotFoundError(
                f"LoRA {', '.join(map(repr, missing))} not found in the WebUI's Lora folder; LoRAs found: {listing}"
            )

    def txt2img(self, request: GenerateRequest) -> Image.Image:
        raise MultipassError("inside the WebUI the base image comes from the WebUI's own pass")

    def img2img(self, request: GenerateRequest, image: Image.Image, denoise: float,
                upscaler: str = LANCZOS) -> Image.Image:
        """The harmonizing pass: the whole image, upscaled first by the WebUI's `upscaler` (its
        own list, checked before the job), redone at `denoise` (the base is the WebUI's own)."""
        image = self.upscale(image, (request.width, request.height), upscaler)
        return self._run(self._nested(request, image, denoise), request, "harmonizing")

    def upscale(self, image: Image.Image, size: tuple[int, int], upscaler: str = LANCZOS) -> Image.Image:
        """The WebUI's upscaler by name (its own list, checked before the job), as the Extras
        tab runs it, then Lanczos to the exact size."""
        if image.size == size:
            return image
        found = next((u for u in shared.sd_upscalers if u.name == upscaler), None)
        if found is None:
            raise MultipassError(f"upscaler {upscaler!r} is gone from this WebUI")
        image = found.scaler.upscale(image, max(size[0] / image.width, size[1] / image.height), found.data_path)
        return image if image.size == size else image.convert("RGB").resize(size, Image.Resampling.LANCZOS)

    def inpaint(self, request: InpaintRequest) -> Image.Image:
        """The WebUI in-paints the crop ("only masked"); the paste into the image is ours, with the
        plan's alpha, so pixels where the alpha is 0 stay bit-identical whatever the blur.

        The whole feathered region (alpha > 0) is regenerated with no blur of its own and no
        overlay, so the WebUI returns the raw crop at the pass size."""
        region = Image.fromarray(((request.alpha > 0) * 255).astype(np.uint8), "L")
        nested = self._nested(request.generate, request.image, request.denoise, mask=region, mask_blur=0,
                              inpainting_fill=1, inpaint_full_res=True, inpaint_full_res_padding=request.padding)
        crop = self._run(nested, request.generate, "person")
        box = paste_box(nested, request.image.size)
        patch = np.asarray(crop.convert("RGB").resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS))
        base = np.asarray(request.image.convert("RGB"))
        patch = matched(base, patch, box, request.mask, request.seam)  # no colour seam
        return Image.fromarray(paste(base, patch, box, request.alpha))

    def _run(self, nested, gen: GenerateRequest, what: str) -> Image.Image:
        """Run a nested job as its own: seeded, the outer job's title kept, its ControlNet unit."""
        with (outer_job_kept(), model_state_kept(self.p.sd_model), option_set("overlay_inpaint", False),
              seeded_global_rng(gen.seed), controlnet_for_nested(nested, self.p, gen.control)):
            self.progress.begin_pass()
            processed = processing.process_images(nested)
        if self.interrupted():
            raise PassInterrupted()
        if not processed.images:
            raise MultipassError(f"the WebUI returned no image for the {what} pass")
        return processed.images[0]

    def _nested(self, gen: GenerateRequest, image: Image.Image, denoise: float, **inpaint):
        """A nested img2img of `image` on the outer job's model, with its own conditioning cache
        and only the whitelisted scripts; `inpaint`: the mask settings of an in-paint pass."""
        outer = self.p
        kind = processing.StableDiffusionProcessingImg2Img
        # the scheduler is a field since 1.9; Forge Classic's processing (1.7's) has none
        scheduler = {"scheduler": getattr(outer, "scheduler", None)} if "scheduler" in signature(kind).parameters else {}
        nested = kind(
            sd_model=outer.sd_model, outpath_samples=outer.outpath_samples, outpath_grids=outer.outpath_grids,
            prompt=with_tags(gen.prompt, gen.loras), negative_prompt=gen.negative, styles=[], seed=gen.seed,
            subseed=-1, subseed_strength=0, sampler_name=gen.sampler, **scheduler,
            batch_size=1, n_iter=1, steps=gen.steps, cfg_scale=gen.cfg_scale, width=gen.width, height=gen.height,
            restore_faces=False, tiling=outer.tiling, do_not_save_samples=True, do_not_save_grid=True,
            override_settings={}, extra_generation_params={},
            init_images=[image], denoising_strength=denoise, **inpaint,
        )
        size = len(processing.StableDiffusionProcessing.cached_c)  # 2; Forge 2: 3
        nested.cached_c = [None] * size  # its own cache: the outer job's (class-level) one stays
        nested.cached_uc = [None] * size
        nested.scripts = nested_scripts(outer, self.whitelist)
        nested.script_args = outer.script_args
        return nested

    def detect_faces(self, image: Image.Image, box: Box | None = None) -> list[Face]:
        detector, note = webui_face_detector(insightface_root())
        self.used["face detector"] = f"{detector.name}{note}"
        return faces_in(detector.detect, image, box)

    def body_finder(self) -> Callable[[Image.Image, Box], Face | None] | None:
        """None: the body finder is mediapipe's pose, which the WebUI's protobuf pin keeps out
        (install.py); a person mask without any face is the segmenter's map, as before."""
        return None

    def subject_detector(self) -> Callable[[Image.Image, Sequence[str]], list[Box]] | None:
        """The detector of Settings > Multipass; weights that cannot be had leave the segmenter
        alone to find subjects and say why in the infotext (a download is tried once)."""
        detector = current_detector()
        found = boxes_of(detector)
        if detector is not None:
            self.used["subject detector"] = detector.name if found is not None else f"none ({detector.error})"
        return found

    def refine_masks(self, image: Image.Image, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """SAM's edges (Settings > Multipass); unavailable SAM weights leave the masks as they
        are and say why in the infotext (a download is tried once per loaded extension)."""
        source = setting("multipass_refiner")
        if not source:
            return list(masks)
        refiner = shared_refiner(source, str(devices.device))
        try:
            refined = refiner.refine(image, masks)
        except ModelNotFoundError as err:
            self.used["mask edges"] = f"the segmenter's ({err})"
            return list(masks)
        self.used["mask edges"] = refiner.name
        return refined

    def hint(self, kind: str, image: Image.Image) -> tuple[Image.Image, bool]:
        return image, False  # the ControlNet extension's own preprocessor makes the hint

    def segment(self, image: Image.Image, terms: Sequence[str], box: Box | None = None) -> np.ndarray:
        found = probabilities_in(self.segmenter, image, terms, box)
        self.used["segmenter"] = getattr(self.segmenter, "name", type(self.segmenter).__name__)
        return found

    def interrupted(self) -> bool:
        state = shared.state
        return bool(state.interrupted or state.skipped or getattr(state, "stopping_generation", False))


def shared_refiner(source: str, device: str) -> SamRefiner:
    """One SAM for both tabs, in the extension's models (emptied by Reload UI)."""
    return MODELS.get(("refiner", source, device), one_of_kind=True,
                      load=lambda: SamRefiner(source, device, models_dir=Path(shared.models_path) / "sam"))


def current_detector() -> BoxDetector | None:
    """The subject detector of Settings > Multipass, one for the jobs of both tabs, the mask
    preview and the mask route; None when the setting is blank."""
    source = str(setting("multipass_detector") or "")
    if not source:
        return None
    device = str(devices.device)
    return MODELS.get(("detector", source, device), one_of_kind=True,
                      load=lambda: make_detector(source, device, Path(shared.models_path) / "owlvit"))


def insightface_root() -> str:
    return str(Path(shared.models_path) / "insightface")


def find_faces(image: Image.Image, box: Box | None = None) -> list[Face]:
    """The faces the WebUI's detector finds in the crop `box` (the mask preview and route)."""
    return faces_in(webui_face_detector(insightface_root())[0].detect, image, box)


def webui_face_detector(insightface_root: str) -> tuple[FaceDetector, str]:
    """(detector, why it is the fallback): insightface's detector (5 landmarks, which face swap
    needs) when it and buffalo_l are installed; otherwise OpenCV's cascade (mediapipe cannot
    run beside the WebUI's protobuf). Loaded once into the extension's models."""
    return MODELS.get(("face detector", insightface_root), lambda: _load_face_detector(insightface_root),
                      one_of_kind=True)


def _load_face_detector(insightface_root: str) -> tuple[FaceDetector, str]:
    try:
        return InsightFaceDetector(insightface_root), ""
    except ModelNotFoundError as err:
        log.warning("multipass: %s; faces are found with OpenCV's Haar cascade instead", err)
        return make_face_detector("haar"), f" ({err})"


def segmenter_source(setting: str | None) -> str | None:
    """CLIPSeg weights: the setting, else `models/clipseg/` when it holds a model, else the default id."""
    if setting:
        return setting
    local = Path(shared.models_path) / "clipseg"
    return str(local) if (local / "config.json").is_file() else None

