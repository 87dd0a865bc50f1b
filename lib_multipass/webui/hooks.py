"""What the script's hooks do inside the WebUI: settings -> options -> a MultipassJob."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import MultipassError
from ..masks.segmenters import DEFAULT_CLIPSEG, ClipSegSegmenter, Segmenter
from ..options import MultipassOptions
from ..prompt import BREAK_RE, LORA_RE
from .args import options_from_args
from .job import MultipassJob, reject
from .models import MODELS
from .settings import setting

log = logging.getLogger(__name__)
WEBUI_CLIPSEG_HINT = (f"put {DEFAULT_CLIPSEG} (config.json, model.safetensors, the tokenizer files) in "
                      "models/clipseg, or name its folder in Settings > Multipass, or give a mask image")


def shared_segmenter(source: str | None, device: str) -> Segmenter:
    """One segmenter for both tabs, loaded on first use and kept between jobs. CLIPSeg only:
    the offline fallback (mediapipe) cannot run beside the WebUI's protobuf, so missing
    weights are said as such, with where they go."""
    return MODELS.get(("segmenter", source, device), one_of_kind=True,
                      load=lambda: ClipSegSegmenter(source or DEFAULT_CLIPSEG, device, missing_hint=WEBUI_CLIPSEG_HINT))


def current_segmenter() -> Segmenter:
    """The shared segmenter with the Settings tab's weights, on the WebUI's device."""
    from modules import devices

    from .engine import segmenter_source

    return shared_segmenter(segmenter_source(setting("multipass_segmenter") or None), str(devices.device))


def start_job(p, args: Sequence[Any]) -> MultipassJob | None:
    """The job for `p`, or None when multipass is off (or the job was rejected: nothing runs)."""
    from modules import images

    from .checks import check_options, check_plans, current_host
    from .engine import JobProgress, WebUIEngine

    try:
        options = options_from_args(args)
        if not options.enabled:
            warn_if_meant_for_multipass(p)
            return None
        host = current_host()
        options = check_options(with_settings(options), host)
    except MultipassError as err:
        reject(p, str(err))
        return None
    segmenter = current_segmenter()
    whitelist = [name.strip() for name in str(setting("multipass_script_whitelist")).split(",") if name.strip()]
    progress = JobProgress()
    engine = WebUIEngine(p, segmenter, whitelist, progress)

    def save(image, p, index, suffix):
        images.save_image(image, p.outpath_samples, "", p.all_seeds[index], p.all_prompts[index],
                          setting_format(), p=p, suffix=suffix)

    job = MultipassJob(options, engine, save, progress)
    if not job.start(p):
        return None
    try:
        check_plans(list(job.plans.values()), host)
    except MultipassError as err:
        reject(p, str(err))
        return None
    return job


def with_settings(options: MultipassOptions) -> MultipassOptions:
    """The Settings tab's defaults, and face swap models found in the WebUI's models/insightface."""
    overrides: dict[str, Any] = {}
    if options.mask_prompt == ("person",) and setting("multipass_default_mask_prompt") != "person":
        overrides["mask_prompt"] = setting("multipass_default_mask_prompt")
    if setting("multipass_save_passes"):
        overrides["save_passes"] = True
    if options.face_swap:
        from modules import shared

        from ..faces.swap import RECOGNIZER_FILE, SWAPPER_FILE

        root = Path(shared.models_path) / "insightface"
        for name, file in (("face_swap_model", SWAPPER_FILE), ("face_recognition_model", RECOGNIZER_FILE)):
            found = sorted(root.rglob(file)) if root.is_dir() else []
            if getattr(options, name) is None and found:
                overrides[name] = str(found[0])
    return options.replace(**overrides)


def warn_if_meant_for_multipass(p) -> None:
    """Multipass is off but the prompt is written for it: its LoRAs would reach the whole image."""
    prompt = p.prompt if isinstance(p.prompt, str) else (p.prompt[0] if p.prompt else "")
    if BREAK_RE.search(prompt) and LORA_RE.search(BREAK_RE.split(prompt, 1)[1]):
        message = ("Multipass is off: this prompt has BREAK segments with LoRAs, so the WebUI applies those "
                   "LoRAs to the whole image; tick 'Enable multipass' to in-paint them on the subject only")
        log.warning("multipass: %s", message)
        p.comment(message)


def setting_format() -> str:
    from modules import shared

    return shared.opts.data.get("samples_format", "png")


def end_job(job: MultipassJob | None, processed) -> None:
    if job is None:
        return
    job.finish(processed)
    if not setting("multipass_keep_segmenter"):
        job.engine.segmenter.unload()  # type: ignore[attr-defined]
        from .engine import current_detector

        detector = current_detector()
        if detector is not None:
            detector.unload()
